"""The remaining SimpleNN layer types: ``noffset`` (vl_nnnoffset), ``spnorm`` (vl_nnspnorm)
and ``pdist`` (vl_nnpdist)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import DataError, ShapeError, SpecError
from .base import SCALAR, Context, Layer, Shape, pad_hw, param, window


def _check_param(layer: Layer, names: str) -> None:
    n = len(names.split())
    if len(layer.param) != n:
        raise SpecError(f"{layer.type}: param: expected {n} numbers [{names}], got "
                        f"{len(layer.param)}")


# ----------------------------------------------------------------------------------------
# noffset
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Noffset(Layer):
    """Norm-dependent offset, ``param = [a b]``: ``y = x - a * L^b`` with
    ``L = max(sum_k x^2, 1e-8)`` per position."""

    param: tuple[float, ...] = param(
        "floats", doc="[a b]: y = x - a * max(sum over channels of x^2, 1e-8)^b", length=2)

    type = "noffset"

    def __post_init__(self) -> None:
        _check_param(self, "a b")

    def summary(self, wshapes: list[tuple[int, ...]]) -> str:
        return "[" + " ".join(f"{v:g}" for v in self.param) + "]"

    def forward(self, x: Any, w: list[Any], ctx: Context, aux: Any = None) -> tuple[Any, Any]:
        xp = ctx.xp
        a, b = self.param
        dt = x.dtype.type
        big_l = xp.maximum((x * x).sum(axis=-1, keepdims=True), dt(1e-8))
        return x - dt(a) * xp.power(big_l, dt(b)), big_l

    def backward(self, x: Any, y: Any, aux: Any, w: list[Any], dy: Any,
                 ctx: Context) -> tuple[Any, list[Any]]:
        """``dx = dy - 2ab * x * sum_k(dy) * L^(b-1)`` (MatConvNet ignores the clamp here)."""
        xp = ctx.xp
        a, b = self.param
        dt = x.dtype.type
        big_l = aux
        s = dy.sum(axis=-1, keepdims=True)
        return dy - dt(2 * a * b) * x * s * xp.power(big_l, dt(b - 1)), []


# ----------------------------------------------------------------------------------------
# spnorm
# ----------------------------------------------------------------------------------------

def _same_pad(ph: int, pw: int) -> tuple[int, int, int, int]:
    top, left = (ph - 1) // 2, (pw - 1) // 2
    return top, ph - 1 - top, left, pw - 1 - left


@dataclass(frozen=True, kw_only=True)
class Spnorm(Layer):
    """Spatial normalisation, ``param = [PH PW alpha beta]``: ``y = x * (1 + alpha*n2)^-beta``
    where n2 is the **mean** of x^2 over a PH x PW window (clipped at the border)."""

    param: tuple[float, ...] = param(
        "floats", doc="[PH PW alpha beta]: n2 = mean of x^2 over a PH x PW window (rows "
        "i-floor((PH-1)/2) .. i+ceil((PH-1)/2), clipped to the image; MatConvNet's help says "
        "sum, the code takes the mean), y = x * (1 + alpha*n2)^-beta", length=4)

    type = "spnorm"

    def __post_init__(self) -> None:
        _check_param(self, "PH PW alpha beta")
        for v in self.param[:2]:
            if v != int(v) or v < 1:
                raise SpecError(f"spnorm: param: the window size PH, PW must be whole numbers "
                                f">= 1, got {v:g}")

    def flops(self, shape: Shape, out: Shape, wshapes: list[tuple[int, ...]]) -> int:
        return out[0] * out[1] * out[2] * (int(self.param[0]) * int(self.param[1]) + 6)

    def _counts(self, xp: Any, h: int, w: int, dtype: Any) -> Any:
        ph, pw = int(self.param[0]), int(self.param[1])
        top, _, left, _ = _same_pad(ph, pw)
        i = xp.arange(h)
        j = xp.arange(w)
        ch = xp.minimum(i - top + ph, h) - xp.maximum(i - top, 0)
        cw = xp.minimum(j - left + pw, w) - xp.maximum(j - left, 0)
        return (ch[:, None] * cw[None, :]).astype(dtype)[:, :, None]

    def _box_mean(self, xp: Any, a: Any, counts: Any) -> Any:
        """Mean over the clipped window at every position (stride 1, 'same' size)."""
        ph, pw = int(self.param[0]), int(self.param[1])
        n, h, w, c = a.shape
        apad = pad_hw(xp, a, _same_pad(ph, pw))
        acc = xp.zeros_like(a)
        for v in range(pw):
            for u in range(ph):
                acc += window(apad, u, v, 1, 1, h, w)
        return acc / counts

    def _box_mean_backward(self, xp: Any, d: Any, counts: Any) -> Any:
        ph, pw = int(self.param[0]), int(self.param[1])
        n, h, w, c = d.shape
        pad = _same_pad(ph, pw)
        g = d / counts
        out = xp.zeros((n, h + pad[0] + pad[1], w + pad[2] + pad[3], c), dtype=d.dtype)
        for v in range(pw):
            for u in range(ph):
                window(out, u, v, 1, 1, h, w)[...] += g
        return out[:, pad[0]:pad[0] + h, pad[2]:pad[2] + w, :]

    def summary(self, wshapes: list[tuple[int, ...]]) -> str:
        return "[" + " ".join(f"{v:g}" for v in self.param) + "]"

    def forward(self, x: Any, w: list[Any], ctx: Context, aux: Any = None) -> tuple[Any, Any]:
        xp = ctx.xp
        _, _, alpha, beta = self.param
        dt = x.dtype.type
        counts = self._counts(xp, x.shape[1], x.shape[2], x.dtype)
        f = dt(1) + dt(alpha) * self._box_mean(xp, x * x, counts)
        return x * xp.power(f, dt(-beta)), (f, counts)

    def backward(self, x: Any, y: Any, aux: Any, w: list[Any], dy: Any,
                 ctx: Context) -> tuple[Any, list[Any]]:
        xp = ctx.xp
        _, _, alpha, beta = self.param
        dt = x.dtype.type
        f, counts = aux
        fb = xp.power(f, dt(-beta))
        back = self._box_mean_backward(xp, fb / f * dy * x, counts)
        return fb * dy - dt(2 * alpha * beta) * x * back, []


# ----------------------------------------------------------------------------------------
# pdist
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Pdist(Layer):
    """p-distance to a target ``x0`` per position:
    ``y = (sum_d |x - x0|^p)^(1/p)``, one channel (or one number with ``aggregate``).

    The target ``x0`` is SimpleNN's per-batch ``layer.class`` and comes from the labels
    passed to the run (``simplenn(..., labels=x0)``, or the dataset's labels when training):
    an (N, H, W, D) array like x, or (N, 1, 1, D) broadcast over the positions."""

    p: float = param("float", 2.0, "the norm's exponent p > 0", minimum=0.0)
    noRoot: bool = param("bool", False, "leave out the 1/p power (sum_d |x - x0|^p)")
    epsilon: float = param("float", 1e-3, "the root's derivative divides by "
                           "max(sum_d |x - x0|^p, epsilon) (tidy's default 1e-3; a direct "
                           "vl_nnpdist call uses 1e-6)", minimum=0.0)
    aggregate: bool = param("bool", False, "sum the distances of all positions and images "
                            "into one number")
    instanceWeights: tuple[float, ...] | None = param(
        "floats", None, "a weight multiplying every distance (layerspec takes one number; "
        "MatConvNet's per-instance array has no place in a spec)", length=1)

    type = "pdist"

    def __post_init__(self) -> None:
        if self.p <= 0:
            raise SpecError(f"pdist: p must be > 0, got {self.p:g}")
        if self.instanceWeights is not None and len(self.instanceWeights) != 1:
            raise SpecError("pdist: instanceWeights: give one number")

    def output_shape(self, shape: Shape, wshapes: list[tuple[int, ...]]) -> Shape:
        self.check_weights(shape, wshapes)
        return SCALAR if self.aggregate else (shape[0], shape[1], 1)

    def flops(self, shape: Shape, out: Shape, wshapes: list[tuple[int, ...]]) -> int:
        return 3 * shape[0] * shape[1] * shape[2]

    def _diff(self, xp: Any, x: Any, ctx: Context) -> Any:
        x0 = ctx.labels
        if x0 is None:
            raise DataError(f"pdist '{self.name}' needs the target x0, passed as the labels")
        x0 = xp.asarray(x0, dtype=x.dtype)
        n, h, w, d = x.shape
        if x0.ndim != 4 or x0.shape[0] != n or x0.shape[3] != d or \
                x0.shape[1:3] not in ((h, w), (1, 1)):
            raise ShapeError(f"pdist '{self.name}': the target x0 has shape {tuple(x0.shape)}; "
                             f"it must be {(n, h, w, d)} or {(n, 1, 1, d)} (N, H, W, C)")
        return x - x0

    def _weight(self, dt: Any) -> Any:
        return None if self.instanceWeights is None else dt(self.instanceWeights[0])

    def summary(self, wshapes: list[tuple[int, ...]]) -> str:
        return (f"p {self.p:g}" + (" noRoot" if self.noRoot else "")
                + (" aggregate" if self.aggregate else ""))

    def forward(self, x: Any, w: list[Any], ctx: Context, aux: Any = None) -> tuple[Any, Any]:
        xp = ctx.xp
        dt = x.dtype.type
        d = self._diff(xp, x, ctx)
        p = self.p
        if p == 1:
            y = xp.abs(d).sum(axis=-1, keepdims=True)
        elif p == 2:
            y = (d * d).sum(axis=-1, keepdims=True)
            if not self.noRoot:
                y = xp.sqrt(y)
        else:
            y = xp.power(xp.abs(d), dt(p)).sum(axis=-1, keepdims=True)
            if not self.noRoot:
                y = xp.power(y, dt(1 / p))
        iw = self._weight(dt)
        if iw is not None:
            y = y * iw
        if self.aggregate:
            y = y.sum().astype(x.dtype)
        return y, None

    def backward(self, x: Any, y: Any, aux: Any, w: list[Any], dy: Any,
                 ctx: Context) -> tuple[Any, list[Any]]:
        """p = 2: ``dy * d / sqrt(max(sum d^2, eps))``; noRoot: ``2 dy d``; p = 1:
        ``dy * sign(d)``; other p: ``dy * max(S, eps)^(1/p - 1) |d|^(p-1) sign(d)``
        (noRoot: ``p dy |d|^(p-1) sign(d)``). Only dx (SimpleNN drops dx0 = -dx)."""
        xp = ctx.xp
        dt = x.dtype.type
        d = self._diff(xp, x, ctx)
        dy = xp.asarray(dy, dtype=x.dtype)
        if self.aggregate:
            dy = xp.broadcast_to(dy.reshape(1, 1, 1, 1), (x.shape[0], x.shape[1], x.shape[2], 1))
        iw = self._weight(dt)
        if iw is not None:
            dy = dy * iw
        p = self.p
        if p == 1:
            dx = dy * xp.sign(d)
        elif p == 2:
            if self.noRoot:
                dx = dt(2) * dy * d
            else:
                s = xp.sqrt(xp.maximum((d * d).sum(axis=-1, keepdims=True), dt(self.epsilon)))
                dx = (dy / s) * d
        else:
            ad = xp.abs(d)
            dpow = xp.power(ad, dt(p - 1)) * xp.sign(d)
            if self.noRoot:
                dx = dt(p) * dy * dpow
            else:
                s = xp.maximum(xp.power(ad, dt(p)).sum(axis=-1, keepdims=True), dt(self.epsilon))
                dx = dy * xp.power(s, dt((1 - p) / p)) * dpow
        return xp.ascontiguousarray(dx), []
