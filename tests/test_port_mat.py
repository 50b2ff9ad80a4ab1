"""`layerspec port X.mat`: MatConvNet networks -> spec + weights with the same numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
from refcases import (
    BASIC_CASES,
    DEFAULT_TOL,
    TOLERANCES,
    compare,
    convert_dzdw,
    load_case,
    tensors,
)

import layerspec
from layerspec.cli import main
from layerspec.errors import MatFileError, SpecError
from layerspec.matconvnet import (
    labels_from_matlab,
    layer_weights,
    loadmat_clean,
    raw_spec_from_net,
    to_nhwc,
)
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


#: lrn_net and bnorm_net_test are compared as test_reference.py does: see
#: test_reference_nets_port_special
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


def _port_and_run(name, tmp_path):
    case = load_case(name)
    out = tmp_path / f"{name}.yaml"
    port(DATA / f"{name}.mat", out)
    net = layerspec.load(out)
    assert [layer.type for layer in net.layers] == case.types
    for ws, ref in zip(net.weights, case.spec["layers"], strict=True):
        for w, r in zip(ws, ref.get("weights", []), strict=True):
            np.testing.assert_array_equal(w, r)
    res = layerspec.simplenn(net, case.x, dzdy=case.dzdy, labels=case.labels, mode=case.mode,
                             masks=case.masks)
    return case, res


def test_lrn_net_ports(tmp_path):
    """MatConvNet's CPU LRN uses an approximate pow(): compare with the exact-arithmetic
    reference (README (g)), as test_reference.py does."""
    case, res = _port_and_run("lrn_net", tmp_path)
    raw = case.raw
    compare(res[-1].x, raw["loss_exact"], "loss (exact)", rec=False)
    ref_x, ref_dzdx = tensors(raw["res_x_exact"]), tensors(raw["res_dzdx_exact"])
    for i, (rx, rd) in enumerate(zip(ref_x, ref_dzdx, strict=True)):
        compare(res[i].x, rx, f"res_x[{i}] (exact)", rec=False)
        compare(res[i].dzdx, rd, f"res_dzdx[{i}] (exact)", rec=False)
    for i, ref in enumerate(convert_dzdw(raw["res_dzdw_exact"], case.spec)):
        for j, r in enumerate(ref):
            compare(res[i].dzdw[j], r, f"dzdw[{i}][{j}] (exact)", rec=False)


def test_bnorm_net_test_ports(tmp_path):
    """Test-mode bnorm: MatConvNet's forward numbers; dzdx against the true test-mode
    derivative dzdx_frozen_moments_f64 (README (e)), as test_reference.py does."""
    case, res = _port_and_run("bnorm_net_test", tmp_path)
    assert case.mode == "test"
    compare(res[-1].x, case.loss, "loss", rec=False)
    for i, rx in enumerate(case.res_x):
        compare(res[i].x, rx, f"res_x[{i}]", rec=False)
    compare(res[0].dzdx, to_nhwc(case.raw["dzdx_frozen_moments_f64"]), "dzdx (frozen)",
            rec=False)


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


def _sgd_checkpoint(tmp_path):
    """A cnn_train checkpoint net-epoch-1.mat from sgd_two_steps: net_after1 with
    momentum_after1 as state.solverState (a never-updated cell as cnn_train's 0)."""
    ref = sio.loadmat(DATA / "sgd_two_steps.mat")
    solver_state = ref["momentum_after1"].copy()
    solver_state[0, 1] = np.zeros((1, 1))  # the relu's (empty) cell as the scalar 0
    ckpt = tmp_path / "net-epoch-1.mat"
    stats = {"train": {"objective": ref["step1_loss"], "top1err": np.ones((1, 1)),
                       "num": np.full((1, 1), 4.0)}}
    net = {"layers": ref["net_after1"]["layers"][0, 0],  # its meta is an empty struct
           "meta": {"inputSize": np.array([[12.0, 12, 3]])}}
    sio.savemat(ckpt, {"net": net, "state": {"solverState": solver_state}, "stats": stats},
                do_compression=True)
    return ckpt


def test_checkpoint_momentum_carried_over(tmp_path, capsys):
    from layerspec.checkpoint import find_latest
    from layerspec.train import Trainer, TrainOptions

    ref = loadmat_clean(DATA / "sgd_two_steps.mat")
    src = _sgd_checkpoint(tmp_path)
    out, runs = tmp_path / "ported.yaml", tmp_path / "runs"
    assert main(["port", str(src), "-o", str(out), "--resume-dir", str(runs)]) == 0
    assert "continues at epoch 2" in capsys.readouterr().err
    ckpt, skipped = find_latest(runs)
    assert ckpt is not None and not skipped and ckpt.epoch == 1
    assert ckpt.path == runs / "net-epoch-1.npz"
    net = layerspec.load(out)
    assert ckpt.spec_digest == net.spec.digest()  # `layerspec run ported.yaml` resumes it
    assert ckpt.stats[0]["train"]["objective"] == pytest.approx(ref["step1_loss"].item())
    # the momentum, in layerspec's layout
    assert sorted(ckpt.state) == [f"s{i}_{j}_m" for i in (0, 3, 6) for j in (0, 1)]
    for i in (0, 3, 6):
        mom = layer_weights(net.layers[i].type, ref["momentum_after1"][i])
        for j in (0, 1):
            np.testing.assert_array_equal(ckpt.state[f"s{i}_{j}_m"], mom[j])
    # one more cnn_train step from the ported checkpoint reproduces step 2
    h = ref["hyper"]
    opts = TrainOptions.resolve(net, batchSize=4, learningRate=float(h["learningRate"].item()),
                                weightDecay=float(h["weightDecay"].item()),
                                momentum=float(h["momentum"].item()))
    net = layerspec.load(out, weights=ckpt.weights(net.spec))
    trainer = Trainer(net, opts)
    trainer.load_state_arrays(ckpt.state)
    x = to_nhwc(ref["step2_x"])
    trainer.train_epoch(2, x, labels_from_matlab(ref["step2_labels"], 4), order=range(4))
    after = raw_spec_from_net(ref["net_after2"])["layers"]
    for i in (0, 3, 6):
        mom = layer_weights(net.layers[i].type, ref["momentum_after2"][i])
        for j in (0, 1):
            compare(trainer.state[i][j]["m"], mom[j], f"momentum[{i}][{j}]", 1e-5, 1e-5,
                    rec=False)
            compare(net.weights[i][j], after[i]["weights"][j], f"weights[{i}][{j}]", 1e-5,
                    1e-5, rec=False)


def test_checkpoint_resume_dir_errors(tmp_path, capsys):
    src = _sgd_checkpoint(tmp_path)
    runs = tmp_path / "runs"
    # without --resume-dir: a note says how to carry the momentum
    port_result = port(src, tmp_path / "a.yaml")
    assert any("--resume-dir" in n for n in port_result.notes)
    port(src, tmp_path / "b.yaml", resume_dir=runs)
    with pytest.raises(SpecError, match="already holds checkpoints"):
        port(src, tmp_path / "c.yaml", resume_dir=runs)
    with pytest.raises(MatFileError, match="not a cnn_train checkpoint"):
        port(DATA / "lenet_mnist.mat", tmp_path / "d.yaml", resume_dir=tmp_path / "r2")
    bad = tmp_path / "net-epoch-2.mat"
    ref = sio.loadmat(DATA / "sgd_two_steps.mat")
    state = ref["momentum_after1"].copy()
    state[0, 0] = np.empty((1, 2), dtype=object)
    state[0, 0][0, 0] = np.zeros((3, 3), dtype=np.float32)
    state[0, 0][0, 1] = np.zeros((1, 8), dtype=np.float32)
    sio.savemat(bad, {"net": {"layers": ref["net_after1"]["layers"][0, 0]},
                      "state": {"solverState": state}})
    assert main(["port", str(bad), "-o", str(tmp_path / "e.yaml"), "--resume-dir",
                 str(tmp_path / "r3")]) == 2
    err = capsys.readouterr().err
    assert "state.solverState{1}{1}" in err and "9 elements" in err


# ---- chain-shaped DagNN (DagNN.saveobj's layout) -------------------------------------------

def _cell(items):
    c = np.empty((1, len(items)), dtype=object)
    for k, v in enumerate(items):
        c[0, k] = v
    return c


def _struct_array(dicts):
    """A 1 x n Matlab struct array (savemat writes a list of dicts as a cell array)."""
    fields = list(dict.fromkeys(f for d in dicts for f in d))
    arr = np.empty((1, len(dicts)), dtype=[(f, object) for f in fields])
    for k, d in enumerate(dicts):
        for f in fields:
            arr[0, k][f] = d.get(f, np.zeros((0, 0)))
    return arr


def _dagnn_from_simplenn(name, *, extra=()):
    """``name``'s SimpleNN net as DagNN.saveobj would store the same network: a chain
    input -> x1 -> ... -> objective, the loss reading 'label', plus a top1err metric."""
    net = sio.loadmat(DATA / f"{name}.mat")["net"][0, 0]
    layers, params, var = [], [], "input"
    for k, cell in enumerate(net["layers"].ravel()):
        lay = cell[0, 0]
        t, lname = str(lay["type"][0]), str(lay["name"][0])
        out = f"x{k + 1}"
        entry = {"name": lname, "inputs": _cell([var]), "outputs": _cell([out]),
                 "params": _cell([])}
        if t == "conv":
            f, b = lay["weights"][0, 0], lay["weights"][0, 1]
            pn = [f"{lname}f", f"{lname}b"]
            entry.update(type="dagnn.Conv", params=_cell(pn), block={
                "size": np.array([f.shape], dtype=float), "hasBias": True,
                "pad": lay["pad"], "stride": lay["stride"], "dilate": lay["dilate"],
                "opts": _cell([])})
            for p, v in zip(pn, (f, b), strict=True):
                params.append({"name": p, "value": v, "learningRate": np.ones((1, 1)),
                               "weightDecay": np.ones((1, 1)), "trainMethod": "gradient"})
        elif t == "pool":
            entry.update(type="dagnn.Pooling", block={
                "method": str(lay["method"][0]), "poolSize": lay["pool"], "pad": lay["pad"],
                "stride": lay["stride"], "opts": _cell([])})
        elif t == "relu":
            entry.update(type="dagnn.ReLU", block={"leak": lay["leak"],
                                                   "useShortCircuit": True})
        elif t == "softmaxloss":
            pred, out = var, "objective"
            entry.update(type="dagnn.Loss", inputs=_cell([var, "label"]), outputs=_cell([out]),
                         block={"loss": "softmaxlog", "ignoreAverage": False})
        else:  # pragma: no cover - lenet_mnist has no other types
            raise AssertionError(t)
        layers.append(entry)
        var = out
    layers.append({"name": "top1err", "type": "dagnn.Loss", "inputs": _cell([pred, "label"]),
                   "outputs": _cell(["top1err"]), "params": _cell([]),
                   "block": {"loss": "classerror"}})
    layers.extend(extra)
    vars_ = sorted({v for d in layers for v in [*d["inputs"].ravel(), *d["outputs"].ravel()]})
    return {"layers": _struct_array(layers), "params": _struct_array(params),
            "vars": _struct_array([{"name": v, "precious": False} for v in vars_]),
            "meta": net["meta"]}


def test_chain_dagnn_ports(tmp_path):
    src = tmp_path / "lenet_dag.mat"
    sio.savemat(src, {"net": _dagnn_from_simplenn("lenet_mnist")}, do_compression=True)
    out = tmp_path / "lenet_dag.yaml"
    assert main(["port", str(src), "-o", str(out)]) == 0
    case = load_case("lenet_mnist")
    net = layerspec.load(out)
    assert [layer.type for layer in net.layers] == case.types
    assert net.spec.input == (28, 28, 1)
    for ws, ref in zip(net.weights, case.spec["layers"], strict=True):
        for w, r in zip(ws, ref.get("weights", []), strict=True):
            np.testing.assert_array_equal(w, r)
    res = layerspec.simplenn(net, case.x, dzdy=case.dzdy, labels=case.labels, mode=case.mode)
    compare(res[-1].x, case.loss, "loss", rec=False)
    compare(res[0].dzdx, case.res_dzdx[0], "dzdx", rec=False)
    # a model file: the DagNN struct's fields at the top level
    top = tmp_path / "top.mat"
    sio.savemat(top, _dagnn_from_simplenn("lenet_mnist"))
    spec, _, _ = port_mat_spec(top)
    assert spec.layers == port_mat_spec(src)[0].layers


@pytest.mark.parametrize("extra, match", [
    ({"name": "side", "type": "dagnn.ReLU", "inputs": ["x2"], "outputs": ["s"],
      "block": {"leak": 0.0}},
     r"variable 'x2' \(the output of layer 'layer2'.*is read by .*layer 'side'"),
    ({"name": "cat", "type": "dagnn.Concat", "inputs": ["x1", "x3"], "outputs": ["c"],
      "block": {"dim": 3.0}}, r"layer 'cat' \(net.layers\(10\), type 'dagnn.Concat'\): "
                              r"unsupported block type"),
    ({"name": "sum", "type": "dagnn.ReLU", "inputs": ["x1", "x3"], "outputs": ["c"],
      "block": {}}, r"layer 'sum' .* has 2 inputs \(x1, x3\)"),
])
def test_dagnn_with_branches_is_refused(tmp_path, capsys, extra, match):
    extra = {**extra, "inputs": _cell(extra["inputs"]), "outputs": _cell(extra["outputs"]),
             "params": _cell([])}
    src = tmp_path / "dag.mat"
    sio.savemat(src, {"net": _dagnn_from_simplenn("lenet_mnist", extra=[extra])})
    with pytest.raises(MatFileError, match=match) as e:
        port(src, tmp_path / "o.yaml")
    assert str(e.value).startswith(f"{src}: error: this is a DagNN network")
    assert not (tmp_path / "o.yaml").exists()
    assert main(["port", str(src), "-o", str(tmp_path / "o.yaml")]) == 2
