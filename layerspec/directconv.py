"""Direct stride-1 convolution on the host: a register-blocked float32 microkernel written in
LLVM IR and compiled for this CPU through llvmlite (the code generator Numba ships with).

Why: on seed320's 5x5 layers the per-offset OpenBLAS products of
:func:`layerspec.layers.conv.implicit_conv` (inner dimension C = 64-128, 25 accumulating
GEMMs) reach 105-125 GFLOP/s on one core of the project's machine, whose sgemm peaks near
160: with only 64 output columns, OpenBLAS spends a large share of each product packing the
big operand. This kernel never packs the input. It keeps a tile of ``R`` output positions x
64 output channels (``R x 4`` AVX-512 registers; 32 channels x up to 12 positions where
``K`` is a multiple of 32 only) in registers for the whole sum over ``(u, v, c)``: per step
it broadcasts ``R`` input values and loads one packed filter row. One core: 140-150
GFLOP/s on those layers, with no work wasted on the padding columns (tiles run along
output rows) and the bias added as the accumulators start.

Layout (as :func:`~layerspec.layers.conv.implicit_conv`): ``x`` zero-padded and flattened to
rows of C channels (``(rows, C)``, each image ``Hp x Wp`` rows), output ``(N, Ho, Wo, K)``.
Output position ``(n, i, j)`` reads the ``FH*FW*C`` inputs at flat element
``((n*Hp + i)*Wp + j)*C + xo[k]``, ``xo[(u, v, c)] = (u*dy*Wp + v*dx)*C + c``. The filters
are packed as ``(K/n, FH*FW*C, n)`` (``n`` = 64 or 32, :func:`chunk_of`). The same kernel,
with the roles turned, computes filter derivatives (:func:`filter_grad_images`).

Each output is ``bias + sum_k x*f`` with fused multiply-adds in float32, summed in groups
of at least 64 terms in registers that are added into the output in order (as a BLAS
product sums blocks of its inner dimension): results differ from the BLAS path at
float32-rounding level (tests/test_directconv.py; the MatConvNet reference cases run
through it). Only float32, ``K`` a multiple of 32, and hosts with AVX-512
(:func:`supported`); everything else keeps the BLAS path. ``LAYERSPEC_DIRECT_CONV=0``
turns the kernel off.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from typing import Any

import numpy as np

#: output channels per register tile (4 AVX-512 vectors of 16 floats)
LANES, VECTORS = 16, 4
CHUNK = LANES * VECTORS
#: layers whose output channels are a multiple of 32 but not of 64 (lenet_cifar's 32) take
#: tiles of 2 vectors (32 channels) and up to 12 rows
NARROW_VECTORS = 2
#: tile heights (output positions) a layer's row tiles may take (:func:`tile_rows`; 24
#: accumulators at 6 rows of 4 vectors, or 12 rows of 2)
TILE_ROWS = (6, 5, 4)
NARROW_TILE_ROWS = (12, 10, 8)
#: packed filter rows (x 256 bytes) one pass over a band's tiles reads: sums are split into
#: blocks of whole groups that accumulate into the output. Where a group fits, blocks of
#: ``L1_BLOCK_BYTES`` (128 rows of 64 channels) stay in the L1 cache while every tile of
#: the band reads them; larger groups (256+ channels) take ``K_BLOCK_BYTES`` from L2.
#: Interleaved, 2 threads, on seed320's layers (GFLOP/s): 128-row blocks 264 / 281 / 263
#: on conv4 / conv7 / conv9 against 254 / 252 / 249 for 2048-row ones; on 256 channels
#: 2048 rows gave 232 against 184-218 for smaller blocks.
L1_BLOCK_BYTES = 32 << 10
K_BLOCK_BYTES = 512 << 10

#: output rows are computed in bands whose inputs and outputs take about this many bytes, so
#: that the passes over the filter chunks and blocks find them in the (per-core) L2 cache
BAND_BYTES = 1 << 20

_MODE_ZERO, _MODE_ACCUMULATE, _MODE_BIAS = 0, 1, 2
_compile_lock = threading.Lock()


def _kernel_ir(rows: int, vectors: int = VECTORS) -> str:
    """LLVM IR of ``tile(y, ldy, ys, x, xs, sr, ntiles, xo, G, groups, w, ldw, bias, mode)``:
    for each tile ``t < ntiles`` and row ``r < rows``, with ``Y = y + ys[t] + r*ldy`` (``n =
    16*vectors`` floats) and ``X = x + xs[t] + r*sr``: ``Y`` = 0, ``bias[0:n]`` or itself
    (``mode`` 0, 2, 1), then for each group ``g < groups``,
    ``Y += sum_{k in group g} X[xo[k]] * w[k*ldw : k*ldw+n]``
    (``G`` terms a group, summed in registers from zero, as a BLAS product per kernel offset
    does before it adds into its output)."""
    vt = f"<{LANES} x float>"
    acc = [(r, j) for r in range(rows) for j in range(vectors)]
    out: list[str] = []
    a = out.append
    a(f"declare {vt} @llvm.fma.v{LANES}f32({vt}, {vt}, {vt})")
    a("define void @tile(float* noalias %y, i64 %ldy, i64* noalias %ys, float* noalias %x, "
      "i64* noalias %xs, i64 %sr, i64 %ntiles, i64* noalias %xo, i64 %G, i64 %groups, "
      "float* noalias %w, i64 %ldw, float* noalias %bias, i64 %mode) nounwind {")
    a("entry:")
    a("  %none = icmp eq i64 %ntiles, 0")
    a("  %nogroups = icmp eq i64 %groups, 0")
    a("  %emptyg = icmp eq i64 %G, 0")
    a("  %nothing0 = or i1 %none, %nogroups")
    a("  %nothing = or i1 %nothing0, %emptyg")
    a("  br i1 %nothing, label %exit, label %tile")
    a("tile:")
    a("  %t = phi i64 [0, %entry], [%tnext, %tileend]")
    a("  %ysp = getelementptr i64, i64* %ys, i64 %t")
    a("  %y0 = load i64, i64* %ysp")
    a("  %xsp = getelementptr i64, i64* %xs, i64 %t")
    a("  %x0 = load i64, i64* %xsp")
    a("  %xt = getelementptr float, float* %x, i64 %x0")
    for r, j in acc:
        a(f"  %yr{r}_{j} = mul i64 {r}, %ldy")
        a(f"  %yq{r}_{j} = add i64 %yr{r}_{j}, {j * LANES}")
        a(f"  %yi{r}_{j} = add i64 %y0, %yq{r}_{j}")
        a(f"  %yf{r}_{j} = getelementptr float, float* %y, i64 %yi{r}_{j}")
        a(f"  %yp{r}_{j} = bitcast float* %yf{r}_{j} to {vt}*")
    a("  switch i64 %mode, label %fromzero [i64 1, label %group i64 2, label %frombias]")
    a("frombias:")
    for j in range(vectors):
        a(f"  %bf{j} = getelementptr float, float* %bias, i64 {j * LANES}")
        a(f"  %bp{j} = bitcast float* %bf{j} to {vt}*")
        a(f"  %b{j} = load {vt}, {vt}* %bp{j}, align 4")
    for r, j in acc:
        a(f"  store {vt} %b{j}, {vt}* %yp{r}_{j}, align 4")
    a("  br label %group")
    a("fromzero:")
    for r, j in acc:
        a(f"  store {vt} zeroinitializer, {vt}* %yp{r}_{j}, align 4")
    a("  br label %group")
    a("group:")
    a("  %g = phi i64 [0, %tile], [0, %frombias], [0, %fromzero], [%gnext, %groupend]")
    a("  %k0 = mul i64 %g, %G")
    a("  br label %step")
    a("step:")
    a("  %kk = phi i64 [0, %group], [%kknext, %step]")
    for r, j in acc:
        a(f"  %c{r}_{j} = phi {vt} [zeroinitializer, %group], [%n{r}_{j}, %step]")
    a("  %k = add i64 %k0, %kk")
    a("  %xop = getelementptr i64, i64* %xo, i64 %k")
    a("  %xk = load i64, i64* %xop")
    for r in range(rows):
        a(f"  %xr{r} = mul i64 %sr, {r}")
        a(f"  %xi{r} = add i64 %xr{r}, %xk")
        a(f"  %xp{r} = getelementptr float, float* %xt, i64 %xi{r}")
        a(f"  %xv{r} = load float, float* %xp{r}")
        a(f"  %xe{r} = insertelement {vt} undef, float %xv{r}, i32 0")
        a(f"  %xb{r} = shufflevector {vt} %xe{r}, {vt} undef, <{LANES} x i32> zeroinitializer")
    a("  %wk = mul i64 %k, %ldw")
    for j in range(vectors):
        a(f"  %wi{j} = add i64 %wk, {j * LANES}")
        a(f"  %wf{j} = getelementptr float, float* %w, i64 %wi{j}")
        a(f"  %wp{j} = bitcast float* %wf{j} to {vt}*")
        a(f"  %wv{j} = load {vt}, {vt}* %wp{j}, align 4")
    for r, j in acc:
        a(f"  %n{r}_{j} = call {vt} @llvm.fma.v{LANES}f32({vt} %xb{r}, {vt} %wv{j}, "
          f"{vt} %c{r}_{j})")
    a("  %kknext = add i64 %kk, 1")
    a("  %more = icmp ult i64 %kknext, %G")
    a("  br i1 %more, label %step, label %groupend")
    a("groupend:")
    for r, j in acc:
        a(f"  %o{r}_{j} = load {vt}, {vt}* %yp{r}_{j}, align 4")
        a(f"  %s{r}_{j} = fadd {vt} %o{r}_{j}, %n{r}_{j}")
        a(f"  store {vt} %s{r}_{j}, {vt}* %yp{r}_{j}, align 4")
    a("  %gnext = add i64 %g, 1")
    a("  %gmore = icmp ult i64 %gnext, %groups")
    a("  br i1 %gmore, label %group, label %tileend")
    a("tileend:")
    a("  %tnext = add i64 %t, 1")
    a("  %tmore = icmp ult i64 %tnext, %ntiles")
    a("  br i1 %tmore, label %tile, label %exit")
    a("exit:")
    a("  ret void")
    a("}")
    return "\n".join(out)


_SIGNATURE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                              ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                              ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                              ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64)


@functools.cache
def _llvm() -> Any:
    """``llvmlite.binding`` initialised for this host, or None when it does not import."""
    try:
        import llvmlite.binding as llvm  # noqa: PLC0415 - optional, comes with Numba
    except ImportError:
        return None
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return llvm


@functools.cache
def supported() -> bool:
    """Whether the kernel can run here: llvmlite imports, the CPU has AVX-512F, and
    ``LAYERSPEC_DIRECT_CONV`` is not ``0``."""
    if os.environ.get("LAYERSPEC_DIRECT_CONV", "1") == "0":
        return False
    llvm = _llvm()
    if llvm is None:
        return False
    try:
        return bool(llvm.get_host_cpu_features().get("avx512f", False))
    except RuntimeError:  # llvmlite cannot read this host's features
        return False


class _Compiled:
    """One compiled tile kernel; holds the engine that owns its machine code."""

    def __init__(self, rows: int, vectors: int) -> None:
        llvm = _llvm()
        module = llvm.parse_assembly(_kernel_ir(rows, vectors))
        module.verify()
        machine = llvm.Target.from_default_triple().create_target_machine(
            cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(),
            opt=3)
        self._engine = llvm.create_mcjit_compiler(module, machine)
        self._engine.finalize_object()
        self.call = _SIGNATURE(self._engine.get_function_address("tile"))


@functools.cache
def _kernel(rows: int, vectors: int) -> _Compiled:
    with _compile_lock:
        return _Compiled(rows, vectors)


def chunk_of(k: int) -> int:
    """Output channels per tile for ``k`` outputs: 64 where they divide ``k``, else 32
    (0 when neither does: the kernel does not apply)."""
    if k > 0 and k % CHUNK == 0:
        return CHUNK
    if k > 0 and k % (LANES * NARROW_VECTORS) == 0:
        return LANES * NARROW_VECTORS
    return 0


def applies(dtype: Any, k: int) -> bool:
    """Whether :func:`conv_images` computes a convolution of host arrays of ``dtype`` with
    ``k`` output channels on this machine (float32, ``k`` a multiple of 32, AVX-512)."""
    return np.dtype(dtype) == np.float32 and chunk_of(k) > 0 and supported()


#: fewest terms a group sums in registers before adding into the output, as a BLAS product
#: sums a block of its inner dimension: one kernel offset's C channels where C >= 64, else
#: as many whole offsets as it takes (lenet_cifar's 32 channels: 5 offsets, 160 terms;
#: conv1's 3 channels: all 75). With one offset of 32 channels a group, one of lenet_cifar's
#: conv2 outputs within float32 rounding of zero (3.8e-8 in MatConvNet, max 0.57) came out
#: negative and flipped its ReLU; with 160-term groups the forward error is the BLAS path's
GROUP_TERMS = 64


def group_offsets(fh: int, fw: int, c: int) -> int:
    """Kernel offsets per group: the smallest divisor ``d`` of ``FH*FW`` with ``d*C`` at
    least :data:`GROUP_TERMS` (all offsets if none is)."""
    return min((d for d in range(1, fh * fw + 1)
                if (fh * fw) % d == 0 and d * c >= GROUP_TERMS), default=fh * fw)


def packed_shape(fshape: tuple[int, ...]) -> tuple[int, int, int]:
    """Shape of :func:`pack_filters`' result for filters of shape ``(FH, FW, C, K)``."""
    fh, fw, c, k = fshape
    chunk = chunk_of(k)
    return (k // chunk, fh * fw * c, chunk)


def pack_filters(f: Any, out: np.ndarray | None = None) -> np.ndarray:
    """``f`` ``(FH, FW, C, K)`` (any strides) as ``(K/n, FH*FW*C, n)`` contiguous float32,
    ``n`` = :func:`chunk_of` ``(K)``: chunk ``q`` holds output channels ``nq .. nq+n-1``."""
    fh, fw, c, k = f.shape
    chunk = chunk_of(k)
    packed = np.empty(packed_shape(f.shape), np.float32) if out is None else out
    np.copyto(packed, np.asarray(f).reshape(fh * fw * c, k // chunk, chunk).transpose(1, 0, 2))
    return packed


def tile_heights(chunk: int) -> tuple[int, ...]:
    """The tile heights for tiles ``chunk`` channels wide (24 accumulators at most)."""
    return TILE_ROWS if chunk == CHUNK else NARROW_TILE_ROWS


def tile_rows(wo: int, chunk: int = CHUNK) -> int:
    """The tile height for output rows of ``wo`` positions. A row is ``wo // R`` tiles of
    ``R`` plus one of the remaining ``wo % R`` (which keeps fewer registers busy): the
    tallest ``R`` that divides ``wo``, else the tallest whose remainder is at least 4, else
    the tallest. (One core, seed320: 5-row tiles 151 / 143 GFLOP/s on conv4 / conv9's
    160- and 80-wide rows, 6-row tiles with remainders 143 / 122.)"""
    heights = tile_heights(chunk)
    if wo < min(heights):
        return wo
    return min(heights, key=lambda r: (wo % r != 0, 0 < wo % r < 4, -r))


def _block_groups(size: int, chunk: int) -> int:
    """Groups of ``size`` filter rows per pass (``chunk`` floats a row): what fits
    :data:`L1_BLOCK_BYTES`, else :data:`K_BLOCK_BYTES`, at least one."""
    row = 4 * chunk
    budget = L1_BLOCK_BYTES if size * row <= L1_BLOCK_BYTES else K_BLOCK_BYTES
    return max(1, budget // (size * row))


@functools.cache
def _offsets(fh: int, fw: int, c: int, wp: int, dil: tuple[int, int]) -> np.ndarray:
    """``xo[(u, v, ch)] = (u*dil_y*Wp + v*dil_x)*C + ch``, int64."""
    u = np.arange(fh).reshape(fh, 1, 1) * dil[0] * wp
    v = np.arange(fw).reshape(1, fw, 1) * dil[1]
    ch = np.arange(c).reshape(1, 1, c)
    offsets = ((u + v) * c + ch).reshape(-1).astype(np.int64)
    offsets.flags.writeable = False
    return offsets


def _tile_starts(images: int, ho: int, cols: np.ndarray, wo: int, hp: int, wp: int, c: int,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
    """Element offsets of each tile's first output (into ``(images, Ho, Wo, K)``) and first
    input (into the flat padded images) for the tiles starting at columns ``cols`` of
    every output row."""
    n = np.arange(images).reshape(-1, 1, 1)
    i = np.arange(ho).reshape(1, -1, 1)
    j = cols.reshape(1, 1, -1)
    ys = (((n * ho + i) * wo + j) * k).reshape(-1).astype(np.int64)
    xs = (((n * hp + i) * wp + j) * c).reshape(-1).astype(np.int64)
    return ys, xs


def _row_tiles(width: int, rows: int) -> list[tuple[int, np.ndarray]]:
    """``(height, starts)`` covering ``range(width)`` once: tiles of ``rows`` starting at
    ``starts``, then (if any is left) one shorter tile for the rest."""
    full = width // rows * rows
    tiles = [(rows, np.arange(0, full, rows))]
    if full < width:
        tiles.append((width - full, np.array([full])))
    return tiles


def _float32_c(*arrays: np.ndarray) -> bool:
    """Whether every array is float32 and C-contiguous (the kernel reads raw addresses)."""
    return all(a.dtype == np.float32 and a.flags.c_contiguous for a in arrays)


@functools.cache
def _conv_tilings(images: int, ho: int, wo: int, hp: int, wp: int, c: int,
                  k: int) -> tuple[tuple[int, np.ndarray, np.ndarray], ...]:
    """``(rows, ys, xs)`` per tiling of every output row (:func:`tile_rows`-high tiles, then
    one shorter tile for the rest of each row, so that no output is summed twice), in
    output-row order (read-only, cached per geometry)."""
    out = []
    for height, cols in _row_tiles(wo, tile_rows(wo, chunk_of(k))):
        ys, xs = _tile_starts(images, ho, cols, wo, hp, wp, c, k)
        ys.flags.writeable = xs.flags.writeable = False
        out.append((height, ys, xs))
    return tuple(out)


def band_rows(wp: int, c: int, wo: int, k: int) -> int:
    """Output rows per band: inputs and outputs of about :data:`BAND_BYTES`."""
    return max(1, BAND_BYTES // (4 * (wp * c + wo * k)))


def conv_images(xflat: np.ndarray, hp: int, wp: int, packed: np.ndarray,
                fshape: tuple[int, int, int, int], dil: tuple[int, int], out: np.ndarray,
                bias: np.ndarray | None = None, rows: tuple[int, int] | None = None) -> None:
    """``out`` ``(N, Ho, Wo, K)`` = stride-1 convolution of the N images whose zero-padded
    ``Hp x Wp`` grids start ``xflat`` ``(rows, C)`` with the filters ``packed`` by
    :func:`pack_filters` (``fshape`` is their ``(FH, FW, C, K)``), plus ``bias`` ``(K,)``
    when given; ``Ho = Hp - (FH-1)*dil_y``, ``Wo`` likewise (every input a tile reads lies
    in its image's padded grid). ``rows``: only output rows ``[r0, r1)`` of the ``N*Ho``
    (the others are left as they are). All float32 and C-contiguous (checked: the kernel
    works on raw addresses). Runs on the calling thread, without the GIL."""
    fh, fw, c, k = fshape
    images, ho, wo, _ = out.shape
    chunk = chunk_of(k)
    r0, r1 = (0, images * ho) if rows is None else rows
    if not _float32_c(out, xflat, packed) \
            or out.shape[3] != k or not chunk or xflat.shape[1] != c \
            or xflat.shape[0] < images * hp * wp \
            or packed.shape != (k // chunk, fh * fw * c, chunk) \
            or ho != hp - (fh - 1) * dil[0] or wo != wp - (fw - 1) * dil[1] \
            or (bias is not None and bias.size != k) or not 0 <= r0 <= r1 <= images * ho:
        raise ValueError("conv_images: arrays do not match the geometry "
                         f"(out {out.shape}, x {xflat.shape}, packed {packed.shape}, "
                         f"filters {fshape}, padded {hp}x{wp}, rows {rows})")
    if r0 == r1 or wo == 0:
        return
    vectors = chunk // LANES
    tilings = [(_kernel(height, vectors), ys, xs)
               for height, ys, xs in _conv_tilings(images, ho, wo, hp, wp, c, k)]
    offsets = _offsets(fh, fw, c, wp, dil)
    size = group_offsets(fh, fw, c) * c
    groups = fh * fw * c // size
    per_block = _block_groups(size, chunk)
    bias32 = None if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
    y_addr, x_addr = out.ctypes.data, xflat.ctypes.data
    band = band_rows(wp, c, wo, k)
    for b0 in range(r0, r1, band):
        b1 = min(r1, b0 + band)
        for q in range(k // chunk):
            for g0 in range(0, groups, per_block):
                if g0:
                    mode, b_addr = _MODE_ACCUMULATE, None
                elif bias32 is None:
                    mode, b_addr = _MODE_ZERO, None
                else:
                    mode, b_addr = _MODE_BIAS, bias32.ctypes.data + 4 * q * chunk
                for kernel, ys, xs in tilings:
                    per_row = ys.size // (images * ho)
                    t0 = b0 * per_row
                    kernel.call(y_addr + 4 * q * chunk, k, ys.ctypes.data + 8 * t0, x_addr,
                                xs.ctypes.data + 8 * t0, c, (b1 - b0) * per_row,
                                offsets.ctypes.data + 8 * g0 * size, size,
                                min(per_block, groups - g0),
                                packed[q].ctypes.data + 4 * g0 * size * chunk, chunk, b_addr,
                                mode)


#: positions a filter-derivative group sums in registers before adding into dF
DF_GROUP = 256
#: bytes of dY rows one pass over the filter tiles reads again for each tile (seed320, one
#: core: 256 KB blocks 11 / 49 ms on conv1 / conv4, 64 KB 15 / 50, 512 KB 14 / 66)
DF_BLOCK_BYTES = 256 << 10


def filter_grad_applies(dtype: Any, k: int) -> bool:
    """Whether :func:`filter_grad_images` should compute a filter derivative with ``k``
    output channels: one or two chunks (32, 64 or 128; the inputs are read again for each
    chunk). Interleaved, 2 threads, against the BLAS path: seed320's conv4 (64) 0.70x the
    time, conv7 / conv9 (128) 0.97x / 0.92x; conv15 / conv17 (256) 1.12x / 0.95x."""
    return k in (LANES * NARROW_VECTORS, CHUNK, 2 * CHUNK) and applies(dtype, k)


def filter_grad_images(xpad: np.ndarray, dy: np.ndarray, fshape: tuple[int, int, int, int],
                       out: np.ndarray, accumulate: bool = False) -> None:
    """dF of a stride-1, undilated convolution: ``out`` ``(FH*FW*C, K)`` (rows ``(u, v,
    c)``) = (or ``+=`` when ``accumulate``) ``sum_{n,i,j} xpad[n, i+u, j+v, c] * dy[n, i, j,
    :]``, for the zero-padded images ``xpad`` ``(N, Hp, Wp, C)`` and ``dy`` ``(N, Ho, Wo,
    K)``, ``Ho = Hp - FH + 1``. The same kernel with the roles turned: a tile is ``R``
    consecutive ``(v, c)`` rows of one kernel row ``u`` (contiguous in ``xpad``), the sum runs
    over output positions (``DF_GROUP`` at a time in registers) and the packed operand is
    dY's rows. All float32 and C-contiguous (checked). Runs on the calling thread, without
    the GIL."""
    fh, fw, c, k = fshape
    images, hp, wp, _ = xpad.shape
    _, ho, wo, _ = dy.shape
    chunk = chunk_of(k)
    if not _float32_c(xpad, dy, out) \
            or not chunk or xpad.shape[3] != c or dy.shape != (images, ho, wo, k) \
            or out.shape != (fh * fw * c, k) or ho != hp - fh + 1 or wo != wp - fw + 1:
        raise ValueError("filter_grad_images: arrays do not match the geometry "
                         f"(x {xpad.shape}, dy {dy.shape}, dF {out.shape}, filters {fshape})")
    positions = images * ho * wo
    if positions == 0:
        if not accumulate:
            out.fill(0)
        return
    vectors = chunk // LANES
    width = fw * c  # dF rows per kernel row u, contiguous in each padded input row
    # the tallest tiles: rows of hundreds make the remainder tile's share small (conv4's
    # 320: 6-row tiles 130 GFLOP/s on one core, 5-row ones 119)
    u = np.arange(fh).reshape(-1, 1)
    tilings = []
    for height, starts in _row_tiles(width, min(max(tile_heights(chunk)), width)):
        ys = ((u * width + starts) * k).reshape(-1).astype(np.int64)
        xs = (u * wp * c + starts).reshape(-1).astype(np.int64)
        tilings.append((_kernel(height, vectors), ys, xs))
    n = np.arange(images).reshape(-1, 1, 1)
    i = np.arange(ho).reshape(1, -1, 1)
    j = np.arange(wo).reshape(1, 1, -1)
    xo = (((n * hp + i) * wp + j) * c).reshape(-1).astype(np.int64)
    block = max(DF_GROUP, DF_BLOCK_BYTES // (4 * k) // DF_GROUP * DF_GROUP)
    first = not accumulate
    for p0 in range(0, positions, block):
        count = min(block, positions - p0)
        calls = [(DF_GROUP, count // DF_GROUP, p0)]
        if count % DF_GROUP:
            calls.append((count % DF_GROUP, 1, p0 + count - count % DF_GROUP))
        for size, groups, start in calls:
            if not groups:
                continue
            mode = _MODE_ZERO if first else _MODE_ACCUMULATE
            first = False
            for q in range(k // chunk):
                for kernel, ys, xs in tilings:
                    kernel.call(out.ctypes.data + 4 * q * chunk, k, ys.ctypes.data,
                                xpad.ctypes.data, xs.ctypes.data, 1, ys.size,
                                xo.ctypes.data + 8 * start, size, groups,
                                dy.ctypes.data + 4 * (start * k + q * chunk), k, None, mode)
