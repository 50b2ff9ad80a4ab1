"""Optional CuPy kernels: the GPU twins of :mod:`layerspec.cpukernels`.

Same functions, same arguments, same results (arrays are written in place), so a layer calls
``ctx.backend.kernels.maxpool_forward(...)`` without knowing the device. Each is one
CuPy ``ElementwiseKernel`` launch instead of the generic path's many small array operations
(a 3x3 max pool's backward was ~36 launches; the lenets are launch-bound on a GPU).

Every kernel is a *gather*: one thread per output element, reading whatever contributes to
it, so no atomics and a fixed summation order. Scatter-shaped operations of the CPU kernels
(max-pool backward, col2im) are turned around: a cell of dX visits the windows or patch rows
that cover it.

Opt-in while untested on hardware: ``LAYERSPEC_CUPY_KERNELS=1`` makes the CuPy backend use
them (``tests/test_gpu.py`` compares each with the generic path on the device and runs the
MatConvNet reference cases through them). Imported only by :func:`layerspec.backend.
gpu_kernels`, so CuPy stays imported by the backend module alone.
"""

from __future__ import annotations

import functools
from typing import Any

import cupy

__all__ = ["col2im_rows", "maxpool_forward", "maxpool_backward", "avgpool_forward",
           "avgpool_backward", "relu_backward", "relu_backward_in_place", "sgd_momentum",
           "direct_conv", "description"]

#: no direct convolution kernel on the device (the CPU one is :mod:`layerspec.directconv`)
direct_conv = None

#: what ``Backend.describe()`` says about these kernels
description: str = "layerspec CUDA kernels"

_GEOMETRY = ("int32 H, int32 W, int32 C, int32 Ho, int32 Wo, int32 ph, int32 pw, "
             "int32 sy, int32 sx, int32 pt, int32 pl")

#: CUDA prologue of a kernel over pooling *outputs*: element i = (n, ii, j, c) and its
#: window's in-image rows [ya, yb) and columns [xa, xb)
_WINDOW = """
        int c = i % C; long long r = i / C;
        int j = r % Wo; r /= Wo;
        int ii = r % Ho; long long n = r / Ho;
        int ya = max(ii * sy - pt, 0), yb = min(ii * sy - pt + ph, H);
        int xa = max(j * sx - pl, 0), xb = min(j * sx - pl + pw, W);
"""
#: CUDA prologue of a kernel over *input* cells: element i = (n, yy, xx, c)
_CELL = """
        int c = i % C; long long r = i / C;
        int xx = r % W; r /= W;
        int yy = r % H; long long n = r / H;
"""
#: ... and the output rows [ia, ib] and columns [ja, jb] whose pooling windows cover it
_COVERING = """
        int t = yy + pt - ph + 1, s = xx + pl - pw + 1;
        int ia = t <= 0 ? 0 : (t + sy - 1) / sy, ib = min((yy + pt) / sy, Ho - 1);
        int ja = s <= 0 ? 0 : (s + sx - 1) / sx, jb = min((xx + pl) / sx, Wo - 1);
"""


@functools.cache
def _maxpool_forward() -> Any:
    return cupy.ElementwiseKernel(
        "raw T x, " + _GEOMETRY, "T y, I arg",
        _WINDOW + """
        long long base = n * H * W * C;
        long long best_pos = ((long long)ya * W + xa) * C + c;
        T best = x[base + best_pos];
        for (int xx = xa; xx < xb; ++xx) {
            for (int yy = ya; yy < yb; ++yy) {
                long long pos = ((long long)yy * W + xx) * C + c;
                T v = x[base + pos];
                if (v > best) { best = v; best_pos = pos; }
            }
        }
        y = best;
        arg = (I)best_pos;
        """,
        "layerspec_maxpool_forward")


@functools.cache
def _maxpool_backward() -> Any:
    return cupy.ElementwiseKernel(
        "raw T dy, raw I arg, " + _GEOMETRY, "T dx",
        _CELL + _COVERING + """
        long long pos = ((long long)yy * W + xx) * C + c;
        T acc = 0;
        for (int ii = ia; ii <= ib; ++ii) {
            for (int j = ja; j <= jb; ++j) {
                long long o = ((n * Ho + ii) * Wo + j) * C + c;
                if ((long long)arg[o] == pos) acc += dy[o];
            }
        }
        dx = acc;
        """,
        "layerspec_maxpool_backward")


@functools.cache
def _avgpool_forward() -> Any:
    return cupy.ElementwiseKernel(
        "raw T x, " + _GEOMETRY, "T y",
        _WINDOW + """
        long long base = n * H * W * C;
        T acc = 0;
        for (int xx = xa; xx < xb; ++xx)
            for (int yy = ya; yy < yb; ++yy)
                acc += x[base + ((long long)yy * W + xx) * C + c];
        y = acc / (T)((yb - ya) * (xb - xa));
        """,
        "layerspec_avgpool_forward")


@functools.cache
def _avgpool_backward() -> Any:
    return cupy.ElementwiseKernel(
        "raw T dy, " + _GEOMETRY, "T dx",
        _CELL + _COVERING + """
        T acc = 0;
        for (int ii = ia; ii <= ib; ++ii) {
            int cy = min(ii * sy - pt + ph, H) - max(ii * sy - pt, 0);
            for (int j = ja; j <= jb; ++j) {
                int cx = min(j * sx - pl + pw, W) - max(j * sx - pl, 0);
                acc += dy[((n * Ho + ii) * Wo + j) * C + c] / (T)(cy * cx);
            }
        }
        dx = acc;
        """,
        "layerspec_avgpool_backward")


@functools.cache
def _col2im() -> Any:
    return cupy.ElementwiseKernel(
        "raw T dcols, int32 H, int32 W, int32 C, int32 Ho, int32 Wo, int32 fh, int32 fw, "
        "int32 sy, int32 sx, int32 pt, int32 pl, int32 dily, int32 dilx, int64 g0, int64 g1",
        "T dx",
        _CELL + """
        long long K = (long long)fh * fw * C;
        T acc = 0;
        for (int u = 0; u < fh; ++u) {
            int a = yy + pt - u * dily;
            if (a < 0 || a % sy) continue;
            int ii = a / sy;
            if (ii >= Ho) continue;
            long long g = n * Ho + ii;
            if (g < g0 || g >= g1) continue;
            for (int v = 0; v < fw; ++v) {
                int b = xx + pl - v * dilx;
                if (b < 0 || b % sx) continue;
                int j = b / sx;
                if (j >= Wo) continue;
                acc += dcols[((g - g0) * Wo + j) * K + ((long long)u * fw + v) * C + c];
            }
        }
        dx += acc;
        """,
        "layerspec_col2im")


def maxpool_forward(x: Any, y: Any, arg: Any, ph: int, pw: int, sy: int, sx: int,
                    pt: int, pl: int) -> None:
    """See :func:`layerspec.cpukernels.maxpool_forward`."""
    n, h, w, c = x.shape
    _maxpool_forward()(x, h, w, c, y.shape[1], y.shape[2], ph, pw, sy, sx, pt, pl, y, arg)


def maxpool_backward(dy: Any, arg: Any, dx: Any, ph: int, pw: int, sy: int, sx: int,
                     pt: int, pl: int) -> None:
    """See :func:`layerspec.cpukernels.maxpool_backward` (here a gather over the windows
    that cover each cell of dX)."""
    n, h, w, c = dx.shape
    _maxpool_backward()(dy, arg, h, w, c, dy.shape[1], dy.shape[2], ph, pw, sy, sx, pt, pl,
                        dx)


def avgpool_forward(x: Any, y: Any, ph: int, pw: int, sy: int, sx: int, pt: int,
                    pl: int) -> None:
    """See :func:`layerspec.cpukernels.avgpool_forward`."""
    n, h, w, c = x.shape
    _avgpool_forward()(x, h, w, c, y.shape[1], y.shape[2], ph, pw, sy, sx, pt, pl, y)


def avgpool_backward(dy: Any, dx: Any, ph: int, pw: int, sy: int, sx: int, pt: int,
                     pl: int) -> None:
    """See :func:`layerspec.cpukernels.avgpool_backward`."""
    n, h, w, c = dx.shape
    _avgpool_backward()(dy, h, w, c, dy.shape[1], dy.shape[2], ph, pw, sy, sx, pt, pl, dx)


def col2im_rows(dcols: Any, dx: Any, g0: int, g1: int, ho: int, wo: int, fh: int, fw: int,
                sy: int, sx: int, pt: int, pl: int, dily: int, dilx: int) -> None:
    """See :func:`layerspec.cpukernels.col2im_rows` (adds into ``dx``)."""
    n, h, w, c = dx.shape
    _col2im()(dcols, h, w, c, ho, wo, fh, fw, sy, sx, pt, pl, dily, dilx, g0, g1, dx)


@functools.cache
def _relu_backward() -> Any:
    return cupy.ElementwiseKernel("T y, T dy", "T dx", "dx = dy * (T)(y > (T)0)",
                                  "layerspec_relu_backward")


@functools.cache
def _relu_backward_in_place() -> Any:
    return cupy.ElementwiseKernel("T y", "T d", "d = d * (T)(y > (T)0)",
                                  "layerspec_relu_backward_in_place")


@functools.cache
def _sgd_momentum() -> Any:
    return cupy.ElementwiseKernel(
        "T g, T momentum, T decay, T lr", "T w, T m",
        "T mk = momentum * m - (decay * w + g); m = mk; w = w + lr * mk;",
        "layerspec_sgd_momentum")


def relu_backward(y: Any, dy: Any, dx: Any) -> None:
    """``dx = dy * [y > 0]``."""
    _relu_backward()(y, dy, dx)


def relu_backward_in_place(y: Any, d: Any) -> None:
    """``d *= [y > 0]``."""
    _relu_backward_in_place()(y, d)


def sgd_momentum(w: Any, g: Any, m: Any, momentum: Any, decay: Any, lr: Any) -> None:
    """See :func:`layerspec.cpukernels.sgd_momentum`."""
    _sgd_momentum()(g, momentum, decay, lr, w, m)
