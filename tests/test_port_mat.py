"""`layerspec port X.mat`: MatConvNet networks -> spec + weights with the same numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
from refcases import BASIC_CASES, DEFAULT_TOL, TOLERANCES, compare, load_case

import layerspec
from layerspec.cli import main
from layerspec.errors import MatFileError, SpecError
from layerspec.matconvnet import labels_from_matlab, loadmat_clean, to_nhwc
from layerspec.port import port, port_mat_spec
from layerspec.spec import spec_from_source

DATA = Path(__file__).resolve().parent / "data" / "matconvnet"


def test_lenet_mnist_port_matches_matconvnet(tmp_path, capsys):
    out = tmp_path / "lenet.yaml"
    assert main(["port", str(DATA / "lenet_mnist.mat"), "-o", str(out)]) == 0
    assert "lenet.npz" in capsys.readouterr().out
    assert (tmp_path / "lenet.npz").exists()
    text = out.read_text()
    assert "weights: lenet.npz" in text
    net = layerspec.load(out)
    assert net.spec.input == (28, 28, 1)
    assert dict(net.spec.train) == {"learningRate": 0.001, "numEpochs": 20, "batchSize": 100}
    mat = loadmat_clean(DATA / "lenet_mnist.mat")
    x = to_nhwc(mat["x"])
    y = labels_from_matlab(mat["labels"], x.shape[0])
    res = layerspec.simplenn(net, x, dzdy=1.0, labels=y, mode=mat["mode"])
    compare(res[-1].x, np.asarray(mat["loss"]), "loss", rec=False)
    compare(res[0].dzdx, to_nhwc(mat["dzdx"]), "dzdx", rec=False)
    # the spec loads with `check` as well
    assert main(["check", str(out)]) == 0


#: left out (see test_reference.py): lrn_net (MatConvNet's CPU LRN is approximate) and
#: bnorm_net_test (MatConvNet's test-mode bnorm backward is not its forward's derivative)
PORT_CASES = (*BASIC_CASES, "bnorm_net", "convt_net", "lenet_mnist_bn")
#: dzdw entries that are theoretically zero (float noise): test_reference's ABSOLUTE_ONLY
NOISE = {"lenet_mnist_bn": {(1, 1), (4, 1)}}


@pytest.mark.parametrize("name", PORT_CASES)
def test_reference_nets_port(name, tmp_path):
    """The reference nets port, and the ported spec + weights give MatConvNet's outputs and
    derivatives."""
    case = load_case(name)
    rtol, atol = TOLERANCES.get(name, DEFAULT_TOL)
    out = tmp_path / f"{name}.yaml"
    try:
        result = port(DATA / f"{name}.mat", out)
    except SpecError as exc:
        pytest.skip(f"a layer type is not implemented here: {exc}")
    net = layerspec.load(out)
    assert [layer.type for layer in net.layers] == case.types
    for ws, ref in zip(net.weights, case.spec["layers"], strict=True):
        for w, r in zip(ws, ref.get("weights", []), strict=True):
            np.testing.assert_array_equal(w, r)
    assert result.weights_path == tmp_path / f"{name}.npz"
    res = layerspec.simplenn(net, case.x, dzdy=case.dzdy, labels=case.labels, mode=case.mode,
                             masks=case.masks)
    compare(res[-1].x, case.loss, "loss", rtol, atol, rec=False)
    compare(res[0].dzdx, case.res_dzdx[0], "dzdx", rtol, atol, rec=False)
    for i, ref in enumerate(case.res_dzdw):
        for j, r in enumerate(ref):
            if (i, j) in NOISE.get(name, ()):
                continue
            compare(res[i].dzdw[j], r, f"dzdw[{i}][{j}]", rtol, atol, rec=False)


def test_nets_under_other_wrappings(tmp_path):
    """A model file (top-level layers/meta) and a cnn_train checkpoint (net/state/stats)."""
    net = sio.loadmat(DATA / "lenet_mnist.mat")["net"]
    model = tmp_path / "model.mat"
    sio.savemat(model, {"layers": net["layers"][0, 0], "meta": net["meta"][0, 0]},
                do_compression=True)
    ckpt = tmp_path / "net-epoch-3.mat"
    sio.savemat(ckpt, {"net": net, "state": {"momentum": np.zeros((1, 1))},
                       "stats": {"train": np.zeros((1, 1))}}, do_compression=True)
    ref, ref_w, _ = port_mat_spec(DATA / "lenet_mnist.mat")
    for src in (model, ckpt):
        spec, weights, notes = port_mat_spec(src)
        assert spec.layers == ref.layers and spec.input == ref.input
        for a, b in zip(weights, ref_w, strict=True):
            for x, y in zip(a, b, strict=True):
                np.testing.assert_array_equal(x, y)
    assert any("checkpoint" in n for n in port_mat_spec(ckpt)[2])


def test_broken_mat_exit_2(tmp_path, capsys):
    src = DATA / "lenet_mnist.mat"
    bad = tmp_path / "truncated.mat"
    bad.write_bytes(src.read_bytes()[:300])
    assert main(["port", str(bad), "-o", str(tmp_path / "o.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"{bad}: error: ")
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"hello, this is not a mat file at all" * 10)
    assert main(["port", str(junk), "-o", str(tmp_path / "o.yaml")]) == 2
    assert "not a MATLAB .mat file" in capsys.readouterr().err
    nonet = tmp_path / "nonet.mat"
    sio.savemat(nonet, {"x": np.zeros((2, 2))})
    assert main(["port", str(nonet), "-o", str(tmp_path / "o.yaml")]) == 2
    assert "no network found" in capsys.readouterr().err
    with pytest.raises(MatFileError):
        port(nonet, tmp_path / "o.yaml")
    assert not (tmp_path / "o.yaml").exists()


def test_ported_spec_names_weights_relative(tmp_path):
    sub = tmp_path / "sub"
    port(DATA / "seed_small.mat", sub / "s.yaml")
    spec, _ = spec_from_source(sub / "s.yaml")
    assert spec.weights == "s.npz"
