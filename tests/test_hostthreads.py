"""Host threads (layerspec/hostthreads.py): the split covers every item once, errors reach
the caller, a forked child gets working threads, the OpenBLAS spin setting is made only
where it can take effect, BLAS runs single-threaded only inside a split, and whole networks
compute the same numbers however the host work is split."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
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


@pytest.mark.parametrize("n", [0, 1, 2, 7, 40])
@pytest.mark.parametrize("count", [1, 2, 3])
def test_shared_items_are_each_taken_once_and_a_slow_thread_takes_fewer(n, count):
    hits = np.zeros(n, int)
    taken: dict[str, int] = {}
    lock = threading.Lock()

    def item(i):
        name = threading.current_thread().name
        with lock:
            hits[i] += 1
            taken[name] = taken.get(name, 0) + 1
        if name == threading.main_thread().name and count > 1:
            time.sleep(0.01)  # the caller's thread is slow: the others take more items

    HostThreads(count, min_bytes=0).run_shared(n, item)
    assert (hits == 1).all()
    assert len(taken) <= max(1, min(count, n))
    if count > 1 and n == 40:
        assert taken.get(threading.main_thread().name, 0) < n // count


def test_shared_item_errors_reach_the_caller():
    def item(i):
        if i == 3:
            raise ValueError("item 3")

    with pytest.raises(ValueError, match="item 3"):
        HostThreads(2, min_bytes=0).run_shared(10, item)


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
    deadline = time.monotonic() + 60
    while True:  # never hang the suite: a stuck child is killed and reported
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child did not finish its split within 60 s")
        time.sleep(0.01)
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


def _random_geometries(count, seed=11):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        n = int(rng.integers(1, 6))
        fh, fw = (int(v) for v in rng.integers(1, 5, 2))
        dil = tuple(int(v) for v in rng.integers(1, 3, 2))
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        pad = tuple(int(v) for v in rng.integers(0, 3, 4))
        h, w = (int(v) for v in rng.integers(1, 12, 2))
        c, k = (int(v) for v in rng.integers(1, 40, 2))
        ho = (h + pad[0] + pad[1] - ((fh - 1) * dil[0] + 1)) // stride[0] + 1
        wo = (w + pad[2] + pad[3] - ((fw - 1) * dil[1] + 1)) // stride[1] + 1
        if ho >= 1 and wo >= 1:
            out.append((n, h, w, c, fh, fw, k, stride, pad, dil))
    return out


@pytest.mark.parametrize("geom", _random_geometries(40))
def test_conv_in_parts_matches_serial_on_random_geometries(geom, monkeypatch):
    """Forward, dF, dB and dX of random convolutions (batch 1-5, any stride, dilation and
    padding; tiny im2col blocks, so parts hold several blocks and bands) in float64: split
    over 3 threads against one thread, every dX method."""
    from layerspec.backend import cpu_kernels
    from layerspec.layers.conv import conv_backward, conv_forward, dx_method
    from layerspec.workspace import Workspace

    monkeypatch.setattr(conv_module, "DF_PART_MIN_ROWS", 1)
    monkeypatch.setattr(conv_module, "block_bytes", lambda xp: 2048)
    n, h, w, c, fh, fw, k, stride, pad, dil = geom
    rng = np.random.default_rng(abs(hash(geom)) % 2**32)
    x = rng.standard_normal((n, h, w, c))
    f = rng.standard_normal((fh, fw, c, k))
    b = rng.standard_normal(k)
    split = HostThreads(3, min_bytes=0)
    y0, _ = conv_forward(np, x, f, b, stride, pad, dil)
    y1, cols = conv_forward(np, x, f, b, stride, pad, dil, ws=Workspace(), key="c",
                            threads=split)
    np.testing.assert_allclose(y1, y0, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y0.shape)
    methods = ["col2im"]
    if dx_method(x.shape, f.shape, stride, pad, dil, np) in ("tconv", "implicit"):
        methods.append(None)
    for kern in (None, cpu_kernels()):
        for method in methods:
            ref = conv_backward(np, x, f, b, dy, None, stride, pad, dil, method=method)
            got = conv_backward(np, x, f, b, dy, cols, stride, pad, dil, ws=Workspace(),
                                key="c", method=method, kern=kern, threads=split)
            for a, e, what in zip(got, ref, ("dx", "df", "db"), strict=True):
                np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-10,
                                           err_msg=f"{what} {method} kern={kern is not None}")
