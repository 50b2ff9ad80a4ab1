"""A look at an ``.npz`` (or ``.npy``) before NumPy reads any array from it.

``numpy.load(..., allow_pickle=False)`` never unpickles, but its answers to hostile files are
unhelpful: a text file named ``.npz`` "contains pickled (object) data", and a member whose
header declares an enormous shape makes NumPy try to allocate it (a ``MemoryError`` instead of
an input error). :func:`check_npz` reads only the zip directory and each member's ``.npy``
header, and refuses

* a file that is neither a zip archive nor a ``.npy`` array;
* an array of Python objects (a pickle: unpickling can run code), naming the array;
* an array whose header declares more bytes than the member holds (truncated, corrupt or a
  decoy meant to exhaust memory), before anything is allocated.

Anything else it cannot read is left for ``numpy.load`` to report.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from typing import IO

import numpy as np

from .errors import SpecError

__all__ = ["check_npz"]

_NPY_MAGIC = b"\x93NUMPY"


def check_npz(path: str | os.PathLike[str], where: str, error: type[SpecError]) -> None:
    """Raise ``error`` (``f"{where} ..."``) for the problems listed in the module docstring."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_NPY_MAGIC))
            if head == _NPY_MAGIC:
                f.seek(0)
                _check_member(f, os.fstat(f.fileno()).st_size, None, where, error)
                return
    except (OSError, ValueError):
        return  # missing, unreadable or an odd header: numpy.load says what is wrong
    if not zipfile.is_zipfile(path):
        why = ("a truncated or damaged zip archive" if head.startswith(b"PK")
               else "not a zip archive of .npy arrays")
        raise error(f"{where} is not a readable .npz file ({why})")
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with z.open(info) as member:
                    _check_member(member, info.file_size, info.filename[:-4], where, error)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, NotImplementedError):
        return  # a damaged archive: numpy.load reports it


def _check_member(f: IO[bytes], size: int, key: str | None, where: str,
                  error: type[SpecError]) -> None:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        return
    what = f"{where}: array '{key}'" if key is not None else where
    if dtype.hasobject:
        raise error(f"{what} holds Python objects (pickles), which layerspec never loads: "
                    f"unpickling can run code; save numeric (or string) arrays")
    declared = math.prod(int(n) for n in shape) * dtype.itemsize
    held = size - f.tell()
    if declared > held:
        raise error(f"{what} is truncated or corrupt: its header declares shape "
                    f"{tuple(int(n) for n in shape)} ({declared:,} bytes) but it holds "
                    f"{max(held, 0):,} bytes")
