"""Tests for layerspec.data: the embedded Fashion-MNIST subset, file readers, synthetic data,
normalisation, limits and the errors a user sees. No test needs Debian's dataset package."""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from layerspec import data
from layerspec.data import (
    FASHION_MNIST_CLASSES,
    SUBSET_FILE,
    Dataset,
    load_data,
    normalize,
    read_idx,
    read_imdb,
    read_npz,
    synthetic,
)
from layerspec.errors import DataError, SpecError

# ---------------------------------------------------------------------------------------------
# helpers


def write_idx(path: Path, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write ``array`` as an idx file (gzipped when the name ends in .gz)."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B,
             np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}
    big = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    raw = (bytes([0, 0, codes[big], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
           + np.ascontiguousarray(array, dtype=big).tobytes())
    if compress if compress is not None else path.name.endswith(".gz"):
        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path


def tiny_images(n: int, h: int = 6, w: int = 5, c: int | None = None, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n, h, w) if c is None else (n, h, w, c)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def write_mnist_folder(folder: Path, n_train: int = 30, n_test: int = 10) -> Path:
    """A fake Fashion-MNIST folder: 28x28 images, 10 classes, the standard idx names."""
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / "train-images-idx3-ubyte.gz", tiny_images(n_train, 28, 28))
    write_idx(folder / "train-labels-idx1-ubyte.gz", (np.arange(n_train) % 10).astype(np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte.gz", tiny_images(n_test, 28, 28, seed=1))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", (np.arange(n_test) % 10).astype(np.uint8))
    return folder


def error(match: str) -> pytest.RaisesContext:
    return pytest.raises(DataError, match=re.escape(match))


@pytest.fixture
def no_full_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "find_full_fashion_mnist", lambda: None)


# ---------------------------------------------------------------------------------------------
# embedded Fashion-MNIST subset


def test_subset_file_is_stratified_uint8() -> None:
    assert SUBSET_FILE.is_file()
    assert SUBSET_FILE.stat().st_size < 4_000_000
    with np.load(SUBSET_FILE, allow_pickle=False) as f:
        assert sorted(f.files) == ["classes", "x_test", "x_train", "y_test", "y_train"]
        assert f["x_train"].shape == (6000, 28, 28) and f["x_train"].dtype == np.uint8
        assert f["x_test"].shape == (1000, 28, 28) and f["x_test"].dtype == np.uint8
        assert f["y_train"].dtype == np.uint8 and f["y_test"].dtype == np.uint8
        assert (np.bincount(f["y_train"], minlength=10) == 600).all()
        assert (np.bincount(f["y_test"], minlength=10) == 100).all()
        assert tuple(f["classes"]) == FASHION_MNIST_CLASSES
    assert (SUBSET_FILE.parent / "LICENSE-fashion-mnist.txt").is_file()


def test_fashion_mnist_subset(no_full_set: None, tmp_path: Path) -> None:
    ds = load_data({"dataset": "fashion-mnist", "normalize": "none"}, input_shape=(28, 28, 1),
                   base_dir=tmp_path)
    assert ds.name == "fashion-mnist"
    assert ds.x_train.shape == (6000, 28, 28, 1) and ds.x_test.shape == (1000, 28, 28, 1)
    assert ds.x_train.dtype == np.float32 and ds.x_train.flags.c_contiguous
    assert ds.y_train.dtype == np.int64 and ds.y_train.shape == (6000,)
    assert ds.x_train.min() >= 0 and ds.x_train.max() <= 255 and ds.x_train.max() > 200
    assert set(np.unique(ds.y_train)) == set(range(10))
    assert (np.bincount(ds.y_train) == 600).all() and (np.bincount(ds.y_test) == 100).all()
    assert ds.classes == FASHION_MNIST_CLASSES and ds.num_classes == 10
    assert "embedded subset: 6,000 train / 1,000 test" in ds.description


def test_fashion_mnist_default_is_mean_image(no_full_set: None, tmp_path: Path) -> None:
    ds = load_data({"dataset": "fashion-mnist"}, input_shape=(28, 28, 1), base_dir=tmp_path)
    assert np.abs(ds.x_train.mean(axis=0)).max() < 1e-3
    assert "mean-image subtracted" in ds.description
    raw = load_data({"dataset": "fashion-mnist", "normalize": "none"}, input_shape=None,
                    base_dir=tmp_path)
    mean = raw.x_train.mean(axis=0, dtype=np.float64)
    np.testing.assert_allclose(ds.x_test, raw.x_test - mean, atol=1e-3)


def test_no_section_picks_fashion_mnist_for_28x28x1(no_full_set: None, tmp_path: Path) -> None:
    ds = load_data(None, input_shape=(28, 28, 1), base_dir=tmp_path)
    assert ds.name == "fashion-mnist" and len(ds.y_train) == 6000


def test_full_set_is_used_when_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    folder = write_mnist_folder(tmp_path / "fmnist")
    monkeypatch.setattr(data, "find_full_fashion_mnist", lambda: folder)
    ds = load_data({"dataset": "fashion-mnist"}, input_shape=(28, 28, 1), base_dir=tmp_path)
    assert ds.x_train.shape == (30, 28, 28, 1) and ds.x_test.shape == (10, 28, 28, 1)
    assert "Debian" in ds.description and ds.classes == FASHION_MNIST_CLASSES
    forced = load_data({"dataset": "fashion-mnist", "full": False}, input_shape=(28, 28, 1),
                       base_dir=tmp_path)
    assert len(forced.y_train) == 6000 and "embedded subset" in forced.description


def test_full_true_without_package(no_full_set: None, tmp_path: Path) -> None:
    with error("the full Fashion-MNIST is not installed"):
        load_data({"dataset": "fashion-mnist", "full": True}, input_shape=None, base_dir=tmp_path)


def test_find_full_fashion_mnist_checks_files(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.setattr(data, "FASHION_MNIST_DIRS", (tmp_path / "absent", tmp_path / "fm"))
    assert data.find_full_fashion_mnist() is None
    write_mnist_folder(tmp_path / "fm")
    assert data.find_full_fashion_mnist() == tmp_path / "fm"


# ---------------------------------------------------------------------------------------------
# .npz


def test_npz_round_trip(tmp_path: Path) -> None:
    x, xt = tiny_images(12, c=3), tiny_images(4, c=3, seed=1)
    y, yt = np.arange(12) % 3, np.array([0, 1, 2, -1])
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=xt, y_test=yt, classes=np.array(["a", "b", "c"]))
    ds = load_data({"path": "d.npz"}, input_shape=(6, 5, 3), base_dir=tmp_path)
    np.testing.assert_array_equal(ds.x_train, x.astype(np.float32))
    np.testing.assert_array_equal(ds.y_test, yt)
    assert ds.y_train.dtype == np.int64 and ds.classes == ("a", "b", "c")
    assert ds.name == "d" and "d.npz" in ds.description


def test_npz_keras_names_val_and_grayscale(tmp_path: Path) -> None:
    np.savez(tmp_path / "k.npz", x_train=tiny_images(5), y_train=np.arange(5.0),
             x_val=tiny_images(2), y_val=np.array([1, 2], dtype=np.uint8))
    ds = read_npz(tmp_path / "k.npz")
    assert ds.x_train.shape == (5, 6, 5, 1) and ds.x_test.shape == (2, 6, 5, 1)
    assert ds.y_train.dtype == np.int64 and list(ds.y_test) == [1, 2] and ds.classes is None


def test_npz_without_test_set(tmp_path: Path) -> None:
    np.savez(tmp_path / "t.npz", x=tiny_images(5, c=2), y=np.zeros(5, np.int32))
    ds = read_npz(tmp_path / "t.npz")
    assert ds.x_test.shape == (0, 6, 5, 2) and ds.y_test.shape == (0,)


def test_npz_pickled_objects_are_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "p.npz", x=np.array([{"evil": 1}], dtype=object), y=np.zeros(1))
    with pytest.raises(DataError, match=r"array 'x' holds Python objects.*pickles"):
        load_data({"path": "p.npz"}, input_shape=None, base_dir=tmp_path)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": tiny_images(3)}, "has no array 'y'"),
        ({"x": tiny_images(3), "y": np.zeros(2)}, "2 labels for 3 images"),
        ({"x": tiny_images(3), "y": np.array([0, 1.5, 2])}, "labels must be integers"),
        ({"x": tiny_images(3), "y": np.array(["a", "b", "c"])}, "labels must be an array of int"),
        ({"x": np.zeros((3, 4)), "y": np.zeros(3)}, "images must be N x H x W or N x H x W x C"),
        ({"x": tiny_images(3), "y": np.zeros(3), "x_tst": tiny_images(1)},
         "unexpected array 'x_tst' (did you mean 'x_test'?)"),
        ({"x": tiny_images(3), "y": np.zeros(3), "x_test": tiny_images(1)},
         "has 'x_test' but no 'y_test'"),
        ({"x": tiny_images(3), "y": np.array([0, -2, 1])}, "label -2 is out of range"),
        ({"x": tiny_images(3), "y": np.array([0, 1, 3]), "classes": np.array(["a", "b", "c"])},
         "label 3 is out of range for 3 classes"),
        ({"x": np.full((2, 3, 3), np.nan), "y": np.zeros(2)}, "NaN"),
    ],
)
def test_npz_errors(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    with error(message):
        read_npz(tmp_path / "bad.npz")


def test_npz_that_is_not_a_zip(tmp_path: Path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with error("is not a readable .npz file"):
        load_data({"path": "junk.npz"}, input_shape=None, base_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# idx


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path: Path, suffix: str) -> None:
    x, y = tiny_images(8), (np.arange(8) % 4).astype(np.uint8)
    xt, yt = tiny_images(3, seed=2), np.array([3, 2, 1], np.uint8)
    for name, arr in [("tr-x", x), ("tr-y", y), ("te-x", xt), ("te-y", yt)]:
        write_idx(tmp_path / f"{name}{suffix}", arr)
    section = {"path": f"tr-x{suffix}", "labels": f"tr-y{suffix}", "test": f"te-x{suffix}",
               "test_labels": f"te-y{suffix}", "normalize": "none"}
    ds = load_data(section, input_shape=(6, 5, 1), base_dir=tmp_path)
    np.testing.assert_array_equal(ds.x_train[..., 0], x)
    np.testing.assert_array_equal(ds.x_test[..., 0], xt)
    np.testing.assert_array_equal(ds.y_train, y)
    np.testing.assert_array_equal(ds.y_test, yt)
    # idx data defaults to mean-image, as cnn_mnist does
    mean_sub = load_data({k: v for k, v in section.items() if k != "normalize"},
                         input_shape=(6, 5, 1), base_dir=tmp_path)
    np.testing.assert_allclose(mean_sub.x_train.mean(axis=0), 0, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_read_idx_types(tmp_path: Path, dtype: type) -> None:
    arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    out = read_idx(write_idx(tmp_path / "a.idx", arr))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)
    out[0, 0, 0] = 1  # writable


def test_idx_folder(tmp_path: Path) -> None:
    write_mnist_folder(tmp_path / "mn", n_train=20, n_test=5)
    ds = load_data({"path": "mn"}, input_shape=(28, 28, 1), base_dir=tmp_path)
    assert ds.x_train.shape == (20, 28, 28, 1) and ds.x_test.shape == (5, 28, 28, 1)


def test_idx_truncated(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x.idx", tiny_images(4))
    path.write_bytes(path.read_bytes()[:-7])
    with error(f"idx file '{path}' is truncated: its header declares 4 x 6 x 5 elements"):
        read_idx(path)
    gz = tmp_path / "x.idx.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    with error("is truncated"):
        read_idx(gz)
    gz.write_bytes(gz.read_bytes()[:-20])
    with error(f"idx file '{gz}' is a damaged or truncated gzip file"):
        read_idx(gz)


def test_idx_bad_header(tmp_path: Path) -> None:
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x00")
    with error("does not start with an idx magic number"):
        read_idx(bad)
    bad.write_bytes(b"\x00\x00\x42\x01\x00\x00\x00\x01\x00")
    with error("unknown element type 0x42"):
        read_idx(bad)
    bad.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with error("truncated inside its header"):
        read_idx(bad)
    bad.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x01\x00\xff")
    with error("has trailing bytes"):
        read_idx(bad)


def test_idx_needs_labels(tmp_path: Path) -> None:
    write_idx(tmp_path / "x.gz", tiny_images(3))
    with error("need 'labels'"):
        load_data({"path": "x.gz"}, input_shape=None, base_dir=tmp_path)
    write_idx(tmp_path / "y.gz", np.zeros(2, np.uint8))
    with error("2 labels for 3 images"):
        load_data({"path": "x.gz", "labels": "y.gz"}, input_shape=None, base_dir=tmp_path)
    with error("give both 'test' and 'test_labels'"):
        load_data({"path": "x.gz", "labels": "y.gz", "test": "x.gz"}, input_shape=None,
                  base_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# MatConvNet imdb .mat


def imdb_arrays(n: int = 6, c: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        "data": rng.standard_normal((4, 5, c, n)).astype(np.float32),  # H x W x C x N
        "labels": np.array([[1, 2, 3, 1, 2, 0]], dtype=np.float64)[:, :n],  # 1-based, 0 = ignore
        "set": np.array([[1, 1, 3, 1, 3, 1]], dtype=np.uint8)[:, :n],
    }


def test_imdb_round_trip(tmp_path: Path) -> None:
    images = imdb_arrays()
    classes = np.array(["cat", "dog", "owl"], dtype=object)
    scipy.io.savemat(tmp_path / "imdb.mat", {"images": images, "meta": {"classes": classes}})
    ds = load_data({"path": "imdb.mat"}, input_shape=(4, 5, 3), base_dir=tmp_path)
    train = [0, 1, 3, 5]
    np.testing.assert_array_equal(ds.x_train, images["data"].transpose(3, 0, 1, 2)[train])
    np.testing.assert_array_equal(ds.x_test, images["data"].transpose(3, 0, 1, 2)[[2, 4]])
    assert list(ds.y_train) == [0, 1, 0, -1] and list(ds.y_test) == [2, 1]
    assert ds.classes == ("cat", "dog", "owl") and ds.name == "imdb"


def test_imdb_val_set_and_wrapper_struct(tmp_path: Path) -> None:
    images = imdb_arrays(c=1)
    images["set"] = np.array([[1, 2, 2, 1, 1, 1]], dtype=np.uint8)
    scipy.io.savemat(tmp_path / "w.mat", {"imdb": {"images": images}})
    ds = read_imdb(tmp_path / "w.mat")
    assert ds.x_train.shape == (4, 4, 5, 1) and ds.x_test.shape == (2, 4, 5, 1)
    assert list(ds.y_test) == [1, 2] and ds.classes is None


def test_imdb_numeric_class_names(tmp_path: Path) -> None:
    scipy.io.savemat(tmp_path / "n.mat", {"images": imdb_arrays(),
                                          "meta": {"classes": np.array([[0, 1, 2]])}})
    assert read_imdb(tmp_path / "n.mat").classes == ("0", "1", "2")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": np.array([[1, 2, 4, 1, 2, 1]])},
         "label 4 is out of range for 3 classes (1..3)"),
        ({"set": np.array([[1, 1, 5, 1, 3, 1]])}, "images.set has value 5"),
        ({"data": np.zeros((4, 5, 3, 5), np.float32)}, "images.data is 4 x 5 x 3 x 5 but there are "
                                                       "6 labels"),
        ({"labels": np.array([[1, 2, 1.5, 1, 2, 1]])}, "labels must be integers"),
    ],
)
def test_imdb_errors(tmp_path: Path, change: dict[str, np.ndarray], message: str) -> None:
    images = imdb_arrays() | change
    scipy.io.savemat(tmp_path / "bad.mat",
                     {"images": images, "meta": {"classes": np.array(["a", "b", "c"], object)}})
    with error(message):
        read_imdb(tmp_path / "bad.mat")


def test_imdb_without_images(tmp_path: Path) -> None:
    scipy.io.savemat(tmp_path / "net.mat", {"layers": np.zeros(3)})
    with error("has no 'images' struct"):
        read_imdb(tmp_path / "net.mat")


def test_imdb_v73_hdf5(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    images = imdb_arrays()
    path = tmp_path / "v73.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        group = f.create_group("images")
        for key, value in images.items():  # HDF5 stores Matlab arrays with the axes reversed
            dset = group.create_dataset(key, data=value.T)
            dset.attrs["MATLAB_class"] = np.bytes_("double")
    with path.open("r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116) + b"\x00" * 8
                + b"\x00\x02IM")
    ds = read_imdb(path)
    np.testing.assert_array_equal(ds.x_train, images["data"].transpose(3, 0, 1, 2)[[0, 1, 3, 5]])
    assert list(ds.y_test) == [2, 1]


# ---------------------------------------------------------------------------------------------
# synthetic data


def test_synthetic_is_deterministic() -> None:
    a = synthetic((8, 8, 3), 4, 50, 20, seed=5)
    b = synthetic((8, 8, 3), 4, 50, 20, seed=5)
    c = synthetic((8, 8, 3), 4, 50, 20, seed=6)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.x_train, c.x_train)
    assert a.x_train.shape == (50, 8, 8, 3) and a.x_train.dtype == np.float32
    assert a.y_train.dtype == np.int64 and (np.bincount(a.y_train) == [13, 13, 12, 12]).all()
    # the test set does not depend on how many training images are drawn
    d = synthetic((8, 8, 3), 4, 70, 20, seed=5)
    np.testing.assert_array_equal(a.x_test, d.x_test)


@pytest.mark.parametrize("shape", [(28, 28, 1), (9, 7, 3), (1, 1, 10)])
def test_synthetic_is_learnable(shape: tuple[int, int, int]) -> None:
    ds = synthetic(shape, 10, 1000, 300, seed=0)
    means = np.stack([ds.x_train[ds.y_train == k].mean(axis=0).ravel() for k in range(10)])
    flat = ds.x_test.reshape(len(ds.x_test), -1)
    dist = ((flat[:, None, :] - means[None]) ** 2).sum(axis=-1)
    accuracy = (dist.argmin(axis=1) == ds.y_test).mean()
    assert accuracy > 0.5


def test_synthetic_from_section(tmp_path: Path) -> None:
    ds = load_data({"dataset": "synthetic", "classes": 3, "train": 30, "test": 9},
                   input_shape=(5, 6, 2), base_dir=tmp_path, seed=1)
    assert ds.x_train.shape == (30, 5, 6, 2) and ds.x_test.shape == (9, 5, 6, 2)
    assert ds.classes == ("class0", "class1", "class2") and "synthetic" in ds.description
    again = load_data({"dataset": "synthetic", "classes": 3, "train": 30, "test": 9, "seed": 1},
                      input_shape=(5, 6, 2), base_dir=tmp_path, seed=99)
    np.testing.assert_array_equal(ds.x_train, again.x_train)


def test_no_section_picks_synthetic(tmp_path: Path) -> None:
    ds = load_data(None, input_shape=(4, 4, 3), base_dir=tmp_path)
    assert ds.name == "synthetic" and ds.x_train.shape == (1000, 4, 4, 3)
    assert ds.x_test.shape == (200, 4, 4, 3) and ds.num_classes == 10


def test_synthetic_needs_input_shape(tmp_path: Path) -> None:
    with error("synthetic data needs the spec's input size"):
        load_data({"dataset": "synthetic"}, input_shape=None, base_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# normalize and limit


def small_dataset() -> Dataset:
    x = np.arange(4 * 2 * 2 * 2, dtype=np.float32).reshape(4, 2, 2, 2)
    return Dataset("t", x, np.arange(4), x[:1] + 100, np.zeros(1, np.int64), None, "t")


def test_normalize_variants() -> None:
    ds = small_dataset()
    assert normalize(ds, "none") is ds and normalize(ds, None) is ds
    image = normalize(ds, "mean-image")
    np.testing.assert_allclose(image.x_train, ds.x_train - ds.x_train.mean(axis=0))
    np.testing.assert_allclose(image.x_test, ds.x_test - ds.x_train.mean(axis=0))
    channel = normalize(ds, "mean-channel")
    np.testing.assert_allclose(channel.x_train, ds.x_train - ds.x_train.mean(axis=(0, 1, 2)))
    scaled = normalize(ds, {"subtract": 8, "scale": 0.5})
    np.testing.assert_allclose(scaled.x_test, (ds.x_test - 8) * 0.5)
    assert scaled.x_train.dtype == np.float32 and scaled.x_train.flags.c_contiguous
    only_scale = normalize(ds, {"scale": 2})
    np.testing.assert_allclose(only_scale.x_train, ds.x_train * 2)
    both = normalize(ds, {"subtract": "mean-channel", "scale": 0.1})
    np.testing.assert_allclose(both.x_train, channel.x_train * 0.1, rtol=1e-6)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("mean-imge", "unknown normalize 'mean-imge' (did you mean 'mean-image'?)"),
        ({"subtrct": 1}, "normalize: unknown key 'subtrct' (did you mean 'subtract'?)"),
        ({"scale": 0}, "'scale' must be a non-zero number"),
        ({"subtract": [1, 2]}, "'subtract' must be mean-image, mean-channel or a number"),
        (3, "normalize must be mean-image"),
    ],
)
def test_normalize_errors(how: object, message: str) -> None:
    with error(message):
        normalize(small_dataset(), how)  # type: ignore[arg-type]


def test_limit_is_stratified_and_deterministic(tmp_path: Path) -> None:
    x = tiny_images(200)
    y = np.repeat(np.arange(4), [100, 50, 30, 20])
    np.savez(tmp_path / "l.npz", x=x, y=y, x_test=x[:40], y_test=y[:40])
    section = {"path": "l.npz", "limit": {"train": 50}}
    ds = load_data(section, input_shape=None, base_dir=tmp_path, seed=3)
    assert len(ds.y_train) == 50
    assert np.abs(np.bincount(ds.y_train) - [25, 12.5, 7.5, 5]).max() <= 1  # proportions kept
    assert len(ds.y_test) == 40 and "limited to 50 train / 40 test" in ds.description
    positions = [int(np.flatnonzero((x == img).all(axis=(1, 2)))[0]) for img in ds.x_train[..., 0]]
    assert positions == sorted(positions)  # original order kept
    again = load_data(section, input_shape=None, base_dir=tmp_path, seed=3)
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    other = load_data(section, input_shape=None, base_dir=tmp_path, seed=4)
    assert not np.array_equal(ds.x_train, other.x_train)
    bigger = load_data({"path": "l.npz", "limit": {"train": 500, "test": 10}}, input_shape=None,
                       base_dir=tmp_path)
    assert len(bigger.y_train) == 200 and len(bigger.y_test) == 10


def test_limit_errors(tmp_path: Path) -> None:
    with error("limit: unknown key 'tran' (did you mean 'train'?)"):
        load_data({"dataset": "synthetic", "limit": {"tran": 3}}, input_shape=(2, 2, 1),
                  base_dir=tmp_path)
    with error("'train' must be at least 1"):
        load_data({"dataset": "synthetic", "limit": {"train": 0}}, input_shape=(2, 2, 1),
                  base_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# section errors


def test_missing_file(tmp_path: Path) -> None:
    with error(f"data file 'nope.npz' not found (looked in {tmp_path.resolve()})"):
        load_data({"path": "nope.npz"}, input_shape=None, base_dir=tmp_path)
    write_idx(tmp_path / "x.gz", tiny_images(2))
    with error("data file 'y.gz' not found"):
        load_data({"path": "x.gz", "labels": "y.gz"}, input_shape=None, base_dir=tmp_path)


def test_wrong_image_shape(tmp_path: Path) -> None:
    np.savez(tmp_path / "c.npz", x=tiny_images(3, 32, 32, 3), y=np.zeros(3))
    with error("data: c images are 32x32x3 but the spec's input is 28x28x1"):
        load_data({"path": "c.npz"}, input_shape=(28, 28, 1), base_dir=tmp_path)


def test_unknown_key_suggests(tmp_path: Path) -> None:
    with error("data: unknown key 'nomalize' (did you mean 'normalize'?)"):
        load_data({"dataset": "synthetic", "nomalize": "none"}, input_shape=(2, 2, 1),
                  base_dir=tmp_path)


def test_section_errors(tmp_path: Path) -> None:
    with error("unknown dataset 'fashion-mnst' (did you mean 'fashion-mnist'?)"):
        load_data({"dataset": "fashion-mnst"}, input_shape=None, base_dir=tmp_path)
    with error("give exactly one of 'dataset'"):
        load_data({"dataset": "synthetic", "path": "a.npz"}, input_shape=None, base_dir=tmp_path)
    with error("give exactly one of 'dataset'"):
        load_data({"normalize": "none"}, input_shape=None, base_dir=tmp_path)
    with error("data: expected a mapping"):
        load_data("fashion-mnist", input_shape=None, base_dir=tmp_path)  # type: ignore[arg-type]
    with error("key 'full' does not apply to dataset: synthetic"):
        load_data({"dataset": "synthetic", "full": True}, input_shape=(2, 2, 1), base_dir=tmp_path)
    with error("'train' must be an integer"):
        load_data({"dataset": "synthetic", "train": "many"}, input_shape=(2, 2, 1),
                  base_dir=tmp_path)
    (tmp_path / "x.npy").write_bytes(b"")
    with error("is a single .npy array"):
        load_data({"path": "x.npy"}, input_shape=None, base_dir=tmp_path)
    (tmp_path / "mystery.bin").write_bytes(b"hello world")
    with error("cannot tell its format"):
        load_data({"path": "mystery.bin"}, input_shape=None, base_dir=tmp_path)


def test_data_error_is_a_spec_error() -> None:
    assert issubclass(DataError, SpecError)
