"""Loss layers: ``softmaxloss`` (vl_nnsoftmaxloss) and ``loss`` (vl_nnloss: SimpleNN's
defaults, i.e. softmax-log-loss, or any of its other types as a layerspec extension).

MatConvNet master semantics: the loss **sums over spatial positions and divides by the batch
size N only** (not by H*W, not by the number of labelled positions). Labels are 0-based here
(1-based in Matlab); ``-1`` means "ignore this position" (Matlab's 0). A label per image,
shape ``(N,)``, is broadcast to every output position; a label map has shape ``(N, H, W)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError, ShapeError, SpecError
from .activations import softmax
from .base import SCALAR, Context, Layer, Shape, param


def expand_labels(xp: Any, labels: Any, shape: tuple[int, ...]) -> Any:
    """Labels as an ``(N, H, W)`` integer array for scores of ``shape = (N, H, W, K)``."""
    n, h, w, k = shape
    if labels is None:
        raise DataError("a loss layer needs labels")
    lab = xp.asarray(labels)
    if lab.ndim == 1 or lab.size == n:
        if lab.size != n:
            raise DataError(f"{lab.size} labels for a batch of {n}")
        lab = xp.broadcast_to(lab.reshape(n, 1, 1), (n, h, w))
    elif tuple(lab.shape) != (n, h, w):
        raise DataError(f"label map of shape {tuple(lab.shape)} does not match the "
                        f"scores' (N, H, W) = {(n, h, w)}")
    return lab.astype(xp.int64, copy=False)


@dataclass(frozen=True, kw_only=True)
class SoftmaxLoss(Layer):
    """``y = (1/N) * sum_{n,h,w} [c >= 0] * (logsumexp_k x - x_c)``."""

    type = "softmaxloss"
    is_loss = True

    def output_shape(self, shape: Shape, wshapes: list[tuple[int, ...]]) -> Shape:
        self.check_weights(shape, wshapes)
        if shape[2] < 1:
            raise ShapeError(f"{self.type} '{self.name}' needs at least one class channel")
        return SCALAR

    def flops(self, shape: Shape, out: Shape, wshapes: list[tuple[int, ...]]) -> int:
        return 4 * shape[0] * shape[1] * shape[2]

    def _prepare(self, x: Any, ctx: Context) -> tuple[Any, Any, Any]:
        xp = ctx.xp
        lab = expand_labels(xp, ctx.labels, x.shape)
        k = x.shape[3]
        mass = lab >= 0
        # on a device, check the host copy of the labels: no read-back (and wait) per step
        chk = lab if ctx.labels_host is None else \
            np.asarray(ctx.labels_host).astype(np.int64, copy=False)
        if bool((chk >= k).any()):
            raise DataError(f"label {int(chk.max())} is out of range for {k} classes "
                            f"(labels are 0-based here; -1 means ignore)")
        c = xp.where(mass, lab, 0)
        return lab, mass, c

    def forward(self, x: Any, w: list[Any], ctx: Context, aux: Any = None) -> tuple[Any, Any]:
        xp = ctx.xp
        _, mass, c = self._prepare(x, ctx)
        xmax = x.max(axis=-1, keepdims=True)
        ex = xp.exp(x - xmax)
        lse = xmax[..., 0] + xp.log(ex.sum(axis=-1))
        xc = xp.take_along_axis(x, c[..., None], axis=-1)[..., 0]
        t = (lse - xc) * mass.astype(x.dtype)
        n = x.shape[0]
        return (t.sum() / x.dtype.type(n)).astype(x.dtype), None

    def backward(self, x: Any, y: Any, aux: Any, w: list[Any], dy: Any,
                 ctx: Context) -> tuple[Any, list[Any]]:
        xp = ctx.xp
        _, mass, c = self._prepare(x, ctx)
        p = softmax(xp, x)
        _sub_onehot(xp, p, c)
        n = x.shape[0]
        scale = (xp.asarray(dy, dtype=x.dtype) / x.dtype.type(n))
        return p * (mass[..., None].astype(x.dtype) * scale), []


def _sub_onehot(xp: Any, p: Any, c: Any) -> None:
    """``p[..., c] -= 1`` in place (the one-hot of the labels)."""
    k = p.shape[-1]
    p -= (c[..., None] == xp.arange(k)).astype(p.dtype)


#: vl_nnloss types whose labels are one class per position (0-based here, -1 = ignore)
CATEGORICAL_LOSSES = ("softmaxlog", "log", "classerror", "topkerror", "mhinge", "mshinge")
#: vl_nnloss types whose labels are +1/-1 per score (0 = ignore), the shape of the scores
BINARY_LOSSES = ("binaryerror", "binarylog", "logistic", "hinge")


@dataclass(frozen=True, kw_only=True)
class Loss(SoftmaxLoss):
    """``vl_nnloss``. SimpleNN's ``loss`` layer calls it with its defaults — softmax-log-loss,
    the same numbers as ``softmaxloss``. The other fields select vl_nnloss's options, which a
    MatConvNet SimpleNN net cannot set (layerspec extension).

    Every loss is ``(1/N) * sum(w * t)`` over positions (and attributes), with ``w`` 0 where
    the label is "ignore" (and multiplied by ``instanceWeights``) and ``t`` per ``loss``:
    softmaxlog ``logsumexp(x) - x_c``; log ``-log(x_c)``; classerror ``[argmax x != c]``;
    topkerror ``[c not among the topK largest]``; mhinge ``max(0, 1 - x_c)``; mshinge
    ``max(0, 1 - x_c + max_{q != c} x_q)``; binaryerror ``[sign(x - threshold) != c]`` (a
    score at the threshold is always an error); binarylog ``-log(c (x - 0.5) + 0.5)``;
    logistic ``log(1 + exp(-c x))``; hinge ``max(0, 1 - c x)``. The error losses have zero
    derivative.

    Labels: categorical losses take layerspec's class labels (0-based, ``-1`` = ignore, per
    image ``(N,)`` or per position ``(N, H, W)``); binary losses take an array of the scores'
    shape ``(N, H, W, D)`` holding +1/-1 (0 = ignore), as MatConvNet's."""

    loss: str = param("choice", "softmaxlog",
                      "vl_nnloss type: softmaxlog, log, classerror, topkerror, mhinge, mshinge "
                      "(class labels) or binaryerror, binarylog, logistic, hinge (+1/-1 "
                      "labels of the scores' shape) — a layerspec extension (SimpleNN always "
                      "uses softmaxlog)",
                      choices=CATEGORICAL_LOSSES + BINARY_LOSSES)
    topK: int = param("int", 5, "topkerror: an error when the label is not among the topK "
                      "largest scores (needs at least topK classes)")
    threshold: float = param("float", 0.0, "binaryerror: the score is read as sign(x - "
                             "threshold)")
    instanceWeights: tuple[float, ...] | None = param(
        "floats", None, "weights multiplying each term: one number, or (binary losses) one "
        "per channel")

    type = "loss"

    def __post_init__(self) -> None:
        if self.topK < 1:
            raise SpecError(f"loss: topK must be >= 1, got {self.topK}")

    @property
    def binary(self) -> bool:
        return self.loss in BINARY_LOSSES

    def output_shape(self, shape: Shape, wshapes: list[tuple[int, ...]]) -> Shape:
        out = super().output_shape(shape, wshapes)
        if self.loss == "topkerror" and shape[2] < self.topK:
            raise ShapeError(f"loss '{self.name}': topkerror with topK {self.topK} needs at "
                             f"least {self.topK} classes, the input has {shape[2]}")
        iw = self.instanceWeights
        if iw is not None and len(iw) != 1 and not (self.binary and len(iw) == shape[2]):
            raise ShapeError(f"loss '{self.name}': instanceWeights has {len(iw)} numbers; give "
                             f"one" + (f", or one per channel ({shape[2]})" if self.binary
                                       else ""))
        return out

    def _weights(self, xp: Any, x: Any, ctx: Context) -> tuple[Any, Any]:
        """(labels, w): w the weight of every term, shape (N, H, W) or (N, H, W, D)."""
        dt = x.dtype
        if self.binary:
            if ctx.labels is None:
                raise DataError(f"loss '{self.name}' ({self.loss}) needs labels")
            c = xp.asarray(ctx.labels, dtype=dt)
            if tuple(c.shape) != tuple(x.shape):
                raise DataError(f"loss '{self.name}' ({self.loss}) needs +1/-1 labels of the "
                                f"scores' shape {tuple(x.shape)} (N, H, W, C), got "
                                f"{tuple(c.shape)}")
            w = (c != 0).astype(dt)
        else:
            lab, mass, c = self._prepare(x, ctx)
            w = mass.astype(dt)
        if self.instanceWeights is not None:
            iw = xp.asarray(self.instanceWeights, dtype=dt)
            w = w * (iw if self.binary else iw[0])
        return c, w

    def _terms(self, xp: Any, x: Any, c: Any) -> Any:
        dt = x.dtype.type
        one = dt(1)
        kind = self.loss
        if kind == "logistic":
            a = -c * x
            b = xp.maximum(a, dt(0))
            return b + xp.log(xp.exp(-b) + xp.exp(a - b))
        if kind == "binarylog":
            return -xp.log(c * (x - dt(0.5)) + dt(0.5))
        if kind == "hinge":
            return xp.maximum(dt(0), one - c * x)
        if kind == "binaryerror":
            return (xp.sign(x - dt(self.threshold)) != c).astype(x.dtype)
        xc = xp.take_along_axis(x, c[..., None], axis=-1)[..., 0]
        if kind == "softmaxlog":
            xmax = x.max(axis=-1, keepdims=True)
            lse = xmax[..., 0] + xp.log(xp.exp(x - xmax).sum(axis=-1))
            return lse - xc
        if kind == "log":
            return -xp.log(xc)
        if kind == "classerror":
            return (xp.argmax(x, axis=-1) != c).astype(x.dtype)
        if kind == "topkerror":
            return (_rank(xp, x, c, xc) >= self.topK).astype(x.dtype)
        if kind == "mhinge":
            return xp.maximum(dt(0), one - xc)
        # mshinge
        return xp.maximum(dt(0), one - xc + _best_other(xp, x, c)[0])

    def summary(self, wshapes: list[tuple[int, ...]]) -> str:
        return "" if self.loss == "softmaxlog" else self.loss

    def forward(self, x: Any, w: list[Any], ctx: Context, aux: Any = None) -> tuple[Any, Any]:
        xp = ctx.xp
        c, wt = self._weights(xp, x, ctx)
        t = self._terms(xp, x, c)
        t = xp.where(wt != 0, t * wt, x.dtype.type(0))  # an ignored term adds nothing (no NaN)
        return (t.sum() / x.dtype.type(x.shape[0])).astype(x.dtype), None

    def backward(self, x: Any, y: Any, aux: Any, w: list[Any], dy: Any,
                 ctx: Context) -> tuple[Any, list[Any]]:
        xp = ctx.xp
        dt = x.dtype.type
        zero = dt(0)
        c, wt = self._weights(xp, x, ctx)
        scale = wt * (xp.asarray(dy, dtype=x.dtype) / dt(x.shape[0]))
        kind = self.loss
        if kind in ("classerror", "topkerror", "binaryerror"):
            return xp.zeros_like(x), []
        if kind == "logistic":
            return -scale * c / (dt(1) + xp.exp(c * x)), []
        if kind == "binarylog":
            den = x + (c - dt(1)) * dt(0.5)
            return xp.where(scale != 0, -scale / xp.where(den != 0, den, dt(1)), zero), []
        if kind == "hinge":
            return xp.where(c * x < dt(1), -scale * c, zero), []
        k = x.shape[-1]
        onehot = c[..., None] == xp.arange(k)
        if kind == "softmaxlog":
            p = softmax(xp, x)
            _sub_onehot(xp, p, c)
            return p * scale[..., None], []
        xc = xp.take_along_axis(x, c[..., None], axis=-1)[..., 0]
        if kind == "log":
            g = xp.where(scale != 0, -scale / xp.maximum(xc, dt(1e-8)), zero)
            return xp.where(onehot, g[..., None], zero), []
        if kind == "mhinge":
            g = xp.where(xc < dt(1), -scale, zero)
            return xp.where(onehot, g[..., None], zero), []
        # mshinge: -W at the label, +W at the strongest other class
        other, q = _best_other(xp, x, c)
        g = xp.where(xc - other < dt(1), scale, zero)[..., None]
        return xp.where(onehot, -g, zero) + xp.where(q[..., None] == xp.arange(k), g, zero), []


def _rank(xp: Any, x: Any, c: Any, xc: Any) -> Any:
    """Position of class c in a stable descending sort of the scores (0 = the largest;
    ties keep the lower class first, as Matlab's sort)."""
    k = x.shape[-1]
    ahead = (x > xc[..., None]) | ((x == xc[..., None]) & (xp.arange(k) < c[..., None]))
    return ahead.sum(axis=-1)


def _best_other(xp: Any, x: Any, c: Any) -> tuple[Any, Any]:
    """(max_{q != c} x_q, its first index q) at every position."""
    k = x.shape[-1]
    q = xp.where(c[..., None] == xp.arange(k), x.dtype.type(-xp.inf), x)
    idx = xp.argmax(q, axis=-1)
    return xp.take_along_axis(q, idx[..., None], axis=-1)[..., 0], idx
