"""``C = A @ B + beta * C`` on the host through the BLAS that NumPy itself uses.

NumPy's ``matmul`` cannot accumulate into its output, and SciPy's ``blas.sgemm`` can but
calls SciPy's own OpenBLAS: a second thread pool whose idle workers spin next to NumPy's
(measured: every GEMM of a seed320 step 1.5-2x slower once both pools were in use). This
module finds the OpenBLAS library that NumPy's wheel ships (``numpy.libs/`` on Linux,
``numpy/.dylibs/`` on macOS), which the process has already loaded, and calls its
``cblas_?gemm`` through ctypes — the same library and the same threads as ``matmul``.

Where NumPy links some other BLAS (a distribution's NumPy, Accelerate, MKL),
:func:`gemm_accumulate_available` is False and callers keep to ``matmul``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


@functools.cache
def _library() -> tuple[Any, Any, Any, Any] | None:
    """``(sgemm, dgemm, integer type, library)`` of NumPy's bundled OpenBLAS, or None."""
    here = Path(np.__file__).resolve().parent
    candidates = sorted(here.parent.glob("numpy.libs/*openblas*")) + \
        sorted(here.glob(".dylibs/*openblas*"))
    for path in candidates:
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:
            continue
        for s_name, d_name, int_t in (("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_",
                                       ctypes.c_int64),
                                      ("cblas_sgemm64_", "cblas_dgemm64_", ctypes.c_int64),
                                      ("scipy_cblas_sgemm", "scipy_cblas_dgemm", ctypes.c_int),
                                      ("cblas_sgemm", "cblas_dgemm", ctypes.c_int)):
            sgemm = getattr(lib, s_name, None)
            dgemm = getattr(lib, d_name, None)
            if sgemm is None or dgemm is None:
                continue
            for fn, real in ((sgemm, ctypes.c_float), (dgemm, ctypes.c_double)):
                fn.restype = None
                fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, int_t, int_t, int_t,
                               real, ctypes.c_void_p, int_t, ctypes.c_void_p, int_t, real,
                               ctypes.c_void_p, int_t]
            return sgemm, dgemm, int_t, lib
    return None


def gemm_accumulate_available() -> bool:
    """Whether :func:`gemm` can run (NumPy's own OpenBLAS was found)."""
    return _library() is not None


def _layout(a: np.ndarray) -> tuple[int, int] | None:
    """``(transpose flag, leading dimension)`` of a 2-D array as a row-major BLAS operand,
    or None when neither it nor its transpose has unit stride along rows."""
    item = a.itemsize
    s0, s1 = a.strides
    if s1 == item and s0 >= max(1, a.shape[1]) * item and s0 % item == 0:
        return _NO_TRANS, s0 // item
    if s0 == item and s1 >= max(1, a.shape[0]) * item and s1 % item == 0:
        return _TRANS, s1 // item
    return None


def gemm(c: np.ndarray, a: np.ndarray, b: np.ndarray, beta: float) -> bool:
    """``c = a @ b + beta * c`` in place, for 2-D float32/float64 arrays of one type, ``c``
    with unit stride along rows. Returns False (having done nothing) when the operands do
    not suit BLAS or NumPy's BLAS was not found; the caller then uses ``matmul``."""
    lib = _library()
    if lib is None or not (c.dtype == a.dtype == b.dtype) or c.dtype not in (np.float32,
                                                                              np.float64):
        return False
    m, k = a.shape
    k2, n = b.shape
    if k2 != k or c.shape != (m, n) or min(m, n, k) < 1:
        return False
    la, lb, lc = _layout(a), _layout(b), _layout(c)
    if la is None or lb is None or lc is None or lc[0] != _NO_TRANS:
        return False
    fn = lib[0] if c.dtype == np.float32 else lib[1]
    fn(_ROW_MAJOR, la[0], lb[0], m, n, k, 1.0, a.ctypes.data, la[1], b.ctypes.data, lb[1],
       beta, c.ctypes.data, lc[1])
    return True


@functools.cache
def _thread_control() -> tuple[Any, Any] | None:
    """``(get_num_threads, set_num_threads)`` of NumPy's bundled OpenBLAS, or None."""
    lib = _library()
    if lib is None:
        return None
    so = lib[3]
    for prefix in ("scipy_openblas_", "openblas_"):
        for suffix in ("64_", ""):
            get = getattr(so, f"{prefix}get_num_threads{suffix}", None)
            put = getattr(so, f"{prefix}set_num_threads{suffix}", None)
            if get is not None and put is not None:
                get.restype, get.argtypes = ctypes.c_int, []
                put.restype, put.argtypes = None, [ctypes.c_int]
                return get, put
    return None


def threads_settable() -> bool:
    """Whether :func:`single_threaded` can change NumPy's BLAS threads."""
    return _thread_control() is not None


class _SingleThreadedBlas:
    """Counts the callers that need NumPy's BLAS single-threaded. BLAS's thread count is one
    setting of the whole process, so this mirrors it once per process: the first caller
    saves the count and sets 1, the last one restores it (callers on several threads may
    overlap)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved = 1

    @contextlib.contextmanager
    def __call__(self) -> Iterator[bool]:
        ctl = _thread_control()
        if ctl is None:
            yield False
            return
        get, put = ctl
        with self._lock:
            if self._users == 0:
                self._saved = get()
                put(1)
            self._users += 1
        try:
            yield True
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    put(self._saved)


#: ``with single_threaded():`` NumPy's OpenBLAS runs each call on the calling thread
#: meanwhile (so that several of our threads can each make their own BLAS calls); the
#: context value says whether that could be set
single_threaded = _SingleThreadedBlas()
