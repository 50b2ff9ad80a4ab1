"""The NumPy fast paths of conv, pool and relu against the generic paths and plain loops —
with and without the compiled CPU kernels (layerspec/cpukernels.py, when Numba is installed),
with whole-matrix and small im2col blocks — and the workspace's buffer reuse (never handing
out a buffer that something still holds)."""

from __future__ import annotations

import numpy as np
import pytest

import layerspec
from layerspec.backend import Backend, cpu_kernels
from layerspec.hostthreads import SERIAL, HostThreads
from layerspec.layers import conv as conv_module
from layerspec.layers.conv import col2im, conv_backward, conv_forward, dx_method, im2col
from layerspec.layers.pool import pool_backward, pool_forward
from layerspec.workspace import Workspace

RNG = np.random.default_rng(7)


@pytest.fixture(params=["generic", "kernels"])
def kern(request):
    """None (the generic array code) or the compiled CPU kernels (skipped without Numba)."""
    if request.param == "generic":
        return None
    k = cpu_kernels()
    if k is None:
        pytest.skip("Numba is not installed (pip install 'layerspec[fast]'): kernels not built")
    return k


@pytest.fixture(params=["serial", "split"])
def threads(request, monkeypatch):
    """Host work on the caller's thread, or split into parts however small over 3 threads
    (uneven parts, filter derivatives summed in parts too): the results must be the same."""
    if request.param == "serial":
        return SERIAL
    monkeypatch.setattr(conv_module, "DF_PART_MIN_ROWS", 1)
    return HostThreads(3, min_bytes=0)


def backend_for(kern, threads) -> Backend:
    """The NumPy backend with or without the compiled kernels, on ``threads``."""
    return Backend("numpy", np, use_kernels=kern is not None, host_threads=threads.count,
                   split_min_bytes=threads.min_bytes)


@pytest.fixture(params=["whole", "small", "implicit", "kept"])
def block(request, monkeypatch):
    """im2col in one block, or in blocks of ~1 KB (bands of a few output rows), or the
    shifted-slice (implicit) convolution wherever it applies, whatever its cost, or patches
    kept from the forward pass (when the test gives a workspace)."""
    if request.param == "small":
        monkeypatch.setattr(conv_module, "block_bytes", lambda xp: 1024)
    if request.param == "implicit":
        monkeypatch.setattr(conv_module, "IMPLICIT_MAX_OVERCOMPUTE", 1e9)
        monkeypatch.setattr(conv_module, "IMPLICIT_MIN_CHANNELS", 1)
    return request.param


def _im2col_loop(xpad, fh, fw, dil, stride, ho, wo):
    n, _, _, c = xpad.shape
    out = np.empty((n, ho, wo, fh, fw, c), xpad.dtype)
    for i in range(ho):
        for j in range(wo):
            for u in range(fh):
                for v in range(fw):
                    out[:, i, j, u, v] = xpad[:, i * stride[0] + u * dil[0],
                                              j * stride[1] + v * dil[1]]
    return out.reshape(n * ho * wo, -1)


def _dx_reference(x, f, dy, stride, pad, dil):
    """The classic dX: one GEMM into the patch gradients, then col2im."""
    n, h, w, c = x.shape
    fh, fw, _, k = f.shape
    _, ho, wo, _ = dy.shape
    dcols = dy.reshape(-1, k) @ f.reshape(-1, k).T
    dxpad = col2im(np, dcols, (n, h + pad[0] + pad[1], w + pad[2] + pad[3], c), fh, fw, dil,
                   stride, ho, wo)
    return dxpad[:, pad[0]:pad[0] + h, pad[2]:pad[2] + w]


GEOMETRIES = [
    # (n, h, w, c, fh, fw, k, stride, pad, dilate)
    (2, 7, 6, 3, 3, 3, 4, (1, 1), (1, 1, 1, 1), (1, 1)),
    (2, 9, 8, 20, 5, 5, 6, (1, 1), (2, 2, 2, 2), (1, 1)),
    (2, 9, 8, 17, 3, 2, 5, (1, 1), (0, 2, 1, 0), (1, 1)),
    (1, 10, 9, 18, 3, 3, 4, (2, 3), (1, 0, 2, 1), (1, 1)),
    (2, 11, 10, 16, 3, 3, 3, (1, 1), (2, 1, 0, 2), (2, 2)),
    (3, 6, 5, 16, 1, 1, 7, (1, 1), (0, 0, 0, 0), (1, 1)),
    (3, 4, 3, 5, 4, 3, 6, (1, 1), (0, 0, 0, 0), (1, 1)),
    (2, 5, 5, 4, 1, 1, 3, (2, 2), (0, 0, 0, 0), (1, 1)),
    (2, 7, 9, 5, 3, 2, 4, (1, 1), (1, 2, 0, 1), (2, 3)),   # dilated, asymmetric padding
]


@pytest.mark.parametrize("geom", GEOMETRIES)
def test_im2col_matches_loops(geom):
    n, h, w, c, fh, fw, k, stride, pad, dil = geom
    xpad = RNG.standard_normal((n, h + pad[0] + pad[1], w + pad[2] + pad[3], c))
    ho = (xpad.shape[1] - ((fh - 1) * dil[0] + 1)) // stride[0] + 1
    wo = (xpad.shape[2] - ((fw - 1) * dil[1] + 1)) // stride[1] + 1
    np.testing.assert_array_equal(im2col(np, xpad, fh, fw, dil, stride, ho, wo),
                                  _im2col_loop(xpad, fh, fw, dil, stride, ho, wo))


@pytest.mark.parametrize("geom", GEOMETRIES)
@pytest.mark.parametrize("use_ws", [False, True])
def test_conv_fast_paths_match_generic(geom, use_ws, kern, block, threads):
    n, h, w, c, fh, fw, k, stride, pad, dil = geom
    x = RNG.standard_normal((n, h, w, c))
    f = RNG.standard_normal((fh, fw, c, k))
    b = RNG.standard_normal(k)
    ws = Workspace() if use_ws else None
    y_ref, cols_ref = conv_forward(np, x, f, b, stride, pad, dil, fast=False)
    for _ in range(2):  # the second round reuses the workspace's buffers
        if ws is not None and block == "kept":
            ws.start_pass(1 << 20)
        y, cols = conv_forward(np, x, f, b, stride, pad, dil, ws=ws, key="c", threads=threads)
        if ws is not None and block == "kept" and (stride, fh * fw) != ((1, 1), 1):
            assert cols is not None and cols.shape == (y.size // k, fh * fw * c)
        np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
        dy = RNG.standard_normal(y.shape)
        dx_ref = _dx_reference(x, f, dy, stride, pad, dil)
        _, df_ref, db_ref = conv_backward(np, x, f, b, dy, cols_ref, stride, pad, dil,
                                          method="col2im")
        methods = ["col2im", None]
        if dx_method(x.shape, f.shape, stride, pad, dil) == "tconv":
            methods.append("tconv")
        if conv_module.implicit_dx_ok(np, x.shape, f.shape, stride, pad, dil):
            methods.append("implicit")
        for method in methods:
            dx, df, db = conv_backward(np, x, f, b, dy, cols, stride, pad, dil, ws=ws, key="c",
                                       method=method, kern=kern, threads=threads)
            np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-10, err_msg=str(method))
            np.testing.assert_allclose(df, df_ref, rtol=1e-10, atol=1e-10)
            np.testing.assert_allclose(db, db_ref, rtol=1e-12, atol=1e-12)


def test_dx_method_choice():
    assert dx_method((2, 8, 8, 32), (5, 5, 32, 32), (1, 1), (2, 2, 2, 2), (1, 1)) == "tconv"
    assert dx_method((2, 8, 8, 3), (5, 5, 3, 32), (1, 1), (2, 2, 2, 2), (1, 1)) == "col2im"
    assert dx_method((2, 8, 8, 32), (3, 3, 32, 8), (2, 2), (0, 0, 0, 0), (1, 1)) == "col2im"
    assert dx_method((2, 4, 4, 64), (4, 4, 64, 64), (1, 1), (0, 0, 0, 0), (1, 1)) == "gemm"
    assert dx_method((2, 6, 6, 64), (1, 1, 64, 10), (1, 1), (0, 0, 0, 0), (1, 1)) == "gemm"


def _pool_loop(x, method, pool, stride, pad):
    """MatConvNet's pooling by loops: in-image cells only; first max in column-major scan."""
    n, h, w, c = x.shape
    (ph, pw), (sy, sx), (pt, pb, pl, pr) = pool, stride, pad
    ho, wo = (h + pt + pb - ph) // sy + 1, (w + pl + pr - pw) // sx + 1
    y = np.zeros((n, ho, wo, c))
    arg = np.zeros((n, ho, wo, c, 2), int)
    for i in range(ho):
        for j in range(wo):
            cells = [(i * sy - pt + u, j * sx - pl + v) for v in range(pw) for u in range(ph)]
            cells = [(a, e) for a, e in cells if 0 <= a < h and 0 <= e < w]
            vals = np.stack([x[:, a, e] for a, e in cells])  # (cells, n, c), scan order
            if method == "avg":
                y[:, i, j] = vals.mean(axis=0)
            else:
                first = vals.argmax(axis=0)  # argmax returns the first maximum
                y[:, i, j] = vals.max(axis=0)
                arg[:, i, j] = np.array(cells)[first]
    return y, arg, cells


def _pool_grad_loop(x, dy, method, pool, stride, pad):
    n, h, w, c = x.shape
    (ph, pw), (sy, sx), (pt, pl) = pool, stride, (pad[0], pad[2])
    _, arg, _ = _pool_loop(x, method, pool, stride, pad)
    dx = np.zeros_like(x)
    _, ho, wo, _ = dy.shape
    for i in range(ho):
        for j in range(wo):
            cells = [(i * sy - pt + u, j * sx - pl + v) for v in range(pw) for u in range(ph)]
            cells = [(a, e) for a, e in cells if 0 <= a < h and 0 <= e < w]
            if method == "avg":
                for a, e in cells:
                    dx[:, a, e] += dy[:, i, j] / len(cells)
            else:
                for nn in range(n):
                    for cc in range(c):
                        a, e = arg[nn, i, j, cc]
                        dx[nn, a, e, cc] += dy[nn, i, j, cc]
    return dx


POOLS = [
    ((2, 2), (2, 2), (0, 0, 0, 0)),     # disjoint fast path
    ((2, 3), (2, 3), (0, 0, 0, 0)),     # disjoint, rectangular
    ((3, 3), (2, 2), (1, 1, 1, 1)),     # seed320
    ((3, 3), (2, 2), (0, 1, 0, 1)),     # lenet_cifar
    ((2, 2), (1, 1), (0, 0, 0, 0)),
    ((1, 3), (1, 2), (0, 0, 1, 2)),
    ((3, 1), (3, 1), (0, 0, 0, 0)),
]


@pytest.mark.parametrize("geom", POOLS)
@pytest.mark.parametrize("method", ["max", "avg"])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pool_paths_match_loops(geom, method, ties, dtype, kern, threads):
    pool, stride, pad = geom
    x = RNG.standard_normal((2, 7, 8, 3))
    if ties:  # few distinct values: many windows have several maxima
        x = np.round(x).clip(-1, 1)
    x = x.astype(dtype)
    y_ref, _, _ = _pool_loop(x, method, pool, stride, pad)
    dy = RNG.standard_normal(y_ref.shape).astype(dtype)
    dx_ref = _pool_grad_loop(x, dy, method, pool, stride, pad)
    tol = 1e-12 if dtype == np.float64 else 1e-6
    ws = Workspace()
    for fast in (False, True) if kern is None else (True,):
        for _ in range(2):
            y, aux = pool_forward(np, x, method, pool, stride, pad, ws=ws, key=fast, fast=fast,
                                  kern=kern, threads=threads)
            assert y.dtype == dtype
            np.testing.assert_allclose(y, y_ref, rtol=tol, atol=tol)
            dx = pool_backward(np, x, y, aux, dy, method, pool, stride, pad, ws=ws, key=fast,
                               fast=fast, kern=kern, threads=threads)
            assert dx.dtype == dtype
            np.testing.assert_allclose(dx, dx_ref, rtol=tol, atol=tol,
                                       err_msg=f"fast={fast}")


def test_workspace_reuses_only_free_buffers():
    ws = Workspace()
    a = ws.empty(np, "k", (3, 4), np.float32)
    b = ws.empty(np, "k", (3, 4), np.float32)
    assert a is not b                       # a is still held
    a_id = id(a)
    del a
    c = ws.empty(np, "k", (3, 4), np.float32)
    assert id(c) == a_id                    # a was free again
    view = c[1:]
    del c
    d = ws.empty(np, "k", (3, 4), np.float32)
    assert d.base is None and not np.shares_memory(d, view)  # a view keeps its base busy
    del b, d
    e = ws.empty(np, "k", (5,), np.float64)  # another shape replaces a free buffer
    assert e.shape == (5,) and e.dtype == np.float64


@pytest.mark.parametrize("spec", ["specs/lenet_cifar.yaml", "specs/lenet_mnist.yaml"])
def test_results_survive_later_calls(spec):
    """Reused buffers never overwrite results the caller still holds."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    net = layerspec.load(str(root / spec))
    h, w, c = net.spec.input
    x1 = RNG.standard_normal((4, h, w, c)).astype(np.float32)
    x2 = RNG.standard_normal((4, h, w, c)).astype(np.float32)
    y = np.arange(4) % 10
    r1 = layerspec.simplenn(net, x1, dzdy=1.0, labels=y)
    snap = [(r.x.copy(), None if r.dzdx is None else np.array(r.dzdx),
             [np.array(d) for d in r.dzdw]) for r in r1]
    for xx in (x2, x1, x2):
        layerspec.simplenn(net, xx, dzdy=1.0, labels=y)
    for r, (sx, sd, sw) in zip(r1, snap, strict=True):
        np.testing.assert_array_equal(r.x, sx)
        if sd is not None:
            np.testing.assert_array_equal(r.dzdx, sd)
        for a, b in zip(r.dzdw, sw, strict=True):
            np.testing.assert_array_equal(a, b)
    # and a fresh net (no reuse yet) gives the same numbers as the reused buffers
    r2 = layerspec.simplenn(net, x1, dzdy=1.0, labels=y)
    fresh = layerspec.simplenn(net.to("numpy"), x1, dzdy=1.0, labels=y)
    for a, b in zip(r2, fresh, strict=True):
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.dzdx, b.dzdx)


def test_training_skips_only_the_unused_input_derivative():
    """simplenn(input_grad=False) leaves res[0].dzdx None and changes no weight derivative."""
    import layerspec

    spec = {"input": [9, 9, 3], "layers": [
        {"type": "conv", "weights": ["randn(3,3,3,4,'single')", "randn(1,4,'single')"],
         "pad": 1},
        {"type": "relu"},
        {"type": "conv", "weights": ["randn(9,9,4,5,'single')", "zeros(1,5,'single')"]},
        {"type": "softmaxloss"}]}
    net = layerspec.load(spec, seed=2)
    x = np.random.default_rng(0).standard_normal((3, 9, 9, 3)).astype(np.float32)
    y = np.array([0, 4, 2])
    full = layerspec.simplenn(net, x, dzdy=1.0, labels=y)
    lean = layerspec.simplenn(net, x, dzdy=1.0, labels=y, input_grad=False)
    assert full[0].dzdx is not None and lean[0].dzdx is None
    for a, b in zip(full[:-1], lean[:-1], strict=True):
        for wa, wb in zip(a.dzdw, b.dzdw, strict=True):
            np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(full[1].dzdx, lean[1].dzdx)


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_kernel_matches_generic(dtype, kern, in_place, threads):
    from layerspec.layers import Context
    from layerspec.layers.activations import ReLU

    x = np.round(RNG.standard_normal((3, 5, 4, 6)), 1).astype(dtype)  # exact zeros too
    dy = RNG.standard_normal(x.shape).astype(dtype)
    layer = ReLU(name="r")
    be = backend_for(kern, threads)
    dy[0, 0, 0, :2] = np.nan       # NaN * 0 stays NaN, as MatConvNet's dzdy .* (x > 0)
    x[0, 0, 0, :2] = (-1, 1)
    expected = dy * (x > 0)
    ctx = Context(backend=be, workspace=Workspace(), in_place=in_place)
    dx, _ = layer.backward(x, np.maximum(x, 0), None, [], dy, ctx)
    assert dx.dtype == dtype
    assert (dx is dy) == in_place
    np.testing.assert_array_equal(dx, expected)


def _sgd_reference(w, g, m, momentum, decay, lr):
    """cnn_train's update, written the allocating way (MatConvNet's order of operations)."""
    t = w.dtype.type
    m = -(g + t(decay) * w) if m is None else t(momentum) * m - (g + t(decay) * w)
    return w + t(lr) * m, m


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decay", [0.0, 5e-4])
def test_sgd_in_place_matches_formula(dtype, decay, kern, threads):
    """Both in-place SGD paths (generic and the fused kernel) give cnn_train's numbers bit
    for bit, over three steps."""
    from layerspec.train import TrainOptions, apply_update, init_solver_state

    spec = {"input": [6, 6, 2], "layers": [
        {"type": "conv", "weights": ["randn(3,3,2,4)", "zeros(1,4)"], "learningRate": [1, 2],
         "weightDecay": [1, 0]},
        {"type": "relu"},
        {"type": "conv", "weights": ["randn(4,4,4,3)", "zeros(1,3)"]},
        {"type": "softmaxloss"}],
        "train": {"learningRate": 0.01, "momentum": 0.9, "weightDecay": decay}}
    net = layerspec.load(spec, backend=backend_for(kern, threads), seed=3)
    net.weights = [[w.astype(dtype) for w in ws] for ws in net.weights]
    opts = TrainOptions.resolve(net)
    state = init_solver_state(net, opts.solver)
    ref_w = [[w.copy() for w in ws] for ws in net.weights]
    ref_m = [[None for _ in ws] for ws in net.weights]
    for _ in range(3):
        grads = [[RNG.standard_normal(w.shape).astype(dtype) for w in ws] for ws in net.weights]
        apply_update(net, grads, state, opts, 0.01)
        for i, layer in enumerate(net.layers):
            lrs = layer.learningRate or (1.0, 1.0)
            wds = layer.weightDecay or (1.0, 1.0)
            for j in range(len(ref_w[i])):
                ref_w[i][j], ref_m[i][j] = _sgd_reference(
                    ref_w[i][j], grads[i][j], ref_m[i][j], 0.9, decay * wds[j], 0.01 * lrs[j])
                np.testing.assert_array_equal(net.weights[i][j], ref_w[i][j])
                np.testing.assert_array_equal(state[i][j]["m"], ref_m[i][j])
                assert net.weights[i][j].dtype == dtype


def test_net_copies_the_callers_weights():
    """Training updates net.weights in place: the arrays a caller passed in stay as they were."""
    f = RNG.standard_normal((3, 3, 2, 4)).astype(np.float32)
    spec = {"input": [5, 5, 2], "layers": [
        {"type": "conv", "weights": [f, np.zeros(4, np.float32)]}, {"type": "softmaxloss"}]}
    net = layerspec.load(spec)
    assert not np.shares_memory(net.weights[0][0], f)


def test_implicit_conv_is_chosen_for_large_images_only():
    big, small = (2, 160, 160, 64), (100, 16, 16, 32)
    f5 = (5, 5, 64, 64)
    same = (2, 2, 2, 2)
    if not conv_module.fast_accumulate(np):
        pytest.skip("NumPy's own BLAS is not reachable (layerspec/hostblas.py)")
    assert conv_module.implicit_ok(np, big, f5, (1, 1), same, (1, 1))
    assert conv_module.implicit_dx_ok(np, big, f5, (1, 1), same, (1, 1))
    assert dx_method(big, f5, (1, 1), same, (1, 1), np) == "implicit"
    assert not conv_module.implicit_ok(np, small, (5, 5, 32, 32), (1, 1), same, (1, 1))
    assert not conv_module.implicit_ok(np, big, f5, (2, 2), same, (1, 1))       # strided
    assert not conv_module.implicit_ok(np, (2, 160, 160, 3), (5, 5, 3, 64), (1, 1), same,
                                       (1, 1))                                     # few channels


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hostblas_gemm_layouts(dtype):
    """NumPy's own BLAS through ctypes: plain and transposed operands, row-strided slices,
    accumulation; refuses (returns False) what BLAS cannot take."""
    from layerspec import hostblas

    if not hostblas.gemm_accumulate_available():
        pytest.skip("NumPy's own BLAS is not reachable")
    a = RNG.standard_normal((40, 30)).astype(dtype)
    b = RNG.standard_normal((30, 20)).astype(dtype)
    big = RNG.standard_normal((50, 26)).astype(dtype)
    c = RNG.standard_normal((40, 20)).astype(dtype)
    c0 = c.copy()
    assert hostblas.gemm(c, a, b, 1.0)
    np.testing.assert_allclose(c, c0 + a @ b, rtol=1e-5)
    out = np.empty((30, 20), dtype)
    assert hostblas.gemm(out, a.T, c, 0.0)
    np.testing.assert_allclose(out, a.T @ c, rtol=1e-5)
    view = big[5:45, 3:23]                              # rows of a wider array
    c2 = np.zeros((40, 30), dtype)
    assert hostblas.gemm(c2, view, b.T, 0.0)
    np.testing.assert_allclose(c2, view @ b.T, rtol=1e-5)
    assert not hostblas.gemm(c2, a, b, 0.0)                               # shapes disagree
    assert not hostblas.gemm(np.zeros((40, 10), dtype), a, b[:, ::2], 0.0)  # no unit stride
    assert not hostblas.gemm(c.astype(np.float16), a, b, 0.0)


def test_workspace_keep_budget():
    from layerspec.workspace import KEEP_LAYER_BYTES, NO_WORKSPACE

    ws = Workspace()
    assert not ws.keep(1)                      # no pass started: nothing is kept
    ws.start_pass(100)
    assert ws.keep(60) and not ws.keep(60) and ws.keep(40) and not ws.keep(1)
    ws.start_pass(2 * KEEP_LAYER_BYTES)
    assert not ws.keep(KEEP_LAYER_BYTES + 1)   # one layer's limit
    assert ws.keep(KEEP_LAYER_BYTES)
    ws.start_pass(0)                           # forward only: nothing to keep for
    assert not ws.keep(1)
    assert not NO_WORKSPACE.keep(1)


def test_training_pass_keeps_small_patches_only():
    """simplenn gives a training pass a keep budget (conv patches ride along in res.aux);
    a test-mode pass keeps nothing."""
    spec = {"input": [16, 16, 3], "layers": [
        {"type": "conv", "weights": ["randn(5,5,3,8)", "zeros(1,8)"], "pad": 2},
        {"type": "relu"},
        {"type": "conv", "weights": ["randn(16,16,8,4)", "zeros(1,4)"]},
        {"type": "softmaxloss"}]}
    net = layerspec.load(spec, seed=1)
    x = RNG.standard_normal((4, 16, 16, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 3])
    res = layerspec.simplenn(net, x, dzdy=1.0, labels=labels)
    assert res[1].aux is not None and res[1].aux.shape == (4 * 16 * 16, 75)
    test = layerspec.simplenn(net, x, labels=labels, mode="test")
    assert test[1].aux is None
    np.testing.assert_array_equal(test[-1].x, res[-1].x)


def test_numba_kernels_can_be_switched_off(monkeypatch):
    from layerspec import backend as be_module

    monkeypatch.setenv("LAYERSPEC_NUMBA", "0")
    be_module.cpu_kernels.cache_clear()
    try:
        assert be_module.cpu_kernels() is None
        fresh = be_module.Backend("numpy", np, host_threads=1)
        assert fresh.kernels is None and fresh.describe() == "numpy"
        two = be_module.Backend("numpy", np, host_threads=2)
        assert two.describe() == "numpy (2 host threads)"
    finally:
        monkeypatch.delenv("LAYERSPEC_NUMBA")
        be_module.cpu_kernels.cache_clear()
    assert be_module.NUMPY_GENERIC.kernels is None
