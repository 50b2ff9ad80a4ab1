"""``conv``: MatConvNet's ``vl_nnconv`` — cross-correlation with stride, asymmetric padding,
dilation and groups, computed as im2col + one GEMM (per group).

Filters ``F`` are ``(FH, FW, FC, K)``; when ``FC < C`` the input is split into ``G = C / FC``
groups, group ``g`` reads channels ``[g*FC, (g+1)*FC)`` and owns filters
``[g*K/G, (g+1)*K/G)``. The bias has ``K`` elements or none (an empty array).

Performance (NHWC, float32; products through BLAS, or the direct kernel below):

* On AVX-512 hosts with the compiled kernels, stride-1 convolutions with at most 64 input
  channels (128 on rows of 64+ positions) and a multiple of 32 output channels run on
  :mod:`layerspec.directconv`'s register-tiled kernel (:func:`direct_conv`: forward, dX as
  the conv of dY with the flipped filters, and dF for 32-128 outputs): no patches, no BLAS
  packing, output positions only. Everything below is the path elsewhere.

* im2col is one copy from an ``as_strided`` window view ``(N, Ho, Wo, FH, FW, C)`` whose inner
  ``FW*C`` run is contiguous, done in cache-sized blocks of output rows
  (:func:`patch_blocks`): each block's GEMM reads patches that are still in the cache, and
  the patches are never held whole (they are rebuilt in the backward pass). A 1x1 conv and
  a conv whose filter covers the whole input need no im2col at all.
* Large stride-1 images on the host skip im2col: :func:`implicit_conv` reads one shifted
  contiguous slice of the flattened padded input per kernel offset and accumulates FH*FW
  GEMMs in place (forward pass, and dX as the conv of dY with the flipped filters).
* dX for a stride-1 "same"-padded conv with enough input channels is the transposed
  convolution: im2col of the zero-padded dY times the flipped filters, block by block.
  Otherwise the patch gradients ``dY F^T`` are scattered back: with the compiled CPU kernels
  block by block; generically transposed, ``(FH*FW*C, M)``, added per kernel offset into a
  channel-major padded gradient, so each add runs over whole image rows.
* The bias derivative is a BLAS matrix-vector product.
* With several host threads (``Backend.threads``) the batch is split into parts of whole
  images (:func:`image_parts`), each padded, copied and multiplied on its own thread with
  single-threaded BLAS calls: the copies no longer wait on one core, and thin products run
  faster as two one-thread GEMMs than as one two-thread GEMM. dF is then summed part by part
  (float32 sums re-associated: results depend on the thread count at rounding level).
* Buffers come from the net's :class:`~layerspec.workspace.Workspace` (``ctx.workspace``)
  and are reused from step to step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..backend import blas_threads_settable, fast_accumulate, gemm_accumulate, is_host
from ..errors import ShapeError
from ..hostthreads import SERIAL, HostThreads, split_rows
from ..workspace import NO_WORKSPACE, Workspace, block_bytes, workspace_of
from .base import Context, Layer, Shape, param, window

#: the transposed-convolution dX pays off from this many input channels on
TCONV_MIN_CHANNELS = 16


def out_size(n: int, f: int, stride: int, p0: int, p1: int, dil: int) -> int:
    return (n + p0 + p1 - ((f - 1) * dil + 1)) // stride + 1


def pad_into(xp: Any, x: Any, pad: tuple[int, int, int, int], out: Any,
             value: float = 0.0, threads: HostThreads = SERIAL) -> Any:
    """Write ``x`` padded by ``pad = (top, bottom, left, right)`` into ``out`` (split over
    the images on ``threads``)."""
    t, b, l, r = pad
    h, w = x.shape[1:3]

    def part(x: Any, out: Any) -> None:
        if t:
            out[:, :t] = value
        if b:
            out[:, t + h:] = value
        if l:
            out[:, t:t + h, :l] = value
        if r:
            out[:, t:t + h, l + w:] = value
        out[:, t:t + h, l:l + w] = x

    split_rows(threads, part, x, out)
    return out


def padded(xp: Any, x: Any, pad: tuple[int, int, int, int], ws: Workspace, tag: str,
           value: float = 0.0, threads: HostThreads = SERIAL) -> Any:
    """``x`` padded (``x`` itself when every pad is 0), in the workspace's scratch ``tag``
    (drop it before the layer returns)."""
    out = _pad_buffer(xp, x, pad, ws, tag)
    return x if out is x else pad_into(xp, x, pad, out, value, threads)


def im2col(xp: Any, xpad: Any, fh: int, fw: int, dil: tuple[int, int], stride: tuple[int, int],
           ho: int, wo: int, out: Any = None, threads: HostThreads = SERIAL) -> Any:
    """Patches of the padded input, ``(N*Ho*Wo, FH*FW*C)`` with columns ordered (u, v, c).

    One copy from a strided window view (split over the images, or over the output rows of
    a single image, on ``threads``); ``out`` (any array of that many elements) receives it
    when given."""
    n, _, _, c = xpad.shape
    s = xpad.strides
    view = xp.lib.stride_tricks.as_strided(
        xpad, (n, ho, wo, fh, fw, c),
        (s[0], s[1] * stride[0], s[2] * stride[1], s[1] * dil[0], s[2] * dil[1], s[3]))
    if out is None:
        out = xp.empty((n, ho, wo, fh, fw, c), dtype=xpad.dtype)
    out = out.reshape(n, ho, wo, fh, fw, c)
    if n > 1 or threads.count == 1:
        split_rows(threads, xp.copyto, out, view)
    else:
        split_rows(threads, xp.copyto, out[0], view[0])
    return out.reshape(n * ho * wo, fh * fw * c)


def _block_plan(xp: Any, ho: int, wo: int, ncols: int, itemsize: int) -> tuple[int, int]:
    """``(band, images)``: a block of patches is ``images`` whole images when ``band ==
    ho``, else ``band`` output rows of one image — at most
    :func:`~layerspec.workspace.block_bytes` (or one output row)."""
    row_bytes = wo * ncols * itemsize   # patches of one output row
    band = min(ho, max(1, block_bytes(xp) // max(row_bytes, 1)))
    images = max(1, block_bytes(xp) // max(row_bytes * ho, 1)) if band == ho else 1
    return band, images


def block_buffers(xp: Any, ws: Workspace, n: int, parts: int, ho: int, wo: int, ncols: int,
                  dtype: Any) -> list[Callable[[tuple[int, int]], Any]]:
    """One block buffer per part of ``n`` images: a function giving block arrays of any
    shape up to the largest block of :func:`padded_blocks` over the part's images, all views
    of the scratch buffer ``"cols<part>"`` (taken now, so that threads need not touch the
    workspace). ``dtype``: an array's ``dtype``."""
    band, images = _block_plan(xp, ho, wo, ncols, dtype.itemsize)
    most = -(-n // parts)  # images in the largest part
    rows = min(images, most) * ho * wo if band == ho else band * wo

    def buffer(flat: Any) -> Callable[[tuple[int, int]], Any]:
        return lambda shape: flat[:shape[0] * shape[1]].reshape(shape)

    return [buffer(ws.scratch(xp, f"cols{p}", (rows * ncols,), dtype)) for p in range(parts)]


def padded_blocks(xp: Any, xpad: Any, fh: int, fw: int, dil: tuple[int, int],
                  stride: tuple[int, int], ho: int, wo: int,
                  buffer: Callable[[tuple[int, int]], Any],
                  threads: HostThreads = SERIAL) -> Iterator[tuple[slice, Any]]:
    """im2col of the padded input ``xpad`` in blocks (:func:`_block_plan`): yields ``(rows,
    cols)``, where ``cols`` (an array from ``buffer(shape)``) holds the patches of the
    output positions ``rows`` (a slice of the ``N*Ho*Wo`` positions of ``xpad``'s images,
    in order). Each block overwrites the previous one."""
    n, _, _, c = xpad.shape
    ncols = fh * fw * c
    band, images = _block_plan(xp, ho, wo, ncols, xpad.dtype.itemsize)
    per_image = ho * wo
    if band == ho:
        for i0 in range(0, n, images):
            i1 = min(n, i0 + images)
            yield (slice(i0 * per_image, i1 * per_image),
                   im2col(xp, xpad[i0:i1], fh, fw, dil, stride, ho, wo,
                          out=buffer(((i1 - i0) * per_image, ncols)), threads=threads))
        return
    sy = stride[0]
    for i in range(n):
        for r0 in range(0, ho, band):
            r1 = min(ho, r0 + band)
            rows_in = xpad[i:i + 1, r0 * sy:(r1 - 1) * sy + (fh - 1) * dil[0] + 1]
            start = i * per_image + r0 * wo
            yield (slice(start, start + (r1 - r0) * wo),
                   im2col(xp, rows_in, fh, fw, dil, stride, r1 - r0, wo,
                          out=buffer(((r1 - r0) * wo, ncols)), threads=threads))


def patch_blocks(xp: Any, x: Any, fh: int, fw: int, dil: tuple[int, int],
                 stride: tuple[int, int], pad: tuple[int, int, int, int], ho: int, wo: int,
                 ws: Workspace, threads: HostThreads = SERIAL) -> Iterator[tuple[slice, Any]]:
    """im2col in blocks of output rows: yields ``(rows, cols)``, where ``cols`` holds the
    patches of the output positions ``rows`` (a slice of the ``N*Ho*Wo`` positions, in
    order) of a conv on ``x`` (unpadded; ``pad`` adds zeros). Each block is at most
    :func:`~layerspec.workspace.block_bytes`, written into the shared ``"cols"`` scratch, so
    the copy and the GEMM that reads it stay in the CPU cache; the next block overwrites
    it (whole images per block, or bands of rows of one image). On a device the whole
    matrix is one block.

    (A compiled im2col kernel was measured slower than this one strided copy: NumPy's copy
    loop already runs over ``FW*C``-float contiguous runs.)"""
    xpad = padded(xp, x, pad, ws, "xpad", threads=threads)
    yield from padded_blocks(xp, xpad, fh, fw, dil, stride, ho, wo,
                             lambda shape: ws.scratch(xp, "cols", shape, x.dtype), threads)


def image_parts(xp: Any, threads: HostThreads, n: int) -> int:
    """In how many parts (of whole images) a host convolution runs, each on its own thread
    making its own single-threaded BLAS calls: copies and products then overlap, and the
    thin products of small layers run faster than one two-threaded product (lenet_cifar's
    conv2 forward: 13.8 against 17.9 ms). 1 on a device, for one image, on one thread, or
    where NumPy's BLAS threads cannot be set."""
    if not is_host(xp) or threads.count < 2 or n < 2 or not blas_threads_settable(xp):
        return 1
    return min(threads.count, n)


def _pad_part(xp: Any, x: Any, pad: tuple[int, int, int, int], xpad: Any, i0: int,
              i1: int) -> Any:
    """Images ``i0:i1`` of ``x`` padded into the same images of ``xpad`` (``x`` itself when
    nothing is padded)."""
    if xpad is x:
        return x[i0:i1]
    return pad_into(xp, x[i0:i1], pad, xpad[i0:i1])


def _pad_buffer(xp: Any, x: Any, pad: tuple[int, int, int, int], ws: Workspace,
                tag: str = "xpad") -> Any:
    """The scratch ``tag`` shaped for ``x`` padded (unfilled: :func:`pad_into` or
    :func:`_pad_part` fill it), or ``x`` itself when nothing is padded."""
    if not any(pad):
        return x
    n, h, w, c = x.shape
    return ws.scratch(xp, tag, (n, h + pad[0] + pad[1], w + pad[2] + pad[3], c), x.dtype)


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


def _kind(x_shape: tuple[int, ...], f_shape: tuple[int, ...], stride: tuple[int, int],
          pad: tuple[int, int, int, int], dilate: tuple[int, int]) -> str:
    """``"1x1"``: a pointwise conv; ``"full"``: the filter covers the whole (unpadded) input;
    ``"im2col"``: everything else."""
    n, h, w, c = x_shape
    fh, fw, fc, k = f_shape
    if fc != c or any(pad):
        return "im2col"
    if fh == 1 and fw == 1 and stride == (1, 1):
        return "1x1"
    if fh == h and fw == w:
        return "full"
    return "im2col"


#: the shifted-slice ("implicit") convolution computes every position of the padded grid and
#: crops; it pays while that grid is at most this much larger than the output (measured:
#: 0.76-0.91x the im2col time on seed320's 160x160 and 80x80 layers, 1.1-2.2x on the lenets'
#: 8x8-16x16 layers, whose padded grids are 1.5-2.3x their outputs)
IMPLICIT_MAX_OVERCOMPUTE = 1.2
#: ... and while each of its FH*FW products has a long enough inner dimension (channels)
IMPLICIT_MIN_CHANNELS = 32


def implicit_ok(xp: Any, x_shape: tuple[int, ...], f_shape: tuple[int, ...],
                stride: tuple[int, int], pad: tuple[int, int, int, int],
                dilate: tuple[int, int]) -> bool:
    """Whether :func:`implicit_conv` is the faster way to compute this (stride-1, ungrouped)
    convolution on the host. (Its filter derivative stays on im2col blocks: the shifted-slice
    form, ``dF[u,v] = X[shift]^T dY_full``, measured 107 against 73 ms on seed320's conv4.)"""
    n, h, w, c = x_shape
    fh, fw, fc, k = f_shape
    if not (is_host(xp) and fast_accumulate(xp)) or stride != (1, 1) or fc != c \
            or fh * fw == 1:
        return False
    hp, wp = h + pad[0] + pad[1], w + pad[2] + pad[3]
    ho, wo = hp - (fh - 1) * dilate[0], wp - (fw - 1) * dilate[1]
    return (c >= IMPLICIT_MIN_CHANNELS and ho > 0 and wo > 0
            and hp * wp <= IMPLICIT_MAX_OVERCOMPUTE * ho * wo)


def _flat_padded(xp: Any, x: Any, pad: tuple[int, int, int, int], slack: int, ws: Workspace,
                 tag: str, threads: HostThreads = SERIAL) -> Any:
    """``x`` zero-padded and flattened to ``(N*Hp*Wp + slack, C)`` (the slack rows are zeros,
    so that every shifted slice stays inside the buffer)."""
    n, h, w, c = x.shape
    hp, wp = h + pad[0] + pad[1], w + pad[2] + pad[3]
    rows = n * hp * wp
    flat = ws.scratch(xp, tag, (rows + slack, c), x.dtype)
    pad_into(xp, x, pad, flat[:rows].reshape(n, hp, wp, c), threads=threads)
    flat[rows:] = 0
    return flat


def implicit_conv(xp: Any, x: Any, f: Any, pad: tuple[int, int, int, int],
                  dilate: tuple[int, int], out: Any, ws: Workspace,
                  threads: HostThreads = SERIAL, bias: Any = None) -> Any:
    """Stride-1 convolution without im2col: with ``x`` zero-padded and flattened to rows of
    ``C`` channels, the input of kernel offset ``(u, v)`` for *every* position of the padded
    grid is one contiguous slice, shifted by ``u*Wp + v`` rows. So ``y_full = sum_{u,v}
    X[shift(u,v)] @ F[u,v]`` (``FH*FW`` BLAS products accumulated in place, inner
    dimension C), computed over the whole padded grid, and ``y`` is its top-left
    ``Ho x Wo`` corner (the other positions read across row or image ends and are dropped).

    ``f``: ``(FH, FW, C, K)``, each ``f[u, v]`` a row- or column-major matrix (the flipped,
    transposed filters of dX are a view); ``out``: ``(N, Ho, Wo, K)``, written and
    returned, plus ``bias`` ``(K,)`` when given (added as the corner is copied out). The
    images are split over ``threads`` (:func:`image_parts`): a kept position reads only its
    own image, so each part's products need only its own rows."""
    n, h, w, c = x.shape
    fh, fw, _, k = f.shape
    hp, wp = h + pad[0] + pad[1], w + pad[2] + pad[3]
    ho, wo = out.shape[1:3]
    per_image = hp * wp
    xf = _flat_padded(xp, x, pad, (fh - 1) * dilate[0] * wp + (fw - 1) * dilate[1], ws,
                      "xflat", threads)
    yf = ws.scratch(xp, "yflat", (n * per_image, k), x.dtype)

    def part(_: int, i0: int, i1: int) -> None:
        r0, r1 = i0 * per_image, i1 * per_image
        for u in range(fh):
            for v in range(fw):
                off = u * dilate[0] * wp + v * dilate[1]
                gemm_accumulate(xp, yf[r0:r1], xf[r0 + off:r1 + off], f[u, v], u or v)
        corner = yf[r0:r1].reshape(i1 - i0, hp, wp, k)[:, :ho, :wo]
        if bias is None:
            out[i0:i1] = corner
        else:
            xp.add(corner, bias, out=out[i0:i1])

    threads.run_parts(n, image_parts(xp, threads, n), part, single_threaded_blas=True)
    return out


#: :func:`direct_conv` is used up to this many input channels, and up to
#: :data:`DIRECT_WIDE_CHANNELS` where output rows have at least :data:`DIRECT_WIDE_ROW`
#: positions. Interleaved on seed320's layers (2 threads, best of 14, direct / BLAS):
#: conv1 (3 channels) 10.8 / 24.4 ms; 64 channels forward 42 / 52 and 20 / 25 ms, dX 42 /
#: 55 ms; 128 channels on 80x80: forward 40 / 47 ms, dX about 7 % faster; but 128-256
#: channels on 37x37 or smaller were up to 30 % (forward) and 85 % (15x15, 512 outputs)
#: behind BLAS's im2col products
DIRECT_MAX_CHANNELS = 64
DIRECT_WIDE_CHANNELS = 128
DIRECT_WIDE_ROW = 64


def direct_ok(xp: Any, kern: Any, dtype: Any, x_shape: tuple[int, ...],
              f_shape: tuple[int, ...], stride: tuple[int, int],
              pad: tuple[int, int, int, int], dilate: tuple[int, int]) -> bool:
    """Whether :func:`direct_conv` computes this convolution: on the host, with compiled
    kernels that offer :mod:`layerspec.directconv` (AVX-512), stride 1, ungrouped, float32,
    a filter larger than 1x1, at most :data:`DIRECT_MAX_CHANNELS` input channels (or
    :data:`DIRECT_WIDE_CHANNELS` on wide outputs) and a multiple of 32 output channels.
    It computes output positions only, so unlike :func:`implicit_ok` it has no limit on
    the padding."""
    direct = getattr(kern, "direct_conv", None)
    n, h, w, c = x_shape
    fh, fw, fc, k = f_shape
    ho = h + pad[0] + pad[1] - (fh - 1) * dilate[0]
    wo = w + pad[2] + pad[3] - (fw - 1) * dilate[1]
    return (direct is not None and is_host(xp) and stride == (1, 1) and fc == c
            and (c <= DIRECT_MAX_CHANNELS or (c <= DIRECT_WIDE_CHANNELS
                                              and wo >= DIRECT_WIDE_ROW))
            and fh * fw > 1 and ho > 0 and wo > 0
            and direct.applies(dtype, k))


def direct_conv(xp: Any, x: Any, f: Any, pad: tuple[int, int, int, int],
                dilate: tuple[int, int], out: Any, ws: Workspace, kern: Any,
                threads: HostThreads = SERIAL, bias: Any = None) -> Any:
    """Stride-1 convolution by the register-tiled kernel of :mod:`layerspec.directconv`
    (where :func:`direct_ok`): ``x`` ``(N, H, W, C)`` zero-padded and flattened to rows of
    C channels, the filters ``f`` ``(FH, FW, C, K)`` (any strides: dX passes the flipped,
    transposed view) packed once, bands of output rows handed to whichever of ``threads``
    is free (:meth:`~layerspec.hostthreads.HostThreads.run_shared`; every output is
    computed the same way on any thread). ``out``: ``(N, Ho, Wo,
    K)`` C-contiguous, written (plus ``bias`` ``(K,)`` when given) and returned."""
    direct = kern.direct_conv
    n, h, w, _ = x.shape
    hp, wp = h + pad[0] + pad[1], w + pad[2] + pad[3]
    xf = _flat_padded(xp, x, pad, 0, ws, "xflat", threads)
    packed = direct.pack_filters(f, ws.scratch(xp, "fpacked", direct.packed_shape(f.shape),
                                               x.dtype))

    ho, wo, k = out.shape[1:]
    band = direct.band_rows(wp, x.shape[3], wo, k)
    bands = -(-n * ho // band)

    def run(i: int) -> None:  # each band of output rows, on whichever thread is free
        direct.conv_images(xf, hp, wp, packed, f.shape, dilate, out, bias,
                           rows=(i * band, min(n * ho, (i + 1) * band)))

    threads.run_shared(bands, run)
    return out


def _transposed_pad(f_shape: tuple[int, ...], pad: tuple[int, int, int, int],
                    dilate: tuple[int, int]) -> tuple[int, int, int, int]:
    """Padding of dY that turns dX of a stride-1 conv into a conv with the flipped filters."""
    eh, ew = (f_shape[0] - 1) * dilate[0], (f_shape[1] - 1) * dilate[1]
    return (eh - pad[0], eh - pad[1], ew - pad[2], ew - pad[3])


def _dx_as_conv(x_shape: tuple[int, ...], f_shape: tuple[int, ...],
                pad: tuple[int, int, int, int], dilate: tuple[int, int]
                ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, int, int, int]] | None:
    """dX of an ungrouped conv as a convolution of dY with the flipped filters: ``(dY shape,
    flipped filter shape, dY padding)``, or None where that padding would be negative."""
    n, h, w, c = x_shape
    fh, fw, fc, k = f_shape
    q = _transposed_pad(f_shape, pad, dilate)
    ho = h + pad[0] + pad[1] - (fh - 1) * dilate[0]
    wo = w + pad[2] + pad[3] - (fw - 1) * dilate[1]
    if fc != c or min(q) < 0 or ho <= 0 or wo <= 0:
        return None
    return (n, ho, wo, k), (fh, fw, k, c), q


def direct_dx_ok(xp: Any, kern: Any, dtype: Any, x_shape: tuple[int, ...],
                 f_shape: tuple[int, ...], stride: tuple[int, int],
                 pad: tuple[int, int, int, int], dilate: tuple[int, int]) -> bool:
    """Whether dX is :func:`direct_conv` of dY (padded by :func:`_transposed_pad`) with the
    flipped filters: :func:`direct_ok` for that convolution."""
    conv = _dx_as_conv(x_shape, f_shape, pad, dilate)
    return (dtype is not None and conv is not None
            and direct_ok(xp, kern, dtype, conv[0], conv[1], stride, conv[2], dilate))


def implicit_dx_ok(xp: Any, x_shape: tuple[int, ...], f_shape: tuple[int, ...],
                   stride: tuple[int, int], pad: tuple[int, int, int, int],
                   dilate: tuple[int, int]) -> bool:
    """Whether dX is faster as :func:`implicit_conv` of dY with the flipped filters: the
    forward test of :func:`implicit_ok` applied to that convolution."""
    conv = _dx_as_conv(x_shape, f_shape, pad, dilate)
    return conv is not None and implicit_ok(xp, conv[0], conv[1], stride, conv[2], dilate)


def conv_forward(xp: Any, x: Any, f: Any, b: Any, stride: tuple[int, int],
                 pad: tuple[int, int, int, int], dilate: tuple[int, int],
                 ws: Workspace | None = None, key: Any = None,
                 fast: bool = True, threads: HostThreads = SERIAL,
                 kern: Any = None) -> tuple[Any, Any]:
    """y = conv(x, f) + b. Returns ``(y, cols)``: ``cols`` is the patch matrix when it is a
    view of ``x`` (1x1 and whole-input convs), or small enough for the workspace's keep
    budget (:meth:`~layerspec.workspace.Workspace.keep`: lenet_cifar's conv1/conv3), kept for
    the backward pass; ``None`` otherwise — im2col patches are then computed in cache-sized
    blocks (:func:`patch_blocks`) and rebuilt in the backward pass (on seed320 they would
    hold about 1.2 GB).

    ``ws``/``key``: where to take (and keep) buffers; ``fast=False`` forces the im2col path
    (the reference for the 1x1 and whole-input fast paths); ``threads``: host threads for
    the copies and the bias (``Backend.threads``); ``kern``: the compiled CPU kernels or
    None (with their direct convolution, :func:`direct_conv` where :func:`direct_ok`)."""
    ws = NO_WORKSPACE if ws is None else ws
    bias = b if b is not None and b.size else None  # added where the output is written
    n, h, w, c = x.shape
    fh, fw, fc, k = f.shape
    g = c // fc
    ho = out_size(h, fh, stride[0], pad[0], pad[1], dilate[0])
    wo = out_size(w, fw, stride[1], pad[2], pad[3], dilate[1])
    kind = _kind(x.shape, f.shape, stride, pad, dilate) if fast else "im2col"
    cols = None
    if kind == "1x1":
        cols = xp.ascontiguousarray(x).reshape(n * h * w, c)
    elif kind == "full":
        cols = xp.ascontiguousarray(x).reshape(n, h * w * c)
    if g == 1:
        y = ws.empty(xp, (key, "y"), (n * ho * wo, k), x.dtype)
        f2 = f.reshape(fh * fw * fc, k)
        if cols is not None:
            xp.matmul(cols, f2, out=y)
        elif fast and direct_ok(xp, kern, x.dtype, x.shape, f.shape, stride, pad, dilate):
            direct_conv(xp, x, f, pad, dilate, y.reshape(n, ho, wo, k), ws, kern, threads, bias)
            bias = None
        elif fast and implicit_ok(xp, x.shape, f.shape, stride, pad, dilate):
            implicit_conv(xp, x, xp.ascontiguousarray(f), pad, dilate,
                          y.reshape(n, ho, wo, k), ws, threads, bias)
            bias = None
        elif (parts := image_parts(xp, threads, n)) > 1:
            if ws.keep(n * ho * wo * fh * fw * c * x.dtype.itemsize):
                cols = ws.empty(xp, (key, "cols"), (n * ho * wo, fh * fw * c), x.dtype)
                kind = "kept"
            _im2col_gemm_parts(xp, x, f2, y, fh, fw, dilate, stride, pad, ho, wo, ws, threads,
                               parts, cols, bias)
            bias = None
        elif is_host(xp) and ws.keep(n * ho * wo * fh * fw * c * x.dtype.itemsize):
            xpad = padded(xp, x, pad, ws, "xpad", threads=threads)
            cols = im2col(xp, xpad, fh, fw, dilate, stride, ho, wo,
                          out=ws.empty(xp, (key, "cols"), (n * ho * wo, fh * fw * c), x.dtype),
                          threads=threads)
            del xpad
            xp.matmul(cols, f2, out=y)
            kind = "kept"
        else:
            for rows, block in patch_blocks(xp, x, fh, fw, dilate, stride, pad, ho, wo, ws,
                                            threads):
                xp.matmul(block, f2, out=y[rows])
            del block
    else:
        if cols is None:
            cols = _patches(xp, x, fh, fw, stride, pad, dilate, ho, wo, ws)
        m = cols.shape[0]
        kg = k // g
        cols_g = cols.reshape(m, fh * fw, g, fc).transpose(2, 0, 1, 3).reshape(g, m, fh * fw * fc)
        f_g = f.reshape(fh * fw * fc, g, kg).transpose(1, 0, 2)
        y = xp.matmul(cols_g, f_g).transpose(1, 0, 2).reshape(m, k)
    if bias is not None:
        split_rows(threads, lambda y: xp.add(y, bias, out=y), y)
    return y.reshape(n, ho, wo, k), cols if kind != "im2col" else None


def _im2col_gemm_parts(xp: Any, x: Any, f2: Any, out: Any, fh: int, fw: int,
                       dil: tuple[int, int], stride: tuple[int, int],
                       pad: tuple[int, int, int, int], ho: int, wo: int, ws: Workspace,
                       threads: HostThreads, parts: int, cols: Any = None,
                       bias: Any = None) -> None:
    """``out`` ``(N*Ho*Wo, K)`` = patches of ``x`` times ``f2`` (plus ``bias`` ``(K,)`` when
    given, added to each block while it is in the cache), in ``parts`` parts of whole
    images (:func:`image_parts`), each padding, copying and multiplying its own images in
    cache-sized blocks on its own thread. ``cols`` ``(N*Ho*Wo, FH*FW*C)``: when given, the
    patches are written there whole (kept for the backward pass) instead."""
    n = x.shape[0]
    per_image = ho * wo
    xpad = _pad_buffer(xp, x, pad, ws)
    buffers = block_buffers(xp, ws, n, parts, ho, wo, f2.shape[0], x.dtype) \
        if cols is None else []

    def part(p: int, i0: int, i1: int) -> None:
        xpart = _pad_part(xp, x, pad, xpad, i0, i1)
        r0, r1 = i0 * per_image, i1 * per_image
        if cols is not None:
            xp.matmul(im2col(xp, xpart, fh, fw, dil, stride, ho, wo, out=cols[r0:r1]), f2,
                      out=out[r0:r1])
            if bias is not None:
                out[r0:r1] += bias
            return
        for rows, block in padded_blocks(xp, xpart, fh, fw, dil, stride, ho, wo, buffers[p]):
            y = out[r0 + rows.start:r0 + rows.stop]
            xp.matmul(block, f2, out=y)
            if bias is not None:
                y += bias

    threads.run_parts(n, parts, part, single_threaded_blas=True)


#: filter derivatives are summed in parts (:func:`_df_parts`) only where each part has at
#: least this many output positions: adding the parts' sums costs a pass over dF per part
#: (seed320's last convs, 1-9 positions an image and 16 MB filters: 19 against 4 ms)
DF_PART_MIN_ROWS = 256


def _df_parts(xp: Any, x: Any, dym: Any, cols: Any, fh: int, fw: int, dil: tuple[int, int],
              stride: tuple[int, int], pad: tuple[int, int, int, int], ho: int, wo: int,
              ws: Workspace, key: Any, threads: HostThreads, parts: int) -> Any:
    """dF ``(FH*FW*C, K)`` = patches^T dY, each part of whole images summing its own
    products (over ``cols`` when given, else over cache-sized blocks of patches rebuilt
    from ``x``) on its own thread; the parts' sums are then added in order."""
    n = x.shape[0]
    ncols, k = fh * fw * x.shape[3], dym.shape[1]
    per_image = ho * wo
    sums = [ws.scratch(xp, f"df{p}", (ncols, k), dym.dtype) for p in range(parts)]
    xpad = _pad_buffer(xp, x, pad, ws) if cols is None else None
    buffers = block_buffers(xp, ws, n, parts, ho, wo, ncols, x.dtype) if cols is None else []

    def part(p: int, i0: int, i1: int) -> None:
        r0, r1 = i0 * per_image, i1 * per_image
        if cols is not None:
            gemm_accumulate(xp, sums[p], cols[r0:r1].T, dym[r0:r1], False)
            return
        xpart = _pad_part(xp, x, pad, xpad, i0, i1)
        for i, (rows, block) in enumerate(padded_blocks(xp, xpart, fh, fw, dil, stride, ho,
                                                        wo, buffers[p])):
            gemm_accumulate(xp, sums[p], block.T, dym[r0 + rows.start:r0 + rows.stop], i > 0)

    threads.run_parts(n, parts, part, single_threaded_blas=True)
    return _sum_parts(xp, sums, ws, key, threads)


def _sum_parts(xp: Any, sums: list[Any], ws: Workspace, key: Any,
               threads: HostThreads) -> Any:
    """The parts' filter derivatives (scratch buffers) added in order into the layer's own
    ``df`` buffer."""
    df = ws.empty(xp, (key, "df"), sums[0].shape, sums[0].dtype)
    if len(sums) == 1:
        split_rows(threads, lambda d, a: xp.copyto(d, a), df, sums[0])
        return df
    split_rows(threads, lambda d, a, b: xp.add(a, b, out=d), df, sums[0], sums[1])
    for more in sums[2:]:
        split_rows(threads, lambda d, s: xp.add(d, s, out=d), df, more)
    return df


def direct_df_ok(xp: Any, kern: Any, dtype: Any, x_shape: tuple[int, ...],
                 f_shape: tuple[int, ...], stride: tuple[int, int],
                 pad: tuple[int, int, int, int], dilate: tuple[int, int]) -> bool:
    """Whether dF is :func:`_df_direct`: :func:`direct_ok`'s conditions, undilated, and
    :func:`layerspec.directconv.filter_grad_applies` (32, 64 or 128 output channels)."""
    return (dilate == (1, 1) and direct_ok(xp, kern, dtype, x_shape, f_shape, stride, pad,
                                           dilate)
            and kern.direct_conv.filter_grad_applies(dtype, f_shape[3]))


#: items (bands of output rows) per host thread that :func:`_df_direct` hands out: a
#: thread slowed for a while takes fewer of them
DF_ITEMS_PER_THREAD = 4


def _df_direct(xp: Any, x: Any, dy: Any, f_shape: tuple[int, ...],
               pad: tuple[int, int, int, int], ws: Workspace, key: Any, kern: Any,
               threads: HostThreads) -> Any:
    """dF ``(FH*FW*C, K)`` by :func:`layerspec.directconv.filter_grad_images` (where
    :func:`direct_df_ok`). The ``N*Ho`` output rows are cut into a fixed number of bands
    (:data:`DF_ITEMS_PER_THREAD` per thread), each summed into its own buffer by whichever
    thread is free; the bands' sums are then added in order, so the result does not depend
    on which thread took which band."""
    n = x.shape[0]
    fh, fw, c, k = f_shape
    ho = dy.shape[1]
    x = xp.ascontiguousarray(x)
    xpad = _pad_buffer(xp, x, pad, ws)
    if xpad is not x:
        pad_into(xp, x, pad, xpad, threads=threads)
    rows = n * ho
    items = 1 if threads.count == 1 else max(1, min(rows, DF_ITEMS_PER_THREAD * threads.count))
    bounds = [rows * i // items for i in range(items + 1)]
    sums = [ws.scratch(xp, f"df{p}", (fh * fw * c, k), dy.dtype) for p in range(items)]

    def band(i: int) -> None:
        g0, g1 = bounds[i], bounds[i + 1]
        first = True
        while g0 < g1:
            image, r0 = divmod(g0, ho)
            if r0 == 0 and g1 - g0 >= ho:  # whole images
                m = (g1 - g0) // ho
                xs, ds = xpad[image:image + m], dy[image:image + m]
                g0 += m * ho
            else:  # rows r0:r1 of one image read its padded rows r0:r1+FH-1
                r1 = min(ho, r0 + g1 - g0)
                xs, ds = xpad[image:image + 1, r0:r1 + fh - 1], dy[image:image + 1, r0:r1]
                g0 += r1 - r0
            kern.direct_conv.filter_grad_images(xs, ds, f_shape, sums[i], not first)
            first = False

    threads.run_shared(items, band)
    return _sum_parts(xp, sums, ws, key, threads)


def _patches(xp: Any, x: Any, fh: int, fw: int, stride: tuple[int, int],
             pad: tuple[int, int, int, int], dilate: tuple[int, int], ho: int, wo: int,
             ws: Workspace) -> Any:
    """All im2col patches of ``x`` at once in the shared ``"cols"`` scratch buffer (drop
    before return); grouped convs use it."""
    n, _, _, c = x.shape
    xpad = padded(xp, x, pad, ws, "xpad")
    buf = ws.scratch(xp, "cols", (n * ho * wo, fh * fw * c), x.dtype)
    return im2col(xp, xpad, fh, fw, dilate, stride, ho, wo, out=buf)


def _dx_tconv(xp: Any, dy: Any, f: Any, x_shape: tuple[int, ...],
              pad: tuple[int, int, int, int], ws: Workspace, key: Any,
              threads: HostThreads = SERIAL) -> Any:
    """dX of a stride-1, undilated conv as the transposed convolution: im2col of dY padded
    by ``F-1-pad`` times the flipped filters (inner dimension FH*FW*K), block by block."""
    n, h, w, c = x_shape
    fh, fw, _, k = f.shape
    ff = xp.ascontiguousarray(f[::-1, ::-1].transpose(0, 1, 3, 2)).reshape(fh * fw * k, c)
    dx = ws.empty(xp, (key, "dx"), (n * h * w, c), dy.dtype)
    q = _transposed_pad(f.shape, pad, (1, 1))
    parts = image_parts(xp, threads, n)
    if parts > 1:
        _im2col_gemm_parts(xp, dy, ff, dx, fh, fw, (1, 1), (1, 1), q, h, w, ws, threads, parts)
    else:
        for rows, block in patch_blocks(xp, dy, fh, fw, (1, 1), (1, 1), q, h, w, ws, threads):
            xp.matmul(block, ff, out=dx[rows])
    return dx.reshape(n, h, w, c)


def _dx_col2im(xp: Any, dym: Any, f2: Any, x_shape: tuple[int, ...], f_shape: tuple[int, ...],
               stride: tuple[int, int], pad: tuple[int, int, int, int],
               dilate: tuple[int, int], ho: int, wo: int, ws: Workspace, key: Any,
               kern: Any, threads: HostThreads = SERIAL) -> Any:
    """dX for any geometry: the patch gradients ``dY F^T``, scattered back onto the input.

    With the compiled kernels: block by block (GEMM into a cache-sized block, then the
    kernel's scatter-add). Generic: computed transposed, ``(FH*FW*C, M)``, then added per
    kernel offset into a channel-major ``(C, N, Hp, Wp)`` gradient (whole-row runs)."""
    n, h, w, c = x_shape
    fh, fw = f_shape[:2]
    m = dym.shape[0]
    pt, pb, pl, pr = pad
    if kern is not None:
        dx = ws.empty(xp, (key, "dx"), (n, h, w, c), dym.dtype)
        ncols = fh * fw * c
        band, images = _block_plan(xp, ho, wo, ncols, dym.itemsize)
        step = images * ho if band == ho else band  # output rows (n*Ho + i) per block
        parts = image_parts(xp, threads, n)
        buffers = block_buffers(xp, ws, n, parts, ho, wo, ncols, dym.dtype)

        def part(p: int, i0: int, i1: int) -> None:
            # GEMM into a cache-sized block, then the kernel's scatter-add, image by image
            dx[i0:i1] = 0
            for g0 in range(i0 * ho, i1 * ho, step):
                g1 = min(i1 * ho, g0 + step)
                block = buffers[p](((g1 - g0) * wo, ncols))
                xp.matmul(dym[g0 * wo:g1 * wo], f2.T, out=block)
                kern.col2im_rows(block, dx, g0, g1, ho, wo, fh, fw, stride[0], stride[1], pt,
                                 pl, dilate[0], dilate[1])

        threads.run_parts(n, parts, part, single_threaded_blas=True)
        return dx
    dct = ws.scratch(xp, "dcolsT", (fh * fw * c, m), dym.dtype)
    xp.matmul(f2, dym.T, out=dct)
    d = dct.reshape(fh, fw, c, n, ho, wo)
    dxt = ws.scratch_zeros(xp, "dxT", (c, n, h + pt + pb, w + pl + pr), dym.dtype)
    sy, sx = stride
    for u in range(fh):
        for v in range(fw):
            a, e = u * dilate[0], v * dilate[1]
            dxt[:, :, a:a + sy * (ho - 1) + 1:sy, e:e + sx * (wo - 1) + 1:sx] += d[u, v]
    del d
    dx = ws.empty(xp, (key, "dx"), (n, h, w, c), dym.dtype)
    dx[...] = dxt[:, :, pt:pt + h, pl:pl + w].transpose(1, 2, 3, 0)
    return dx


def dx_method(x_shape: tuple[int, ...], f_shape: tuple[int, ...], stride: tuple[int, int],
              pad: tuple[int, int, int, int], dilate: tuple[int, int], xp: Any = None,
              kern: Any = None, dtype: Any = None) -> str:
    """How :func:`conv_backward` computes dX for this geometry (groups == 1):
    ``"gemm"`` (1x1 / whole-input convs), ``"direct"`` (:func:`direct_dx_ok`, given ``xp``,
    ``kern`` and ``dtype``), ``"implicit"`` (on the host, given ``xp``), ``"tconv"`` or
    ``"col2im"``."""
    kind = _kind(x_shape, f_shape, stride, pad, dilate)
    if kind != "im2col":
        return "gemm"
    if xp is not None and direct_dx_ok(xp, kern, dtype, x_shape, f_shape, stride, pad,
                                       dilate):
        return "direct"
    if xp is not None and implicit_dx_ok(xp, x_shape, f_shape, stride, pad, dilate):
        return "implicit"
    fh, fw, fc, k = f_shape
    c = x_shape[3]
    # the transposed conv pads dY by (F-1-pad) per side: it pays only for "same"-padded
    # convs, where the padded dY is no bigger than X (measured: 2x slower on unpadded ones)
    if (stride == (1, 1) and dilate == (1, 1) and fc == c and c >= TCONV_MIN_CHANNELS
            and max(pad[0], pad[1]) < fh and max(pad[2], pad[3]) < fw
            and pad[0] + pad[1] >= fh - 1 and pad[2] + pad[3] >= fw - 1):
        return "tconv"
    return "col2im"


def _row_parts(xp: Any, threads: HostThreads, a: Any) -> int:
    """Parts (bands of rows of ``a``, one thread each, making single-threaded BLAS calls)
    for a product that writes or reads ``a`` by rows; 1 where BLAS's threads cannot be
    set."""
    if not blas_threads_settable(xp):
        return 1
    return threads.parts(a.shape[0], a.nbytes)


def bias_grad(xp: Any, dym: Any, ws: Workspace, key: Any,
              threads: HostThreads = SERIAL) -> Any:
    """Sum of ``dym`` ``(M, K)`` over its rows, as matrix-vector products (BLAS): one, or
    one per part of the rows on ``threads``, whose sums are then added."""
    m, k = dym.shape
    ones = ws.empty(xp, (key, "ones"), (m,), dym.dtype)
    ones.fill(1)
    parts = _row_parts(xp, threads, dym)
    if parts == 1:
        return ones @ dym
    sums = ws.scratch(xp, "db", (parts, k), dym.dtype)
    threads.run_parts(m, parts, lambda p, lo, hi: xp.matmul(ones[lo:hi], dym[lo:hi],
                                                            out=sums[p]),
                      single_threaded_blas=True)
    return sums.sum(axis=0)


def conv_backward(xp: Any, x: Any, f: Any, b: Any, dy: Any, cols: Any, stride: tuple[int, int],
                  pad: tuple[int, int, int, int], dilate: tuple[int, int],
                  ws: Workspace | None = None, key: Any = None,
                  method: str | None = None, kern: Any = None,
                  threads: HostThreads = SERIAL) -> tuple[Any, Any, Any]:
    """(dx, df, db) for :func:`conv_forward`; derivatives are summed over the batch.

    ``method`` forces a dX method (``"gemm"`` only where it applies, ``"tconv"`` and
    ``"implicit"`` only for stride 1, ``"direct"`` only where :func:`direct_dx_ok`,
    ``"col2im"`` always, ``"none"`` to skip dX and return
    None); the default picks by :func:`dx_method`. ``kern``: compiled CPU kernels or None;
    ``threads``: host threads for the copies and scatters."""
    ws = NO_WORKSPACE if ws is None else ws
    n, h, w, c = x.shape
    fh, fw, fc, k = f.shape
    g = c // fc
    _, ho, wo, _ = dy.shape
    m = n * ho * wo
    dym = xp.ascontiguousarray(dy).reshape(m, k)
    db = bias_grad(xp, dym, ws, key, threads) if b is not None and b.size else \
        xp.zeros((0,), dtype=dy.dtype)
    if g == 1:
        f2 = f.reshape(fh * fw * fc, k)
        method = method or dx_method(x.shape, f.shape, stride, pad, dilate, xp, kern, dy.dtype)
        parts = min(image_parts(xp, threads, n), m // DF_PART_MIN_ROWS)
        if cols is None and direct_df_ok(xp, kern, dy.dtype, x.shape, f.shape, stride, pad,
                                         dilate):
            df = _df_direct(xp, x, dym.reshape(dy.shape), f.shape, pad, ws, key, kern,
                            threads).reshape(f.shape)
        elif parts > 1:
            df = _df_parts(xp, x, dym, None if cols is None else cols.reshape(-1, fh * fw * c),
                           fh, fw, dilate, stride, pad, ho, wo, ws, key, threads,
                           parts).reshape(f.shape)
        elif cols is not None:
            # 1x1, whole-input or kept patches, few positions: each thread computes a band
            # of dF's rows (no partial sums)
            cm = cols.reshape(-1, fh * fw * c)
            df = ws.empty(xp, (key, "df"), (cm.shape[1], k), dy.dtype)
            threads.run_parts(cm.shape[1], _row_parts(xp, threads, df), lambda p, lo, hi:
                              xp.matmul(cm[:, lo:hi].T, dym, out=df[lo:hi]),
                              single_threaded_blas=True)
            df = df.reshape(f.shape)
        else:
            df = xp.empty((fh * fw * c, k), dtype=dy.dtype)
            for i, (rows, block) in enumerate(patch_blocks(xp, x, fh, fw, dilate, stride, pad,
                                                           ho, wo, ws, threads)):
                gemm_accumulate(xp, df, block.T, dym[rows], i > 0)
            del block
            df = df.reshape(f.shape)
        if method == "none":  # the caller needs no input derivative
            return None, df, db
        if method == "gemm":
            dx = ws.empty(xp, (key, "dx"), (cols.shape[0], cols.shape[1]), dy.dtype)
            xp.matmul(dym.reshape(cols.shape[0], -1), f2.T, out=dx)
            return dx.reshape(x.shape), df, db
        if method == "direct":
            dx = direct_conv(xp, dym.reshape(dy.shape), f[::-1, ::-1].transpose(0, 1, 3, 2),
                             _transposed_pad(f.shape, pad, dilate), dilate,
                             ws.empty(xp, (key, "dx"), x.shape, dy.dtype), ws, kern, threads)
        elif method == "implicit":
            ff = f[::-1, ::-1].transpose(0, 1, 3, 2)  # a view: BLAS reads each ff[u, v]
            dx = implicit_conv(xp, dym.reshape(dy.shape), ff,
                               _transposed_pad(f.shape, pad, dilate), dilate,
                               ws.empty(xp, (key, "dx"), x.shape, dy.dtype), ws, threads)
        elif method == "tconv":
            dx = _dx_tconv(xp, dym.reshape(dy.shape), f, x.shape, pad, ws, key, threads)
        else:
            dx = _dx_col2im(xp, dym, f2, x.shape, f.shape, stride, pad, dilate, ho, wo, ws,
                            key, kern, threads)
        return dx, df, db
    if cols is None:
        cols = _patches(xp, x, fh, fw, stride, pad, dilate, ho, wo, ws)
    kg = k // g
    cols_g = cols.reshape(m, fh * fw, g, fc).transpose(2, 0, 1, 3).reshape(g, m, fh * fw * fc)
    f_g = f.reshape(fh * fw * fc, g, kg).transpose(1, 0, 2)
    dy_g = dym.reshape(m, g, kg).transpose(1, 0, 2)
    df = xp.matmul(cols_g.transpose(0, 2, 1), dy_g).transpose(1, 0, 2).reshape(f.shape)
    dcols = xp.matmul(dy_g, f_g.transpose(0, 2, 1))
    dcols = dcols.reshape(g, m, fh * fw, fc).transpose(1, 2, 0, 3).reshape(m, fh * fw * c)
    padded_shape = (n, h + pad[0] + pad[1], w + pad[2] + pad[3], c)
    dxpad = col2im(xp, dcols, padded_shape, fh, fw, dilate, stride, ho, wo)
    dx = dxpad[:, pad[0]:pad[0] + h, pad[2]:pad[2] + w, :]
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
    weight_layouts = ("4d", "vector")

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

    def summary(self, wshapes: list[tuple[int, ...]]) -> str:
        return "x".join(str(d) for d in wshapes[0])

    def forward(self, x: Any, w: list[Any], ctx: Context, aux: Any = None) -> tuple[Any, Any]:
        return conv_forward(ctx.xp, x, w[0], w[1], self.stride, self.pad, self.dilate,
                            workspace_of(ctx), id(self), threads=ctx.backend.threads,
                            kern=ctx.backend.kernels)

    def backward(self, x: Any, y: Any, aux: Any, w: list[Any], dy: Any,
                 ctx: Context) -> tuple[Any, list[Any]]:
        dx, df, db = conv_backward(ctx.xp, x, w[0], w[1], dy, aux, self.stride, self.pad,
                                   self.dilate, workspace_of(ctx), id(self),
                                   method=None if ctx.input_grad else "none",
                                   kern=ctx.backend.kernels, threads=ctx.backend.threads)
        return dx, [df, db]
