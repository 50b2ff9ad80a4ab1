"""Write the binary files of the bad-input corpus (tests/corpus/{mat,npz,data}/).

The text files of the corpus (specs, ``.m`` files) are kept as written; this script makes the
``.mat``, ``.npz``, idx and checkpoint files, byte for byte the same on every run (fixed zip
timestamps, a fixed MAT header), so regenerating them leaves ``git status`` clean::

    python tools/make_bad_corpus.py          # writes into tests/corpus/
    python tools/make_bad_corpus.py --check  # exit 1 when a file differs from what it would write

Every file is small (a few KB). tests/test_corpus.py holds the table of what each one must
give; the pickles here would set the environment variable LAYERSPEC_PWNED if anything ever
unpickled them, and the test checks that it never is.
"""

from __future__ import annotations

import argparse
import gzip
import io
import pickle
import struct
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.io as sio

ROOT = Path(__file__).resolve().parents[1] / "tests" / "corpus"
DATE = (1980, 1, 1, 0, 0, 0)
#: what the hostile pickles would run, were they ever unpickled
PAYLOAD = "import os; os.environ['LAYERSPEC_PWNED'] = '1'"

FILES: dict[str, Callable[[], bytes]] = {}


def corpus(name: str) -> Callable[[Callable[[], bytes]], Callable[[], bytes]]:
    def register(fn: Callable[[], bytes]) -> Callable[[], bytes]:
        FILES[name] = fn
        return fn
    return register


# --------------------------------------------------------------------------------------------
# helpers


class _Exec:
    """Pickles as ``exec(PAYLOAD)``: what a hostile .npz hides in an object array."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (PAYLOAD,))


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(array), allow_pickle=True)
    return buf.getvalue()


def pickled_npy() -> bytes:
    """A 1-element object array whose element unpickles to exec(PAYLOAD)."""
    header = {"descr": "|O", "fortran_order": False, "shape": (1,)}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + pickle.dumps([_Exec()], protocol=2)


def zip_bytes(members: dict[str, bytes], compress: bool = False) -> bytes:
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=DATE)
            info.compress_type = method
            z.writestr(info, data)
    return buf.getvalue()


def npz_bytes(arrays: dict[str, np.ndarray | bytes], compress: bool = False) -> bytes:
    """An .npz (what numpy.savez writes), deterministic; bytes values are raw .npy members."""
    return zip_bytes({f"{k}.npy": v if isinstance(v, bytes) else npy_bytes(v)
                      for k, v in arrays.items()}, compress)


def mat_bytes(variables: dict[str, object], compress: bool = True) -> bytes:
    buf = io.BytesIO()
    sio.savemat(buf, variables, do_compression=compress, oned_as="row")
    data = bytearray(buf.getvalue())
    data[:116] = b"MATLAB 5.0 MAT-file, layerspec bad-input corpus".ljust(116)
    return bytes(data)


def cell(items: list[object]) -> np.ndarray:
    out = np.empty((1, len(items)), dtype=object)
    for i, v in enumerate(items):
        out[0, i] = v
    return out


def conv(h: int, w: int, c: int, k: int, nb: int | None = None, **extra: object) -> dict:
    rng = np.random.default_rng(h * 1000 + c * 10 + k)
    filters = (0.1 * rng.standard_normal((h, w, c, k))).astype(np.float32)
    biases = np.zeros((1, k if nb is None else nb), np.float32)
    return {"type": "conv", "name": f"conv{h}{c}{k}", "weights": cell([filters, biases]),
            "stride": np.array([[1.0, 1.0]]), "pad": np.zeros((1, 4)), **extra}


def net_mat(layers: list[dict], **net_extra: object) -> bytes:
    net = {"layers": cell(layers), "meta": {"inputSize": np.array([[6.0, 6.0, 1.0]])},
           **net_extra}
    return mat_bytes({"net": net})


GOOD_LAYERS = [conv(3, 3, 1, 4), {"type": "relu"}, conv(4, 4, 4, 3),
               {"type": "softmaxloss"}]


def images(n: int, h: int = 6, w: int = 6, c: int = 1) -> np.ndarray:
    return np.random.default_rng(n).standard_normal((n, h, w, c)).astype(np.float32)


def labels(n: int, k: int = 3) -> np.ndarray:
    return (np.arange(n) % k).astype(np.int64)


# --------------------------------------------------------------------------------------------
# .mat networks (layerspec port X.mat -o out.yaml)


@corpus("mat/empty.mat")
def _() -> bytes:
    return b""


@corpus("mat/text_not_mat.mat")
def _() -> bytes:
    return b"net.layers = {struct('type', 'relu')};  % a .m file saved as .mat\n" * 3


@corpus("mat/truncated.mat")
def _() -> bytes:
    data = net_mat(GOOD_LAYERS)
    return data[: len(data) // 2]


@corpus("mat/corrupt_zlib.mat")
def _() -> bytes:
    data = bytearray(net_mat(GOOD_LAYERS))
    data[200:260] = bytes(range(60))  # inside the compressed 'net' element
    return bytes(data)


@corpus("mat/huge_dims.mat")
def _() -> bytes:
    """An uncompressed array whose header claims 2^31-1 x 2^31-1 doubles (tiny data)."""
    data = bytearray(mat_bytes({"x": np.ones((2, 3))}, compress=False))
    # the dimensions sub-element follows the flags: [miINT32][8][rows][cols]
    at = data.index(struct.pack("<II", 5, 8), 128)
    data[at + 8:at + 16] = struct.pack("<ii", 2**31 - 1, 2**31 - 1)
    return bytes(data)


@corpus("mat/v73_garbage.mat")
def _() -> bytes:
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 ."
    return text.ljust(116) + bytes(8) + b"\x00\x02IM" + b"\x89HDF\r\n\x1a\n" + bytes(500)


@corpus("mat/no_network.mat")
def _() -> bytes:
    return mat_bytes({"images": np.ones((2, 2)), "labels": np.ones((1, 2))})


@corpus("mat/layers_not_cell.mat")
def _() -> bytes:
    return mat_bytes({"net": {"layers": np.array([[3.0]])}})


@corpus("mat/unknown_type.mat")
def _() -> bytes:
    return net_mat([conv(3, 3, 1, 4), {"type": "rleu", "name": "act1"}])


@corpus("mat/conv_one_weight.mat")
def _() -> bytes:
    layer = conv(3, 3, 1, 4)
    layer["weights"] = cell([np.ones((3, 3, 1, 4), np.float32)])
    return net_mat([layer, {"type": "softmaxloss"}])


@corpus("mat/bias_count.mat")
def _() -> bytes:
    return net_mat([conv(3, 3, 1, 4, nb=7), {"type": "softmaxloss"}])


@corpus("mat/filters_5d.mat")
def _() -> bytes:
    layer = conv(3, 3, 1, 4)
    layer["weights"] = cell([np.ones((3, 3, 1, 4, 2), np.float32), np.zeros((1, 4))])
    return net_mat([layer])


@corpus("mat/stride_nan.mat")
def _() -> bytes:
    return net_mat([conv(3, 3, 1, 4, stride=np.array([[np.nan, 1.0]]))])


@corpus("mat/pad_text.mat")
def _() -> bytes:
    return net_mat([conv(3, 3, 1, 4, pad="yes")])


@corpus("mat/dagnn.mat")
def _() -> bytes:
    layer = {"name": "conv1", "type": "dagnn.Conv", "inputs": cell(["input"]),
             "outputs": cell(["x1"]), "params": cell(["f", "b"]), "block": {"size": 3.0}}
    return mat_bytes({"layers": np.array([[layer]], dtype=object), "vars": np.ones((1, 1)),
                      "params": np.ones((1, 1))})


# --------------------------------------------------------------------------------------------
# weights files (a spec's top-level 'weights: X.npz'; layerspec check)


def good_weights() -> dict[str, np.ndarray | bytes]:
    rng = np.random.default_rng(0)
    return {"format": np.array("layerspec-weights-1"),
            "names": np.array(["layer1", "layer2", "layer3", "layer4", "layer5"]),
            "w0_0": rng.standard_normal((3, 3, 1, 4)).astype(np.float32),
            "w0_1": np.zeros(4, np.float32),
            "w3_0": rng.standard_normal((3, 3, 4, 3)).astype(np.float32),
            "w3_1": np.zeros(3, np.float32)}


@corpus("npz/weights_pickled.npz")
def _() -> bytes:
    arrays = good_weights()
    arrays["w3_0"] = pickled_npy()
    return npz_bytes(arrays)


@corpus("npz/weights_truncated.npz")
def _() -> bytes:
    data = npz_bytes(good_weights())
    return data[: len(data) * 2 // 3]


@corpus("npz/weights_not_zip.npz")
def _() -> bytes:
    return b"w0_0: [1, 2, 3]\n"  # a text file named .npz


@corpus("npz/weights_missing_array.npz")
def _() -> bytes:
    arrays = good_weights()
    del arrays["w3_1"]
    return npz_bytes(arrays)


@corpus("npz/weights_wrong_channels.npz")
def _() -> bytes:
    arrays = good_weights()
    arrays["w3_0"] = np.zeros((3, 3, 5, 3), np.float32)  # the input has 4 channels
    return npz_bytes(arrays)


@corpus("npz/weights_huge_header.npz")
def _() -> bytes:
    """A member whose .npy header declares 2^40 float32 values (the data is 16 bytes)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": (2**20, 2**20)})
    arrays = good_weights()
    arrays["w3_0"] = buf.getvalue() + bytes(16)
    return npz_bytes(arrays)


# --------------------------------------------------------------------------------------------
# data files (a spec's 'data: {path: X}'; layerspec run)


@corpus("data/pickled.npz")
def _() -> bytes:
    return npz_bytes({"x": images(6), "y": pickled_npy()})


@corpus("data/truncated.npz")
def _() -> bytes:
    data = npz_bytes({"x": images(20), "y": labels(20)})
    return data[: len(data) // 2]


@corpus("data/crc_error.npz")
def _() -> bytes:
    data = bytearray(npz_bytes({"x": images(20), "y": labels(20)}))
    data[400] ^= 0xFF  # inside x's data: the zip CRC no longer matches
    return bytes(data)


@corpus("data/labels_out_of_range.npz")
def _() -> bytes:
    y = labels(20)
    y[5] = 7  # the network gives 3 class scores
    return npz_bytes({"x": images(20), "y": y})


@corpus("data/labels_negative.npz")
def _() -> bytes:
    y = labels(20)
    y[3] = -5
    return npz_bytes({"x": images(20), "y": y})


@corpus("data/labels_fractional.npz")
def _() -> bytes:
    return npz_bytes({"x": images(4), "y": np.array([0.0, 1.5, 2.0, 1.0])})


@corpus("data/label_count.npz")
def _() -> bytes:
    return npz_bytes({"x": images(20), "y": labels(19)})


@corpus("data/images_text.npz")
def _() -> bytes:
    return npz_bytes({"x": np.array([["a"] * 6] * 6), "y": labels(6)})


@corpus("data/images_nan.npz")
def _() -> bytes:
    x = images(20)
    x[3, 2, 2, 0] = np.nan
    return npz_bytes({"x": x, "y": labels(20)})


@corpus("data/wrong_size.npz")
def _() -> bytes:
    return npz_bytes({"x": images(20, 5, 5), "y": labels(20)})


@corpus("data/huge_header.npz")
def _() -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": (2**31, 6, 6, 1)})
    return npz_bytes({"x": buf.getvalue() + bytes(64), "y": labels(20)})


def idx_bytes(array: np.ndarray) -> bytes:
    code = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C}[array.dtype]
    dims = struct.pack(f">{array.ndim}I", *array.shape)
    big = array.astype(array.dtype.newbyteorder(">"))
    return bytes([0, 0, code, array.ndim]) + dims + big.tobytes()


@corpus("data/idx_images_bad_magic")
def _() -> bytes:
    return b"\x00\x00\x42\x03" + struct.pack(">3I", 4, 6, 6) + bytes(144)


@corpus("data/idx_labels.gz")
def _() -> bytes:
    return gzip.compress(idx_bytes(labels(4).astype(np.uint8)), mtime=0)


@corpus("data/idx_images_truncated.gz")
def _() -> bytes:
    return gzip.compress(idx_bytes((np.arange(144) % 251).astype(np.uint8).reshape(4, 6, 6)),
                         mtime=0)[:60]


@corpus("data/idx_images_huge.gz")
def _() -> bytes:
    """An idx header that declares 2^31 images of 6x6 with 4 images of data."""
    head = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 2**31, 6, 6)
    return gzip.compress(head + bytes(144), mtime=0)


@corpus("data/imdb_labels_out_of_range.mat")
def _() -> bytes:
    n = 8
    data = np.random.default_rng(1).standard_normal((6, 6, 1, n)).astype(np.float32)
    lab = (np.arange(n) % 3 + 1).astype(np.float64).reshape(1, n)
    lab[0, 2] = 9  # 1-based: class 9 of 3
    images = {"data": data, "labels": lab, "set": np.array([[1, 1, 1, 1, 1, 1, 3, 3.0]])}
    return mat_bytes({"images": images})


@corpus("data/imdb_bad_set.mat")
def _() -> bytes:
    n = 4
    images = {"data": np.zeros((6, 6, 1, n), np.float32),
              "labels": np.ones((1, n)), "set": np.array([[1, 1, 7, 1.0]])}
    return mat_bytes({"images": images})


# --------------------------------------------------------------------------------------------
# checkpoints (layerspec eval X.npz)

_TINY = ("name: tiny\ninput: [6, 6, 1]\nlayers:\n  - {type: conv, weights: "
         "[\"0.1*randn(3,3,1,4,'single')\", \"zeros(1,4,'single')\"]}\n  - {type: relu}\n"
         "  - {type: pool, method: max, pool: 2, stride: 1}\n"
         "  - {type: conv, weights: [\"0.1*randn(3,3,4,3,'single')\", \"zeros(1,3,'single')\"]}"
         "\n  - {type: softmaxloss}\ndata: {dataset: synthetic, classes: 3, train: 20, "
         "test: 10}\n")


def checkpoint(spec_yaml: str = _TINY, **changes: np.ndarray | bytes) -> bytes:
    arrays: dict[str, np.ndarray | bytes] = {
        "format": np.array("layerspec-checkpoint-1"), "epoch": np.array(1, np.int64),
        "spec_yaml": np.array(spec_yaml), "spec_digest": np.array("0" * 16),
        "spec_source": np.array(""), "stats_json": np.array("[]"),
        "random_seed": np.array(0, np.int64)}
    weights = good_weights()
    arrays.update({k: v for k, v in weights.items() if k.startswith("w")})
    arrays.update(changes)
    return npz_bytes(arrays)


@corpus("npz/ckpt_truncated.npz")
def _() -> bytes:
    data = checkpoint()
    return data[: len(data) - 300]


@corpus("npz/ckpt_python_tag.npz")
def _() -> bytes:
    spec = _TINY.replace("name: tiny", "name: !!python/object/apply:builtins.exec "
                                       f"[\"{PAYLOAD}\"]")
    return checkpoint(spec)


@corpus("npz/ckpt_pickled_state.npz")
def _() -> bytes:
    return checkpoint(opt_s0_0_momentum=pickled_npy())


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true",
                   help="compare with the files in tests/corpus/ instead of writing them")
    p.add_argument("--root", type=Path, default=ROOT, help="the corpus folder")
    args = p.parse_args(argv)
    stale = []
    for name, make in FILES.items():
        data = make()
        path = args.root / name
        if args.check:
            if not path.is_file() or path.read_bytes() != data:
                stale.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if args.check and stale:
        print(f"out of date: {', '.join(stale)} (run python tools/make_bad_corpus.py)",
              file=sys.stderr)
        return 1
    if not args.check:
        print(f"wrote {len(FILES)} files under {args.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
