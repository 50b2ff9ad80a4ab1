"""The CuPy backend (issue 5): every test here is marked ``gpu`` and needs a usable CuPy GPU.

Without one each test is skipped *inside* the ``cupy`` fixture, with the reason
``layerspec.backend.cupy_status()`` gives, so ``pytest --collect-only -m gpu`` lists them on
any machine and CI reports them as skipped. Run them with ``python -m pytest -q -m gpu`` (or
``bash tools/gpu_check.sh``, which also runs the benchmark).

* every MatConvNet reference case (float32 and float64), through the helpers of
  ``test_reference.py`` with ``backend="cupy"``;
* every layer's gradient check (``test_*gradient*`` in test_gradcheck, test_layers_extra,
  test_fc and test_lstm), run as written with their nets built on CuPy in float64;
* NumPy and CuPy agree within float32 tolerance over several training steps (dropout masks
  are drawn on the host, so both backends use the same ones), for SGD and Adam;
* a checkpoint written on one backend resumes on the other (``layerspec run --backend``);
* ``--backend auto`` picks CuPy and says so.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest
import test_fastpaths
import test_fc
import test_gradcheck
import test_layers_extra
import test_lstm
import test_reference
from refcases import compare, to_host
from tinyspec import tiny_spec

import layerspec
from layerspec import checkpoint as ck
from layerspec.backend import cupy_status, get_backend
from layerspec.cli import main
from layerspec.errors import DataError
from layerspec.train import Trainer, TrainOptions

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="session")
def cupy():
    """The CuPy module; skips the test (with cupy_status()'s reason) when no GPU is usable."""
    ok, why = cupy_status()
    if not ok:
        pytest.skip(f"no usable CuPy GPU: {why}")
    import cupy as cp  # noqa: PLC0415

    return cp


# ----------------------------------------------------------------------------------------
# the backend itself
# ----------------------------------------------------------------------------------------

def test_cupy_backend_basics(cupy):
    be = get_backend("cupy")
    assert be.name == "cupy" and be.xp is cupy and be.on_device
    a = be.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert isinstance(a, cupy.ndarray) and a.dtype == np.float32
    back = be.to_numpy(a * 2)
    assert isinstance(back, np.ndarray) and back.tolist() == [[0, 2, 4], [6, 8, 10]]
    assert be.to_numpy(np.float32(3)).item() == 3  # host values pass through
    # host draws: the same generator state gives the same numbers on both backends
    u = be.uniform(np.random.default_rng(5), (3, 4), np.float32)
    assert isinstance(u, cupy.ndarray) and u.dtype == np.float32
    np.testing.assert_array_equal(be.to_numpy(u),
                                  np.random.default_rng(5).random((3, 4), dtype=np.float32))
    be.synchronize()
    auto = get_backend("auto")
    assert auto.name == "cupy" and auto.describe().startswith("cupy (auto: CuPy ")


def test_net_moves_between_backends(cupy):
    net = layerspec.load(str(Path(__file__).resolve().parents[1] / "specs" / "lenet_mnist.yaml"),
                         seed=1)
    gpu = net.to("cupy")
    assert gpu.backend.name == "cupy" and gpu.dtype == net.dtype
    assert all(isinstance(w, cupy.ndarray) for ws in gpu.weights for w in ws)
    for a, b in zip(net.host_weights(), gpu.to("numpy").host_weights(), strict=True):
        for wa, wb in zip(a, b, strict=True):
            np.testing.assert_array_equal(wa, wb)


@pytest.mark.parametrize("where", ["host", "device"])
def test_out_of_range_labels_raise_on_cupy(cupy, where):
    """The loss layer's label check: on the host copy when the labels came from the host
    (no device read-back per step), on the device array otherwise."""
    net = layerspec.load({"input": [1, 1, 3], "layers": [{"type": "softmaxloss"}]},
                         backend="cupy")
    x = np.zeros((2, 1, 1, 3), np.float32)
    labels = np.array([0, 3])
    if where == "device":
        labels = cupy.asarray(labels)
    with pytest.raises(DataError, match="label 3 is out of range for 3 classes"):
        layerspec.simplenn(net, x, dzdy=1.0, labels=labels)


# ----------------------------------------------------------------------------------------
# MatConvNet's reference numbers on CuPy
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", test_reference.CASES)
def test_reference_on_cupy(cupy, name):
    test_reference.test_reference(name, backend="cupy")


@pytest.mark.parametrize("name", test_reference.F64_CASES)
def test_reference_float64_on_cupy(cupy, name):
    test_reference.test_reference_float64(name, backend="cupy")


# ----------------------------------------------------------------------------------------
# the opt-in CUDA kernels (layerspec/gpukernels.py) against the generic path
# ----------------------------------------------------------------------------------------

@pytest.fixture
def gpu_kernels_on(cupy, monkeypatch):
    """``LAYERSPEC_CUPY_KERNELS=1`` for this test: new CuPy backends use the kernels."""
    from layerspec import backend as be_module

    monkeypatch.setenv("LAYERSPEC_CUPY_KERNELS", "1")
    be_module.gpu_kernels.cache_clear()
    yield be_module.gpu_kernels()
    be_module.gpu_kernels.cache_clear()


def test_gpu_kernels_are_opt_in(cupy, monkeypatch):
    from layerspec import backend as be_module

    monkeypatch.delenv("LAYERSPEC_CUPY_KERNELS", raising=False)
    be_module.gpu_kernels.cache_clear()
    try:
        assert get_backend("cupy").kernels is None
        monkeypatch.setenv("LAYERSPEC_CUPY_KERNELS", "1")
        be_module.gpu_kernels.cache_clear()
        be = get_backend("cupy")
        assert be.kernels is not None and "CUDA kernels" in be.describe()
    finally:
        be_module.gpu_kernels.cache_clear()


@pytest.mark.parametrize("geom", test_fastpaths.POOLS)
@pytest.mark.parametrize("method", ["max", "avg"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gpu_pool_kernels_match_loops(cupy, gpu_kernels_on, geom, method, dtype):
    from layerspec.layers.pool import pool_backward, pool_forward

    pool, stride, pad = geom
    rng = np.random.default_rng(3)
    x = np.round(rng.standard_normal((2, 7, 8, 3))).clip(-1, 1).astype(dtype)  # many ties
    y_ref, _, _ = test_fastpaths._pool_loop(x, method, pool, stride, pad)
    dy = rng.standard_normal(y_ref.shape).astype(dtype)
    dx_ref = test_fastpaths._pool_grad_loop(x, dy, method, pool, stride, pad)
    xd = cupy.asarray(x)
    y, aux = pool_forward(cupy, xd, method, pool, stride, pad, kern=gpu_kernels_on)
    dx = pool_backward(cupy, xd, y, aux, cupy.asarray(dy), method, pool, stride, pad,
                       kern=gpu_kernels_on)
    tol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(to_host(y), y_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(to_host(dx), dx_ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("geom", test_fastpaths.GEOMETRIES)
def test_gpu_col2im_kernel_matches_generic(cupy, gpu_kernels_on, geom):
    from layerspec.layers.conv import conv_backward

    n, h, w, c, fh, fw, k, stride, pad, dil = geom
    rng = np.random.default_rng(4)
    x = rng.standard_normal((n, h, w, c))
    f = rng.standard_normal((fh, fw, c, k))
    b = rng.standard_normal(k)
    ho = (h + pad[0] + pad[1] - ((fh - 1) * dil[0] + 1)) // stride[0] + 1
    wo = (w + pad[2] + pad[3] - ((fw - 1) * dil[1] + 1)) // stride[1] + 1
    dy = rng.standard_normal((n, ho, wo, k))
    ref, _, _ = conv_backward(np, x, f, b, dy, None, stride, pad, dil, method="col2im")
    got, _, _ = conv_backward(cupy, cupy.asarray(x), cupy.asarray(f), cupy.asarray(b),
                              cupy.asarray(dy), None, stride, pad, dil, method="col2im",
                              kern=gpu_kernels_on)
    np.testing.assert_allclose(to_host(got), ref, rtol=1e-10, atol=1e-10)


def test_gpu_relu_and_sgd_kernels(cupy, gpu_kernels_on):
    rng = np.random.default_rng(5)
    y = np.maximum(np.round(rng.standard_normal((3, 4, 5, 6)), 1), 0).astype(np.float32)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = cupy.empty(y.shape, cupy.float32)
    gpu_kernels_on.relu_backward(cupy.asarray(y), cupy.asarray(dy), dx)
    np.testing.assert_array_equal(to_host(dx), dy * (y > 0))
    d = cupy.asarray(dy)
    gpu_kernels_on.relu_backward_in_place(cupy.asarray(y), d)
    np.testing.assert_array_equal(to_host(d), dy * (y > 0))
    w, g, m = (rng.standard_normal(50).astype(np.float32) for _ in range(3))
    wd, md = cupy.asarray(w), cupy.asarray(m)
    t = np.float32
    gpu_kernels_on.sgd_momentum(wd, cupy.asarray(g), md, t(0.9), t(5e-4), t(0.01))
    m_ref = t(0.9) * m - (t(5e-4) * w + g)
    np.testing.assert_allclose(to_host(md), m_ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(to_host(wd), w + t(0.01) * m_ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", test_reference.CASES)
def test_reference_on_cupy_kernels(cupy, gpu_kernels_on, name):
    """Every MatConvNet reference case through the CUDA kernels."""
    test_reference.test_reference(name, backend="cupy")


# ----------------------------------------------------------------------------------------
# every gradient check, with the nets on CuPy (float64)
# ----------------------------------------------------------------------------------------

_PARAM_SET = type(pytest.param(None))


def _expand(fn):
    """The calls pytest makes of ``fn``: ``[(id, kwargs, marks)]`` from its parametrize
    marks (their cross product)."""
    calls = [([], {}, [])]
    for mark in getattr(fn, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        names = mark.args[0]
        names = [s.strip() for s in names.split(",")] if isinstance(names, str) else list(names)
        ids = mark.kwargs.get("ids")
        grown = []
        for k, value in enumerate(mark.args[1]):
            marks, pid = [], None
            if isinstance(value, _PARAM_SET):
                marks, pid = list(value.marks), value.id
                value = value.values if len(names) > 1 else value.values[0]
            values = tuple(value) if len(names) > 1 else (value,)
            if pid is None:
                if callable(ids):
                    pid = ids(value)
                elif ids is not None:
                    pid = ids[k]
                elif len(names) == 1 and isinstance(value, str | int | float):
                    pid = str(value)
                else:
                    pid = f"{names[0]}{k}"
            for cid, kwargs, cmarks in calls:
                grown.append((cid + [str(pid)], {**kwargs, **dict(zip(names, values,
                                                                       strict=True))},
                              cmarks + marks))
        calls = grown
    return calls


def _gradient_tests():
    out = []
    for module in (test_gradcheck, test_layers_extra, test_fc, test_lstm):
        short = module.__name__.removeprefix("test_")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if not (name.startswith("test_") and "gradient" in name
                    and fn.__module__ == module.__name__):
                continue
            for cid, kwargs, marks in _expand(fn):
                tid = f"{short}.{name.removeprefix('test_')}" + (f":{'-'.join(cid)}"
                                                                 if cid else "")
                out.append(pytest.param(fn, kwargs, id=tid, marks=marks))
    return out


GRADIENT_TESTS = _gradient_tests()


def test_every_gradient_test_is_covered():
    """No gradient test module lost its tests (the list above is built by introspection)."""
    names = {p.id.split(":")[0] for p in GRADIENT_TESTS}
    for want in ("gradcheck.conv_gradients", "gradcheck.pool_gradients",
                 "gradcheck.whole_small_spec_gradients", "layers_extra.bnorm_gradients",
                 "layers_extra.lrn_gradients", "layers_extra.convt_gradients",
                 "layers_extra.pdist_gradients", "layers_extra.loss_gradients",
                 "fc.fc_gradients", "lstm.stacked_lstm_classifier_gradients"):
        assert want in names, want


@pytest.mark.parametrize("test, kwargs", GRADIENT_TESTS)
def test_gradients_on_cupy(cupy, test, kwargs):
    with test_gradcheck.gradient_backend("cupy"):
        net = test_gradcheck.make_net([{"type": "relu"}], [[]], (1, 1, 1))
        assert net.backend.name == "cupy" and net.dtype == np.float64
        test(**kwargs)


# ----------------------------------------------------------------------------------------
# training: NumPy and CuPy agree step by step
# ----------------------------------------------------------------------------------------

TRAIN_SPEC = {
    "name": "gpu_agree",
    "input": [10, 10, 3],
    "layers": [
        {"type": "conv", "pad": 1,
         "weights": ["0.2*randn(3,3,3,6,'single')", "0.1*randn(1,6,'single')"]},
        {"type": "bnorm", "weights": ["ones(6,1,'single')", "zeros(6,1,'single')"],
         "learningRate": [1, 1, 0.1], "weightDecay": [0, 0]},
        {"type": "relu"},
        {"type": "pool", "method": "max", "pool": 3, "stride": 2, "pad": [0, 1, 0, 1]},
        {"type": "dropout", "rate": 0.3},
        {"type": "conv", "weights": ["0.2*randn(5,5,6,4,'single')", "zeros(1,4,'single')"]},
        {"type": "softmaxloss"},
    ],
}


def _train(backend, solver, x, y, epochs=2):
    net = layerspec.load(TRAIN_SPEC, backend=backend, seed=3)
    opts = TrainOptions.resolve(net, batchSize=8, numEpochs=epochs, learningRate=[0.05],
                                solver=solver, randomSeed=7)
    trainer = Trainer(net, opts)
    steps = []
    for epoch in range(1, epochs + 1):
        trainer.train_epoch(epoch, x, y,
                            on_batch=lambda b, nb, st: steps.append((st.objective, st.top1err)))
    return net, trainer, steps


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_training_steps_agree(cupy, solver):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((32, 10, 10, 3)).astype(np.float32)
    y = rng.integers(0, 4, 32)
    cpu, tcpu, scpu = _train("numpy", solver, x, y)
    gpu, tgpu, sgpu = _train("cupy", solver, x, y)
    assert gpu.backend.name == "cupy" and len(scpu) == len(sgpu) == 8
    for k, ((la, ea), (lb, eb)) in enumerate(zip(scpu, sgpu, strict=True)):
        assert lb == pytest.approx(la, rel=1e-4, abs=1e-6), f"step {k + 1}: objective"
        assert abs(ea - eb) <= 1.0 / 8 + 1e-9, f"step {k + 1}: top-1 error"  # at most one flip
    for i, (wa, wb) in enumerate(zip(cpu.host_weights(), gpu.host_weights(), strict=True)):
        for j, (a, b) in enumerate(zip(wa, wb, strict=True)):
            assert b.dtype == a.dtype
            compare(b, a, f"weights[{i}][{j}]", rtol=1e-3, atol_scale=1e-4)
    sa, sb = tcpu.state_arrays(), tgpu.state_arrays()
    assert sa.keys() == sb.keys() and sa
    for key in sa:
        compare(sb[key], sa[key], f"solver state {key}", rtol=1e-3, atol_scale=1e-3)


# ----------------------------------------------------------------------------------------
# `layerspec run --backend`: checkpoints cross backends; auto says what it chose
# ----------------------------------------------------------------------------------------

RUN_SPEC = tiny_spec("gpu_run", epochs=2, dropout=True, solver="adam")


def _cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k.startswith(("w", "opt_"))}


@pytest.mark.parametrize("first, second", [("numpy", "cupy"), ("cupy", "numpy")])
def test_checkpoint_resumes_on_the_other_backend(cupy, tmp_path, capsys, first, second):
    spec = tmp_path / "gpu_run.yaml"
    spec.write_text(RUN_SPEC)
    mixed, plain = tmp_path / "mixed", tmp_path / "plain"
    rc, out, err = _cli(capsys, "run", spec, "--out", mixed, "--backend", first, "--epochs", 1)
    assert rc == 0, err
    assert re.search(rf"parameters, {first}[ ;]", out), out
    rc, out, err = _cli(capsys, "run", spec, "--out", mixed, "--backend", second)
    assert rc == 0, err
    assert re.search(rf"parameters, {second}[ ;]", out) and "resuming from" in out, out
    rc, out, err = _cli(capsys, "run", spec, "--out", plain, "--backend", first)
    assert rc == 0, err
    a, b = _arrays(mixed / "net-epoch-2.npz"), _arrays(plain / "net-epoch-2.npz")
    assert a.keys() == b.keys() and any(k.startswith("opt_") for k in a)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        compare(a[k], b[k], k, rtol=1e-3, atol_scale=1e-4)


def test_backend_auto_picks_cupy_and_says_so(cupy, tmp_path, capsys):
    spec = tmp_path / "gpu_run.yaml"
    spec.write_text(RUN_SPEC)
    rc, out, err = _cli(capsys, "run", spec, "--out", tmp_path / "auto", "--backend", "auto",
                        "--epochs", 1)
    assert rc == 0, err
    m = re.search(r"parameters, (\w+)", out)
    assert m is not None and m.group(1) == "cupy", out
    ckpt = ck.load_checkpoint(tmp_path / "auto" / "net-epoch-1.npz")
    net = ck.net_from_checkpoint(ckpt, backend="auto")
    assert net.backend.name == "cupy" and "auto: CuPy" in net.backend.describe()
    res = layerspec.simplenn(net, np.zeros((2, 8, 8, 1), np.float32), labels=np.array([0, 1]),
                             mode="test")
    assert np.isfinite(float(to_host(res[-1].x)))
