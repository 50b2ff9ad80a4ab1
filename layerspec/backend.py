"""Array backends. The only module that knows the difference between NumPy and CuPy.

Layer code is written once against ``backend.xp`` (the array module). A :class:`Backend`
also moves arrays between host and device, draws random numbers on its device, and hands
the layers its optional fused kernels (``Backend.kernels``: :mod:`layerspec.cpukernels` or
:mod:`layerspec.gpukernels`, modules with the same functions that only this module
imports). :func:`is_host`, :func:`gemm_accumulate` and :func:`blas_threads_settable` are the
host/device questions the convolution asks.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from .errors import SpecError
from .hostthreads import SERIAL, SPLIT_MIN_BYTES, HostThreads, default_thread_count

BACKEND_NAMES = ("auto", "numpy", "cupy")


@dataclass(frozen=True)
class Backend:
    """An array module plus the few operations that differ between host and device."""

    name: str
    xp: ModuleType
    #: why ``auto`` chose this backend (empty when it was named); not part of equality
    note: str = field(default="", compare=False, kw_only=True)
    #: whether layers may use the compiled CPU kernels (:mod:`layerspec.cpukernels`) when
    #: Numba is installed; ``False`` keeps every layer on its generic array code
    use_kernels: bool = field(default=True, compare=False, kw_only=True)
    #: host threads for the work BLAS does not split (:mod:`layerspec.hostthreads`); 0 means
    #: :func:`~layerspec.hostthreads.default_thread_count`; a device backend uses one
    host_threads: int = field(default=0, compare=False, kw_only=True)
    #: the least work (bytes) worth handing to another host thread
    split_min_bytes: int = field(default=SPLIT_MIN_BYTES, compare=False, kw_only=True)

    def describe(self) -> str:
        """``name``, with the reason when ``auto`` chose it: ``cupy (auto: CuPy 14.2.0 on 1
        GPU(s))`` or ``numpy (auto: CuPy is not installed ...)``; NumPy says whether the
        compiled kernels are in use and how many host threads it splits work over."""
        notes = [self.note] if self.note else []
        if self.kernels is not None:
            notes.append(self.kernels.description)
        if self.threads.count > 1:
            notes.append(f"{self.threads.count} host threads")
        return f"{self.name} ({'; '.join(notes)})" if notes else self.name

    @functools.cached_property
    def kernels(self) -> ModuleType | None:
        """The fused kernels the layers may call instead of their generic array code:
        :mod:`layerspec.cpukernels` on NumPy when Numba imports (and ``LAYERSPEC_NUMBA`` is
        not ``0``); :mod:`layerspec.gpukernels` on CuPy when ``LAYERSPEC_CUPY_KERNELS=1``
        (opt-in until they have run on hardware); else ``None``. Both modules offer the
        same functions with the same arguments."""
        if not self.use_kernels:
            return None
        if self.name == "numpy":
            return cpu_kernels()
        if self.name == "cupy":
            return gpu_kernels()
        return None

    @functools.cached_property
    def threads(self) -> HostThreads:
        """Threads for host-side work; :data:`~layerspec.hostthreads.SERIAL` on a device."""
        if self.name != "numpy":
            return SERIAL
        return HostThreads(self.host_threads or default_thread_count(), self.split_min_bytes)

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """``a`` as an array of this backend (no copy when it already is one)."""
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a: Any) -> np.ndarray:
        """``a`` as a host NumPy array (a device-to-host copy for a CuPy array; NumPy arrays,
        scalars and lists pass through ``np.asarray``)."""
        if self.name == "cupy" and isinstance(a, self.xp.ndarray):
            return a.get()
        return np.asarray(a)

    @property
    def on_device(self) -> bool:
        """Whether arrays live on a GPU (reading a value back to the host waits for it)."""
        return self.name != "numpy"

    def uniform(self, rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> Any:
        """U[0, 1) samples of ``shape``, drawn from the host generator ``rng``.

        Drawing on the host keeps a run reproducible across backends (the same seed gives
        the same dropout masks on NumPy and CuPy)."""
        u = rng.random(shape, dtype=np.float32 if np.dtype(dtype) == np.float32 else np.float64)
        return self.asarray(u)

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on the host)."""
        if self.name == "cupy":
            self.xp.cuda.get_current_stream().synchronize()


def is_host(xp: Any) -> bool:
    """Whether ``xp`` is NumPy (arrays in host memory): layers pick CPU-only strategies by it."""
    return xp is np


def gemm_accumulate(xp: Any, c: Any, a: Any, b: Any, accumulate: bool) -> None:
    """``c = a @ b`` (or ``c += a @ b`` when ``accumulate``) in place, for 2-D arrays of one
    float type. NumPy's ``matmul`` cannot accumulate: on the host this calls the ``gemm`` of
    NumPy's own BLAS with ``beta = 1`` (:mod:`layerspec.hostblas`); elsewhere, or where that
    BLAS is not reachable, ``matmul`` plus an add."""
    if xp is np:
        from . import hostblas  # noqa: PLC0415

        if hostblas.gemm(c, a, b, 1.0 if accumulate else 0.0):
            return
    if accumulate:
        c += a @ b
    else:
        xp.matmul(a, b, out=c)


def blas_threads_settable(xp: Any) -> bool:
    """Whether host code on ``xp`` can run NumPy's BLAS single-threaded for a while
    (:func:`layerspec.hostblas.single_threaded`), so that its own threads each make BLAS
    calls."""
    if xp is not np:
        return False
    from . import hostblas  # noqa: PLC0415

    return hostblas.threads_settable()


def fast_accumulate(xp: Any) -> bool:
    """Whether :func:`gemm_accumulate` accumulates inside BLAS (no extra pass) on ``xp``."""
    if xp is not np:
        return False
    from . import hostblas  # noqa: PLC0415

    return hostblas.gemm_accumulate_available()


NUMPY = Backend("numpy", np)
#: NumPy without the compiled kernels: the generic reference path of every layer
NUMPY_GENERIC = Backend("numpy", np, use_kernels=False)


@functools.cache
def gpu_kernels() -> ModuleType | None:
    """:mod:`layerspec.gpukernels` when ``LAYERSPEC_CUPY_KERNELS=1`` and CuPy imports."""
    if os.environ.get("LAYERSPEC_CUPY_KERNELS", "0") != "1":
        return None
    try:
        from . import gpukernels  # noqa: PLC0415
    except Exception:  # noqa: BLE001 - no CuPy, or a broken CUDA setup
        return None
    return gpukernels


@functools.cache
def cpu_kernels() -> ModuleType | None:
    """:mod:`layerspec.cpukernels` when Numba is installed (and ``LAYERSPEC_NUMBA`` is not
    ``0``), else ``None``."""
    if os.environ.get("LAYERSPEC_NUMBA", "1") == "0":
        return None
    try:
        from . import cpukernels  # noqa: PLC0415
    except Exception:  # noqa: BLE001 - no Numba, or one that cannot set up its cache here
        return None
    return cpukernels


def cupy_status() -> tuple[bool, str]:
    """Whether CuPy is importable and sees a usable GPU, and a sentence saying why not."""
    try:
        import cupy  # noqa: PLC0415
    except Exception as exc:  # ImportError, or a broken CUDA install
        return False, f"CuPy is not installed ({type(exc).__name__}: {exc})"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
        if n < 1:
            return False, "CuPy sees no CUDA device"
        cupy.zeros(1).sum().item()
    except Exception as exc:
        return False, f"CuPy cannot use the GPU ({type(exc).__name__}: {exc})"
    return True, f"CuPy {cupy.__version__} on {n} GPU(s)"


def get_backend(name: str | Backend = "numpy") -> Backend:
    """The backend called ``name``: ``numpy``, ``cupy``, or ``auto`` (CuPy when usable)."""
    if isinstance(name, Backend):
        return name
    if name == "numpy":
        return NUMPY
    if name in ("cupy", "auto"):
        ok, why = cupy_status()
        note = f"auto: {why}" if name == "auto" else ""
        if ok:
            import cupy  # noqa: PLC0415

            return Backend("cupy", cupy, note=note)
        if name == "auto":
            return Backend("numpy", np, note=note)
        raise SpecError(f"backend 'cupy' is not available: {why}; use --backend numpy")
    raise SpecError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
