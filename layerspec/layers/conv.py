"""``conv``: MatConvNet's ``vl_nnconv`` — cross-correlation with stride, asymmetric padding,
dilation and groups, computed as im2col + one GEMM (per group).

Filters ``F`` are ``(FH, FW, FC, K)``; when ``FC < C`` the input is split into ``G = C / FC``
groups, group ``g`` reads channels ``[g*FC, (g+1)*FC)`` and owns filters
``[g*K/G, (g+1)*K/G)``. The bias has ``K`` elements or none (an empty array).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ShapeError
from .base import Context, Layer, Shape, pad_hw, param, window


def im2col(xp: Any, xpad: Any, fh: int, fw: int, dil: tuple[int, int], stride: tuple[int, int],
           ho: int, wo: int) -> Any:
    """Patches of the padded input, ``(N*Ho*Wo, FH*FW*C)`` with columns ordered (u, v, c)."""
    n, _, _, c = xpad.shape
    cols = xp.empty((n, ho, wo, fh, fw, c), dtype=xpad.dtype)
    for u in range(fh):
        for v in range(fw):
            cols[:, :, :, u, v, :] = window(xpad, u * dil[0], v * dil[1], stride[0], stride[1],
                                            ho, wo)
    return cols.reshape(n * ho * wo, fh * fw * c)


def col2im(xp: Any, cols: Any, padded_shape: tuple[int, int, int, int], fh: int, fw: int,
           dil: tuple[int, int], stride: tuple[int, int], ho: int, wo: int) -> Any:
    """Adjoint of :func:`im2col`: scatter-add patches back into a padded input."""
    n, hp, wp, c = padded_shape
    out = xp.zeros(padded_shape, dtype=cols.dtype)
    cols = cols.reshape(n, ho, wo, fh, fw, c)
    for u in range(fh):
        for v in range(fw):
            window(out, u * dil[0], v * dil[1], stride[0], stride[1], ho, wo)[...] += \
                cols[:, :, :, u, v, :]
    return out


def conv_forward(xp: Any, x: Any, f: Any, b: Any, stride: tuple[int, int],
                 pad: tuple[int, int, int, int], dilate: tuple[int, int]) -> tuple[Any, Any]:
    """y = conv(x, f) + b. Returns ``(y, cols)``; ``cols`` is reused by the backward pass."""
    n, h, w, c = x.shape
    fh, fw, fc, k = f.shape
    g = c // fc
    ho = (h + pad[0] + pad[1] - ((fh - 1) * dilate[0] + 1)) // stride[0] + 1
    wo = (w + pad[2] + pad[3] - ((fw - 1) * dilate[1] + 1)) // stride[1] + 1
    cols = im2col(xp, pad_hw(xp, x, pad), fh, fw, dilate, stride, ho, wo)
    m = cols.shape[0]
    if g == 1:
        y = cols @ f.reshape(fh * fw * fc, k)
    else:
        kg = k // g
        cols_g = cols.reshape(m, fh * fw, g, fc).transpose(2, 0, 1, 3).reshape(g, m, fh * fw * fc)
        f_g = f.reshape(fh * fw * fc, g, kg).transpose(1, 0, 2)
        y = xp.matmul(cols_g, f_g).transpose(1, 0, 2).reshape(m, k)
    if b is not None and b.size:
        y += b
    return y.reshape(n, ho, wo, k), cols


def conv_backward(xp: Any, x: Any, f: Any, b: Any, dy: Any, cols: Any, stride: tuple[int, int],
                  pad: tuple[int, int, int, int],
                  dilate: tuple[int, int]) -> tuple[Any, Any, Any]:
    """(dx, df, db) for :func:`conv_forward`; derivatives are summed over the batch."""
    n, h, w, c = x.shape
    fh, fw, fc, k = f.shape
    g = c // fc
    _, ho, wo, _ = dy.shape
    m = n * ho * wo
    dym = dy.reshape(m, k)
    if g == 1:
        f2 = f.reshape(fh * fw * fc, k)
        df = (cols.T @ dym).reshape(f.shape)
        dcols = dym @ f2.T
    else:
        kg = k // g
        cols_g = cols.reshape(m, fh * fw, g, fc).transpose(2, 0, 1, 3).reshape(g, m, fh * fw * fc)
        f_g = f.reshape(fh * fw * fc, g, kg).transpose(1, 0, 2)
        dy_g = dym.reshape(m, g, kg).transpose(1, 0, 2)
        df = xp.matmul(cols_g.transpose(0, 2, 1), dy_g).transpose(1, 0, 2).reshape(f.shape)
        dcols = xp.matmul(dy_g, f_g.transpose(0, 2, 1))
        dcols = dcols.reshape(g, m, fh * fw, fc).transpose(1, 2, 0, 3).reshape(m, fh * fw * c)
    padded = (n, h + pad[0] + pad[1], w + pad[2] + pad[3], c)
    dxpad = col2im(xp, dcols, padded, fh, fw, dilate, stride, ho, wo)
    dx = dxpad[:, pad[0]:pad[0] + h, pad[2]:pad[2] + w, :]
    db = dym.sum(axis=0) if b is not None and b.size else xp.zeros((0,), dtype=dy.dtype)
    return xp.ascontiguousarray(dx), df, db


@dataclass(frozen=True, kw_only=True)
class Conv(Layer):
    """Convolution (cross-correlation). Weights ``[F (FH,FW,FC,K), b (K,) or empty]``."""

    weights: tuple[str, ...] | None = param(
        "weights", None, "initializers {F, b}: F is [h w in out], b has `out` elements or is []")
    stride: tuple[int, int] = param("pair", (1, 1), "[sy sx] (a scalar means both)", minimum=1)
    pad: tuple[int, int, int, int] = param("quad", (0, 0, 0, 0),
                                           "[top bottom left right] (a scalar means all four)")
    dilate: tuple[int, int] = param("pair", (1, 1), "[dy dx] filter dilation", minimum=1)

    type = "conv"
    weight_names = ("filters", "biases")

    def _extent(self, axis: int, wshape: tuple[int, ...]) -> int:
        return (wshape[axis] - 1) * self.dilate[axis] + 1

    def check_weights(self, shape: Shape, wshapes: list[tuple[int, ...]]) -> None:
        super().check_weights(shape, wshapes)
        fshape, bshape = wshapes
        if len(fshape) != 4:
            raise ShapeError(f"conv '{self.name}': filters must be 4-D [h w in out], "
                             f"got shape {list(fshape)}")
        fh, fw, fc, k = fshape
        c = shape[2]
        if min(fshape) < 1:
            raise ShapeError(f"conv '{self.name}': filters have an empty dimension {list(fshape)}")
        if c % fc:
            raise ShapeError(
                f"conv '{self.name}': the input has {c} channels but the filters are "
                f"{fh}x{fw}x{fc}x{k}: their depth {fc} must equal {c} (or divide it, for "
                f"{c}/{fc} groups); write filters of size {fh}x{fw}x{c}x{k}")
        groups = c // fc
        if k % groups:
            raise ShapeError(f"conv '{self.name}': {groups} groups need a number of filters "
                             f"divisible by {groups}, got {k}")
        nb = 1
        for d in bshape:
            nb *= d
        if nb not in (0, k):
            raise ShapeError(f"conv '{self.name}': {k} filters need {k} biases (or none), "
                             f"got {nb}")

    def geometry(self, axis: int,
                 wshapes: list[tuple[int, ...]]) -> tuple[int, int, int, int] | None:
        return (self._extent(axis, wshapes[0]), self.stride[axis], self.pad[2 * axis],
                self.pad[2 * axis + 1])

    def out_channels(self, shape: Shape, wshapes: list[tuple[int, ...]]) -> int:
        return wshapes[0][3]

    def flops(self, shape: Shape, out: Shape, wshapes: list[tuple[int, ...]]) -> int:
        fh, fw, fc, k = wshapes[0]
        return 2 * out[0] * out[1] * k * fh * fw * fc

    def forward(self, x: Any, w: list[Any], ctx: Context, aux: Any = None) -> tuple[Any, Any]:
        return conv_forward(ctx.xp, x, w[0], w[1], self.stride, self.pad, self.dilate)

    def backward(self, x: Any, y: Any, aux: Any, w: list[Any], dy: Any,
                 ctx: Context) -> tuple[Any, list[Any]]:
        dx, df, db = conv_backward(ctx.xp, x, w[0], w[1], dy, aux, self.stride, self.pad,
                                   self.dilate)
        return dx, [df, db]
