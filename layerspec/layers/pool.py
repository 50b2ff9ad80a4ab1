"""``pool``: MatConvNet's ``vl_nnpool`` (CPU semantics).

* Windows are clipped to the image: padding is never part of a window.
* ``max`` takes the maximum of the in-image cells (padding acts as -inf). Its backward sends
  the whole derivative of a window to one cell: the first maximum met when scanning the window
  column by column (left column first, top to bottom), i.e. ties go to the earliest cell.
* ``avg`` divides by the number of in-image cells of the window, not by ``ph*pw``
  (PyTorch's ``count_include_pad=False``).
* Output size ``floor((H + pt + pb - ph) / sy) + 1``; every pad must be smaller than the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ShapeError
from ..hostthreads import SERIAL, HostThreads, split_rows
from ..workspace import NO_WORKSPACE, Workspace, workspace_of
from .base import Context, Layer, Shape, param, window
from .conv import padded


def window_counts(xp: Any, n_in: int, k: int, s: int, p0: int, n_out: int) -> Any:
    """Number of in-image cells of each window along one axis."""
    starts = xp.arange(n_out) * s - p0
    return xp.minimum(starts + k, n_in) - xp.maximum(starts, 0)


@dataclass(frozen=True, kw_only=True)
class Pool(Layer):
    """Max or average pooling over ``pool = [ph pw]`` windows."""

    pool: tuple[int, int] = param("pair", doc="[ph pw] window size (a scalar means both)",
                                  minimum=1)
    method: str = param("choice", "max",
                        "'max' or 'avg'. MatConvNet's tidy never fills it (vl_simplenn then "
                        "fails); layerspec defaults to 'max'",
                        choices=("max", "avg"))
    stride: tuple[int, int] = param("pair", (1, 1), "[sy sx] (a scalar means both)", minimum=1)
    pad: tuple[int, int, int, int] = param("quad", (0, 0, 0, 0),
                                           "[top bottom left right], each smaller than the window")

    type = "pool"

    def geometry(self, axis: int,
                 wshapes: list[tuple[int, ...]]) -> tuple[int, int, int, int] | None:
        return (self.pool[axis], self.stride[axis], self.pad[2 * axis], self.pad[2 * axis + 1])

    def check_weights(self, shape: Shape, wshapes: list[tuple[int, ...]]) -> None:
        super().check_weights(shape, wshapes)
        for axis, label in ((0, "top/bottom"), (1, "left/right")):
            p0, p1 = self.pad[2 * axis], self.pad[2 * axis + 1]
            if max(p0, p1) >= self.pool[axis]:
                raise ShapeError(
                    f"pool '{self.name}': {label} pad {p0},{p1} must be smaller than the "
                    f"window size {self.pool[axis]} (MatConvNet refuses a window of padding only)")

    def flops(self, shape: Shape, out: Shape, wshapes: list[tuple[int, ...]]) -> int:
        return out[0] * out[1] * out[2] * self.pool[0] * self.pool[1]

    def _out(self, h: int, w: int) -> tuple[int, int]:
        (ph, pw), (sy, sx), (pt, pb, pl, pr) = self.pool, self.stride, self.pad
        return (h + pt + pb - ph) // sy + 1, (w + pl + pr - pw) // sx + 1

    def _counts(self, xp: Any, h: int, w: int, ho: int, wo: int, dtype: Any) -> Any:
        ch = window_counts(xp, h, self.pool[0], self.stride[0], self.pad[0], ho)
        cw = window_counts(xp, w, self.pool[1], self.stride[1], self.pad[2], wo)
        return (ch[:, None] * cw[None, :]).astype(dtype)[:, :, None]

    def summary(self, wshapes: list[tuple[int, ...]]) -> str:
        return f"{self.pool[0]}x{self.pool[1]} {self.method}"

    def forward(self, x: Any, w: list[Any], ctx: Context, aux: Any = None) -> tuple[Any, Any]:
        return pool_forward(ctx.xp, x, self.method, self.pool, self.stride, self.pad,
                            workspace_of(ctx), id(self), kern=ctx.backend.kernels,
                            threads=ctx.backend.threads)

    def backward(self, x: Any, y: Any, aux: Any, w: list[Any], dy: Any,
                 ctx: Context) -> tuple[Any, list[Any]]:
        return pool_backward(ctx.xp, x, y, aux, dy, self.method, self.pool, self.stride,
                             self.pad, workspace_of(ctx), id(self),
                             kern=ctx.backend.kernels, threads=ctx.backend.threads), []


def _disjoint(pool: tuple[int, int], stride: tuple[int, int],
              pad: tuple[int, int, int, int]) -> bool:
    """Non-overlapping windows without padding (each input cell in at most one window)."""
    return tuple(stride) == tuple(pool) and not any(pad)


def _out(h: int, w: int, pool: tuple[int, int], stride: tuple[int, int],
         pad: tuple[int, int, int, int]) -> tuple[int, int]:
    (ph, pw), (sy, sx), (pt, pb, pl, pr) = pool, stride, pad
    return (h + pt + pb - ph) // sy + 1, (w + pl + pr - pw) // sx + 1


def counts(xp: Any, h: int, w: int, pool: tuple[int, int], stride: tuple[int, int],
           pad: tuple[int, int, int, int], ho: int, wo: int, dtype: Any) -> Any:
    """In-image cells of every window, ``(Ho, Wo, 1)``."""
    ch = window_counts(xp, h, pool[0], stride[0], pad[0], ho)
    cw = window_counts(xp, w, pool[1], stride[1], pad[2], wo)
    return (ch[:, None] * cw[None, :]).astype(dtype)[:, :, None]


def pool_forward(xp: Any, x: Any, method: str, pool: tuple[int, int], stride: tuple[int, int],
                 pad: tuple[int, int, int, int], ws: Workspace | None = None, key: Any = None,
                 fast: bool = True, kern: Any = None,
                 threads: HostThreads = SERIAL) -> tuple[Any, Any]:
    """``(y, aux)``. Max: aux None (backward finds the first maximum again) or, with
    ``kern``, the position of each window's first maximum within its image (see
    :func:`layerspec.cpukernels.maxpool_forward`). Avg: aux the window counts (None with
    ``kern``). ``fast=False`` skips the separable max (the reference path); ``kern``:
    compiled CPU kernels (``Backend.kernels``) or None, run over parts of the batch on
    ``threads``."""
    ws = NO_WORKSPACE if ws is None else ws
    n, h, wd, c = x.shape
    ho, wo = _out(h, wd, pool, stride, pad)
    (ph, pw), (sy, sx) = pool, stride
    if kern is not None:
        x = xp.ascontiguousarray(x)
        y = ws.empty(xp, (key, "y"), (n, ho, wo, c), x.dtype)
        if method == "max":
            index = xp.int32 if h * wd * c < 2**31 else xp.int64
            arg = ws.empty(xp, (key, "arg"), (n, ho, wo, c), index)
            split_rows(threads, lambda x, y, arg: kern.maxpool_forward(
                x, y, arg, ph, pw, sy, sx, pad[0], pad[2]), x, y, arg)
            return y, arg
        split_rows(threads, lambda x, y: kern.avgpool_forward(x, y, ph, pw, sy, sx, pad[0],
                                                              pad[2]), x, y)
        return y, None
    if method == "max":
        xpad = padded(xp, x, pad, ws, "xpad", -xp.inf)
        y = ws.empty(xp, (key, "y"), (n, ho, wo, c), x.dtype)
        if fast and ph > 1 and pw > 1:
            # separable: max over the window rows, then over the columns
            wp = xpad.shape[2]
            rows = ws.scratch(xp, "pool_rows", (n, ho, wp, c), x.dtype)
            xp.maximum(xpad[:, 0:sy * (ho - 1) + 1:sy], xpad[:, 1:1 + sy * (ho - 1) + 1:sy],
                       out=rows)
            for u in range(2, ph):
                xp.maximum(rows, xpad[:, u:u + sy * (ho - 1) + 1:sy], out=rows)
            xp.maximum(rows[:, :, 0:sx * (wo - 1) + 1:sx], rows[:, :, 1:1 + sx * (wo - 1) + 1:sx],
                       out=y)
            for v in range(2, pw):
                xp.maximum(y, rows[:, :, v:v + sx * (wo - 1) + 1:sx], out=y)
            del rows
            return y, None
        y[...] = window(xpad, 0, 0, sy, sx, ho, wo)
        for v in range(pw):
            for u in range(ph):
                if u or v:
                    xp.maximum(y, window(xpad, u, v, sy, sx, ho, wo), out=y)
        return y, None
    xpad = padded(xp, x, pad, ws, "xpad", 0.0)
    acc = ws.empty(xp, (key, "y"), (n, ho, wo, c), x.dtype)
    acc[...] = window(xpad, 0, 0, sy, sx, ho, wo)
    for v in range(pw):
        for u in range(ph):
            if u or v:
                acc += window(xpad, u, v, sy, sx, ho, wo)
    cnt = counts(xp, h, wd, pool, stride, pad, ho, wo, x.dtype)
    acc /= cnt
    return acc, cnt


def pool_backward(xp: Any, x: Any, y: Any, aux: Any, dy: Any, method: str,
                  pool: tuple[int, int], stride: tuple[int, int], pad: tuple[int, int, int, int],
                  ws: Workspace | None = None, key: Any = None, fast: bool = True,
                  kern: Any = None, threads: HostThreads = SERIAL) -> Any:
    """dX. Max: the window's derivative goes to its first maximum in column-major scan order,
    found branch-free: ``r`` holds what is still to be placed (dY), and each offset in scan
    order takes ``t = r * [x == y]`` and leaves ``r - t`` (0 once placed) for the next.
    ``fast=False`` always takes the general (overlapping, padded) path. With ``kern`` (and,
    for max, the argmax its forward recorded) the compiled kernels scatter dY directly."""
    ws = NO_WORKSPACE if ws is None else ws
    n, h, wd, c = x.shape
    _, ho, wo, _ = dy.shape
    (ph, pw), (sy, sx), (pt, pb, pl, pr) = pool, stride, pad
    if kern is not None and (method != "max" or aux is not None):
        dy = xp.ascontiguousarray(dy)
        dx = ws.empty(xp, (key, "dx"), x.shape, dy.dtype)
        if method == "max":
            split_rows(threads, lambda dy, arg, dx: kern.maxpool_backward(
                dy, arg, dx, ph, pw, sy, sx, pt, pl), dy, aux, dx)
        else:
            split_rows(threads, lambda dy, dx: kern.avgpool_backward(
                dy, dx, ph, pw, sy, sx, pt, pl), dy, dx)
        return dx
    if method != "max" and aux is None:
        aux = counts(xp, h, wd, pool, stride, pad, ho, wo, dy.dtype)
    if method != "max":
        g = ws.scratch(xp, "pool_g", dy.shape, dy.dtype)
        xp.divide(dy, aux, out=g)
        dxpad = ws.scratch_zeros(xp, "pool_dxpad", (n, h + pt + pb, wd + pl + pr, c), dy.dtype)
        for v in range(pw):
            for u in range(ph):
                window(dxpad, u, v, sy, sx, ho, wo)[...] += g
        del g
        dx = ws.empty(xp, (key, "dx"), x.shape, dy.dtype)
        dx[...] = dxpad[:, pt:pt + h, pl:pl + wd, :]
        return dx
    xpad = padded(xp, x, pad, ws, "xpad", -xp.inf)
    r = ws.scratch(xp, "pool_r", dy.shape, dy.dtype)
    r[...] = dy
    eq = ws.scratch(xp, "pool_eq", dy.shape, bool)
    t = ws.scratch(xp, "pool_t", dy.shape, dy.dtype)
    direct = fast and _disjoint(pool, stride, pad)
    if direct:
        # disjoint windows: every cell is written once, straight into dX
        dx = ws.empty(xp, (key, "dx"), x.shape, dy.dtype)
        if ho * ph < h or wo * pw < wd:
            dx[:, ho * ph:] = 0
            dx[:, :, wo * pw:] = 0
        dxpad = dx
    else:
        dxpad = ws.scratch_zeros(xp, "pool_dxpad", (n, h + pt + pb, wd + pl + pr, c), dy.dtype)
    last = ph * pw - 1
    for v in range(pw):
        for u in range(ph):
            xp.equal(window(xpad, u, v, sy, sx, ho, wo), y, out=eq)
            target = window(dxpad, u, v, sy, sx, ho, wo)
            if direct:
                xp.multiply(r, eq, out=target)
                if v * ph + u != last:
                    r -= target
            else:
                xp.multiply(r, eq, out=t)
                target += t
                if v * ph + u != last:
                    r -= t
    del xpad, eq, t, r
    if direct:
        return dxpad
    dx = ws.empty(xp, (key, "dx"), x.shape, dy.dtype)
    dx[...] = dxpad[:, pt:pt + h, pl:pl + wd, :]
    return dx
