"""Float64 central-difference gradient checks of every layer type (inputs and weights) and of
whole small specs. Each check compares the analytic backward pass with
(f(a + h) - f(a - h)) / 2h for f = sum(y * R), R a fixed random projection."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from refcases import to_host

import layerspec

RNG = np.random.default_rng(1234)

#: the backend make_net builds on when none is named; tests/test_gpu.py runs every gradient
#: test of the suite with it set to "cupy" (float64 on the device)
BACKEND = ["numpy"]


@contextlib.contextmanager
def gradient_backend(name):
    """Within the block, make_net builds its nets on backend ``name``."""
    BACKEND.append(name)
    try:
        yield
    finally:
        BACKEND.pop()


def make_net(layers, weights, input_shape, backend=None):
    spec = {"name": "t", "input": list(input_shape), "layers": layers}
    net = layerspec.load(spec, weights=weights, backend=backend or BACKEND[-1])
    return net.astype(np.float64)


def objective(net, x, labels, proj, masks, mode):
    res = layerspec.simplenn(net, x, labels=labels, mode=mode, masks=masks)
    y = to_host(res[-1].x).astype(np.float64)
    return float((y * proj).sum()) if proj is not None else float(y)


def check_grads(net, x, labels=None, masks=None, mode="normal", n_samples=25, tol=1e-6,
                skip=()):
    """Compare dzdx and every dzdw (except the (layer, weight) pairs in ``skip``) with
    central differences; returns the analytic ``res``."""
    res = layerspec.simplenn(net, x, labels=labels, mode=mode, masks=masks)
    top = to_host(res[-1].x)
    proj = None if top.ndim == 0 else RNG.standard_normal(top.shape)
    dzdy = 1.0 if proj is None else proj
    res = layerspec.simplenn(net, x, dzdy=dzdy, labels=labels, mode=mode, masks=masks)

    def f() -> float:
        return objective(net, x, labels, proj, masks, mode)

    def compare(arr, analytic, what):
        flat = arr.reshape(-1)
        idx = RNG.choice(flat.size, size=min(n_samples, flat.size), replace=False)
        h = 1e-6
        scale = max(np.abs(analytic).max(), 1e-3)
        for k in idx:
            old = flat[k]
            flat[k] = old + h
            fp = f()
            flat[k] = old - h
            fm = f()
            flat[k] = old
            num = (fp - fm) / (2 * h)
            got = analytic.reshape(-1)[k]
            assert abs(num - got) <= tol * scale + 1e-7 * abs(num), \
                f"{what}[{k}]: numerical {num:.8g} vs analytic {got:.8g}"

    compare(x, to_host(res[0].dzdx), "dzdx")
    for i, ws in enumerate(net.weights):
        for j, w in enumerate(ws):
            if w.size and (i, j) not in skip:  # a device weight is perturbed in place
                compare(w, to_host(res[i].dzdw[j]), f"dzdw[{i}][{j}]")
    return res


def rand(*shape):
    return RNG.standard_normal(shape)


@pytest.mark.parametrize("cfg", [
    dict(stride=1, pad=0, dilate=1, f=(3, 3, 3, 4), x=(2, 6, 7, 3)),
    dict(stride=[2, 1], pad=[1, 2, 0, 1], dilate=1, f=(3, 2, 3, 5), x=(2, 7, 6, 3)),
    dict(stride=[1, 2], pad=1, dilate=[2, 1], f=(2, 3, 2, 4), x=(2, 6, 8, 2)),
    dict(stride=1, pad=1, dilate=1, f=(3, 3, 2, 6), x=(2, 5, 5, 4)),      # 2 groups
    dict(stride=2, pad=0, dilate=1, f=(5, 4, 3, 3), x=(3, 5, 4, 3)),      # fully connected
])
def test_conv_gradients(cfg):
    layer = {"type": "conv", "stride": cfg["stride"], "pad": cfg["pad"], "dilate": cfg["dilate"]}
    f = rand(*cfg["f"])
    net = make_net([layer], [[f, rand(cfg["f"][3])]], cfg["x"][1:])
    check_grads(net, rand(*cfg["x"]))


def test_conv_without_bias_gradients():
    net = make_net([{"type": "conv", "pad": 1}], [[rand(3, 3, 2, 3), np.zeros(0)]], (5, 4, 2))
    check_grads(net, rand(2, 5, 4, 2))
    res = layerspec.simplenn(net, rand(2, 5, 4, 2), dzdy=rand(2, 5, 4, 3))
    assert res[0].dzdw[1].shape == (0,)


@pytest.mark.parametrize("method", ["max", "avg"])
@pytest.mark.parametrize("geom", [
    dict(pool=[3, 3], stride=2, pad=1),
    dict(pool=[2, 3], stride=[1, 2], pad=[0, 1, 1, 0]),
    dict(pool=[3, 3], stride=2, pad=[0, 1, 0, 1]),
])
def test_pool_gradients(method, geom):
    net = make_net([{"type": "pool", "method": method, **geom}], [[]], (7, 8, 2))
    check_grads(net, rand(2, 7, 8, 2))


@pytest.mark.parametrize("layer", [
    {"type": "relu"}, {"type": "relu", "leak": 0.1}, {"type": "sigmoid"}, {"type": "softmax"},
])
def test_pointwise_gradients(layer):
    net = make_net([layer], [[]], (3, 4, 5))
    check_grads(net, rand(2, 3, 4, 5))


@pytest.mark.parametrize("scaling", ["inverted", "classic"])
@pytest.mark.parametrize("mode", ["normal", "test"])
def test_dropout_gradients_with_fixed_mask(scaling, mode):
    net = make_net([{"type": "dropout", "rate": 0.3, "scaling": scaling}], [[]], (3, 4, 5))
    keep = (RNG.random((2, 3, 4, 5)) >= 0.3).astype(np.float64)
    mask = keep / 0.7 if scaling == "inverted" else keep
    check_grads(net, rand(2, 3, 4, 5), masks={0: mask}, mode=mode)


@pytest.mark.parametrize("ltype", ["softmaxloss", "loss"])
@pytest.mark.parametrize("labels", ["image", "map", "ignore"])
def test_loss_gradients(ltype, labels):
    net = make_net([{"type": ltype}], [[]], (2, 3, 6))
    n = 3
    if labels == "image":
        y = RNG.integers(0, 6, size=n)
    else:
        y = RNG.integers(0, 6, size=(n, 2, 3))
        if labels == "ignore":
            y[0, 1, 2] = -1
            y[2, 0, 0] = -1
    check_grads(net, rand(n, 2, 3, 6), labels=y)


def test_whole_small_spec_gradients():
    layers = [
        {"type": "conv", "stride": 1, "pad": 2},
        {"type": "relu", "leak": 0.05},
        {"type": "pool", "method": "max", "pool": 3, "stride": 2, "pad": 1},
        {"type": "dropout", "rate": 0.5},
        {"type": "conv", "pad": [0, 1, 0, 1]},
        {"type": "pool", "method": "avg", "pool": 2, "stride": 1},
        {"type": "conv"},
        {"type": "softmaxloss"},
    ]
    weights = [[0.3 * rand(5, 5, 3, 4), 0.1 * rand(4)], [], [], [],
               [0.3 * rand(3, 3, 4, 6), 0.1 * rand(6)], [], [0.3 * rand(2, 2, 6, 5), rand(5)], []]
    net = make_net(layers, weights, (8, 8, 3))
    x = rand(2, 8, 8, 3)
    mask = (RNG.random((2, 4, 4, 4)) >= 0.5) * 2.0
    check_grads(net, x, labels=np.array([1, 4]), masks={3: mask})
