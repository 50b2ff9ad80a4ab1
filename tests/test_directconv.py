"""The AVX-512 direct convolution (layerspec/directconv.py) against float64 sums and against
the BLAS paths it replaces. Skipped where the host has no AVX-512 or llvmlite (Numba)."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import numpy as np
import pytest

from layerspec import directconv
from layerspec.hostthreads import SERIAL, HostThreads
from layerspec.layers import conv as conv_module
from layerspec.layers.conv import conv_backward, conv_forward, direct_conv, dx_method
from layerspec.workspace import Workspace

pytestmark = pytest.mark.skipif(not directconv.supported(),
                                reason="no AVX-512 host or no llvmlite: the kernel is off")

#: the compiled-kernel stand-in the layers receive: only ``direct_conv`` is looked at
KERN = types.SimpleNamespace(direct_conv=directconv)


def reference(x: np.ndarray, f: np.ndarray, pad: tuple[int, int, int, int],
              dil: tuple[int, int], bias: np.ndarray | None) -> np.ndarray:
    """Stride-1 cross-correlation in float64, one kernel offset at a time."""
    n, h, w, c = x.shape
    fh, fw, _, k = f.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), pad[:2], pad[2:], (0, 0)))
    ho, wo = xp.shape[1] - (fh - 1) * dil[0], xp.shape[2] - (fw - 1) * dil[1]
    y = np.zeros((n, ho, wo, k))
    for u in range(fh):
        for v in range(fw):
            window = xp[:, u * dil[0]:u * dil[0] + ho, v * dil[1]:v * dil[1] + wo]
            y += window @ f[u, v].astype(np.float64)
    return y if bias is None else y + bias


GEOMETRIES = [
    # n, h, w, c, fh, fw, k, pad, dilate
    (2, 20, 23, 64, 5, 5, 64, (2, 2, 2, 2), (1, 1)),    # seed320's 5x5 layers, small
    (3, 9, 7, 32, 3, 3, 128, (1, 0, 2, 1), (1, 1)),     # uneven padding, two chunks
    (2, 12, 13, 16, 3, 3, 64, (2, 2, 2, 2), (2, 1)),    # dilation, grouped offsets
    (1, 7, 7, 128, 4, 4, 192, (0, 0, 0, 0), (1, 1)),    # unpadded 4x4, three chunks
    (2, 3, 3, 64, 1, 2, 64, (0, 0, 0, 0), (1, 1)),      # rows narrower than any tile
    (1, 16, 16, 3, 5, 5, 64, (2, 2, 2, 2), (1, 1)),     # conv1: 3 channels, 75-term groups
    (2, 6, 37, 256, 4, 4, 64, (0, 0, 0, 0), (1, 1)),    # 34-wide rows, 2 K blocks
    (1, 4, 40, 192, 4, 4, 64, (1, 1, 1, 1), (1, 1)),    # 39 = 6 x 6 + 3, 2 K blocks
    (1, 5, 11, 40, 2, 3, 64, (1, 2, 0, 3), (1, 2)),     # odd everything
    (3, 16, 16, 32, 5, 5, 32, (2, 2, 2, 2), (1, 1)),    # lenet_cifar's conv2: 32-wide tiles
    (2, 7, 29, 24, 3, 3, 96, (1, 1, 0, 2), (1, 1)),     # three 32-wide chunks, 12-row tiles
]


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_direct_conv_matches_float64(geometry, with_bias):
    n, h, w, c, fh, fw, k, pad, dil = geometry
    rng = np.random.default_rng(sum(geometry[:7]))
    x = rng.standard_normal((n, h, w, c), dtype=np.float32)
    f = rng.standard_normal((fh, fw, c, k), dtype=np.float32)
    b = rng.standard_normal(k).astype(np.float32) if with_bias else None
    want = reference(x, f, pad, dil, b)
    out = np.full(want.shape, np.nan, np.float32)
    direct_conv(np, x, f, pad, dil, out, Workspace(), KERN, HostThreads(3, 0), b)
    scale = np.abs(want).max()
    # float32 rounding of sums of up to 4096 terms (the BLAS path's own error: 2-3e-7)
    assert np.abs(out - want).max() <= 2e-6 * scale


DF_GEOMETRIES = [
    # n, h, w, c, fh, fw, k, pad
    (2, 11, 13, 3, 5, 5, 64, (2, 2, 2, 2)),     # conv1-like: 15 rows per kernel row
    (3, 9, 8, 64, 3, 3, 128, (1, 0, 2, 1)),     # 192 rows per kernel row, 2 chunks
    (1, 40, 41, 16, 2, 3, 64, (0, 0, 0, 0)),    # 1560 positions: blocks + a short group
    (2, 2, 3, 7, 2, 2, 64, (0, 1, 0, 0)),       # fewer positions than a group
    (3, 16, 16, 32, 5, 5, 32, (2, 2, 2, 2)),    # 32 outputs: 32-wide tiles of 12 rows
]


@pytest.mark.parametrize("geometry", DF_GEOMETRIES)
@pytest.mark.parametrize("accumulate", [False, True])
def test_filter_grad_matches_float64(geometry, accumulate):
    n, h, w, c, fh, fw, k, pad = geometry
    rng = np.random.default_rng(sum(geometry[:7]))
    x = rng.standard_normal((n, h, w, c), dtype=np.float32)
    xpad = np.pad(x, ((0, 0), pad[:2], pad[2:], (0, 0)))
    ho, wo = xpad.shape[1] - fh + 1, xpad.shape[2] - fw + 1
    dy = rng.standard_normal((n, ho, wo, k), dtype=np.float32)
    want = np.zeros((fh, fw, c, k))
    for u in range(fh):
        for v in range(fw):
            window = xpad[:, u:u + ho, v:v + wo].astype(np.float64).reshape(-1, c)
            want[u, v] = window.T @ dy.reshape(-1, k).astype(np.float64)
    want = want.reshape(-1, k)
    start = rng.standard_normal(want.shape).astype(np.float32)
    out = start.copy() if accumulate else np.full(want.shape, np.nan, np.float32)
    directconv.filter_grad_images(xpad, dy, (fh, fw, c, k), out, accumulate)
    if accumulate:
        want = want + start
    assert np.abs(out - want).max() <= 2e-6 * np.abs(want).max()


def test_tile_heights():
    assert directconv.tile_rows(80) == 5    # 16 x 5
    assert directconv.tile_rows(160) == 5   # 32 x 5
    assert directconv.tile_rows(40) == 5
    assert directconv.tile_rows(46) == 6    # 7 x 6 + 4
    assert directconv.tile_rows(36) == 6
    assert directconv.tile_rows(37) == 6    # every height leaves 1-3: the tallest
    assert directconv.tile_rows(2) == 2
    ys, xs = directconv._tile_starts(2, 3, np.array([0, 5]), 7, 4, 9, 2, 3)
    assert ys.tolist() == [((n * 3 + i) * 7 + j) * 3 for n in range(2) for i in range(3)
                           for j in (0, 5)]
    assert xs.tolist() == [((n * 4 + i) * 9 + j) * 2 for n in range(2) for i in range(3)
                           for j in (0, 5)]


def test_chunks():
    assert [directconv.chunk_of(k) for k in (64, 128, 32, 96, 16, 0, 100)] == \
        [64, 64, 32, 32, 0, 0, 0]
    assert directconv.packed_shape((5, 5, 3, 96)) == (3, 75, 32)
    assert directconv.tile_rows(16, 32) == 8 and directconv.tile_rows(36, 32) == 12


def test_group_offsets():
    assert directconv.group_offsets(5, 5, 64) == 1
    assert directconv.group_offsets(5, 5, 32) == 5
    assert directconv.group_offsets(5, 5, 3) == 25
    assert directconv.group_offsets(3, 3, 16) == 9
    assert directconv.group_offsets(2, 4, 16) == 4
    assert directconv.group_offsets(1, 7, 200) == 1


def test_conv_layer_takes_the_direct_path_and_agrees_with_blas():
    """conv_forward/conv_backward with the kernel (forward, dX and dF direct) against the
    same calls without it (BLAS implicit / transposed conv / im2col blocks), serial and
    split over threads."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 18, 18, 64), dtype=np.float32)
    f = (rng.standard_normal((5, 5, 64, 64)) * 0.05).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    pad = (2, 2, 2, 2)
    args = ((1, 1), pad, (1, 1))
    assert conv_module.direct_ok(np, KERN, np.float32, x.shape, f.shape, *args)
    assert dx_method(x.shape, f.shape, *args, np, KERN, np.float32) == "direct"
    assert not conv_module.direct_ok(np, None, np.float32, x.shape, f.shape, *args)
    assert not conv_module.direct_ok(np, KERN, np.float64, x.shape, f.shape, *args)
    wide = (3, 18, 18, conv_module.DIRECT_MAX_CHANNELS + 1)
    wide_f = (5, 5, wide[3], 64)
    assert not conv_module.direct_ok(np, KERN, np.float32, wide, wide_f, *args)
    # up to DIRECT_WIDE_CHANNELS where the output rows are long enough
    rows = (1, 4, conv_module.DIRECT_WIDE_ROW, conv_module.DIRECT_WIDE_CHANNELS)
    rows_f = (5, 5, rows[3], 64)
    assert conv_module.direct_ok(np, KERN, np.float32, rows, rows_f, *args)
    assert not conv_module.direct_ok(np, KERN, np.float32, rows[:2] + (rows[2] - 5,) + rows[3:],
                                     rows_f, *args)
    assert conv_module.direct_df_ok(np, KERN, np.float32, x.shape, f.shape, *args)
    assert not conv_module.direct_df_ok(np, KERN, np.float32, x.shape, f.shape, (1, 1), pad,
                                        (2, 1))
    y0, _ = conv_forward(np, x, f, b, *args, Workspace(), 1)
    dy = rng.standard_normal(y0.shape, dtype=np.float32)
    dx0, df0, db0 = conv_backward(np, x, f, b, dy, None, *args, Workspace(), 1)
    for threads in (SERIAL, HostThreads(2, 0)):
        y1, _ = conv_forward(np, x, f, b, *args, Workspace(), 1, threads=threads, kern=KERN)
        dx1, df1, db1 = conv_backward(np, x, f, b, dy, None, *args, Workspace(), 1,
                                      kern=KERN, threads=threads)
        for got, want in ((y1, y0), (dx1, dx0), (df1, df0), (db1, db0)):
            assert np.abs(got - want).max() <= 2e-6 * np.abs(want).max()
        # bands go to whichever thread is free, but each is summed alone and in order
        again = conv_backward(np, x, f, b, dy, None, *args, Workspace(), 1, kern=KERN,
                              threads=threads)
        assert all(np.array_equal(a, e) for a, e in zip(again, (dx1, df1, db1), strict=True))


def test_shape_mismatch_is_refused_not_run():
    x = np.zeros((10 * 10, 8), np.float32)
    packed = directconv.pack_filters(np.zeros((3, 3, 8, 64), np.float32))
    out = np.zeros((1, 8, 8, 64), np.float32)
    directconv.conv_images(x, 10, 10, packed, (3, 3, 8, 64), (1, 1), out)
    with pytest.raises(ValueError, match="do not match"):
        directconv.conv_images(x[:50], 10, 10, packed, (3, 3, 8, 64), (1, 1), out)
    with pytest.raises(ValueError, match="do not match"):
        directconv.conv_images(x, 10, 10, packed, (3, 3, 8, 64), (1, 1), out[:, :7])
    with pytest.raises(ValueError, match="do not match"):
        directconv.conv_images(x.astype(np.float64), 10, 10, packed, (3, 3, 8, 64), (1, 1),
                               out)
    xpad = np.zeros((1, 10, 10, 8), np.float32)
    df = np.zeros((72, 64), np.float32)
    directconv.filter_grad_images(xpad, out, (3, 3, 8, 64), df)
    with pytest.raises(ValueError, match="do not match"):
        directconv.filter_grad_images(xpad, out[:, :7], (3, 3, 8, 64), df)
    with pytest.raises(ValueError, match="do not match"):
        directconv.filter_grad_images(xpad, out, (3, 3, 8, 64), df[:71])


def test_environment_switch_turns_the_kernel_off():
    code = ("import layerspec.directconv as d, layerspec.backend as b; "
            "print(d.supported(), b.NUMPY.kernels is None or b.NUMPY.kernels.direct_conv)")
    env = dict(os.environ, LAYERSPEC_DIRECT_CONV="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    assert out[0] == "False" and out[1] in ("None", "True")


def _seed_like_spec(dtype: type) -> dict:
    """A small net shaped like seed320's first half: 3 -> 64 -> 64 -> 128 channels of 5x5
    'same' convolutions (rows of 128 positions: conv3's dX has 128 input channels), max
    pools, a final whole-input conv and a softmax loss."""
    rng = np.random.default_rng(11)

    def conv(c: int, k: int, size: int = 5, pad: int = 2) -> dict:
        f = rng.standard_normal((size, size, c, k)) * np.sqrt(2 / (size * size * c))
        return {"type": "conv", "weights": [f.astype(dtype), (0.1 * rng.standard_normal(k))
                                            .astype(dtype)], "pad": pad}

    pool = {"type": "pool", "method": "max", "pool": [2, 2], "stride": 2}
    return {"name": "seed_like", "input": [32, 256, 3], "layers": [
        conv(3, 64), {"type": "relu"}, dict(pool),
        conv(64, 64), {"type": "relu"},
        conv(64, 128), {"type": "relu"}, dict(pool),
        {"type": "conv", "weights": [
            (0.01 * rng.standard_normal((8, 64, 128, 10))).astype(dtype),
            np.zeros(10, dtype)]},
        {"type": "softmaxloss"}]}


def test_network_through_the_direct_path_matches_float64(monkeypatch):
    """Forward, every input derivative and every filter derivative of a seed-like net on
    the NumPy backend (the direct kernel in conv1's forward and dF, conv2's forward, dX
    and dF, conv3's forward, dX and dF) against the same net in float64 without it."""
    import layerspec
    from layerspec.backend import NUMPY, NUMPY_GENERIC

    if NUMPY.kernels is None or NUMPY.kernels.direct_conv is None:
        pytest.skip("the NumPy backend has no compiled kernels here")
    used = set()  # (function, filter shape), whatever the number of parts
    for name, shape_at in (("conv_images", 4), ("filter_grad_images", 2)):
        real = getattr(directconv, name)
        monkeypatch.setattr(directconv, name, lambda *a, real=real, name=name, at=shape_at,
                            **k: (used.add((name, tuple(a[at]))), real(*a, **k))[1])
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 32, 256, 3))
    labels = np.array([3, 7])
    res32 = layerspec.simplenn(layerspec.load(_seed_like_spec(np.float32), backend=NUMPY),
                               x.astype(np.float32), dzdy=1.0, labels=labels)
    assert used == {("conv_images", (5, 5, 3, 64)), ("conv_images", (5, 5, 64, 64)),
                    ("conv_images", (5, 5, 64, 128)), ("conv_images", (5, 5, 128, 64)),
                    ("filter_grad_images", (5, 5, 3, 64)),
                    ("filter_grad_images", (5, 5, 64, 64)),
                    ("filter_grad_images", (5, 5, 64, 128))}
    res64 = layerspec.simplenn(layerspec.load(_seed_like_spec(np.float64),
                                              backend=NUMPY_GENERIC), x, dzdy=1.0,
                               labels=labels)

    def rel(a, b):
        return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())

    assert rel(res32[-1].x, res64[-1].x) < 1e-5
    for i, (r32, r64) in enumerate(zip(res32, res64, strict=True)):
        if r64.dzdx is not None:
            assert rel(r32.dzdx, r64.dzdx) < 2e-5, f"dzdx {i}"
        for j, (w32, w64) in enumerate(zip(r32.dzdw or [], r64.dzdw or [], strict=True)):
            assert rel(w32, w64) < 2e-5, f"dzdw {i} {j}"
