"""Loss layers: ``softmaxloss`` (vl_nnsoftmaxloss) and ``loss`` (vl_nnloss with SimpleNN's
defaults, i.e. softmax-log-loss).

MatConvNet master semantics: the loss **sums over spatial positions and divides by the batch
size N only** (not by H*W, not by the number of labelled positions). Labels are 0-based here
(1-based in Matlab); ``-1`` means "ignore this position" (Matlab's 0). A label per image,
shape ``(N,)``, is broadcast to every output position; a label map has shape ``(N, H, W)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import DataError, ShapeError
from .activations import softmax
from .base import SCALAR, Context, Layer, Shape


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
        if bool((lab >= k).any()):
            raise DataError(f"label {int(lab.max())} is out of range for {k} classes "
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


@dataclass(frozen=True, kw_only=True)
class Loss(SoftmaxLoss):
    """SimpleNN's ``loss`` layer: ``vl_nnloss(x, class)`` with its defaults, which is
    softmax-log-loss — the same numbers as ``softmaxloss``."""

    type = "loss"
