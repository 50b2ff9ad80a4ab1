"""Training and test data for layerspec: the ``data:`` section of a spec.

Every source ends up as a :class:`Dataset`: images ``(N, H, W, C)`` float32 (C-contiguous;
MatConvNet's H x W x C with the batch first) and labels ``(N,)`` int64, 0-based, ``-1`` meaning
"ignore" (MatConvNet's label 0). Every problem with the data raises
:class:`~layerspec.errors.DataError`.

The ``data:`` section
---------------------
A mapping with exactly one of ``dataset`` or ``path``::

    data: {dataset: fashion-mnist}                  # real images, always available
    data: {dataset: fashion-mnist, full: false}     # force the embedded subset
    data: {dataset: synthetic, classes: 10, train: 2000, test: 500}
    data: {path: my.npz}
    data: {path: imdb.mat}
    data: {path: train-images-idx3-ubyte.gz, labels: train-labels-idx1-ubyte.gz,
           test: t10k-images-idx3-ubyte.gz, test_labels: t10k-labels-idx1-ubyte.gz}
    data: {path: fashion/}          # a folder holding the four MNIST-named idx files

``dataset: fashion-mnist``
    28x28x1 images, pixel values 0..255 before normalisation, 10 classes. The full set
    (60,000 train / 10,000 test) is used when Debian's ``dataset-fashion-mnist`` package is
    installed (:func:`find_full_fashion_mnist`); otherwise the stratified subset embedded in the
    package (6,000 train / 1,000 test, 600 / 100 per class; MIT licence in
    ``data/LICENSE-fashion-mnist.txt``). ``full: false`` always uses the subset; ``full: true``
    requires the full set.
``dataset: synthetic``
    :func:`synthetic` images of the spec's input size; ``classes`` (default 10), ``train``
    (default 1000) and ``test`` (default 200) are counts.
``dataset: sequences``
    :func:`sequences`: a sequence-classification task for recurrent layers (``lstm``), noisy
    sinusoids whose frequency is the class; the spec's input ``[1, T, D]`` gives the length T
    and the channels D. ``classes`` (default 4), ``train`` (default 2000) and ``test``
    (default 500) are counts.
``path``
    Relative to the spec's folder. The format is chosen by extension, then by content:

    * ``.npz`` -- :func:`read_npz`: arrays ``x`` and ``y`` (or ``x_train``/``y_train``), optional
      ``x_test``/``y_test`` (or ``x_val``/``y_val``) and ``classes``. Labels are 0-based.
      Sequences: ``x`` of shape ``(N, T, D)`` (N sequences of T steps of D features) with a spec
      whose input is ``[1, T, D]`` are read as ``(N, 1, T, D)``, the layout ``lstm`` takes.
    * ``.mat`` -- :func:`read_imdb`: a MatConvNet ``imdb`` (``images.data`` H x W x C x N,
      ``images.labels`` 1-based, ``images.set`` 1 train / 2 val / 3 test, optional
      ``meta.classes``).
    * idx (MNIST format, gzipped or plain) -- :func:`read_idx`: ``path`` holds the training
      images and ``labels`` their labels; ``test`` and ``test_labels`` the test set (optional,
      both or neither). ``path`` may also be a folder with ``train-images-idx3-ubyte[.gz]`` and
      the three other standard names.

    A file without a test set gives an empty test set.

Common keys
-----------
``normalize``
    Applied to train and test images alike, with statistics from the training images only:

    * ``mean-image`` -- subtract the per-pixel mean training image (as MatConvNet's
      ``cnn_mnist``);
    * ``mean-channel`` -- subtract the per-channel mean;
    * ``none`` -- leave the values as they are;
    * ``{subtract: mean-image | mean-channel | <number>, scale: <number>}`` -- subtract, then
      multiply by ``scale`` (``{subtract: 0, scale: 0.00392156862745098}`` maps 0..255 to 0..1).

    The default is ``mean-image`` for Fashion-MNIST and idx files (raw pixel values) and
    ``none`` for ``.npz``, imdb ``.mat`` (MatConvNet imdbs are usually normalised already) and
    synthetic data.
``limit``
    ``{train: N, test: M}`` keeps at most N training and M test images: the first ones after a
    seeded, stratified shuffle (so the classes keep their proportions), in their original order.
``seed``
    Seed for the synthetic images and for ``limit``; defaults to the ``seed`` given to
    :func:`load_data`.

With no ``data:`` section, an input of 28x28x1 gets Fashion-MNIST and any other input gets
synthetic data (10 classes, 1000 train / 200 test).

Sequences
---------
A batch of sequences ``(N, T, D)`` is carried as ``(N, 1, T, D)``: height 1, width T (time),
channels D, so a sequence spec writes ``input: [1, T, D]``. Any source whose samples come out
``T x D x 1`` (a 3-D ``x`` of shape ``(N, T, D)``) is turned into ``1 x T x D`` when the spec's
input is ``[1, T, D]`` (:func:`as_sequences`); with another input size a 3-D ``x`` stays what it
always was, ``N`` grayscale images ``H x W``.
"""

from __future__ import annotations

import gzip
import math
import struct
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError
from .npzcheck import check_npz
from .suggest import did_you_mean

__all__ = [
    "FASHION_MNIST_CLASSES",
    "Dataset",
    "find_full_fashion_mnist",
    "load_data",
    "normalize",
    "read_idx",
    "read_imdb",
    "read_npz",
    "as_sequences",
    "sequences",
    "synthetic",
]

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

#: Where Debian's ``dataset-fashion-mnist`` package installs the idx files.
FASHION_MNIST_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)

#: The subset shipped inside the package (built by ``tools/make_fashion_subset.py``).
SUBSET_FILE = Path(__file__).with_name("data") / "fashion_mnist_subset.npz"

#: The standard idx file names of MNIST and Fashion-MNIST, without ``.gz``.
IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_NORMALIZE_NAMES = ("mean-image", "mean-channel", "none")
_DATASETS = ("fashion-mnist", "synthetic", "sequences")
_COMMON_KEYS = ("dataset", "path", "normalize", "limit", "seed")
_KIND_KEYS: dict[str, tuple[str, ...]] = {
    "fashion-mnist": ("full",),
    "synthetic": ("classes", "train", "test"),
    "sequences": ("classes", "train", "test"),
    "idx": ("labels", "test", "test_labels"),
    "npz": (),
    "imdb": (),
}
_ALL_KEYS = tuple(dict.fromkeys(_COMMON_KEYS + sum(_KIND_KEYS.values(), ())))
_NPZ_KEYS = ("x", "y", "x_train", "y_train", "x_test", "y_test", "x_val", "y_val", "classes")
_SYNTHETIC_DEFAULTS = {"classes": 10, "train": 1000, "test": 200}
_SEQUENCE_DEFAULTS = {"classes": 4, "train": 2000, "test": 500}


# --------------------------------------------------------------------------------------------
# Dataset


@dataclass(frozen=True, eq=False)
class Dataset:
    """A training set and a test set of images with integer labels.

    ``x_train``/``x_test`` are ``(N, H, W, C)`` float32 C-contiguous arrays;
    ``y_train``/``y_test`` are int64 with the image index first (``(N,)``, or ``(N, H', W')``
    label maps), 0-based, ``-1`` = ignore. The test set may be empty (``N = 0``). ``classes``
    names the classes when known.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...] | None
    description: str

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if not (isinstance(x, np.ndarray) and x.ndim == 4 and x.dtype == np.float32
                    and x.flags.c_contiguous):
                raise DataError(f"{self.name}: x_{part} must be an (N, H, W, C) C-contiguous "
                                f"float32 array")
            if not (isinstance(y, np.ndarray) and y.ndim >= 1 and y.dtype == np.int64):
                raise DataError(f"{self.name}: y_{part} must be an int64 array")
            if y.shape[0] != x.shape[0]:
                raise DataError(f"{self.name}: {x.shape[0]} {part} images but "
                                f"{y.shape[0]} labels")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DataError(f"{self.name}: training images are {_size(self.x_train.shape[1:])} "
                            f"but test images are {_size(self.x_test.shape[1:])}")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one image."""
        h, w, c = self.x_train.shape[1:]
        return (int(h), int(w), int(c))

    @property
    def num_classes(self) -> int | None:
        """The number of classes when the data names them, else ``None``."""
        return None if self.classes is None else len(self.classes)


# --------------------------------------------------------------------------------------------
# The data: section


def load_data(section: Mapping[str, Any] | None, *, input_shape: tuple[int, int, int] | None,
              base_dir: Path, seed: int = 0) -> Dataset:
    """Load the data a spec's ``data:`` section names (see the module docstring).

    ``input_shape`` is the spec's ``(H, W, C)``; the images must match it. ``base_dir`` is the
    spec's folder, against which relative paths are resolved. ``seed`` seeds synthetic data and
    ``limit`` unless the section has its own ``seed``.
    """
    shape = None if input_shape is None else tuple(int(v) for v in input_shape)
    if section is None:
        section = {"dataset": "fashion-mnist"} if shape == (28, 28, 1) else {"dataset": "synthetic"}
    if not isinstance(section, Mapping):
        raise DataError(f"data: expected a mapping such as {{dataset: fashion-mnist}} or "
                        f"{{path: my.npz}}, got {_describe(section)}")
    for key in section:
        if not isinstance(key, str) or key not in _ALL_KEYS:
            raise DataError(f"data: unknown key {key!r}{did_you_mean(str(key), _ALL_KEYS)}")
    if ("dataset" in section) == ("path" in section):
        raise DataError("data: give exactly one of 'dataset' (fashion-mnist, synthetic or "
                        "sequences) or 'path' (a .npz, imdb .mat or idx file)")
    seed = _int(section, "seed", seed, minimum=0)
    base_dir = Path(base_dir)

    kind, path = _kind(section, base_dir)
    allowed = _COMMON_KEYS + _KIND_KEYS[kind]
    for key in section:
        if key not in allowed:
            raise DataError(f"data: key {key!r} does not apply to {_KIND_NAMES[kind]}")

    if kind == "fashion-mnist":
        ds = _load_fashion_mnist(section.get("full"))
    elif kind == "synthetic":
        if shape is None:
            raise DataError("data: synthetic data needs the spec's input size")
        minimum = {"classes": 2, "train": 1, "test": 0}
        counts = {k: _int(section, k, v, minimum=minimum[k])
                  for k, v in _SYNTHETIC_DEFAULTS.items()}
        _check_generated_size("synthetic", counts, shape)
        ds = synthetic(shape, counts["classes"], counts["train"], counts["test"], seed)
    elif kind == "sequences":
        if shape is None or shape[0] != 1:
            got = "none" if shape is None else _size(shape)
            raise DataError(f"data: sequences need the spec's input as [1, T, D] (T steps of D "
                            f"features), got {got}")
        minimum = {"classes": 2, "train": 1, "test": 0}
        counts = {k: _int(section, k, v, minimum=minimum[k])
                  for k, v in _SEQUENCE_DEFAULTS.items()}
        _check_generated_size("sequences", counts, shape)
        ds = sequences(shape[1], shape[2], counts["classes"], counts["train"], counts["test"],
                       seed)
    elif kind == "npz":
        assert path is not None
        ds = read_npz(path)
    elif kind == "imdb":
        assert path is not None
        ds = read_imdb(path)
    else:
        assert path is not None
        ds = _load_idx(section, path, base_dir)

    if (shape is not None and shape[0] == 1 and ds.image_shape != shape
            and ds.image_shape == (shape[1], shape[2], 1)):
        ds = as_sequences(ds)
    if shape is not None and ds.image_shape != shape:
        raise DataError(f"data: {ds.name} images are {_size(ds.image_shape)} but the spec's input "
                        f"is {_size(shape)}")
    if "limit" in section:
        ds = _limit(ds, section["limit"], seed)
    default = "mean-image" if kind in ("fashion-mnist", "idx") else "none"
    return normalize(ds, section.get("normalize", default))


#: most values synthetic or sequence data may hold (train and test together): 1 GiB of float32
MAX_GENERATED_VALUES = 2**28


def _check_generated_size(kind: str, counts: Mapping[str, int],
                          shape: tuple[int, ...]) -> None:
    """Refuse generated data too large to hold before anything is allocated."""
    n = counts["train"] + counts["test"]
    values = n * math.prod(shape)
    if values > MAX_GENERATED_VALUES:
        raise DataError(f"data: {kind} data of {n:,} images of {_size(shape)} would hold "
                        f"{values:,} values; the limit is {MAX_GENERATED_VALUES:,} (1 GiB): "
                        f"give fewer 'train'/'test' images or a smaller input")


def load_spec_data(spec: Any) -> Dataset:
    """:func:`load_data` for a tidied :class:`~layerspec.spec.Spec`, with every
    :class:`DataError` located in the spec file (:func:`locate_data_error`)."""
    try:
        return load_data(spec.data, input_shape=spec.input, base_dir=spec.base_dir,
                         seed=spec.seed)
    except DataError as err:
        raise locate_data_error(err, spec) from None


def locate_data_error(err: DataError, spec: Any) -> DataError:
    """Put ``err`` at the spec's ``data:`` key it names (``'classes'``, ``data: limit:``) or
    whose file it names, else at ``data:`` (at ``input:`` when there is no data section)."""
    from .spec import spec_pos  # noqa: PLC0415 - spec does not need data

    if err.line is not None or spec.source is None:
        return err
    section = spec.data or {}
    key = next((k for k in section if f"data: {k}:" in err.message or f"'{k}'" in err.message),
               None)
    if key is None:
        key = next((k for k, v in section.items() if isinstance(v, str) and v in err.message),
                   None)
    line, col = spec_pos(spec, f"data.{key}") if key is not None else (None, None)
    if line is None:
        line, col = spec_pos(spec, "data" if spec.data is not None else "input")
    return err.located(spec.source, line, col)


_KIND_NAMES = {
    "fashion-mnist": "dataset: fashion-mnist",
    "synthetic": "dataset: synthetic",
    "sequences": "dataset: sequences",
    "npz": "a .npz file",
    "imdb": "an imdb .mat file",
    "idx": "idx files",
}


def _kind(section: Mapping[str, Any], base_dir: Path) -> tuple[str, Path | None]:
    """Which loader the section asks for, and the resolved data path (if any)."""
    if "dataset" in section:
        name = section["dataset"]
        if not isinstance(name, str):
            raise DataError(f"data: 'dataset' must be a name ({' or '.join(_DATASETS)}), got "
                            f"{_describe(name)}")
        canon = name.strip().lower().replace("_", "-")
        if canon == "fashionmnist":
            canon = "fashion-mnist"
        if canon not in _DATASETS:
            raise DataError(f"data: unknown dataset {name!r}{did_you_mean(canon, _DATASETS)}; "
                            f"for your own files give 'path'")
        return canon, None
    path = _resolve(section["path"], "path", base_dir)
    if path.is_dir():
        return "idx", path
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "npz", path
    if suffix == ".mat":
        return "imdb", path
    if suffix == ".npy":
        raise DataError(f"data file '{section['path']}' is a single .npy array; save images and "
                        f"labels together with numpy.savez(path, x=..., y=...)")
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as err:
        raise DataError(f"data file '{section['path']}' cannot be read: "
                        f"{err.strerror or err}") from None
    if head.startswith(b"PK"):
        return "npz", path
    if head.startswith(b"MATLAB"):
        return "imdb", path
    if head[:2] in (b"\x1f\x8b", b"\x00\x00"):
        return "idx", path
    raise DataError(f"data file '{section['path']}': cannot tell its format; expected .npz, "
                    f"an imdb .mat or an idx file (MNIST format, optionally gzipped)")


def _resolve(value: Any, key: str, base_dir: Path) -> Path:
    """``base_dir / value`` for a relative path, checking that the file exists."""
    if not isinstance(value, str | Path) or not str(value):
        raise DataError(f"data: {key!r} must be a file name, got {_describe(value)}")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    if not path.exists():
        raise DataError(f"data file '{value}' not found (looked in {path.parent.resolve()})")
    return path


# --------------------------------------------------------------------------------------------
# Fashion-MNIST


def find_full_fashion_mnist() -> Path | None:
    """The folder of Debian's ``dataset-fashion-mnist`` idx files, or ``None`` if not installed.

    Looks only at the package's install location (``/usr/share/datasets/fashion-mnist``); never
    touches the network.
    """
    for folder in FASHION_MNIST_DIRS:
        if folder.is_dir() and all(_idx_file(folder, name) is not None
                                   for name in IDX_NAMES.values()):
            return folder
    return None


def _load_fashion_mnist(full: Any) -> Dataset:
    if full is not None and not isinstance(full, bool):
        raise DataError(f"data: 'full' must be true or false, got {_describe(full)}")
    folder = find_full_fashion_mnist() if full in (None, True) else None
    if folder is None and full is True:
        places = ", ".join(str(p) for p in FASHION_MNIST_DIRS)
        raise DataError(f"data: the full Fashion-MNIST is not installed (looked in {places}); "
                        f"install Debian's dataset-fashion-mnist, or drop 'full: true' to use "
                        f"the embedded subset")
    if folder is not None:
        try:
            ds = _read_idx_dir(folder, classes=FASHION_MNIST_CLASSES)
        except DataError as err:
            raise DataError(f"{err.message} (use data: {{dataset: fashion-mnist, full: false}} "
                            f"for the embedded subset)") from None
        where = "full set from Debian's dataset-fashion-mnist"
    else:
        if not SUBSET_FILE.is_file():
            raise DataError(f"the embedded Fashion-MNIST subset is missing ({SUBSET_FILE.name}); "
                            f"reinstall layerspec")
        ds = read_npz(SUBSET_FILE)
        if ds.classes is None:
            ds = replace(ds, classes=FASHION_MNIST_CLASSES)
        where = "embedded subset"
    text = (f"Fashion-MNIST ({where}: {len(ds.y_train):,} train / {len(ds.y_test):,} test)")
    return replace(ds, name="fashion-mnist", description=text)


# --------------------------------------------------------------------------------------------
# idx files


def read_idx(path: str | Path) -> np.ndarray:
    """Read an MNIST-format idx file (gzipped or plain) into a native-endian array.

    The header is validated (magic number, element type, dimensions) and the data must have exactly
    the length the header announces; any problem raises :class:`DataError` naming the file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"idx file '{path}' not found") from None
    except OSError as err:
        raise DataError(f"idx file '{path}' cannot be read: {err.strerror or err}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"idx file '{path}' is a damaged or truncated gzip file "
                            f"({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"idx file '{path}' does not start with an idx magic number "
                        f"(00 00 <type> <ndim>)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise DataError(f"idx file '{path}' has unknown element type 0x{code:02X}")
    if ndim < 1:
        raise DataError(f"idx file '{path}' declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"idx file '{path}' is truncated inside its header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        what = "is truncated" if got < expected else "has trailing bytes"
        raise DataError(f"idx file '{path}' {what}: its header declares "
                        f"{' x '.join(map(str, dims))} elements ({expected:,} bytes) but it holds "
                        f"{got:,} bytes of data")
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def _idx_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def _read_idx_dir(folder: Path, classes: tuple[str, ...] | None = None) -> Dataset:
    """The four standard MNIST-named idx files in ``folder`` (test files optional as a pair)."""
    files = {key: _idx_file(folder, name) for key, name in IDX_NAMES.items()}
    for key in ("train_images", "train_labels"):
        if files[key] is None:
            raise DataError(f"data folder '{folder}' has no {IDX_NAMES[key]}[.gz]")
    if (files["test_images"] is None) != (files["test_labels"] is None):
        raise DataError(f"data folder '{folder}' has only one of {IDX_NAMES['test_images']} and "
                        f"{IDX_NAMES['test_labels']}")
    return _idx_dataset(folder.name, files["train_images"], files["train_labels"],
                        files["test_images"], files["test_labels"], classes)


def _load_idx(section: Mapping[str, Any], path: Path, base_dir: Path) -> Dataset:
    if path.is_dir():
        extra = [k for k in ("labels", "test", "test_labels") if k in section]
        if extra:
            raise DataError(f"data: {extra[0]!r} cannot be combined with a folder 'path'")
        return _read_idx_dir(path)
    if "labels" not in section:
        raise DataError(f"data: idx images '{section['path']}' need 'labels' (the idx labels file)")
    if ("test" in section) != ("test_labels" in section):
        raise DataError("data: give both 'test' and 'test_labels' (idx files) or neither")
    labels = _resolve(section["labels"], "labels", base_dir)
    test = _resolve(section["test"], "test", base_dir) if "test" in section else None
    test_labels = (_resolve(section["test_labels"], "test_labels", base_dir)
                   if "test_labels" in section else None)
    return _idx_dataset(_stem(path), path, labels, test, test_labels, None)


def _idx_dataset(name: str, images: Path | None, labels: Path | None, test: Path | None,
                 test_labels: Path | None, classes: tuple[str, ...] | None) -> Dataset:
    assert images is not None and labels is not None
    k = None if classes is None else len(classes)
    x_train = _as_images(read_idx(images), f"idx file '{images}'")
    y_train = _as_labels(read_idx(labels), len(x_train), f"idx file '{labels}'", k)
    if test is not None and test_labels is not None:
        x_test = _as_images(read_idx(test), f"idx file '{test}'")
        y_test = _as_labels(read_idx(test_labels), len(x_test), f"idx file '{test_labels}'", k)
    else:
        x_test, y_test = _empty_like(x_train, y_train)
    return _dataset(name, x_train, y_train, x_test, y_test, classes, f"idx files ({name})")


# --------------------------------------------------------------------------------------------
# .npz files


def read_npz(path: str | Path) -> Dataset:
    """Read a ``.npz`` of images and 0-based labels (never unpickling anything).

    Arrays: ``x`` and ``y`` (or ``x_train``/``y_train``); optional ``x_test``/``y_test`` (or,
    when there is no test set, ``x_val``/``y_val``); optional ``classes`` (strings). Images are
    ``(N, H, W, C)`` or ``(N, H, W)`` of any real numeric type; labels are integers
    (integer-valued floats are accepted), ``-1`` = ignore. Any other array name, object arrays,
    wrong types or shapes raise :class:`DataError`.
    """
    path = Path(path)
    where = f"data file '{path}'"
    check_npz(path, where, DataError)
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{where} not found") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{where} is not a readable .npz file ({err})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{where} holds a single array; save images and labels together with "
                        f"numpy.savez(path, x=..., y=...)")
    with archive:
        names = list(archive.files)
        for key in names:
            if key not in _NPZ_KEYS:
                raise DataError(f"{where}: unexpected array {key!r}"
                                f"{did_you_mean(key, _NPZ_KEYS)}")
        arrays = {key: _npz_array(archive, key, where) for key in names}

    def pick(first: str, second: str, what: str) -> str | None:
        if first in arrays and second in arrays:
            raise DataError(f"{where} has both {first!r} and {second!r}; keep one for the {what}")
        return first if first in arrays else second if second in arrays else None

    kx, ky = pick("x", "x_train", "training images"), pick("y", "y_train", "training labels")
    if kx is None or ky is None:
        missing = "x" if kx is None else "y"
        raise DataError(f"{where} has no array {missing!r} (present: {', '.join(names) or 'none'})")
    test_keys = ("x_test", "y_test") if ("x_test" in arrays or "y_test" in arrays) else \
        ("x_val", "y_val")
    present = [k for k in test_keys if k in arrays]
    if len(present) == 1:
        other = test_keys[1 - test_keys.index(present[0])]
        raise DataError(f"{where} has {present[0]!r} but no {other!r}")

    classes = _npz_classes(arrays["classes"], where) if "classes" in arrays else None
    k = None if classes is None else len(classes)
    x_train = _as_images(arrays[kx], f"{where}: array {kx!r}")
    y_train = _as_labels(arrays[ky], len(x_train), f"{where}: array {ky!r}", k)
    if present:
        x_test = _as_images(arrays[test_keys[0]], f"{where}: array {test_keys[0]!r}")
        y_test = _as_labels(arrays[test_keys[1]], len(x_test), f"{where}: array "
                            f"{test_keys[1]!r}", k)
    else:
        x_test, y_test = _empty_like(x_train, y_train)
    return _dataset(_stem(path), x_train, y_train, x_test, y_test, classes, f"{path.name}")


def _npz_array(archive: Any, key: str, where: str) -> np.ndarray:
    try:
        return np.asarray(archive[key])
    except ValueError as err:
        if "pickle" in str(err).lower() or "object" in str(err).lower():
            raise DataError(f"{where}: array {key!r} holds Python objects, which layerspec does "
                            f"not load (pickles can run code); save numeric arrays and a string "
                            f"array for 'classes'") from None
        raise DataError(f"{where}: array {key!r} cannot be read ({err})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise DataError(f"{where}: array {key!r} cannot be read ({err})") from None


def _npz_classes(array: np.ndarray, where: str) -> tuple[str, ...]:
    if array.ndim != 1:
        raise DataError(f"{where}: 'classes' must be a 1-D array of names")
    if array.dtype.kind == "U":
        return tuple(str(v) for v in array)
    if array.dtype.kind == "S":
        return tuple(v.decode("utf-8", "replace") for v in array)
    if array.dtype.kind in "iu":
        return tuple(str(int(v)) for v in array)
    raise DataError(f"{where}: 'classes' must be an array of strings, got {array.dtype}")


# --------------------------------------------------------------------------------------------
# MatConvNet imdb .mat files


def read_imdb(path: str | Path) -> Dataset:
    """Read a MatConvNet ``imdb`` ``.mat`` file.

    The file holds ``images`` (and optionally ``meta``) at top level, as ``save(f, '-struct',
    'imdb')`` writes it, or a single ``imdb`` struct. ``images.data`` is H x W x C x N,
    ``images.labels`` 1 x N with 1-based labels (0 = ignore, which becomes -1) or H x W x 1 x N
    label maps, ``images.set`` 1 (train), 2 (val) or 3 (test). The test set is set 3, or set 2 when
    there is no set 3 (set-2 images are unused when set 3 exists). ``meta.classes`` (cell of names,
    char matrix, numbers, or a struct with ``description``/``name``) gives the class names. v7.3
    (HDF5) files need h5py.
    """
    import scipy.io

    path = Path(path)
    where = f"data file '{path}'"
    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=False, struct_as_record=True)
    except FileNotFoundError:
        raise DataError(f"{where} not found") from None
    except NotImplementedError:  # MATLAB v7.3 (HDF5)
        images, meta = _read_imdb_hdf5(path, where)
    except (ValueError, TypeError, OSError, EOFError, zlib.error, KeyError) as err:
        raise DataError(f"{where} is not a readable MATLAB .mat file ({err})") from None
    else:
        root: dict[str, Any] = mat
        if "images" not in mat and "imdb" in mat:
            root = _struct_dict(mat["imdb"], where, "imdb")
        if "images" not in root:
            raise DataError(f"{where} has no 'images' struct (expected a MatConvNet imdb)")
        images = _struct_dict(root["images"], where, "images")
        meta = None
        if "meta" in root:
            meta = _struct_dict(root["meta"], where, "meta")
        elif "classes" in root:
            meta = {"classes": root["classes"]}
    classes = None
    if meta is not None and "classes" in meta:
        classes = _mat_classes(meta["classes"], where)
    return _imdb_dataset(path, where, images, classes)


def _struct_dict(value: Any, where: str, name: str) -> dict[str, Any]:
    """The fields of a 1x1 Matlab struct (a loadmat record array, or a dict) as a dict."""
    value = _mat_value(value)
    if isinstance(value, dict):
        return value
    if isinstance(value, np.ndarray) and value.dtype.names is not None:
        if value.size != 1:
            raise DataError(f"{where}: '{name}' must be a single struct, not a struct array")
        record = value.reshape(())
        return {field: _mat_value(record[field]) for field in value.dtype.names}
    raise DataError(f"{where}: '{name}' must be a struct")


def _mat_value(value: Any) -> Any:
    """Unwrap the 0-d object array loadmat puts around a struct field."""
    if isinstance(value, np.ndarray) and value.dtype == object and value.ndim == 0:
        return value[()]
    return value


def _mat_classes(value: Any, where: str) -> tuple[str, ...] | None:
    value = _mat_value(value)
    if not isinstance(value, np.ndarray):
        if isinstance(value, list | tuple):
            return tuple(str(v) for v in value)
        return None
    if value.dtype.names is not None:  # struct: ImageNet style classes.name / .description
        fields = _struct_dict(value, where, "meta.classes")
        for field in ("description", "name"):
            if field in fields:
                return _mat_classes(fields[field], where)
        return None
    if value.dtype.kind == "U":
        return tuple(str(v).rstrip() for v in value.reshape(-1, order="F"))
    if value.dtype == object:
        names = []
        for item in value.reshape(-1, order="F"):
            item = _mat_value(item)
            if isinstance(item, np.ndarray):
                if item.dtype.kind == "U":
                    item = "".join(str(v) for v in item.reshape(-1))
                elif item.dtype.kind in "iuf" and item.size == 1:
                    item = _number_name(item.reshape(-1)[0])
                else:
                    raise DataError(f"{where}: meta.classes has an entry that is not a name")
            names.append(str(item))
        return tuple(names)
    if value.dtype.kind in "iuf":
        return tuple(_number_name(v) for v in value.reshape(-1, order="F"))
    raise DataError(f"{where}: meta.classes must be a cell array of names")


def _number_name(v: Any) -> str:
    return str(int(v)) if float(v).is_integer() else str(float(v))


def _imdb_dataset(path: Path, where: str, images: Mapping[str, Any],
                  classes: tuple[str, ...] | None) -> Dataset:
    for field in ("data", "labels"):
        if field not in images:
            raise DataError(f"{where}: images.{field} is missing")
    data = np.asarray(_mat_value(images["data"]))
    labels = np.asarray(_mat_value(images["labels"]))
    if labels.dtype.kind not in "iufb":
        raise DataError(f"{where}: images.labels must be numeric, got {labels.dtype}")
    # Labels: a vector (one per image) or H x W x 1 x N label maps.
    if labels.ndim < 2 or (labels.ndim == 2 and 1 in labels.shape):
        n = labels.size
        y = labels.reshape(-1, order="F")
    elif labels.ndim == 4 and labels.shape[2] == 1:
        n = labels.shape[3]
        y = np.ascontiguousarray(labels[:, :, 0, :].transpose(2, 0, 1))
    else:
        raise DataError(f"{where}: images.labels must be 1 x N or H x W x 1 x N, got "
                        f"{' x '.join(map(str, labels.shape))}")
    # Images: H x W x C x N; Matlab drops trailing singleton dimensions (N = 1, C = 1).
    if data.dtype.kind not in "iufb":
        raise DataError(f"{where}: images.data must be numeric, got {data.dtype}")
    if data.ndim == 4 and data.shape[3] == n:
        x = data.transpose(3, 0, 1, 2)
    elif data.ndim == 3 and data.shape[2] == n and n != 1:
        x = data.transpose(2, 0, 1)[..., None]
    elif data.ndim in (2, 3) and n == 1:
        x = data.reshape(data.shape[:2] + (data.shape[2] if data.ndim == 3 else 1,))[None]
    else:
        raise DataError(f"{where}: images.data is {' x '.join(map(str, data.shape))} but there are "
                        f"{n} labels; expected H x W x C x N")
    if "set" in images:
        sets = np.asarray(_mat_value(images["set"])).reshape(-1, order="F")
        if sets.size != n or sets.dtype.kind not in "iuf":
            raise DataError(f"{where}: images.set must hold one number per image ({n})")
        bad = np.setdiff1d(np.unique(sets), [1, 2, 3])
        if bad.size:
            raise DataError(f"{where}: images.set has value {_number_name(bad[0])}; expected 1 "
                            f"(train), 2 (val) or 3 (test)")
    else:
        sets = np.ones(n)
    test_set = 3 if np.any(sets == 3) else 2
    k = None if classes is None else len(classes)
    # 1-based -> 0-based: Matlab's label 0 ("ignore") becomes -1.
    y0 = _as_labels(y, n, f"{where}: images.labels", k, base=1)
    x_all = _as_images(x, f"{where}: images.data")
    train, test = sets == 1, sets == test_set
    return _dataset(_stem(path), np.ascontiguousarray(x_all[train]), y0[train],
                    np.ascontiguousarray(x_all[test]), y0[test], classes, f"imdb {path.name}")


def _read_imdb_hdf5(path: Path, where: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``images`` and ``meta`` of a MATLAB v7.3 (HDF5) imdb, arrays in Matlab axis order."""
    try:
        import h5py
    except ImportError:
        raise DataError(f"{where} is a MATLAB v7.3 (HDF5) file, which needs h5py "
                        f"(pip install h5py), or save it with save(..., '-v7')") from None
    try:
        with h5py.File(path, "r") as f:
            root: Any = f
            if "images" not in f and "imdb" in f:
                root = f["imdb"]
            if "images" not in root or not isinstance(root["images"], h5py.Group):
                raise DataError(f"{where} has no 'images' struct (expected a MatConvNet imdb)")
            images = {k: _h5_value(f, v) for k, v in root["images"].items()
                      if k in ("data", "labels", "set")}
            meta = None
            group = root.get("meta")
            if isinstance(group, h5py.Group) and "classes" in group:
                meta = {"classes": _h5_value(f, group["classes"])}
            return images, meta
    except DataError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise DataError(f"{where} is not a readable MATLAB v7.3 file ({err})") from None


def _h5_value(f: Any, node: Any) -> Any:
    """A v7.3 variable in Matlab axis order: numbers as arrays, chars as str, cells as lists."""
    import h5py

    if isinstance(node, h5py.Group):
        return {k: _h5_value(f, v) for k, v in node.items()}
    value = node[()]
    kind = node.attrs.get("MATLAB_class", b"")
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    if isinstance(value, np.ndarray) and value.dtype.kind == "O":  # cell: object references
        return [_h5_value(f, f[ref]) for ref in value.T.reshape(-1, order="F")]
    value = np.asarray(value).T
    if kind == "char":
        return "".join(chr(c) for c in value.reshape(-1, order="F"))
    return value


# --------------------------------------------------------------------------------------------
# Synthetic data


def synthetic(shape: tuple[int, int, int], num_classes: int, n_train: int, n_test: int,
              seed: int) -> Dataset:
    """A deterministic, learnable synthetic image set.

    Each class has a random smooth template (a combination of the lowest 2-D cosine frequencies,
    per channel, scaled to unit RMS). An image is ``a * template[class] + distractor + noise``
    with a random contrast ``a`` in [0.6, 1.4], a random smooth distractor drawn like the templates
    (RMS 0.6) and white noise (standard deviation 0.5). Labels are balanced and shuffled. The
    templates, training set and test set come from independent streams of ``seed``, so changing
    ``n_train`` does not change the test set. Values are roughly zero-mean with unit scale.
    """
    h, w, c = (int(v) for v in shape)
    if min(h, w, c) < 1:
        raise DataError(f"synthetic data: the image size must be positive, got {shape}")
    if num_classes < 1 or n_train < 0 or n_test < 0:
        raise DataError("synthetic data: classes must be >= 1 and counts >= 0")
    streams = np.random.SeedSequence(int(seed)).spawn(3)
    fh, fw = min(h, 4), min(w, 4)
    bh, bw = _cosine_basis(h, fh), _cosine_basis(w, fw)
    u, v = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")
    weight = (1.0 / (1.0 + u + v))[:, :, None]

    def patterns(rng: np.random.Generator, m: int) -> np.ndarray:
        coef = rng.standard_normal((m, fh, fw, c)) * weight
        out = np.einsum("hu,muvc,wv->mhwc", bh, coef, bw, optimize=True)
        rms = np.sqrt(np.mean(out**2, axis=(1, 2, 3), keepdims=True))
        return out / np.maximum(rms, 1e-12)

    templates = patterns(np.random.default_rng(streams[0]), num_classes)

    def draw(stream: np.random.SeedSequence, n: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(stream)
        y = rng.permutation(np.arange(n, dtype=np.int64) % num_classes)
        x = np.empty((n, h, w, c), dtype=np.float32)
        chunk = max(1, (1 << 20) // (h * w * c))
        for start in range(0, n, chunk):
            yy = y[start:start + chunk]
            m = len(yy)
            amp = rng.uniform(0.6, 1.4, size=(m, 1, 1, 1))
            x[start:start + m] = (amp * templates[yy] + 0.6 * patterns(rng, m)
                                  + 0.5 * rng.standard_normal((m, h, w, c)))
        return x, y

    x_train, y_train = draw(streams[1], n_train)
    x_test, y_test = draw(streams[2], n_test)
    classes = tuple(f"class{k}" for k in range(num_classes))
    text = (f"synthetic ({num_classes} classes, {_size((h, w, c))}, seed {seed}: "
            f"{n_train:,} train / {n_test:,} test)")
    return Dataset("synthetic", x_train, y_train, x_test, y_test, classes, text)


def sequences(steps: int, dim: int, num_classes: int, n_train: int, n_test: int,
              seed: int) -> Dataset:
    """A deterministic sequence-classification task: which frequency a noisy signal has.

    Class ``k`` has the frequency ``f_k``, ``num_classes`` values evenly spaced from 1.5 to
    ``min(1.5 + 1.6 (num_classes - 1), 0.4 T)`` cycles per sequence. A sequence of ``T = steps``
    steps and ``D = dim`` channels is, per channel ``d``,
    ``x[t, d] = a_d sin(2 pi f t / T + phi_d) + 0.6 e[t, d]``, with its own frequency
    ``f = f_k (1 + U(-0.06, 0.06))``, amplitudes ``a_d ~ U(0.5, 1.5)``, phases
    ``phi_d ~ U(0, 2 pi)`` and white noise ``e ~ N(0, 1)``.

    Because the phases are uniform, every single step — the last one included — has the same
    distribution in every class, and so has the mean of a class's sequences (zero): neither the
    last step nor a linear model of the whole sequence does better than chance. The class shows
    only in how the signal evolves over time (its period), which a recurrent layer must track
    over the sequence. Labels are balanced and shuffled; the training and test sets come from
    independent streams of ``seed``. Samples are ``(N, 1, T, D)`` (:func:`as_sequences`).
    """
    t, d = int(steps), int(dim)
    if t < 2 or d < 1:
        raise DataError(f"sequences: need at least 2 steps and 1 channel, got T={t}, D={d}")
    if num_classes < 2 or n_train < 0 or n_test < 0:
        raise DataError("sequences: classes must be >= 2 and counts >= 0")
    hi = max(1.5, min(1.5 + 1.6 * (num_classes - 1), 0.4 * t))
    freqs = np.linspace(1.5, hi, num_classes)
    streams = np.random.SeedSequence([int(seed), 0x5E0]).spawn(2)
    steps_ = np.arange(t, dtype=np.float64)

    def draw(stream: np.random.SeedSequence, n: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(stream)
        y = rng.permutation(np.arange(n, dtype=np.int64) % num_classes)
        f = freqs[y] * rng.uniform(0.94, 1.06, size=n)
        phase = rng.uniform(0.0, 2 * np.pi, size=(n, 1, d))
        amp = rng.uniform(0.5, 1.5, size=(n, 1, d))
        x = (amp * np.sin(2 * np.pi * f[:, None, None] * steps_[None, :, None] / t + phase)
             + 0.6 * rng.standard_normal((n, t, d)))
        return np.ascontiguousarray(x.reshape(n, 1, t, d), dtype=np.float32), y

    x_train, y_train = draw(streams[0], n_train)
    x_test, y_test = draw(streams[1], n_test)
    classes = tuple(f"{f:.2f} cycles" for f in freqs)
    text = (f"sequences ({num_classes} frequency classes, {t} steps x {d} channels, seed {seed}: "
            f"{n_train:,} train / {n_test:,} test)")
    return Dataset("sequences", x_train, y_train, x_test, y_test, classes, text)


def as_sequences(ds: Dataset) -> Dataset:
    """``ds`` with its ``(N, T, D, 1)`` samples (a 3-D ``x`` read as images) re-read as
    sequences ``(N, 1, T, D)`` — the same numbers, the layout ``lstm`` takes."""
    def seq(x: np.ndarray) -> np.ndarray:
        n, t, d, c = x.shape
        if c != 1:
            raise DataError(f"{ds.name}: samples of {_size(x.shape[1:])} are not sequences "
                            f"T x D")
        return np.ascontiguousarray(x.reshape(n, 1, t, d))

    return replace(ds, x_train=seq(ds.x_train), x_test=seq(ds.x_test),
                   description=f"{ds.description}; as sequences")


def _cosine_basis(n: int, f: int) -> np.ndarray:
    """``(n, f)``: the first ``f`` DCT-II basis vectors of length ``n``."""
    i = np.arange(n)[:, None] + 0.5
    return np.cos(np.pi * np.arange(f)[None, :] * i / n)


# --------------------------------------------------------------------------------------------
# Normalisation and limits


def normalize(ds: Dataset, how: str | Mapping[str, Any] | None) -> Dataset:
    """Return ``ds`` with its images normalised as ``how`` says (see the module docstring).

    Statistics come from the training images and are applied to train and test alike.
    """
    subtract, scale = _parse_normalize(how)
    if subtract is None and scale == 1.0:
        return ds
    offset: np.ndarray | float = 0.0
    if isinstance(subtract, str):
        if len(ds.x_train) == 0:
            raise DataError(f"normalize: {subtract} needs training images, and {ds.name} has none")
        axes = 0 if subtract == "mean-image" else (0, 1, 2)
        offset = ds.x_train.mean(axis=axes, dtype=np.float64).astype(np.float32)
    elif subtract is not None:
        offset = np.float32(subtract)

    def apply(x: np.ndarray) -> np.ndarray:
        out = np.subtract(x, offset, dtype=np.float32)
        if scale != 1.0:
            out *= np.float32(scale)
        return np.ascontiguousarray(out)

    parts = []
    if subtract is not None:
        parts.append(f"{subtract} subtracted" if isinstance(subtract, str)
                     else f"minus {subtract:g}")
    if scale != 1.0:
        parts.append(f"times {scale:g}")
    return replace(ds, x_train=apply(ds.x_train), x_test=apply(ds.x_test),
                   description=f"{ds.description}; {', '.join(parts)}")


def _parse_normalize(how: Any) -> tuple[str | float | None, float]:
    """``(subtract, scale)``: subtract is a mean name, a number or ``None``."""
    if how is None:
        return None, 1.0
    if isinstance(how, str):
        name = how.strip().lower()
        if name not in _NORMALIZE_NAMES:
            raise DataError(f"data: unknown normalize {how!r}"
                            f"{did_you_mean(name, _NORMALIZE_NAMES)}; or give "
                            f"{{subtract: ..., scale: ...}}")
        return (None if name == "none" else name), 1.0
    if isinstance(how, Mapping):
        for key in how:
            if key not in ("subtract", "scale"):
                raise DataError(f"data: normalize: unknown key {key!r}"
                                f"{did_you_mean(str(key), ('subtract', 'scale'))}")
        subtract: str | float | None = None
        if "subtract" in how:
            value = how["subtract"]
            if isinstance(value, str):
                sub, _ = _parse_normalize(value)
                subtract = sub
            elif _is_number(value):
                subtract = float(value) if value != 0 else None
            else:
                raise DataError(f"data: normalize: 'subtract' must be mean-image, mean-channel or "
                                f"a number, got {_describe(value)}")
        scale = how.get("scale", 1.0)
        if not _is_number(scale) or not math.isfinite(float(scale)) or float(scale) == 0:
            raise DataError(f"data: normalize: 'scale' must be a non-zero number, got "
                            f"{_describe(scale)}")
        return subtract, float(scale)
    raise DataError(f"data: normalize must be mean-image, mean-channel, none or "
                    f"{{subtract: ..., scale: ...}}, got {_describe(how)}")


def _limit(ds: Dataset, limit: Any, seed: int) -> Dataset:
    if not isinstance(limit, Mapping):
        raise DataError(f"data: 'limit' must be a mapping like {{train: 1000, test: 200}}, got "
                        f"{_describe(limit)}")
    for key in limit:
        if key not in ("train", "test"):
            raise DataError(f"data: limit: unknown key {key!r}"
                            f"{did_you_mean(str(key), ('train', 'test'))}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x11A1]))
    parts: dict[str, Any] = {}
    for part in ("train", "test"):
        x, y = getattr(ds, f"x_{part}"), getattr(ds, f"y_{part}")
        order = _stratified_order(y, rng)  # drawn for both parts so each is seed-stable
        if part not in limit:
            continue
        n = _int(limit, part, 0, minimum=1 if part == "train" else 0, where="data: limit")
        keep = np.sort(order[:n])
        parts[f"x_{part}"] = np.ascontiguousarray(x[keep])
        parts[f"y_{part}"] = np.ascontiguousarray(y[keep])
    if not parts:
        return ds
    new = replace(ds, **parts)
    text = (f"{ds.description}; limited to {len(new.y_train):,} train / {len(new.y_test):,} test")
    return replace(new, description=text)


def _stratified_order(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A seeded permutation of ``range(len(y))`` whose every prefix keeps the class proportions.

    Images are shuffled, then ranked within their class; sorting by rank / class size interleaves
    the classes. Label maps (``y.ndim > 1``) get a plain shuffle.
    """
    n = len(y)
    perm = rng.permutation(n)
    if y.ndim != 1 or n == 0:
        return perm
    _, inverse, counts = np.unique(y[perm], return_inverse=True, return_counts=True)
    grouped = np.argsort(inverse, kind="stable")
    starts = np.cumsum(counts) - counts
    rank = np.empty(n, dtype=np.float64)
    rank[grouped] = np.arange(n) - np.repeat(starts, counts)
    key = (rank + 0.5) / counts[inverse]
    return perm[np.argsort(key, kind="stable")]


# --------------------------------------------------------------------------------------------
# Array checks and helpers


def _as_images(x: np.ndarray, where: str) -> np.ndarray:
    """``(N, H, W, C)`` float32 C-contiguous from ``(N, H, W[, C])`` real numbers."""
    x = np.asarray(x)
    if x.dtype.kind not in "iufb":
        raise DataError(f"{where}: images must be real numbers, got dtype {x.dtype}")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or 0 in x.shape[1:]:
        raise DataError(f"{where}: images must be N x H x W or N x H x W x C, got shape "
                        f"{' x '.join(map(str, x.shape))}")
    out = np.ascontiguousarray(x, dtype=np.float32)
    if out.dtype.kind == "f" and not np.isfinite(out).all():
        raise DataError(f"{where}: images contain NaN or infinite values")
    return out


def _as_labels(y: np.ndarray, n: int, where: str, num_classes: int | None,
               base: int = 0) -> np.ndarray:
    """int64 0-based labels with ``n`` rows; ``base`` 1 converts 1-based Matlab labels."""
    y = np.asarray(y)
    if y.ndim == 0 or y.dtype.kind not in "iufb":
        raise DataError(f"{where}: labels must be an array of integers, got "
                        f"{'a scalar' if y.ndim == 0 else f'dtype {y.dtype}'}")
    if y.shape[0] != n:
        raise DataError(f"{where}: {y.shape[0]} labels for {n} images")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or np.any(y != np.round(y)):
            raise DataError(f"{where}: labels must be integers (found a non-integer value)")
    out = np.ascontiguousarray(y.astype(np.int64) - base)
    if out.size:
        low = int(out.min())
        if low < -1:
            raise DataError(f"{where}: label {low + base} is out of range (labels are "
                            f"{'1-based, 0 = ignore' if base else '0-based, -1 = ignore'})")
        high = int(out.max())
        if num_classes is not None and high >= num_classes:
            raise DataError(f"{where}: label {high + base} is out of range for {num_classes} "
                            f"classes ({base}..{num_classes - 1 + base})")
    return out


def _empty_like(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (np.empty((0,) + x.shape[1:], np.float32), np.empty((0,) + y.shape[1:], np.int64))


def _dataset(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
             y_test: np.ndarray, classes: tuple[str, ...] | None, source: str) -> Dataset:
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{source}: training images are {_size(x_train.shape[1:])} but test "
                        f"images are {_size(x_test.shape[1:])}")
    text = f"{source} ({len(y_train):,} train / {len(y_test):,} test)"
    return Dataset(name, x_train, y_train, x_test, y_test, classes, text)


def _int(section: Mapping[str, Any], key: str, default: int, *, minimum: int,
         where: str = "data") -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise DataError(f"{where}: {key!r} must be an integer, got {_describe(value)}")
    if value < minimum:
        raise DataError(f"{where}: {key!r} must be at least {minimum}, got {value}")
    return int(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _size(shape: tuple[int, ...]) -> str:
    return "x".join(str(int(v)) for v in shape)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".npz", ".mat"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name or path.name
