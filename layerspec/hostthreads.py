"""Host threads for the work BLAS does not parallelise: im2col copies, padding, pooling,
ReLU, the col2im scatter and the SGD step.

Only BLAS uses more than one core by itself; on the project's 2-core machine everything else
(35-60 % of a lenet training step) ran on one core. :class:`HostThreads` splits such work by
images (or by flat ranges) over a few threads: NumPy copies and ufunc loops release the GIL,
and so do the compiled kernels (:mod:`layerspec.cpukernels`, ``nogil=True``) and BLAS.
Elementwise work splits along an axis whose parts are computed independently (bit-identical
to the serial result). Convolutions run whole pipelines per part of the batch with
single-threaded BLAS calls (:meth:`HostThreads.run_parts`, ``layers/conv.py``); their filter
derivatives are summed per part, so those depend on the thread count at float32-rounding
level (tests/test_hostthreads.py holds them to the MatConvNet reference tolerances).

OpenBLAS's own workers spin for about 2^28 cycles (~0.1 s) after each GEMM before they
sleep, and spinning workers took the second core from these threads (a split im2col copy
measured 6.0 ms, no faster than the serial one). ``OPENBLAS_THREAD_TIMEOUT`` shortens that
spin, but OpenBLAS reads it once, when NumPy loads it: :func:`prefer_short_blas_spin` sets it
(unless the user did) and ``layerspec/__init__`` calls it before anything imports NumPy, so
the CLI and any program that imports layerspec first get it (the split copy then took 2.7
ms). Without it everything still works, only the splits gain less.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

#: ``OPENBLAS_THREAD_TIMEOUT`` (OpenBLAS spins ``2**value`` cycles, ~20 µs at 16, before its
#: workers sleep) that layerspec sets when the user has not
BLAS_SPIN_EXPONENT = "16"

#: work items smaller than this many bytes stay on the calling thread (handing a part to
#: another thread costs some 20-50 µs)
SPLIT_MIN_BYTES = 256 << 10


def prefer_short_blas_spin() -> bool:
    """Set ``OPENBLAS_THREAD_TIMEOUT`` to :data:`BLAS_SPIN_EXPONENT` when NumPy is not loaded
    yet and the variable is unset. Returns whether OpenBLAS will see a short spin."""
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", BLAS_SPIN_EXPONENT)
    return "OPENBLAS_THREAD_TIMEOUT" in os.environ


def default_thread_count() -> int:
    """Threads for host work: ``LAYERSPEC_THREADS``, else the BLAS thread settings
    (``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``), else the CPUs this process may run on."""
    for var in ("LAYERSPEC_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class HostThreads:
    """Runs a function over parts of a range on up to ``count`` threads (the caller's thread
    takes the first part). ``min_bytes``: the least work worth a part of its own."""

    def __init__(self, count: int, min_bytes: int = SPLIT_MIN_BYTES) -> None:
        self.count = max(1, int(count))
        self.min_bytes = min_bytes
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0
        self._inside = threading.local()  # .active: this thread runs one of our parts
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HostThreads({self.count})"

    def _executor(self) -> ThreadPoolExecutor:
        # a forked child inherits the executor object (and the lock, maybe held) but not
        # their threads: it starts its own
        if self._pid and self._pid != os.getpid():
            self._lock = threading.Lock()
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = ThreadPoolExecutor(self.count - 1, thread_name_prefix="layerspec")
                self._pid = os.getpid()
            return self._pool

    def parts(self, n: int, nbytes: int) -> int:
        """How many parts ``n`` items of ``nbytes`` in all are split into."""
        if self.count == 1 or n < 2:
            return 1
        return max(1, min(self.count, n, nbytes // max(self.min_bytes, 1)))

    def run(self, n: int, nbytes: int, fn: Callable[[int, int], object]) -> None:
        """Call ``fn(lo, hi)`` for contiguous parts ``[lo, hi)`` covering ``range(n)``,
        concurrently; ``nbytes`` (the data the whole range touches) decides how many parts
        (:meth:`parts`). Exceptions propagate after every part has finished."""
        self.run_parts(n, self.parts(n, nbytes), lambda part, lo, hi: fn(lo, hi))

    def run_parts(self, n: int, parts: int, fn: Callable[[int, int, int], object],
                  single_threaded_blas: bool = False) -> None:
        """Call ``fn(part, lo, hi)`` for ``parts`` contiguous parts ``[lo, hi)`` of
        ``range(n)`` (``part`` = 0, 1, ...; at most ``count`` of them), concurrently.
        ``single_threaded_blas``: NumPy's BLAS runs one thread per call meanwhile (each part
        makes its own BLAS calls; see :func:`layerspec.hostblas.single_threaded`)."""
        k = max(1, min(parts, self.count, n))
        if k == 1:
            fn(0, 0, n)
            return
        bounds = [n * i // k for i in range(k + 1)]
        if getattr(self._inside, "active", False):
            # called from one of our own workers: running the parts here, one after the
            # other, cannot wait on a worker that is busy waiting for us
            for i in range(k):
                fn(i, bounds[i], bounds[i + 1])
            return
        if single_threaded_blas:
            from .hostblas import single_threaded  # noqa: PLC0415 - loads NumPy

            with single_threaded():
                self._run_split(bounds, fn)
        else:
            self._run_split(bounds, fn)

    def run_shared(self, n: int, fn: Callable[[int], object]) -> None:
        """Call ``fn(i)`` for every ``i`` in ``range(n)``, each item taken by whichever of up
        to ``count`` threads is free next: for items that take uneven time (a core of a
        shared machine slowed for a while: the halves of seed320's conv4 forward differed by
        14 % at the median, 50 % at worst). Which thread computes an item must not change
        its result. Exceptions propagate after every thread has stopped."""
        items = iter(range(n))
        lock = threading.Lock()

        def worker(part: int, lo: int, hi: int) -> None:
            while True:
                with lock:
                    i = next(items, None)
                if i is None:
                    return
                fn(i)

        threads = max(1, min(self.count, n))
        self.run_parts(threads, threads, worker)

    def _as_worker(self, fn: Callable[[int, int, int], object], part: int, lo: int,
                   hi: int) -> None:
        self._inside.active = True
        try:
            fn(part, lo, hi)
        finally:
            self._inside.active = False

    def _run_split(self, bounds: list[int], fn: Callable[[int, int, int], object]) -> None:
        pool = self._executor()
        futures = [pool.submit(self._as_worker, fn, i, bounds[i], bounds[i + 1])
                   for i in range(1, len(bounds) - 1)]
        try:
            fn(0, bounds[0], bounds[1])
        finally:
            for f in futures:
                f.exception()
        for f in futures:
            f.result()


#: a single thread: everything runs on the caller's thread
SERIAL = HostThreads(1)


def split_rows(threads: HostThreads, fn: Callable[..., object], *arrays: object) -> None:
    """``fn(*[a[lo:hi] for a in arrays])`` over parts of the arrays' first axis (all of the
    same length), concurrently; the parts are sized by the arrays' bytes."""
    n = len(arrays[0])  # type: ignore[arg-type]
    nbytes = sum(getattr(a, "nbytes", 0) for a in arrays)
    threads.run(n, nbytes, lambda lo, hi: fn(*[a[lo:hi] for a in arrays]))  # type: ignore[index]
