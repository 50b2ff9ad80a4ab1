"""Build the Fashion-MNIST subset that ships inside layerspec.

Reads the full Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package (or ``--source DIR``
holding the four standard idx files) and writes a stratified, deterministic subset:

* ``layerspec/data/fashion_mnist_subset.npz`` -- ``x_train`` uint8 (6000, 28, 28), ``y_train``
  uint8 (6000,), ``x_test`` uint8 (1000, 28, 28), ``y_test`` uint8 (1000,), ``classes`` (10
  names); 600 training and 100 test images per class, drawn with a fixed seed and kept in their
  original order; compressed.
* ``layerspec/data/LICENSE-fashion-mnist.txt`` -- the dataset's MIT licence notice.

Usage: ``python tools/make_fashion_subset.py [--source DIR] [--seed N]``
(install the source first: ``apt-get install dataset-fashion-mnist``).
"""

from __future__ import annotations

import argparse
import gzip
import struct
from pathlib import Path

import numpy as np

# Self-contained on purpose: importing the layerspec package is not needed to build its data.
ROOT = Path(__file__).resolve().parent.parent
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")  # dataset-fashion-mnist's install folder
CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
OUT_DIR = ROOT / "layerspec" / "data"
SUBSET = OUT_DIR / "fashion_mnist_subset.npz"
LICENSE = OUT_DIR / "LICENSE-fashion-mnist.txt"
TRAIN_PER_CLASS = 600
TEST_PER_CLASS = 100
SEED = 20170825  # fixed, so the subset is reproducible; changing it changes the subset

LICENSE_TEXT = """\
Fashion-MNIST subset
====================

layerspec/data/fashion_mnist_subset.npz holds a subset of Fashion-MNIST
(https://github.com/zalandoresearch/fashion-mnist): 6,000 training images
(600 per class) and 1,000 test images (100 per class), 28x28 grayscale, drawn
from the original training and test sets with a fixed seed by
tools/make_fashion_subset.py. The images and labels are unchanged.

Classes (label: name):
{classes}

Fashion-MNIST is distributed under the MIT License:

The MIT License (MIT)

Copyright (c) 2017 Zalando SE, https://tech.zalando.com

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def stratified_indices(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """``per_class`` indices of every class, drawn without replacement, in ascending order."""
    chosen = []
    for k in range(len(CLASSES)):
        members = np.flatnonzero(labels == k)
        if len(members) < per_class:
            raise SystemExit(f"class {k} has only {len(members)} images, need {per_class}")
        chosen.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def read_idx_uint8(path: Path) -> np.ndarray:
    """A uint8 idx file (gzipped or plain), with its header and length checked."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08" or raw[3] < 1:
        raise SystemExit(f"{path}: not a uint8 idx file")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    body = raw[4 + 4 * ndim:]
    if len(body) != int(np.prod(dims)):
        raise SystemExit(f"{path}: header declares {dims} but holds {len(body)} bytes")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims).copy()


def load_split(source: Path, images: str, labels: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 28, 28)`` uint8 and labels ``(N,)`` uint8 of one split."""
    def find(name: str) -> Path:
        for candidate in (source / f"{name}.gz", source / name):
            if candidate.is_file():
                return candidate
        raise SystemExit(f"{source} has no {name}[.gz]")

    x, y = read_idx_uint8(find(images)), read_idx_uint8(find(labels))
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise SystemExit(f"{images}: expected N x 28 x 28 images, got {x.shape}")
    if y.shape != (len(x),) or y.max() >= len(CLASSES):
        raise SystemExit(f"{labels}: expected {len(x)} labels 0..9")
    return x, y


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None,
                        help="folder with the Fashion-MNIST idx files (default: Debian's)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"selection seed ({SEED})")
    args = parser.parse_args(argv)

    source = args.source or DEBIAN_DIR
    if not source.is_dir():
        raise SystemExit("Fashion-MNIST not found: apt-get install dataset-fashion-mnist, "
                         "or pass --source DIR")
    x_train, y_train = load_split(source, "train-images-idx3-ubyte", "train-labels-idx1-ubyte")
    x_test, y_test = load_split(source, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

    rng = np.random.default_rng(args.seed)
    train = stratified_indices(y_train, TRAIN_PER_CLASS, rng)
    test = stratified_indices(y_test, TEST_PER_CLASS, rng)

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        SUBSET,
        x_train=np.ascontiguousarray(x_train[train]),
        y_train=y_train[train],
        x_test=np.ascontiguousarray(x_test[test]),
        y_test=y_test[test],
        classes=np.array(CLASSES),
    )
    classes = "\n".join(f"  {k}: {name}" for k, name in enumerate(CLASSES))
    LICENSE.write_text(LICENSE_TEXT.format(classes=classes), encoding="utf-8")

    with np.load(SUBSET, allow_pickle=False) as check:
        counts_train = np.bincount(check["y_train"], minlength=10)
        counts_test = np.bincount(check["y_test"], minlength=10)
    assert (counts_train == TRAIN_PER_CLASS).all() and (counts_test == TEST_PER_CLASS).all()
    print(f"wrote {SUBSET.relative_to(ROOT)} ({SUBSET.stat().st_size:,} bytes; "
          f"{len(train):,} train / {len(test):,} test from {source})")
    print(f"wrote {LICENSE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
