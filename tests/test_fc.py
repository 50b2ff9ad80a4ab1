"""The ``fc`` layer: a conv whose filter covers the whole input — gradients, equality with
``conv``, MatConvNet's flatten order, PyTorch's ``nn.Linear`` default init, the seed article's
MLP spec, and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_gradcheck import check_grads, make_net

import layerspec
from layerspec.errors import ShapeError, SpecError
from layerspec.layers import Conv, Fc
from layerspec.net import read_weights, save_weights

SPECS = Path(__file__).resolve().parent.parent / "specs"
R = np.random.default_rng(31)


@pytest.mark.parametrize("shape", [(1, 1, 6), (3, 2, 4)])
def test_fc_gradients(shape):
    net = make_net([{"type": "fc", "units": 5}],
                   [[R.standard_normal(shape + (5,)), R.standard_normal(5)]], shape)
    check_grads(net, R.standard_normal((3,) + shape))


def test_fc_without_bias_gradients():
    net = make_net([{"type": "fc", "units": 3}], [[R.standard_normal((2, 2, 2, 3)), np.zeros(0)]],
                   (2, 2, 2))
    check_grads(net, R.standard_normal((2, 2, 2, 2)))


def test_fc_is_the_conv_covering_its_input():
    shape = (4, 3, 2)
    f, b = R.standard_normal(shape + (7,)), R.standard_normal(7)
    x = R.standard_normal((5,) + shape)
    dy = R.standard_normal((5, 1, 1, 7))
    fc = make_net([{"type": "fc", "units": 7}], [[f, b]], shape)
    layer = fc.layers[0]
    conv_layer = layer.as_conv()
    assert isinstance(conv_layer, Conv) and conv_layer.name == layer.name
    assert conv_layer.stride == (1, 1) and conv_layer.pad == (0, 0, 0, 0)
    conv = layerspec.load({"input": list(shape), "layers": [conv_layer]},
                          weights=[layer.conv_weights([f, b])]).astype(np.float64)
    rf, rc = layerspec.simplenn(fc, x, dzdy=dy), layerspec.simplenn(conv, x, dzdy=dy)
    np.testing.assert_allclose(rf[1].x, rc[1].x, rtol=1e-12)
    np.testing.assert_allclose(rf[0].dzdx, rc[0].dzdx, rtol=1e-12)
    for a, c in zip(rf[0].dzdw, rc[0].dzdw, strict=True):
        np.testing.assert_allclose(a.reshape(c.shape), c, rtol=1e-12)
    assert fc.info()[0].out_shape == (1, 1, 7)


def test_matrix_initializer_is_read_h_fastest():
    """A (H*W*C) x units initializer is reshaped as Matlab's reshape(A, H, W, C, units)."""
    spec = {"input": [2, 3, 4], "layers": [
        {"type": "fc", "units": 2, "weights": ["(1:24)' * [1 10]", "zeros(1,2)"]}]}
    f = layerspec.load(spec).weights[0][0]
    assert f.shape == (2, 3, 4, 2)
    h, w, c = np.meshgrid(range(2), range(3), range(4), indexing="ij")
    np.testing.assert_array_equal(f[..., 0], 1 + h + 2 * w + 6 * c)
    np.testing.assert_array_equal(f[..., 1], 10 * (1 + h + 2 * w + 6 * c))


def test_default_init_is_pytorch_linear_and_the_matlab_expressions():
    fc = layerspec.load({"input": [1, 1, 10], "layers": [{"type": "fc", "units": 5}]}, seed=4)
    f, b = fc.weights[0]
    assert f.shape == (1, 1, 10, 5) and b.shape == (5,) and f.dtype == np.float32
    assert np.abs(f).max() <= 1 / np.sqrt(10) and np.abs(b).max() <= 1 / np.sqrt(10)
    written = layerspec.load({"input": [1, 1, 10], "layers": [{"type": "conv", "weights": [
        "(2*rand(1,1,10,5,'single')-1)/sqrt(10)", "(2*rand(1,5,'single')-1)/sqrt(10)"]}]}, seed=4)
    for a, c in zip(fc.weights[0], written.weights[0], strict=True):
        np.testing.assert_array_equal(a, c)


def test_fan_in_is_the_whole_input():
    net = layerspec.load({"input": [4, 4, 8], "layers": [
        {"type": "conv", "weights": ["randn(3,3,8,6,'single')", "zeros(1,6,'single')"]},
        {"type": "relu"}, {"type": "fc", "units": 3}]})
    assert net.weights[2][0].shape == (2, 2, 6, 3)
    assert 0.8 / np.sqrt(24) < np.abs(net.weights[2][0]).max() <= 1 / np.sqrt(24)


def test_agrees_with_pytorch_linear():
    torch = pytest.importorskip("torch")
    lin = torch.nn.Linear(10, 5)
    x = R.standard_normal((6, 10)).astype(np.float32)
    f = lin.weight.detach().numpy().T.reshape(1, 1, 10, 5)
    net = layerspec.load({"input": [1, 1, 10], "layers": [{"type": "fc", "units": 5}]},
                         weights=[[f, lin.bias.detach().numpy()]])
    y = layerspec.simplenn(net, x.reshape(6, 1, 1, 10))[1].x
    np.testing.assert_allclose(y.reshape(6, 5), lin(torch.tensor(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)


def test_weights_file_round_trip(tmp_path):
    net = layerspec.load({"input": [2, 2, 3], "layers": [{"type": "fc", "units": 4}]}, seed=1)
    path = tmp_path / "w.npz"
    save_weights(path, net.spec, net.host_weights())
    back = layerspec.load(net.spec, weights=str(path))
    x = R.standard_normal((3, 2, 2, 3)).astype(np.float32)
    np.testing.assert_array_equal(layerspec.simplenn(back, x)[1].x,
                                  layerspec.simplenn(net, x)[1].x)
    layer = back.layers[0]
    f, _ = layer.conv_weights(read_weights(path, net.spec)[0], (2, 2, 3))
    np.testing.assert_array_equal(f, net.weights[0][0])


@pytest.mark.parametrize("layer, shape, message", [
    ({"type": "fc", "units": 2, "weights": ["randn(1,1,3,2)", "zeros(1,2)"]}, [2, 2, 3],
     "must cover the whole input 2x2x3: write 2x2x3x2"),
    ({"type": "fc", "units": 2, "weights": ["randn(2,2,3,2)", "zeros(1,3)"]}, [2, 2, 3],
     "2 units need 2 biases"),
    ({"type": "fc", "units": 0}, [1, 1, 3], "units: must be >= 1"),
    ({"type": "fc"}, [1, 1, 3], "missing required field 'units'"),
])
def test_errors(layer, shape, message):
    with pytest.raises(SpecError, match=message):
        layerspec.load({"input": shape, "layers": [layer]})


def test_default_init_after_a_misfit_names_the_misfit():
    with pytest.raises(ShapeError, match="layer 1 \\(conv"):
        layerspec.load({"input": [2, 2, 3], "layers": [
            {"type": "conv", "weights": ["randn(5,5,3,4)", "zeros(1,4)"]},
            {"type": "fc", "units": 2}]})


def test_seed_mlp_spec_is_the_pytorch_net_and_trains():
    net = layerspec.load(SPECS / "seed_mlp.yaml")
    assert [(layer.type, layer.name) for layer in net.layers] == [
        ("fc", "fc1"), ("dropout", "dropout1"), ("relu", "relu"), ("fc", "fc2"),
        ("softmaxloss", "loss")]
    assert isinstance(net.layers[0], Fc) and net.weights[0][0].shape == (1, 1, 10, 5)
    assert net.weights[3][0].shape == (1, 1, 5, 2)
    from layerspec.data import load_data  # noqa: PLC0415

    ds = load_data(net.spec.data, input_shape=net.spec.input, base_dir=SPECS, seed=0)
    stats = layerspec.train(net, (ds.x_train, ds.y_train), val=(ds.x_test, ds.y_test),
                            numEpochs=8)
    assert stats[-1]["val"]["top1err"] < 0.25
