"""`layerspec export`: spec (+ weights) or checkpoint -> a MatConvNet SimpleNN .mat."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio

import layerspec
from layerspec.cli import main
from layerspec.errors import SpecError
from layerspec.export import export_mat
from layerspec.matconvnet import load_net
from layerspec.port import port
from layerspec.spec import layer_to_dict, tidy

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "matconvnet"
SPECS = HERE.parent / "specs"


def _canonical(spec):
    return [{k: v for k, v in layer_to_dict(layer).items() if k != "weights"}
            for layer in spec.layers]


def _same_weights(a, b):
    assert len(a) == len(b)
    for wa, wb in zip(a, b, strict=True):
        assert len(wa) == len(wb)
        for x, y in zip(wa, wb, strict=True):
            x, y = np.asarray(x), np.asarray(y)
            assert x.dtype == y.dtype == np.float32
            assert x.shape == y.shape
            assert x.tobytes() == y.tobytes()  # bit-identical


@pytest.mark.parametrize("spec_file", ["lenet_mnist.yaml", "lenet_cifar.yaml"])
def test_export_load_net_round_trip(spec_file, tmp_path, capsys):
    out = tmp_path / "net.mat"
    assert main(["export", str(SPECS / spec_file), "--mat", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    net = layerspec.load(SPECS / spec_file)
    spec, weights = tidy(load_net(out))
    assert _canonical(spec) == _canonical(net.spec)
    assert spec.input == net.spec.input
    if net.spec.meta.get("classes"):
        assert list(spec.meta["classes"]) == list(net.spec.meta["classes"])
    _same_weights(weights, net.host_weights())


def test_exported_file_layout(tmp_path):
    out = export_mat(SPECS / "lenet_mnist.yaml", tmp_path / "net.mat")
    m = sio.loadmat(out, squeeze_me=False, struct_as_record=True)
    assert set(k for k in m if not k.startswith("__")) == {"layers", "meta"}
    layers = m["layers"]
    assert layers.shape == (1, 8) and layers.dtype == object
    conv = layers[0, 0][0, 0]
    assert conv["type"][0] == "conv" and conv["name"][0] == "layer1"
    f, b = conv["weights"][0, 0], conv["weights"][0, 1]
    assert f.dtype == np.float32 and f.shape == (5, 5, 1, 20)
    assert b.dtype == np.float32 and b.shape == (1, 20)
    for key, n in (("stride", 2), ("pad", 4), ("dilate", 2)):
        assert conv[key].dtype == np.float64 and conv[key].shape == (1, n)
    assert conv["opts"].size == 0 and not conv["precious"].any()
    pool = layers[0, 1][0, 0]
    assert pool["method"][0] == "max"
    assert pool["pool"].dtype == np.float64 and pool["pool"].tolist() == [[2.0, 2.0]]
    meta = m["meta"][0, 0]
    assert meta["inputSize"].dtype == np.float64 and meta["inputSize"].tolist() == [[28, 28, 1]]
    names = meta["classes"][0, 0]["name"]
    assert names.shape == (1, 10) and names[0, 1][0] == "Trouser"


def test_export_then_port_same_numbers(tmp_path):
    net = layerspec.load(SPECS / "lenet_mnist.yaml")
    mat = export_mat(net, tmp_path / "net.mat")
    port(mat, tmp_path / "back.yaml")
    back = layerspec.load(tmp_path / "back.yaml")
    _same_weights(back.host_weights(), net.host_weights())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 28, 28, 1)).astype(np.float32)
    y = np.array([0, 4, 9])
    r1 = layerspec.simplenn(net, x, dzdy=1.0, labels=y)
    r2 = layerspec.simplenn(back, x, dzdy=1.0, labels=y)
    np.testing.assert_array_equal(r1[-1].x, r2[-1].x)
    np.testing.assert_array_equal(r1[0].dzdx, r2[0].dzdx)


def test_reference_net_port_export_port(tmp_path):
    """MatConvNet's own file -> spec -> .mat -> spec: the same spec and weights."""
    first = port(DATA / "seed_small_dropout.mat", tmp_path / "a.yaml")
    export_mat(first.spec_path, tmp_path / "a.mat")
    second = port(tmp_path / "a.mat", tmp_path / "b.yaml")
    assert _canonical(first.spec) == _canonical(second.spec)
    _same_weights(layerspec.load(first.spec_path).host_weights(),
                  layerspec.load(second.spec_path).host_weights())


def test_export_checkpoint(tmp_path):
    ckpt_mod = pytest.importorskip("layerspec.checkpoint")
    if not hasattr(ckpt_mod, "save_checkpoint"):
        pytest.skip("no checkpoint writer")
    net = layerspec.load(SPECS / "lenet_mnist.yaml")
    path = ckpt_mod.save_checkpoint(tmp_path / "net-epoch-1.npz", net, None, 1, [])
    out = tmp_path / "c.mat"
    assert main(["export", str(path), "--mat", str(out)]) == 0
    spec, weights = tidy(load_net(out))
    assert _canonical(spec) == _canonical(net.spec)
    _same_weights(weights, net.host_weights())


def test_export_errors(tmp_path, capsys):
    assert main(["export", str(SPECS / "lenet_mnist.yaml"), "--mat",
                 str(tmp_path / "x.txt")]) == 2
    assert "must end in .mat" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "none.yaml"), "--mat", str(tmp_path / "x.mat")]) == 2
    assert "not found" in capsys.readouterr().err
    spec = tmp_path / "classic.yaml"
    spec.write_text("layers:\n  - {type: dropout, scaling: classic}\n")
    with pytest.raises(SpecError, match="no MatConvNet equivalent"):
        export_mat(spec, tmp_path / "c.mat")


@pytest.mark.parametrize("fields, refused", [
    ("", False),
    (", loss: softmaxlog", False),
    (", loss: hinge", True),
    (", loss: topkerror, topK: 2", True),
    (", instanceWeights: 2", True)])
def test_export_refuses_loss_options(tmp_path, capsys, fields, refused):
    """vl_simplenn calls vl_nnloss without options: a loss layer that needs them cannot be
    exported (exit 2, naming the option) instead of silently computing something else."""
    spec = tmp_path / "loss.yaml"
    spec.write_text("input: [1, 1, 3]\nlayers:\n  - {type: loss" + fields + "}\n")
    rc = main(["export", str(spec), "--mat", str(tmp_path / "l.mat")])
    err = capsys.readouterr().err
    assert rc == (2 if refused else 0), err
    assert ("no MatConvNet SimpleNN equivalent" in err) == refused


@pytest.mark.parametrize("name", ["bnorm_net", "convt_net", "lrn_net"])
def test_other_layer_types_round_trip(name, tmp_path):
    """bnorm, convt and normalize layers (when layerspec implements them) export too."""
    try:
        first = port(DATA / f"{name}.mat", tmp_path / "a.yaml")
    except SpecError as exc:
        pytest.skip(f"layer type not implemented here: {exc}")
    export_mat(first.spec_path, tmp_path / "a.mat")
    second = port(tmp_path / "a.mat", tmp_path / "b.yaml")
    assert _canonical(first.spec) == _canonical(second.spec)
    _same_weights(layerspec.load(first.spec_path).host_weights(),
                  layerspec.load(second.spec_path).host_weights())
