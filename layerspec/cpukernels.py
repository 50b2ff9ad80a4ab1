"""Optional compiled CPU kernels (Numba) for the loops that neither BLAS nor a single NumPy
copy does well.

The NumPy path of every layer is complete on its own; when Numba is installed
(``pip install "layerspec[fast]"``) the NumPy backend hands these kernels to the layers
through ``Backend.kernels``. They replace NumPy's many short strided passes in pooling
(a 3x3/stride-2 max pool took nine passes of four ufuncs each: lenet_cifar's pool1
backward went from ~22 ms to ~2 ms), the convolution's col2im scatter-add, the ReLU
derivative and the SGD step (one pass each). im2col stays a NumPy copy, which measured
faster than a compiled loop; products stay in BLAS, except the convolutions that
``direct_conv`` (:mod:`layerspec.directconv`, an AVX-512 kernel compiled through Numba's
llvmlite) computes where it measured faster. :mod:`layerspec.gpukernels` offers the
same functions on CuPy (without ``direct_conv``). tests/test_fastpaths.py compares every
kernel with the generic path and with plain loops (ties, padding, both float types).

Layout: data ``(N, H, W, C)``, C-contiguous. A patch matrix has one row per output
position ``(n, i, j)`` in that order and columns ordered ``(u, v, c)``, as
:func:`layerspec.layers.conv.im2col` writes it; kernels take "global output rows"
``g = n*Ho + i`` so that a caller can work on a cache-sized band of rows at a time.

The kernels are serial loops over the batch, compiled ``nogil``: the layers split the
batch over :class:`~layerspec.hostthreads.HostThreads` and call a kernel per part. (Numba's
own parallel regions were tried first and fought OpenBLAS's spinning workers for the two
cores: lenet_cifar's step went from 120 ms to 1.6 s with Numba's OpenMP layer.)
"""

from __future__ import annotations

import numba
from numba import njit

from . import directconv as _directconv

__all__ = ["col2im_rows", "maxpool_forward", "maxpool_backward", "avgpool_forward",
           "avgpool_backward", "relu_backward", "relu_backward_in_place", "sgd_momentum",
           "direct_conv", "description"]

#: the register-tiled direct convolution (:mod:`layerspec.directconv`, compiled through
#: Numba's llvmlite) where this host supports it, else None
direct_conv = _directconv if _directconv.supported() else None

#: what ``Backend.describe()`` says about these kernels
description: str = f"Numba {numba.__version__} kernels" + \
    (" + AVX-512 direct conv" if direct_conv is not None else "")


@njit(cache=True, nogil=True, inline="always")
def _span(i, stride, pad, size, n):
    """In-image cells ``[a, b)`` along one axis of pooling window ``i`` (padding is never
    part of a window)."""
    start = i * stride - pad
    return max(start, 0), min(start + size, n)


@njit(cache=True, nogil=True)
def col2im_rows(dcols, dx, g0, g1, ho, wo, fh, fw, sy, sx, pt, pl, dily, dilx):  # noqa: PLR0913
    """Adjoint of im2col: add the patch derivatives ``dcols``
    ``((g1-g0)*Wo, FH*FW*C)`` of the output rows ``g0 <= g < g1`` (``g = n*Ho + i``) into
    ``dx`` ``(N, H, W, C)``; cells in the padding are dropped."""
    _, h, w, c = dx.shape
    n0 = g0 // ho
    n1 = (g1 - 1) // ho + 1
    for n in range(n0, n1):
        ra = max(g0, n * ho)
        rb = min(g1, (n + 1) * ho)
        for g in range(ra, rb):
            i = g - n * ho
            for j in range(wo):
                o = (g - g0) * wo + j
                col = 0
                for u in range(fh):
                    yy = i * sy - pt + u * dily
                    for v in range(fw):
                        xx = j * sx - pl + v * dilx
                        if 0 <= yy < h and 0 <= xx < w:
                            for ch in range(c):
                                dx[n, yy, xx, ch] += dcols[o, col + ch]
                        col += c


@njit(cache=True, nogil=True)
def maxpool_forward(x, y, arg, ph, pw, sy, sx, pt, pl):  # noqa: PLR0913
    """Max over each window's in-image cells into ``y`` ``(N, Ho, Wo, C)``; ``arg`` (same
    shape, int32 or int64) receives the position ``(yy*W + xx)*C + c`` within the image of
    the first maximum in MatConvNet's scan order (columns left to right, each top to
    bottom): strict ``>`` keeps the earliest of equal values."""
    n_, h, w, c = x.shape
    _, ho, wo, _ = y.shape
    for g in range(n_ * ho):
        n = g // ho
        i = g - n * ho
        ya, yb = _span(i, sy, pt, ph, h)
        for j in range(wo):
            xa, xb = _span(j, sx, pl, pw, w)
            base = (ya * w + xa) * c
            for ch in range(c):
                y[n, i, j, ch] = x[n, ya, xa, ch]
                arg[n, i, j, ch] = base + ch
            for xx in range(xa, xb):
                for yy in range(ya, yb):
                    if xx == xa and yy == ya:
                        continue
                    base = (yy * w + xx) * c
                    for ch in range(c):
                        val = x[n, yy, xx, ch]
                        if val > y[n, i, j, ch]:
                            y[n, i, j, ch] = val
                            arg[n, i, j, ch] = base + ch


@njit(cache=True, nogil=True)
def maxpool_backward(dy, arg, dx, ph, pw, sy, sx, pt, pl):  # noqa: PLR0913, ARG001
    """``dx`` ``(N, H, W, C)`` = zeros plus each window's derivative at its recorded
    maximum ``arg`` (from :func:`maxpool_forward`). The geometry is not needed here (the
    GPU twin gathers over the covering windows and is called the same way)."""
    n_ = dy.shape[0]
    per_out = dy.size // max(n_, 1)
    dxf = dx.reshape(n_, -1)
    dyf = dy.reshape(n_, -1)
    af = arg.reshape(n_, -1)
    dxf[:] = 0
    for n in range(n_):
        for k in range(per_out):
            dxf[n, af[n, k]] += dyf[n, k]


@njit(cache=True, nogil=True)
def avgpool_forward(x, y, ph, pw, sy, sx, pt, pl):  # noqa: PLR0913
    """Mean over each window's in-image cells (MatConvNet's divisor) into ``y``."""
    n_, h, w, c = x.shape
    _, ho, wo, _ = y.shape
    for g in range(n_ * ho):
        n = g // ho
        i = g - n * ho
        ya, yb = _span(i, sy, pt, ph, h)
        for j in range(wo):
            xa, xb = _span(j, sx, pl, pw, w)
            for ch in range(c):
                y[n, i, j, ch] = 0
            for xx in range(xa, xb):
                for yy in range(ya, yb):
                    for ch in range(c):
                        y[n, i, j, ch] += x[n, yy, xx, ch]
            cnt = (yb - ya) * (xb - xa)
            for ch in range(c):
                y[n, i, j, ch] /= cnt


@njit(cache=True, nogil=True)
def avgpool_backward(dy, dx, ph, pw, sy, sx, pt, pl):  # noqa: PLR0913
    """``dx`` = each window's derivative divided by its in-image cell count, spread over
    those cells. One image per thread."""
    n_, ho, wo, c = dy.shape
    _, h, w, _ = dx.shape
    for n in range(n_):
        for yy in range(h):
            for xx in range(w):
                for ch in range(c):
                    dx[n, yy, xx, ch] = 0
        for i in range(ho):
            ya, yb = _span(i, sy, pt, ph, h)
            for j in range(wo):
                xa, xb = _span(j, sx, pl, pw, w)
                cnt = (yb - ya) * (xb - xa)
                for yy in range(ya, yb):
                    for xx in range(xa, xb):
                        for ch in range(c):
                            dx[n, yy, xx, ch] += dy[n, i, j, ch] / cnt


@njit(cache=True, nogil=True)
def relu_backward(y, dy, dx):
    """``dx = dy * [y > 0]`` in one pass (arrays of one shape, C-contiguous; a multiply, not
    a select, so NaN * 0 stays NaN as in MatConvNet's ``dzdy .* (x > 0)``)."""
    yf = y.reshape(-1)
    df = dy.reshape(-1)
    of = dx.reshape(-1)
    for k in range(yf.size):
        of[k] = df[k] * (yf[k] > 0)


@njit(cache=True, nogil=True)
def relu_backward_in_place(y, d):
    """``d *= [y > 0]``. Its own kernel: passing ``d`` twice to :func:`relu_backward` makes
    LLVM's overlap check fail and fall back to a scalar loop (measured 8x slower)."""
    yf = y.reshape(-1)
    df = d.reshape(-1)
    for k in range(yf.size):
        df[k] = df[k] * (yf[k] > 0)


@njit(cache=True, nogil=True)
def sgd_momentum(w, g, m, momentum, decay, lr):
    """cnn_train's SGD step in one pass, in place: ``m = momentum*m - (decay*w + g)``, then
    ``w = w + lr*m`` — the same float operations, in the same order, as the generic path
    (the scalars arrive in the weights' float type)."""
    wf = w.reshape(-1)
    gf = g.reshape(-1)
    mf = m.reshape(-1)
    for k in range(wf.size):
        mk = momentum * mf[k] - (decay * wf[k] + gf[k])
        mf[k] = mk
        wf[k] = wf[k] + lr * mk
