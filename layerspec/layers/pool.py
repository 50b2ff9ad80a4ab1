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
from .base import Context, Layer, Shape, pad_hw, param, window


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

    def forward(self, x: Any, w: list[Any], ctx: Context, aux: Any = None) -> tuple[Any, Any]:
        xp = ctx.xp
        n, h, wd, c = x.shape
        ho, wo = self._out(h, wd)
        (ph, pw), (sy, sx) = self.pool, self.stride
        if self.method == "max":
            xpad = pad_hw(xp, x, self.pad, -xp.inf)
            best = window(xpad, 0, 0, sy, sx, ho, wo).copy()
            arg = xp.zeros(best.shape, dtype=xp.int32)
            # column-major scan (v outer, u inner); strict '>' keeps the first maximum
            for v in range(pw):
                for u in range(ph):
                    if u == 0 and v == 0:
                        continue
                    cand = window(xpad, u, v, sy, sx, ho, wo)
                    better = cand > best
                    best = xp.where(better, cand, best)
                    arg[better] = v * ph + u
            return best, arg
        xpad = pad_hw(xp, x, self.pad, 0.0)
        acc = window(xpad, 0, 0, sy, sx, ho, wo).copy()
        for v in range(pw):
            for u in range(ph):
                if u or v:
                    acc += window(xpad, u, v, sy, sx, ho, wo)
        counts = self._counts(xp, h, wd, ho, wo, x.dtype)
        return acc / counts, counts

    def backward(self, x: Any, y: Any, aux: Any, w: list[Any], dy: Any,
                 ctx: Context) -> tuple[Any, list[Any]]:
        xp = ctx.xp
        n, h, wd, c = x.shape
        _, ho, wo, _ = dy.shape
        (ph, pw), (sy, sx), (pt, pb, pl, pr) = self.pool, self.stride, self.pad
        dxpad = xp.zeros((n, h + pt + pb, wd + pl + pr, c), dtype=dy.dtype)
        if self.method == "max":
            zero = xp.zeros((), dtype=dy.dtype)
            for v in range(pw):
                for u in range(ph):
                    window(dxpad, u, v, sy, sx, ho, wo)[...] += xp.where(aux == v * ph + u, dy,
                                                                         zero)
        else:
            g = dy / aux
            for v in range(pw):
                for u in range(ph):
                    window(dxpad, u, v, sy, sx, ho, wo)[...] += g
        return xp.ascontiguousarray(dxpad[:, pt:pt + h, pl:pl + wd, :]), []
