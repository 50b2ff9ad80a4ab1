"""The layer types of issue 10 (bnorm, normalize/lrn, convt, noffset, spnorm, pdist, and the
vl_nnloss options of `loss`): float64 central-difference gradient checks, the spec rules that
come with them, a replay of two real cnn_train steps with a bnorm layer
(bnorm_sgd_steps.mat), the new specs, and NumPy/CuPy agreement (skipped without a GPU)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from refcases import compare, load_mat, replay_setup, to_host
from test_gradcheck import RNG, check_grads, make_net, rand

import layerspec
from layerspec.backend import cupy_status
from layerspec.errors import ShapeError, SpecError
from layerspec.matconvnet import layer_weights, raw_spec_from_net
from layerspec.shapes import infer
from layerspec.spec import spec_from_source
from layerspec.train import Trainer, TrainOptions

SPECS = Path(__file__).resolve().parent.parent / "specs"


def check_grads_except(net, x, skip=(), labels=None, mode="normal", n_samples=20, tol=1e-6):
    """check_grads, leaving out the (layer, weight) pairs in ``skip`` (bnorm's moments, whose
    "derivative" is the batch [mu sigma])."""
    return check_grads(net, x, labels=labels, mode=mode, n_samples=n_samples, tol=tol,
                       skip=skip)


# ----------------------------------------------------------------------------------------
# bnorm
# ----------------------------------------------------------------------------------------

def bnorm_net(c=3, eps=1e-5, moments=None):
    m = moments if moments is not None else np.column_stack([rand(c), 1 + RNG.random(c)])
    return make_net([{"type": "bnorm", "epsilon": eps}],
                    [[1 + 0.2 * rand(c), 0.3 * rand(c), m]], (4, 3, c))


@pytest.mark.parametrize("mode", ["normal", "test"])
def test_bnorm_gradients(mode):
    """mode test: the true derivative with the moments frozen (not MatConvNet's)."""
    net = bnorm_net()
    x = rand(2, 4, 3, 3) + 0.5
    res = check_grads_except(net, x, skip={(0, 2)}, mode=mode)
    # the third entry is the batch [mu sigma], in both modes (cnn_train's moving average)
    flat = x.transpose(0, 2, 1, 3).reshape(-1, 3)
    want = np.column_stack([flat.mean(0), np.sqrt(flat.var(0) + 1e-5)])
    np.testing.assert_allclose(to_host(res[0].dzdw[2]), want, rtol=1e-12)
    assert res[0].dzdw[2].shape == (3, 2)


def test_bnorm_inside_a_net_gradients():
    layers = [{"type": "conv", "pad": 1}, {"type": "bnorm"}, {"type": "relu"},
              {"type": "conv"}, {"type": "softmaxloss"}]
    weights = [[0.5 * rand(3, 3, 2, 4), np.zeros(0)],
               [1 + 0.1 * rand(4), 0.1 * rand(4), np.zeros((4, 2))], [],
               [0.5 * rand(5, 4, 4, 3), rand(3)], []]
    net = make_net(layers, weights, (5, 4, 2))
    check_grads_except(net, rand(3, 5, 4, 2), skip={(1, 2)}, labels=np.array([0, 2, 1]))


def test_bnorm_test_mode_uses_stored_moments():
    m = np.array([[0.5, 2.0], [-1.0, 0.5]])
    net = bnorm_net(c=2, moments=m)
    x = rand(2, 4, 3, 2)
    g, b, _ = net.weights[0]
    y = layerspec.simplenn(net, x, mode="test")[1].x
    np.testing.assert_allclose(y, g * (x - m[:, 0]) / m[:, 1] + b, rtol=1e-12)


def test_bnorm_one_pass_variance_in_float32():
    """MatConvNet's float32 E[x^2] - E[x]^2 (README (j)): a large common part loses digits,
    and the variance is clamped at 0, never negative."""
    x = (1000 + np.array([0.0, 0.0, 0.0, 1e-4], np.float32)).reshape(4, 1, 1, 1)
    net = layerspec.load({"layers": [{"type": "bnorm"}]},
                         weights=[[np.ones(1, np.float32), np.zeros(1, np.float32),
                                   np.zeros((1, 2), np.float32)]])
    res = layerspec.simplenn(net, x, dzdy=np.ones_like(x))
    mu, sigma = res[0].dzdw[2][0]
    s, s2 = np.float32(0), np.float32(0)
    for v in x.ravel():  # MatConvNet's sequential float32 sums
        s, s2 = s + v, s2 + v * v
    mu_ref = s / np.float32(4)
    var = max(np.float32(0), s2 / np.float32(4) - mu_ref * mu_ref)
    assert mu == mu_ref
    assert sigma == np.sqrt(var + np.float32(1e-5))
    assert res[1].x.dtype == np.float32


def test_bnorm_spec_weights_two_or_three():
    spec = {"input": [4, 4, 5], "layers": [{"type": "bnorm",
                                            "weights": ["ones(5,1,'single')", "zeros(5,1)"]}]}
    net = layerspec.load(spec)
    assert [w.shape for w in net.weights[0]] == [(5,), (5,), (5, 2)]
    assert not net.weights[0][2].any()
    assert net.layers[0].weights[2].expr == "zeros(5,2,'single')"
    # canonical: tidying the canonical form again changes nothing
    assert layerspec.load(net.spec.to_dict()).spec == net.spec
    # vars are known when the moments are made
    spec = {"vars": {"c": 3}, "layers": [{"type": "bnorm",
                                           "weights": ["ones(c,1)", "zeros(c,1)"]}]}
    assert layerspec.load(spec).weights[0][2].shape == (3, 2)
    # arrays (a ported net) without moments get zeros too
    net = layerspec.load({"layers": [{"type": "bnorm", "weights": [np.ones((2, 1)),
                                                                    np.zeros((2, 1))]}]})
    assert net.weights[0][2].shape == (2, 2)
    # moments given as 2C numbers are read column-major, as Matlab does
    spec = {"layers": [{"type": "bnorm",
                        "weights": ["ones(2,1)", "zeros(2,1)", "[1 2 3 4]"]}]}
    np.testing.assert_array_equal(layerspec.load(spec).weights[0][2], [[1, 3], [2, 4]])


def test_bnorm_spec_errors():
    with pytest.raises(SpecError, match="expected 3 entries"):
        layerspec.load({"layers": [{"type": "bnorm", "weights": ["ones(2,1)"]}]})
    with pytest.raises(ShapeError, match="3 channels but g has 2"):
        layerspec.load({"input": [2, 2, 3], "layers": [
            {"type": "bnorm", "weights": ["ones(2,1)", "zeros(2,1)"]}]})
    # cnn_mnist_init's weightDecay [0 0] (two entries) is fine; learningRate needs three
    layerspec.load({"layers": [{"type": "bnorm", "weights": ["ones(2,1)", "zeros(2,1)"],
                                "weightDecay": [0, 0], "learningRate": [1, 1, 0.05]}]})
    with pytest.raises(SpecError, match="learningRate: expected 3"):
        layerspec.load({"layers": [{"type": "bnorm", "weights": ["ones(2,1)", "zeros(2,1)"],
                                    "learningRate": [1, 1]}]})


def test_trainer_moving_average_of_moments():
    net = layerspec.load({"layers": [{"type": "bnorm", "learningRate": [1, 1, 0.25],
                                      "weightDecay": [0, 0]}, {"type": "softmaxloss"}]},
                         weights=[[np.ones(3, np.float32), np.zeros(3, np.float32),
                                   np.full((3, 2), 2.0, np.float32)], []])
    x = RNG.standard_normal((6, 2, 2, 3)).astype(np.float32)
    y = RNG.integers(0, 3, size=6)
    res = layerspec.simplenn(net, x, dzdy=1.0, labels=y)
    batch = res[0].dzdw[2].copy()
    trainer = Trainer(net, TrainOptions(batchSize=6, learningRate=(0.1,), weightDecay=0.5))
    trainer.train_epoch(1, x, y, order=np.arange(6))
    np.testing.assert_allclose(net.weights[0][2], 0.75 * 2.0 + 0.25 * batch, rtol=1e-6)
    assert trainer.state[0][2] == {}  # no momentum, no decay for the moments


@pytest.fixture(scope="module")
def bnorm_steps():
    return load_mat("bnorm_sgd_steps")


def test_bnorm_sgd_steps_replay(bnorm_steps):
    """Two real cnn_train steps: g, b and the other weights by SGD with momentum, the
    moments by moving average with the layer's learningRate(3) = 0.1."""
    ref = bnorm_steps
    net, trainer, x, y, order = replay_setup(ref)
    for step in (1, 2):
        stats = trainer.train_epoch(step, x, y, order=order[step - 1])
        assert stats.objective == pytest.approx(float(ref[f"step{step}_loss"].item()), rel=1e-5)
        after = [layer.get("weights", []) for layer in
                 raw_spec_from_net(ref[f"net_after{step}"])["layers"]]
        for i, layer in enumerate(net.layers):
            for j, w in enumerate(net.weights[i]):
                what = f"step{step} {layer.type} weights[{i}][{j}]"
                compare(w, after[i][j], what, rtol=1e-6, atol_scale=1e-6)
                mom = ref[f"momentum_after{step}"][i][j]
                if layer.type == "bnorm" and j == 2 or w.size == 0:
                    assert trainer.state[i][j] == {}, what  # Matlab's momentum stays 0 / []
                    assert np.asarray(mom).size <= 1 and not np.asarray(mom).any(), what
                    continue
                mom = (layer_weights(layer.type, ref[f"momentum_after{step}"][i])[j]
                       if layer.type != "bnorm" else np.asarray(mom).ravel())
                compare(trainer.state[i][j]["m"], mom, f"step{step} momentum[{i}][{j}]",
                        rtol=1e-5, atol_scale=1e-5)
        # the moments: exactly 0.9 * before + 0.1 * batch moments, in float32
        before = [layer.get("weights", []) for layer in raw_spec_from_net(
            ref["net_before" if step == 1 else "net_after1"])["layers"]]
        batch = layer_weights("bnorm", ref[f"step{step}_dzdw"][1])[2]
        want = before[1][2] * np.float32(0.9) + np.float32(0.1) * batch
        compare(net.weights[1][2], want, f"step{step} moments", rtol=1e-6, atol_scale=1e-7)


# ----------------------------------------------------------------------------------------
# normalize / lrn
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("ltype", ["normalize", "lrn"])
@pytest.mark.parametrize("param", [[5, 1, 0.3, 0.75], [4, 2, 0.5, 0.5], [1, 1.5, 0.2, 0.8],
                                   [8, 1, 0.1, 0.75]])
def test_lrn_gradients(ltype, param):
    net = make_net([{"type": ltype, "param": param}], [[]], (3, 2, 6))
    check_grads(net, rand(2, 3, 2, 6))


def test_lrn_window_even_n_extends_upwards():
    """N = 4: channel k sees [k-1, k+2] (README (g)); alpha not divided by N."""
    net = make_net([{"type": "lrn", "param": [4, 2, 0.5, 0.5]}], [[]], (1, 1, 6))
    x = rand(1, 1, 1, 6)
    y = layerspec.simplenn(net, x)[1].x
    for k in range(6):
        s = sum(x[0, 0, 0, q] ** 2 for q in range(max(k - 1, 0), min(k + 2, 5) + 1))
        assert y[0, 0, 0, k] == pytest.approx(x[0, 0, 0, k] * (2 + 0.5 * s) ** -0.5,
                                              rel=1e-12)


def test_lrn_default_param_and_errors():
    layer = layerspec.load({"layers": [{"type": "normalize"}]}).layers[0]
    assert layer.param == (5.0, 1.0, 0.0001 / 5, 0.75)
    with pytest.raises(SpecError, match="expected 4 numbers"):
        layerspec.load({"layers": [{"type": "lrn", "param": [5, 1, 0.1]}]})
    with pytest.raises(SpecError, match="whole number"):
        layerspec.load({"layers": [{"type": "lrn", "param": [2.5, 1, 0.1, 0.75]}]})


# ----------------------------------------------------------------------------------------
# convt
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [
    dict(upsample=1, crop=0, groups=1, f=(3, 3, 4, 3), x=(2, 4, 5, 3)),
    dict(upsample=2, crop=[0, 1, 0, 1], groups=1, f=(4, 4, 3, 3), x=(2, 4, 3, 3)),
    dict(upsample=[2, 3], crop=[1, 1, 0, 2], groups=2, f=(3, 4, 2, 4), x=(2, 3, 3, 4)),
    dict(upsample=1, crop=[1, 1, 0, 2], groups=2, f=(3, 3, 3, 6), x=(1, 5, 4, 6)),
])
def test_convt_gradients(cfg):
    layer = {"type": "convt", "upsample": cfg["upsample"], "crop": cfg["crop"],
             "numGroups": cfg["groups"]}
    f = rand(*cfg["f"])
    net = make_net([layer], [[f, rand(cfg["f"][2] * cfg["groups"])]], cfg["x"][1:])
    check_grads(net, rand(*cfg["x"]))


def test_convt_is_the_adjoint_of_conv():
    """<convt(x), z> = <x, conv(z)> with the same filter bank read as conv filters."""
    f = rand(3, 4, 2, 5)  # convt: [h w out in] = conv: [h w in out]
    x = rand(2, 4, 3, 5)
    ct = make_net([{"type": "convt", "upsample": [2, 1], "crop": [1, 0, 0, 2]}],
                  [[f, np.zeros(0)]], (4, 3, 5))
    y = layerspec.simplenn(ct, x)[1].x
    z = rand(*y.shape)
    cv = make_net([{"type": "conv", "stride": [2, 1], "pad": [1, 0, 0, 2]}],
                  [[f, np.zeros(0)]], y.shape[1:])
    back = layerspec.simplenn(cv, z)[1].x
    assert back.shape == x.shape
    assert float((y * z).sum()) == pytest.approx(float((x * back).sum()), rel=1e-12)


def test_convt_shapes_and_errors():
    net = layerspec.load({"input": [5, 4, 6], "layers": [
        {"type": "convt", "upsample": 2, "crop": [0, 1, 0, 1], "numGroups": 2,
         "weights": ["randn(4,4,3,6)", "zeros(1,6)"]}]})
    assert net.info()[0].out_shape == (11, 9, 6)
    bad = [({"numGroups": 4}, "zeros(1,12)", "numGroups 4 must divide"),
           ({"crop": 9}, "zeros(1,6)", "smaller than 1"),
           ({}, "zeros(1,3)", "needs 6 biases")]
    for extra, bias, msg in bad:
        layer = {"type": "convt", "numGroups": 2, **extra,
                 "weights": ["randn(4,4,3,6)", bias]}
        with pytest.raises(ShapeError, match=msg):
            layerspec.load({"input": [5, 4, 6], "layers": [layer]})
    with pytest.raises(SpecError, match="numGroups must be >= 1"):
        layerspec.load({"layers": [{"type": "convt", "numGroups": 0,
                                    "weights": ["randn(4,4,3,6)", "[]"]}]})
    with pytest.raises(ShapeError, match="4th dimension"):
        layerspec.load({"input": [5, 4, 5], "layers": [
            {"type": "convt", "weights": ["randn(4,4,3,6)", "[]"]}]})


# ----------------------------------------------------------------------------------------
# noffset, spnorm, pdist
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("param", [[1, 0.5], [0.3, 1.5], [2, -0.5]])
def test_noffset_gradients(param):
    net = make_net([{"type": "noffset", "param": param}], [[]], (3, 4, 5))
    check_grads(net, rand(2, 3, 4, 5))


@pytest.mark.parametrize("param", [[3, 3, 0.5, 0.75], [4, 2, 0.3, 0.5], [1, 5, 1, 1]])
def test_spnorm_gradients(param):
    net = make_net([{"type": "spnorm", "param": param}], [[]], (6, 5, 2))
    check_grads(net, rand(2, 6, 5, 2))


@pytest.mark.parametrize("opts", [
    {"p": 2}, {"p": 2, "noRoot": True}, {"p": 1}, {"p": 1, "noRoot": True}, {"p": 3},
    {"p": 1.5, "noRoot": True}, {"p": 2, "aggregate": True}, {"p": 3, "aggregate": True},
    {"p": 2, "instanceWeights": 0.5}, {"p": 1, "aggregate": True, "instanceWeights": [2]},
])
@pytest.mark.parametrize("target", ["full", "vector"])
def test_pdist_gradients(opts, target):
    net = make_net([{"type": "pdist", "epsilon": 1e-12, **opts}], [[]], (3, 4, 5))
    x = rand(2, 3, 4, 5)
    x0 = rand(2, 3, 4, 5) if target == "full" else rand(2, 1, 1, 5)
    check_grads(net, x, labels=x0)


def test_pdist_fields_and_errors():
    layer = layerspec.load({"layers": [{"type": "pdist"}]}).layers[0]
    assert (layer.p, layer.noRoot, layer.aggregate, layer.epsilon) == (2.0, False, False, 1e-3)
    layer = layerspec.load({"layers": [{"type": "pdist", "noRoot": 1, "aggregate": True}]})
    assert layer.layers[0].noRoot is True and layer.layers[0].aggregate is True
    with pytest.raises(SpecError, match="expected true or false"):
        layerspec.load({"layers": [{"type": "pdist", "noRoot": "yes please"}]})
    net = layerspec.load({"input": [3, 4, 5], "layers": [{"type": "pdist"}]})
    assert net.info()[0].out_shape == (3, 4, 1)
    with pytest.raises(ShapeError, match="target x0 has shape"):
        layerspec.simplenn(net, rand(2, 3, 4, 5), labels=rand(2, 3, 4, 4))
    with pytest.raises(layerspec.errors.DataError, match="target x0"):
        layerspec.simplenn(net, rand(2, 3, 4, 5))


# ----------------------------------------------------------------------------------------
# loss options
# ----------------------------------------------------------------------------------------

def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def _softmax(a):
    e = np.exp(a - a.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _loss_case(kind, rng_labels):
    n, h, w, k = 3, 2, 3, 6
    x = rand(n, h, w, k)
    if kind in ("binarylog", "logistic", "hinge", "binaryerror"):
        c = np.where(RNG.random((n, h, w, k)) < 0.5, -1.0, 1.0)
        c[0, 1, 2, 1] = 0
        if kind == "binarylog":
            x = _sigmoid(x)
        return x, c
    if kind == "log":
        x = _softmax(x)
    if rng_labels == "image":
        return x, RNG.integers(0, k, size=n)
    c = RNG.integers(0, k, size=(n, h, w))
    c[0, 1, 1] = -1
    return x, c


@pytest.mark.parametrize("kind", ["softmaxlog", "log", "mhinge", "mshinge", "binarylog",
                                  "logistic", "hinge"])
@pytest.mark.parametrize("labels", ["image", "map"])
@pytest.mark.parametrize("weights", [None, [0.7]])
def test_loss_gradients(kind, labels, weights):
    layer = {"type": "loss", "loss": kind}
    if weights is not None:
        layer["instanceWeights"] = weights
    net = make_net([layer], [[]], (2, 3, 6))
    x, c = _loss_case(kind, labels)
    check_grads(net, x, labels=c)


def test_loss_per_channel_instance_weights():
    iw = [0.5, 1, 2, 0, 1, 3]
    net = make_net([{"type": "loss", "loss": "logistic", "instanceWeights": iw}], [[]],
                   (2, 3, 6))
    x, c = _loss_case("logistic", "map")
    check_grads(net, x, labels=c)
    y = float(layerspec.simplenn(net, x, labels=c)[-1].x)
    want = (np.asarray(iw) * (c != 0) * np.log1p(np.exp(-c * x))).sum() / 3
    assert y == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("kind,opts", [("classerror", {}), ("topkerror", {"topK": 2}),
                                       ("binaryerror", {"threshold": 0.1})])
def test_error_losses_have_zero_derivative(kind, opts):
    net = make_net([{"type": "loss", "loss": kind, **opts}], [[]], (2, 3, 6))
    x, c = _loss_case(kind, "map")
    res = layerspec.simplenn(net, x, dzdy=1.0, labels=c)
    assert not np.asarray(res[0].dzdx).any()
    if kind == "classerror":
        want = ((x.argmax(-1) != c) & (c >= 0)).sum() / 3
    elif kind == "topkerror":
        top2 = np.argsort(-x, axis=-1, kind="stable")[..., :2]
        want = (~(top2 == c[..., None]).any(-1) & (c >= 0)).sum() / 3
    else:
        want = ((np.sign(x - 0.1) != c) & (c != 0)).sum() / 3
    assert float(res[-1].x) == pytest.approx(want)


def test_loss_option_errors():
    with pytest.raises(SpecError, match="not allowed"):
        layerspec.load({"layers": [{"type": "loss", "loss": "hingey"}]})
    with pytest.raises(ShapeError, match="topK 5 needs at least 5 classes"):
        layerspec.load({"input": [1, 1, 4], "layers": [{"type": "loss", "loss": "topkerror"}]})
    with pytest.raises(ShapeError, match="one per channel"):
        layerspec.load({"input": [1, 1, 4], "layers": [
            {"type": "loss", "loss": "hinge", "instanceWeights": [1, 2]}]})
    net = layerspec.load({"input": [1, 1, 4], "layers": [{"type": "loss", "loss": "hinge"}]})
    with pytest.raises(layerspec.errors.DataError, match="scores' shape"):
        layerspec.simplenn(net, rand(2, 1, 1, 4).astype(np.float32), labels=np.array([0, 1]))


def test_loss_canonical_form_round_trips():
    spec = layerspec.load({"layers": [{"type": "loss", "loss": "mshinge", "topK": 3,
                                       "instanceWeights": 0.5}]}).spec
    again = layerspec.load(spec.to_dict()).spec
    assert again == spec and again.layers[0].instanceWeights == (0.5,)


# ----------------------------------------------------------------------------------------
# specs
# ----------------------------------------------------------------------------------------

def test_lenet_mnist_bn_spec():
    net = layerspec.load(SPECS / "lenet_mnist_bn.yaml")
    types = [layer.type for layer in net.layers]
    assert types == ["conv", "bnorm", "pool", "conv", "bnorm", "pool", "conv", "bnorm", "relu",
                     "conv", "softmaxloss"]
    for i in (0, 3, 6):
        assert net.weights[i][1].size == 0  # cnn_mnist_init removes the bias before a bnorm
    for i, c in ((1, 20), (4, 50), (7, 500)):
        g, b, m = net.weights[i]
        assert (g == 1).all() and (b == 0).all() and m.shape == (c, 2) and not m.any()
        assert net.layers[i].learningRate == (1, 1, 0.05)
    assert net.info()[-2].out_shape == (1, 1, 10)
    # one training step runs and moves the moments (rate 0.05)
    x = RNG.standard_normal((8, 28, 28, 1)).astype(np.float32)
    y = RNG.integers(0, 10, size=8)
    layerspec.train(net, (x, y), numEpochs=1, batchSize=8)
    assert net.weights[1][2].any()


def test_alexnet_spec_shapes():
    spec, _ = spec_from_source(SPECS / "alexnet.yaml")

    shapes = []  # the filter sizes from the initializers, without drawing 57M numbers
    for layer in spec.layers:
        if layer.type == "conv":
            sizes = tuple(int(v) for v in re.search(r"randn\((\d+),(\d+),(\d+),(\d+)",
                                                    layer.weights[0].expr).groups())
            shapes.append([sizes, (sizes[3],)])
        else:
            shapes.append([])
    infos = infer(spec.layers, shapes, spec.input)
    out = {i.layer.name: i.out_shape for i in infos}
    assert out["conv1"] == (55, 55, 96) and out["pool1"] == (27, 27, 96)
    assert out["conv2"] == (27, 27, 256) and out["pool2"] == (13, 13, 256)
    assert out["conv5"] == (13, 13, 256) and out["pool5"] == (6, 6, 256)
    assert out["fc6"] == (1, 1, 4096) and out["fc8"] == (1, 1, 10)
    # the grouped AlexNet has 60,965,224 parameters; fc8 with 10 outputs saves 4096*990 + 990
    assert sum(i.params for i in infos) == 60_965_224 - 4096 * 990 - 990
    assert [layer.param for layer in spec.layers if layer.type == "normalize"] == \
        [(5, 1, 2e-5, 0.75)] * 2


# ----------------------------------------------------------------------------------------
# NumPy and CuPy agree
# ----------------------------------------------------------------------------------------

GPU_OK, GPU_WHY = cupy_status()

GPU_CASES = [
    ([{"type": "bnorm"}], lambda: [[1 + 0.1 * rand(4), rand(4), np.column_stack(
        [rand(4), 1 + RNG.random(4)])]], (5, 4, 4), None),
    ([{"type": "lrn", "param": [4, 2, 0.5, 0.5]}], lambda: [[]], (5, 4, 6), None),
    ([{"type": "convt", "upsample": 2, "crop": [0, 1, 0, 1], "numGroups": 2}],
     lambda: [[rand(4, 4, 3, 4), rand(6)]], (4, 3, 4), None),
    ([{"type": "noffset", "param": [1, 0.5]}], lambda: [[]], (3, 4, 5), None),
    ([{"type": "spnorm", "param": [4, 2, 0.1, 0.75]}], lambda: [[]], (6, 5, 3), None),
    ([{"type": "pdist", "p": 2}], lambda: [[]], (3, 4, 5), "x0"),
    ([{"type": "loss", "loss": "mshinge"}], lambda: [[]], (2, 3, 6), "classes"),
    ([{"type": "loss", "loss": "logistic"}], lambda: [[]], (2, 3, 6), "binary"),
]


@pytest.mark.gpu
@pytest.mark.skipif(not GPU_OK, reason=GPU_WHY)
@pytest.mark.parametrize("case", GPU_CASES, ids=lambda c: c[0][0]["type"] + "-" + str(c[3]))
@pytest.mark.parametrize("mode", ["normal", "test"])
def test_numpy_and_cupy_agree(case, mode):
    layers, weights, shape, labels = case
    spec = {"input": list(shape), "layers": layers}
    ws = [[np.asarray(w, np.float32) for w in lw] for lw in weights()]
    cpu = layerspec.load(spec, weights=ws)
    gpu = cpu.to("cupy")
    x = RNG.standard_normal((2, *shape)).astype(np.float32)
    lab = {None: None, "x0": RNG.standard_normal((2, *shape)).astype(np.float32),
           "classes": RNG.integers(0, shape[2], size=(2, *shape[:2])),
           "binary": np.sign(RNG.standard_normal((2, *shape))).astype(np.float32)}[labels]
    a = layerspec.simplenn(cpu, x, dzdy=1.0 if cpu.layers[-1].is_loss else
                           np.ones_like(layerspec.simplenn(cpu, x, labels=lab)[1].x),
                           labels=lab, mode=mode)
    b = layerspec.simplenn(gpu, x, dzdy=1.0 if cpu.layers[-1].is_loss else
                           np.ones_like(a[1].x), labels=lab, mode=mode)
    compare(b[1].x, a[1].x, "y", rtol=1e-5, atol_scale=1e-5)
    compare(b[0].dzdx, a[0].dzdx, "dzdx", rtol=1e-5, atol_scale=1e-5)
    for g, c in zip(b[0].dzdw, a[0].dzdw, strict=True):
        compare(g, c, "dzdw", rtol=1e-5, atol_scale=1e-5)
