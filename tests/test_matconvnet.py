"""layerspec.matconvnet: reading MatConvNet .mat networks (no executor needed)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.io as sio
from refcases import DATA, NETWORK_CASES, load_case

from layerspec.errors import DataError, MatFileError, ShapeError, SpecError
from layerspec.matconvnet import (
    MatlabHandle,
    find_net,
    from_nhwc,
    labels_from_matlab,
    layer_weights,
    load_net,
    loadmat_clean,
    raw_spec_from_net,
    to_nhwc,
)

#: layer types per network case, from the README's tables
EXPECTED_TYPES = {
    "lenet_mnist": "conv pool conv pool conv relu conv softmaxloss",
    "lenet_cifar": "conv pool relu conv relu pool conv relu pool conv relu conv softmaxloss",
    "seed_small": "conv relu pool dropout conv relu pool conv softmaxloss",
    "seed_small_dropout": "conv relu pool dropout conv relu pool conv softmaxloss",
    "seed_small_20": "conv relu pool dropout conv relu pool conv softmaxloss",
    "edge_spatial_imglabel": "conv relu pool conv softmaxloss",
    "edge_spatial_pixlabel": "conv relu pool conv softmaxloss",
    "edge_spatial_pixlabel_ignore0": "conv relu pool conv softmaxloss",
    "bnorm_net": "conv bnorm relu pool conv bnorm relu conv softmaxloss",
    "bnorm_net_test": "conv bnorm relu pool conv bnorm relu conv softmaxloss",
    "lrn_net": "conv relu normalize pool conv normalize conv softmaxloss",
    "convt_net": "conv relu convt relu convt conv softmaxloss",
    "lenet_mnist_bn": "conv bnorm pool conv bnorm pool conv bnorm relu conv softmaxloss",
}
ALLOWED_FIELDS = {"type", "name", "weights", "stride", "pad", "dilate", "pool", "method", "leak",
                  "rate", "upsample", "crop", "numGroups", "param", "epsilon", "p", "noRoot",
                  "aggregate", "learningRate", "weightDecay"}


def _json_like(v):
    if isinstance(v, dict):
        return all(isinstance(k, str) and _json_like(e) for k, e in v.items())
    if isinstance(v, list):
        return all(_json_like(e) for e in v)
    return v is None or isinstance(v, (str, int, float, bool))


# ----- the stored networks --------------------------------------------------------------

@pytest.mark.parametrize("name", NETWORK_CASES)
def test_case_nets_load(name):
    spec = load_net(DATA / f"{name}.mat")
    assert spec["name"] == name
    assert " ".join(layer["type"] for layer in spec["layers"]) == EXPECTED_TYPES[name]
    for i, layer in enumerate(spec["layers"]):
        assert layer["name"] == f"layer{i + 1}"
        assert set(layer) <= ALLOWED_FIELDS, set(layer) - ALLOWED_FIELDS
        assert _json_like({k: v for k, v in layer.items() if k != "weights"})
        for w in layer.get("weights", []):
            assert isinstance(w, np.ndarray) and w.dtype == np.float32
            assert w.flags.c_contiguous
        if layer["type"] in ("conv", "convt"):
            f, b = layer["weights"]
            assert f.ndim == 4 and b.ndim == 1
    assert _json_like(spec["meta"])


@pytest.mark.parametrize("name", NETWORK_CASES)
def test_case_data_consistent(name):
    """The converted reference tensors chain together: shapes agree layer by layer."""
    case = load_case(name)
    L = len(case.spec["layers"])
    assert len(case.res_x) == len(case.res_dzdx) == L + 1 and len(case.res_dzdw) == L
    np.testing.assert_array_equal(case.res_x[0], case.x)
    assert case.res_x[-1].shape == () and float(case.res_x[-1]) == float(case.loss)
    assert float(case.res_dzdx[-1]) == case.dzdy == 1.0
    for i in range(L):
        assert case.res_dzdx[i].shape == case.res_x[i].shape
        ws = case.spec["layers"][i].get("weights", [])
        assert [w.shape for w in case.res_dzdw[i]] == [w.shape for w in ws], i
    assert case.x.shape[0] == case.labels.shape[0]
    assert case.mode in ("normal", "test")


def test_edge_case_fields():
    spec = load_net(DATA / "edge_spatial_pixlabel.mat")
    conv1, relu, pool, conv2, loss = spec["layers"]
    assert conv1["pad"] == [1, 2, 0, 1] and conv1["stride"] == 2 and conv1["dilate"] == 1
    assert conv1["weights"][0].shape == (3, 3, 3, 6) and conv1["weights"][1].shape == (6,)
    assert relu["leak"] == pytest.approx(0.1) and isinstance(relu["leak"], float)
    assert pool == {"type": "pool", "name": "layer3", "method": "avg", "pool": [3, 3],
                    "stride": 2, "pad": 1}
    assert conv2["weights"][0].shape == (2, 3, 6, 5)
    assert loss == {"type": "softmaxloss", "name": "layer5"}  # `class` (stale labels) dropped
    assert spec["input"] is None and spec["meta"] == {}


def test_seed_small_fields():
    contents = loadmat_clean(DATA / "seed_small.mat")
    net = contents["net"]
    assert isinstance(net["layers"], list) and len(net["layers"]) == 9
    assert net["layers"][0]["weights"][1].shape == (1, 8)  # raw: Matlab's 1 x K
    spec = raw_spec_from_net(net, name="s")
    assert spec["name"] == "s"
    assert spec["layers"][3] == {"type": "dropout", "name": "layer4", "rate": 0.5}
    assert spec["layers"][7]["weights"][0].shape == (1, 1, 16, 10)
    assert spec["layers"][1] == {"type": "relu", "name": "layer2", "leak": 0}
    np.testing.assert_array_equal(spec["layers"][0]["weights"][1],
                                  net["layers"][0]["weights"][1].ravel())


def test_lenet_mnist_meta_and_input():
    spec = load_net(DATA / "lenet_mnist.mat")
    assert spec["input"] == [28, 28, 1]
    assert spec["meta"]["inputSize"] == [28, 28, 1]
    assert spec["meta"]["trainOpts"] == {"learningRate": 0.001, "numEpochs": 20,
                                         "batchSize": 100}
    cifar = load_net(DATA / "lenet_cifar.mat")
    assert cifar["input"] == [32, 32, 3]
    assert len(cifar["meta"]["trainOpts"]["learningRate"]) == 45
    assert cifar["layers"][1]["pad"] == [0, 1, 0, 1]
    assert cifar["layers"][0]["learningRate"] == [pytest.approx(0.1), 2]


def test_lenet_mnist_bn_no_bias_and_bnorm():
    spec = load_net(DATA / "lenet_mnist_bn.mat")
    conv1, bn1 = spec["layers"][:2]
    f, b = conv1["weights"]
    assert f.shape == (5, 5, 1, 20) and b.shape == (0,) and b.dtype == np.float32
    g, beta, moments = bn1["weights"]
    assert g.shape == beta.shape == (20,) and moments.shape == (20, 2)
    assert bn1["learningRate"] == [1, 1, pytest.approx(0.05)]
    assert bn1["weightDecay"] == [0, 0]
    assert bn1["epsilon"] == pytest.approx(1e-5)
    assert spec["layers"][9]["weights"][1].shape == (10,)


def test_convt_and_lrn_fields():
    spec = load_net(DATA / "convt_net.mat")
    t1, t2 = spec["layers"][2], spec["layers"][4]
    assert t1["upsample"] == 2 and t1["crop"] == [0, 1, 0, 1] and t1["numGroups"] == 1
    assert t1["weights"][0].shape == (4, 4, 6, 6) and t1["weights"][1].shape == (6,)
    assert t2["numGroups"] == 2 and t2["crop"] == [1, 1, 0, 2]
    assert t2["weights"][0].shape == (3, 3, 3, 6) and t2["weights"][1].shape == (6,)
    lrn = load_net(DATA / "lrn_net.mat")
    assert lrn["layers"][2]["param"] == [5, 1, pytest.approx(2e-5), pytest.approx(0.75)]
    assert lrn["layers"][5]["param"] == [4, 2, pytest.approx(0.001), pytest.approx(0.5)]


def test_bnorm_moments_layout():
    contents = loadmat_clean(DATA / "bnorm_net.mat")
    raw = contents["net"]["layers"][1]["weights"][2]
    spec = raw_spec_from_net(contents["net"])
    np.testing.assert_array_equal(spec["layers"][1]["weights"][2], raw)  # [mu sigma] columns
    assert np.all(spec["layers"][1]["weights"][2][:, 1] > 0)  # sigma


def test_one_layer_nets_and_pdist_fields():
    contents = loadmat_clean(DATA / "misc_layers.mat")
    net = contents["simplenn_pdist_net"]
    assert isinstance(net["layers"], list) and len(net["layers"]) == 1  # a 1-element cell
    spec = raw_spec_from_net(net)
    assert spec["layers"] == [{"type": "pdist", "name": "layer1", "noRoot": False,
                               "aggregate": False, "p": 2, "epsilon": pytest.approx(1e-3)}]
    spec = raw_spec_from_net(contents["simplenn_loss_net"])
    assert spec["layers"] == [{"type": "loss", "name": "layer1"}]
    assert contents["cases"][:2] == ["p2", "p2_noroot"]


def test_training_nets_multipliers():
    contents = loadmat_clean(DATA / "sgd_two_steps.mat")
    with pytest.raises(MatFileError, match="no network found"):
        find_net(contents, "sgd_two_steps.mat")
    spec = raw_spec_from_net(contents["net_before"])
    assert spec["layers"][0]["learningRate"] == [1, 2]
    assert spec["layers"][3]["weightDecay"] == [1, 0]
    assert "learningRate" not in spec["layers"][1]  # cnn_train's empty [] for a relu
    raw = raw_spec_from_net(loadmat_clean(DATA / "bnorm_sgd_steps.mat")["net_raw"])
    assert [layer["name"] for layer in raw["layers"]] == [f"layer{i}" for i in range(1, 7)]
    assert raw["layers"][1]["learningRate"] == [2, 1, pytest.approx(0.1)]


# ----- conversions on synthetic nets ------------------------------------------------------

def _conv(**kw):
    layer = {"type": "conv", "name": "c", "weights": [np.ones((3, 3, 2, 4), np.float32),
                                                      np.zeros((1, 4), np.float32)],
             "stride": np.array([[1.0]]), "pad": np.array([[0.0]])}
    layer.update(kw)
    return layer


def test_trailing_singletons_padded_and_dtypes():
    f = np.arange(75, dtype=np.float32).reshape(5, 5, 3)  # 5x5x3x1 as MAT gives it
    spec = raw_spec_from_net({"layers": [_conv(weights=[f, np.array([[0.5]])])]})
    w, b = spec["layers"][0]["weights"]
    assert w.shape == (5, 5, 3, 1) and b.shape == (1,)
    assert w.dtype == np.float32 and b.dtype == np.float64  # float64 kept as stored
    np.testing.assert_array_equal(w[..., 0], f)
    t = raw_spec_from_net({"layers": [{"type": "convt", "weights": [np.ones((4, 4, 6)),
                                                                    np.zeros((1, 6))]}]})
    assert t["layers"][0]["weights"][0].shape == (4, 4, 6, 1)
    assert t["layers"][0]["name"] == "layer1"


def test_legacy_filters_biases():
    layer = {"type": "conv", "filters": np.ones((3, 3, 1, 2), np.float32),
             "biases": np.zeros((1, 2), np.float32), "filtersLearningRate": np.array([[1.0]]),
             "biasesLearningRate": np.array([[2.0]]), "filtersWeightDecay": np.array([[1.0]]),
             "biasesWeightDecay": np.array([[0.0]]), "stride": np.array([[1.0, 2.0]]),
             "pad": np.array([[1.0]]), "momentum": [np.zeros(3)], "precious": np.uint8(0),
             "opts": [], "size": np.array([[3, 3, 1, 2]])}
    out = raw_spec_from_net({"layers": [layer]})["layers"][0]
    assert [w.shape for w in out["weights"]] == [(3, 3, 1, 2), (2,)]
    assert out["learningRate"] == [1, 2] and out["weightDecay"] == [1, 0]
    assert out["stride"] == [1, 2] and out["pad"] == 1
    assert set(out) == {"type", "name", "weights", "learningRate", "weightDecay", "stride",
                        "pad"}


def test_bnorm_without_moments_gets_zeros():
    layer = {"type": "bnorm", "weights": [np.ones((3, 1), np.float32),
                                          np.zeros((3, 1), np.float32)]}
    g, b, m = raw_spec_from_net({"layers": [layer]})["layers"][0]["weights"]
    assert g.shape == b.shape == (3,) and m.shape == (3, 2) and not m.any()
    assert m.dtype == np.float32
    # moments saved as a 2C vector [mu; sigma] keep Matlab's column-major meaning
    g, b, m = layer_weights("bnorm", [g, b, np.array([1.0, 2, 3, 4, 5, 6], np.float32)])
    np.testing.assert_array_equal(m, [[1, 4], [2, 5], [3, 6]])


def test_meta_classes_and_image_size():
    net = {"layers": [_conv()],
           "meta": {"classes": {"name": ["cat", "dog"], "description": ["a cat", "a dog"]},
                    "normalization": {"imageSize": np.array([[32.0, 32, 2, 1]]),
                                      "averageImage": np.zeros((32, 32, 2)),
                                      "interpolation": "bilinear"},
                    "handle": [np.zeros((2, 2, 2))]}}
    spec = raw_spec_from_net(net)
    assert spec["input"] == [32, 32, 2]
    assert spec["meta"]["classes"] == ["cat", "dog"]
    assert spec["meta"]["classDescriptions"] == ["a cat", "a dog"]
    assert spec["meta"]["normalization"] == {"imageSize": [32, 32, 2, 1],
                                             "interpolation": "bilinear"}
    assert "handle" not in spec["meta"]  # not simple: dropped
    # pre-meta model files keep classes / normalization at the top level
    old = find_net({"layers": [_conv()], "classes": {"name": ["a", "b", "c", "d"]},
                    "normalization": {"imageSize": np.array([[8.0, 8]])}}, "old.mat")
    spec = raw_spec_from_net(old)
    assert spec["meta"]["classes"] == ["a", "b", "c", "d"]
    assert spec["input"] == [8, 8, 2]  # C from the first conv's filters


def test_find_net_checkpoint_and_model_file():
    net = {"layers": [_conv()], "meta": {}}
    assert find_net({"net": net, "state": {}, "stats": {}}, "net-epoch-3.mat") is net
    found = find_net({"layers": [_conv()], "meta": {"inputSize": np.array([[5.0, 5, 2]])}},
                     "model.mat")
    assert raw_spec_from_net(found)["input"] == [5, 5, 2]
    with pytest.raises(MatFileError, match="'net' has no 'layers'") as e:
        find_net({"net": {"foo": 1}}, "x.mat")
    assert str(e.value).startswith("x.mat: error:")
    with pytest.raises(MatFileError, match="DagNN"):
        find_net({"layers": [{"name": "a", "type": "dagnn.Conv", "inputs": ["x"],
                              "outputs": ["y"], "block": {}}], "vars": [], "params": []},
                 "dag.mat")


def test_unsupported_layers_name_the_layer():
    custom = {"type": "custom", "name": "mine", "forward": MatlabHandle("function handle")}
    with pytest.raises(MatFileError) as e:
        raw_spec_from_net({"layers": [_conv(), custom]}, source="net.mat")
    msg = str(e.value)
    assert "net.mat" in msg and "net.layers{2}" in msg and "'mine'" in msg and "'custom'" in msg
    assert "function handles" in msg
    with pytest.raises(MatFileError, match=r"net.layers\{1\} \('q', type 'dagnn.Conv'\)"):
        raw_spec_from_net({"layers": [{"type": "dagnn.Conv", "name": "q"}]})
    with pytest.raises(MatFileError, match="field 'leak' holds a Matlab function handle"):
        raw_spec_from_net({"layers": [{"type": "relu", "leak": MatlabHandle("x")}]})
    with pytest.raises(MatFileError, match="no 'type'"):
        raw_spec_from_net({"layers": [{"name": "x"}]})


@pytest.mark.parametrize("layer, match", [
    (_conv(pad=np.array([[1.5]])), "whole numbers"),
    (_conv(stride="two"), "numeric"),
    (_conv(weights=[np.ones((3, 3, 2, 4), np.float32)]), "filters, biases"),
    (_conv(weights=[]), "no weights"),
    (_conv(weights=[np.ones((3, 3, 2, 4, 2)), np.zeros(4)]), "at most 4"),
])
def test_malformed_layers(layer, match):
    with pytest.raises(MatFileError, match=match):
        raw_spec_from_net({"layers": [layer]}, source="bad.mat")


def test_bias_count_checked():
    with pytest.raises(ShapeError, match="3 biases"):
        raw_spec_from_net({"layers": [_conv(weights=[np.ones((3, 3, 2, 4)), np.zeros(3)])]})
    convt = {"type": "convt", "numGroups": np.array([[2.0]]),
             "weights": [np.ones((3, 3, 3, 6)), np.zeros((1, 3))]}
    with pytest.raises(ShapeError, match="numGroups"):
        raw_spec_from_net({"layers": [convt]})


def test_function_handle_from_scipy_is_inert(monkeypatch, tmp_path):
    """scipy returns function handles as MatlabFunction; they become MatlabHandle markers
    and the layer holding one is refused."""
    from scipy.io.matlab import MatlabFunction, mat_struct

    layer = mat_struct()
    layer._fieldnames = ["type", "name", "forward"]
    layer.type = np.array(["custom"])
    layer.name = np.array(["fh"])
    layer.forward = MatlabFunction(np.zeros((1, 1)))
    net = mat_struct()
    net._fieldnames = ["layers"]
    cell = np.empty((1, 1), dtype=object)
    cell[0, 0] = np.array([[layer]], dtype=object)
    net.layers = cell
    path = tmp_path / "fh.mat"
    sio.savemat(path, {"dummy": 1})
    monkeypatch.setattr(sio, "loadmat", lambda *a, **k: {"net": np.array([[net]], object)})
    contents = loadmat_clean(path)
    assert isinstance(contents["net"]["layers"][0]["forward"], MatlabHandle)
    with pytest.raises(MatFileError, match=r"fh.mat.*net.layers\{1\} \('fh', type 'custom'\)"):
        load_net(path)


# ----- broken files -----------------------------------------------------------------------

def _assert_one_line(err, path):
    msg = str(err)
    assert str(path) in msg and "\n" not in msg and msg.count("error:") == 1, msg


@pytest.mark.parametrize("cut", [0, 10, 100, 127, 200, 5000, -10, -1])
def test_truncated_files(tmp_path, cut):
    data = (DATA / "seed_small.mat").read_bytes()
    path = tmp_path / f"trunc{cut}.mat"
    path.write_bytes(data[:cut] if cut else b"")
    with pytest.raises(MatFileError) as e:
        load_net(path)
    _assert_one_line(e.value, path)
    if cut == 0:
        assert "empty file (0 bytes)" in str(e.value)


@pytest.mark.parametrize("content", [
    np.random.default_rng(0).bytes(1000), b"hello world\n" * 20, b"\0" * 200,
    b"\x89HDF\r\n\x1a\n" + bytes(300)])
def test_garbage_files(tmp_path, content):
    path = tmp_path / "garbage.mat"
    path.write_bytes(content)
    with pytest.raises(MatFileError) as e:
        loadmat_clean(path)
    _assert_one_line(e.value, path)


def test_corrupt_compressed_data(tmp_path):
    data = bytearray((DATA / "seed_small.mat").read_bytes())
    data[1000:1100] = bytes(range(100))
    path = tmp_path / "corrupt.mat"
    path.write_bytes(bytes(data))
    with pytest.raises(MatFileError) as e:
        load_net(path)
    _assert_one_line(e.value, path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(MatFileError, match="no such file") as e:
        loadmat_clean(tmp_path / "nope.mat")
    _assert_one_line(e.value, tmp_path / "nope.mat")
    with pytest.raises(MatFileError, match="directory"):
        loadmat_clean(tmp_path)


def test_mat_without_layers(tmp_path):
    path = tmp_path / "nolayers.mat"
    sio.savemat(path, {"foo": np.ones(3), "bar": "text"})
    with pytest.raises(MatFileError, match="no network found.*bar, foo") as e:
        load_net(path)
    _assert_one_line(e.value, path)
    sio.savemat(path, {})
    with pytest.raises(MatFileError, match="no variables"):
        load_net(path)
    sio.savemat(path, {"net": {"layers": np.zeros((0, 0))}})
    with pytest.raises(MatFileError, match="no layers"):
        load_net(path)


def _v73_header() -> bytes:
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 " \
           b"HDF5 schema 1.00 ."
    return text.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02" + b"IM"


def test_v73_without_h5py(tmp_path, monkeypatch):
    path = tmp_path / "v73.mat"
    path.write_bytes(_v73_header() + bytes(600))
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py -> ImportError
    with pytest.raises(MatFileError, match=r"v7\.3 \(HDF5\).*h5py") as e:
        loadmat_clean(path)
    _assert_one_line(e.value, path)


def test_v73_garbage_with_h5py(tmp_path):
    pytest.importorskip("h5py")
    path = tmp_path / "v73bad.mat"
    path.write_bytes(_v73_header() + bytes(600))
    with pytest.raises(MatFileError, match=r"v7\.3") as e:
        loadmat_clean(path)
    _assert_one_line(e.value, path)


def _write_v73(path, variables):
    """A minimal writer of MATLAB's v7.3 layout (HDF5 + 512-byte MAT header)."""
    h5py = pytest.importorskip("h5py")
    classes = {np.dtype(np.float64): "double", np.dtype(np.float32): "single",
               np.dtype(np.uint8): "uint8"}
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        count = [0]

        def put(parent, name, v):
            if isinstance(v, dict):
                g = parent.create_group(name)
                g.attrs["MATLAB_class"] = np.bytes_("struct")
                names = np.empty(len(v), dtype=object)
                names[:] = [np.array(list(k), dtype="S1") for k in v]
                g.attrs.create("MATLAB_fields", names, dtype=h5py.vlen_dtype(np.dtype("S1")))
                for k, e in v.items():
                    put(g, k, e)
            elif isinstance(v, list):
                arr = np.empty((len(v), 1), dtype=h5py.ref_dtype)  # a 1 x K cell
                for i, e in enumerate(v):
                    count[0] += 1
                    ref_name = f"r{count[0]}"
                    put(refs, ref_name, e)
                    arr[i, 0] = refs[ref_name].ref
                d = parent.create_dataset(name, data=arr)
                d.attrs["MATLAB_class"] = np.bytes_("cell")
            elif isinstance(v, str):
                d = parent.create_dataset(name, data=np.array([[ord(c)] for c in v], np.uint16))
                d.attrs["MATLAB_class"] = np.bytes_("char")
                d.attrs["MATLAB_int_decode"] = np.int32(2)
            else:
                a = np.asarray(v)
                if a.size == 0:
                    d = parent.create_dataset(name, data=np.array(a.shape, np.uint64))
                    d.attrs["MATLAB_empty"] = np.uint8(1)
                else:
                    d = parent.create_dataset(name, data=a.T)
                d.attrs["MATLAB_class"] = np.bytes_(classes[a.dtype])

        for k, v in variables.items():
            put(f, k, v)
    with open(path, "r+b") as fh:
        fh.write(_v73_header())


def test_v73_round_trip(tmp_path):
    pytest.importorskip("h5py")
    ref = loadmat_clean(DATA / "lenet_mnist_bn.mat")
    net = ref["net"]
    path = tmp_path / "lenet_v73.mat"
    _write_v73(path, {"net": net, "description": "v7.3 copy"})
    with pytest.raises(NotImplementedError):  # scipy indeed refuses it
        sio.loadmat(path)
    got = loadmat_clean(path)
    assert got["description"] == "v7.3 copy"
    a, b = load_net(path, name="n"), raw_spec_from_net(net, name="n")
    assert a["input"] == b["input"] == [28, 28, 1] and a["meta"] == b["meta"]
    for la, lb in zip(a["layers"], b["layers"], strict=True):
        assert la.keys() == lb.keys()
        for k in la:
            if k == "weights":
                for wa, wb in zip(la[k], lb[k], strict=True):
                    assert wa.dtype == wb.dtype
                    np.testing.assert_array_equal(wa, wb)
            else:
                assert la[k] == lb[k], k


# ----- data layout ------------------------------------------------------------------------

def test_labels_from_matlab():
    np.testing.assert_array_equal(labels_from_matlab(np.array([[3.0, 10, 1, 7]]), 4),
                                  [2, 9, 0, 6])
    assert labels_from_matlab(np.array([[3.0, 10, 1, 7]]), 4).dtype == np.int64
    np.testing.assert_array_equal(labels_from_matlab(np.array([2, 0]), 2), [1, -1])
    np.testing.assert_array_equal(labels_from_matlab(np.array([[2.0], [1]]), 2), [1, 0])
    m = np.zeros((2, 3, 1, 2), np.float32)  # H x W x 1 x N
    m[0, 1, 0, 1] = 5
    m[1, 2, 0, 0] = 1
    out = labels_from_matlab(m, 2)
    assert out.shape == (2, 2, 3)
    assert out[1, 0, 1] == 4 and out[0, 1, 2] == 0 and out[0, 0, 0] == -1
    # N = 1: the file drops the trailing 1 x 1
    one = labels_from_matlab(np.array([[1.0, 2, 3], [4, 5, 0]], np.float32), 1)
    np.testing.assert_array_equal(one, [[[0, 1, 2], [3, 4, -1]]])
    np.testing.assert_array_equal(labels_from_matlab(np.array([[7.0]]), 1), [6])
    for bad, n in [(np.array([[1.5, 2]]), 2), (np.array([[1.0, 2, 3]]), 2),
                   (np.array([[-1.0, 2]]), 2), (np.ones((2, 2, 2, 2)), 2)]:
        with pytest.raises(DataError):
            labels_from_matlab(bad, n)


def test_edge_pixel_labels_from_file():
    case = load_case("edge_spatial_pixlabel_ignore0")
    # README: image 1 = [1 2; 3 4] with 0 at (2,1); image 2 = [5 1; 2 2] with 0 at (1,2)
    np.testing.assert_array_equal(case.labels, [[[0, 1], [-1, 3]], [[4, -1], [1, 1]]])


def test_to_nhwc_and_back():
    a = np.asfortranarray(np.random.default_rng(1).standard_normal((4, 5, 3, 2)))
    x = to_nhwc(a)
    assert x.shape == (2, 4, 5, 3) and x.flags.c_contiguous and x.dtype == np.float64
    assert x[1, 2, 3, 0] == a[2, 3, 0, 1]
    back = from_nhwc(x)
    assert back.shape == a.shape and back.dtype == a.dtype
    np.testing.assert_array_equal(back, a)
    assert to_nhwc(a.astype(np.float32)).dtype == np.float32
    assert to_nhwc(np.ones((5, 5), np.uint8)).dtype == np.float32
    assert to_nhwc(np.ones((5, 5))).shape == (1, 5, 5, 1)
    assert to_nhwc(np.ones((3, 3, 2))).shape == (1, 3, 3, 2)
    with pytest.raises(SpecError):
        to_nhwc(np.ones((1, 1, 1, 1, 2)))
    with pytest.raises(SpecError):
        from_nhwc(np.ones((2, 2)))
