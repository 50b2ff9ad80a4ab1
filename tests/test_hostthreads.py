"""Host threads (layerspec/hostthreads.py): the split covers every item once, errors reach
the caller, a forked child gets working threads, the OpenBLAS spin setting is made only
where it can take effect, BLAS runs single-threaded only inside a split, and whole networks
compute the same numbers however the host work is split."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from refcases import (
    BASIC_CASES,
    DEFAULT_TOL,
    LATER_CASES,
    TOLERANCES,
    load_case,
    run_simplenn,
    supports,
    to_host,
)

from layerspec.backend import Backend
from layerspec.hostthreads import HostThreads, default_thread_count, split_rows
from layerspec.layers import conv as conv_module

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("n", [0, 1, 2, 5, 17])
@pytest.mark.parametrize("count", [1, 2, 3])
def test_run_covers_every_item_once(n, count):
    hits = np.zeros(n, int)
    names = set()

    def part(lo, hi):
        hits[lo:hi] += 1
        names.add(threading.current_thread().name)

    HostThreads(count, min_bytes=0).run(n, 1 << 30, part)
    assert (hits == 1).all()
    assert len(names) <= max(1, min(count, n))


def test_small_work_stays_on_the_callers_thread():
    t = HostThreads(4, min_bytes=1000)
    assert t.parts(100, 999) == 1
    assert t.parts(100, 2500) == 2
    assert t.parts(3, 10**9) == 3
    assert HostThreads(1).parts(100, 10**9) == 1


def test_errors_reach_the_caller_after_every_part_finished():
    done = []

    def part(lo, hi):
        if lo > 0:
            raise ValueError(f"part {lo}")
        done.append(lo)

    with pytest.raises(ValueError, match="part"):
        HostThreads(3, min_bytes=0).run(9, 1 << 30, part)
    assert done == [0]


def test_split_rows_slices_every_array_alike():
    a = np.arange(12.0).reshape(6, 2)
    out = np.zeros_like(a)
    split_rows(HostThreads(4, min_bytes=0), lambda a, o: np.multiply(a, 2, out=o), a, out)
    np.testing.assert_array_equal(out, 2 * a)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_a_forked_child_starts_its_own_threads():
    t = HostThreads(2, min_bytes=0)
    t.run(4, 1 << 30, lambda lo, hi: None)  # the parent's worker exists now
    pid = os.fork()
    if pid == 0:  # child: the inherited executor has no live thread; must not hang
        hits = np.zeros(4, int)
        t.run(4, 1 << 30, lambda lo, hi: hits.__setitem__(slice(lo, hi), 1))
        os._exit(0 if hits.all() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_default_thread_count_follows_the_environment(monkeypatch):
    for var in ("LAYERSPEC_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    assert default_thread_count() >= 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_thread_count() == 3
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    assert default_thread_count() == 2
    monkeypatch.setenv("LAYERSPEC_THREADS", "5")
    assert default_thread_count() == 5
    monkeypatch.setenv("LAYERSPEC_THREADS", "many")  # not a count: ignored
    assert default_thread_count() == 2


def _timeout_after(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    environ.update(env)
    environ["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code + "\nimport os\n"
                          "print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"],
                         capture_output=True, text=True, env=environ, check=True)
    return out.stdout.strip()


def test_blas_spin_is_shortened_only_before_numpy_loads():
    assert _timeout_after("import layerspec") == "16"
    # NumPy first: OpenBLAS has read its settings already, so layerspec leaves them alone
    assert _timeout_after("import numpy, layerspec") == "None"
    # the user's own value wins
    assert _timeout_after("import layerspec", OPENBLAS_THREAD_TIMEOUT="8") == "8"


CASES = [c for c in BASIC_CASES + LATER_CASES if c != "lrn_net" or supports("normalize")]

#: entries that are zero in exact arithmetic (float noise): compared with an absolute
#: tolerance only (tests/test_reference.py's ABSOLUTE_ONLY)
NOISE = {"lenet_mnist_bn": {(1, 1), (4, 1)}}


@pytest.mark.parametrize("kernels", [True, False], ids=["kernels", "generic"])
@pytest.mark.parametrize("name", CASES)
def test_split_host_work_gives_the_same_numbers(name, kernels, monkeypatch):
    """Every reference network, as the trainer runs it (conserve_memory), on one thread and
    with all host work split into parts however small over 3 threads. Elementwise work and
    copies split exactly; the convolutions' products then run per part of the batch and
    their filter derivatives are summed part by part, which re-associates float32 sums:
    the same numbers within float32 rounding (the MatConvNet reference tolerances; the
    bnorm net's, whose batch statistics amplify rounding, is README (j)'s 2e-4)."""
    monkeypatch.setattr(conv_module, "DF_PART_MIN_ROWS", 1)
    case = load_case(name)
    kw = {"labels": case.labels, "mode": case.mode, "dzdy": case.dzdy, "masks": case.masks,
          "conserve_memory": True}
    serial = Backend("numpy", np, use_kernels=kernels, host_threads=1)
    split = Backend("numpy", np, use_kernels=kernels, host_threads=3, split_min_bytes=0)
    a = run_simplenn(case.spec, case.x, backend=serial, **kw)
    b = run_simplenn(case.spec, case.x, backend=split, **kw)

    rtol, atol = TOLERANCES.get(name, DEFAULT_TOL)

    def close(got, ref, what, absolute=False):
        got, ref = to_host(got), to_host(ref)
        scale = 1.0 if absolute or not ref.size else float(np.abs(ref).max())
        np.testing.assert_allclose(got, ref, rtol=0 if absolute else rtol, atol=atol * scale,
                                   err_msg=f"{name}: {what}")

    close(b[-1].x, a[-1].x, "loss")
    close(b[0].dzdx, a[0].dzdx, "dzdx")
    for i in range(len(a) - 1):
        for j, (wa, wb) in enumerate(zip(a[i].dzdw, b[i].dzdw, strict=True)):
            close(wb, wa, f"dzdw[{i}][{j}]", absolute=(i, j) in NOISE.get(name, ()))


def test_blas_is_single_threaded_only_inside_a_split():
    from layerspec import hostblas

    if not hostblas.threads_settable():
        pytest.skip("NumPy's BLAS threads cannot be set here")
    get_threads = hostblas._thread_control()[0]  # OpenBLAS's own openblas_get_num_threads
    before = get_threads()
    seen = []
    HostThreads(2).run_parts(4, 2, lambda p, lo, hi: seen.append(get_threads()),
                             single_threaded_blas=True)
    assert seen == [1, 1]
    assert get_threads() == before

    def fail(p, lo, hi):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        HostThreads(2).run_parts(4, 2, fail, single_threaded_blas=True)
    assert get_threads() == before


def test_a_part_may_split_again_without_deadlock():
    t = HostThreads(2, min_bytes=0)
    hits = np.zeros(8, int)

    def inner(lo, hi):
        hits[lo:hi] += 1

    def outer(p, lo, hi):
        t.run(8, 1 << 30, lambda a, b: inner(a, b) if lo == 0 else None)

    t.run_parts(2, 2, outer)
    assert (hits == 1).all()


def test_overlapping_single_threaded_sections_restore_blas_threads():
    from layerspec import hostblas

    if not hostblas.threads_settable():
        pytest.skip("NumPy's BLAS threads cannot be set here")
    get_threads = hostblas._thread_control()[0]
    before = get_threads()
    a, b = hostblas.single_threaded(), hostblas.single_threaded()
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)   # the first leaves while the second is still inside
    assert get_threads() == 1
    b.__exit__(None, None, None)
    assert get_threads() == before
