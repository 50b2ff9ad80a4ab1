"""Data-parallel ``layerspec run`` over MPI on this machine (loopback): ``mpiexec -n 2``.

The end-to-end tests spawn ``mpiexec -n 2 python -m layerspec run ...`` on tiny synthetic
specs and skip with a reason when mpi4py or a matching ``mpiexec`` is missing
(``pip install mpich mpi4py``). The unit tests of the sharding run everywhere.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from layerspec import backend as backend_module
from layerspec import distributed as dist
from layerspec import runner
from layerspec.backend import NUMPY, Backend
from layerspec.checkpoint import find_latest, load_checkpoint

REPO = Path(__file__).resolve().parents[1]

# dropout from the run's generator and a seeded dropout, and 61 images in batches of 10: the
# last batch has one image, so one of two ranks is idle in it
SPEC = """\
name: tinydp
input: [8, 8, 1]
layers:
  - type: conv
    weights: ["0.1*randn(3,3,1,4,'single')", "zeros(1,4,'single')"]
  - {type: relu}
  - {type: dropout, rate: 0.3}
  - {type: pool, method: max, pool: [2, 2], stride: 2}
  - type: conv
    weights: ["0.1*randn(2,2,4,6,'single')", "zeros(1,6,'single')"]
  - {type: relu}
  - {type: dropout, rate: 0.2, seed: 7}
  - type: conv
    weights: ["0.1*randn(2,2,6,3,'single')", "zeros(1,3,'single')"]
  - {type: softmaxloss}
train: {batchSize: 10, numEpochs: EPOCHS, learningRate: LR, momentum: 0.9}
data: {dataset: synthetic, classes: 3, train: TRAIN, test: 31}
"""


def write_spec(folder: Path, name: str = "tinydp.yaml", epochs: int = 3, lr: str = "0.05",
               train: int = 61) -> Path:
    p = folder / name
    p.write_text(SPEC.replace("EPOCHS", str(epochs)).replace("LR", lr)
                 .replace("TRAIN", str(train)))
    return p


# --------------------------------------------------------------------------------------------
# units (no MPI needed)


def fake_world(rank: int, size: int) -> SimpleNamespace:
    return SimpleNamespace(rank=rank, size=size, allreduce_=lambda buf, what="": None)


def test_launcher_detection() -> None:
    assert not dist.launched_by_mpi({})
    assert dist.launched_by_mpi({"PMI_SIZE": "2", "PMI_RANK": "0"})
    assert dist.launched_by_mpi({"OMPI_COMM_WORLD_SIZE": "4"})
    assert dist.launched_by_mpi({"MPI_LOCALNRANKS": "2"})


def test_shards_cover_the_batch_and_masks_do_not_depend_on_ranks(tmp_path) -> None:
    from layerspec.net import load

    spec = write_spec(tmp_path)
    batch = np.arange(100, 107)
    rng_full = np.random.default_rng([0, 1])
    full = NUMPY.uniform(rng_full, (7, 2, 3), np.float32)
    for size in (1, 2, 3, 4, 9):
        seen, rows = [], []
        for rank in range(size):
            par = dist.DataParallel(fake_world(rank, size), load(spec))
            mine = par.shard(batch)
            rng = np.random.default_rng([0, 1])
            u = par.net.backend.uniform(rng, (len(mine), 2, 3), np.float32)
            if par.weight:
                seen.extend(mine.tolist())
                rows.append(u)
            else:  # an idle rank: one image, weight 0, but the same draws as the others
                assert len(mine) == 1 and np.array_equal(u, full[:1])
            assert rng.bit_generator.state == rng_full.bit_generator.state
        assert seen == batch.tolist()
        assert np.array_equal(np.concatenate(rows), full)


def test_reduce_scales_by_local_share(tmp_path) -> None:
    from layerspec.net import load

    par = dist.DataParallel(fake_world(1, 4), load(write_spec(tmp_path)))
    par.shard(np.arange(10))  # rank 1 of 4: images 2..4 -> 3 of 10
    dzdw = [[np.ones_like(w) for w in ws] for ws in par.net.weights]
    out, loss, top1, top5 = par.reduce(dzdw, 2.0, 1.0, 0.0)
    assert np.allclose(out[0][0], 0.3) and loss == pytest.approx(0.6) and top1 == 1.0
    assert par.bytes_per_step == 4 * (sum(w.size for ws in par.net.weights for w in ws) + 3)


def test_missing_mpi4py_message(tmp_path) -> None:
    fake = tmp_path / "fake" / "mpi4py"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named mpi4py (test)')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), str(REPO)])}
    spec = write_spec(tmp_path)
    p = subprocess.run([sys.executable, "-m", "layerspec", "run", str(spec), "--distributed",
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, env=env,
                       timeout=60)
    assert p.returncode == 2
    assert "needs mpi4py" in p.stderr and "layerspec[mpi]" in p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------------------------
# end to end over mpiexec


def _mpiexec() -> str | None:
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not dist.launched_by_mpi({k: v})}
    env.update(PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", LAYERSPEC_DIST_GRACE="3")
    return env


@pytest.fixture(scope="module")
def mpiexec() -> str:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip("mpi4py is not installed (pip install mpich mpi4py)")
    exe = _mpiexec()
    if exe is None:
        pytest.skip("no mpiexec on PATH (pip install mpich)")
    try:
        p = subprocess.run([exe, "-n", "2", sys.executable, "-c",
                            "from mpi4py import MPI; c = MPI.COMM_WORLD\n"
                            "if c.Get_rank() == 0: print(f'size={c.Get_size()}')"],
                           capture_output=True, text=True, timeout=60, env=_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"{exe} does not start 2 ranks: {exc}")
    if p.returncode != 0 or p.stdout.split() != ["size=2"]:
        pytest.skip(f"{exe} and mpi4py's MPI do not match (rank 0 said {p.stdout.strip()!r}): "
                    f"{p.stderr.strip()[-200:]}")
    return exe


def mpirun(exe: str, n: int, spec: Path, out: Path, *extra: str, cwd: Path | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess:
    cmd = [exe, "-n", str(n), sys.executable, "-m", "layerspec", "run", str(spec), "--out",
           str(out), "--backend", "numpy", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=timeout,
                          cwd=cwd)


def plain(spec: Path, out: Path, epochs: int | None = None) -> runner.RunResult:
    """An in-process run with one host thread, as the ranks have (``_env``): the number of
    host threads decides how the filter derivatives' float32 sums are split."""
    one_thread = Backend("numpy", np, host_threads=1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(backend_module, "NUMPY", one_thread)
        return runner.run(spec, out=out, backend="numpy", epochs=epochs, progress="off",
                          stdout=io.StringIO(), stderr=io.StringIO())


def arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k.startswith(("w", "opt_"))}


def assert_close(a: Path, b: Path, exact: bool = False) -> None:
    wa, wb = arrays(a), arrays(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        if exact:
            assert np.array_equal(wa[k], wb[k]), k
        else:  # float32 summation order only
            np.testing.assert_allclose(wa[k], wb[k], rtol=1e-4, atol=2e-6, err_msg=k)


def test_two_ranks_equal_one_rank_and_only_rank_0_writes(mpiexec, tmp_path) -> None:
    spec = write_spec(tmp_path)
    ref = plain(spec, tmp_path / "one")
    # MPMD: rank 0 runs in A, rank 1 in B, both with the relative folder "out"
    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir()
    b.mkdir()
    cmd = [mpiexec]
    for folder in (a, b):
        if folder is b:
            cmd.append(":")
        cmd += ["-n", "1", "-wdir", str(folder), sys.executable, "-m", "layerspec", "run",
                str(spec), "--out", "out", "--backend", "numpy"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert list(b.iterdir()) == []                       # rank 1 wrote nothing
    assert p.stdout.count("epoch 3/3: train") == 1       # rank 0 alone prints
    assert "distributed: 2 ranks" in p.stdout
    assert sorted(x.name for x in (a / "out").iterdir() if x.suffix != ".png") == \
        ["net-epoch-1.npz", "net-epoch-2.npz", "net-epoch-3.npz", "stats.json"]
    assert_close(a / "out" / "net-epoch-3.npz", ref.checkpoint)
    s2 = json.loads((a / "out" / "stats.json").read_text())
    for e1, e2 in zip(ref.stats, s2, strict=True):
        for part in ("train", "val"):
            assert e2[part]["num"] == e1[part]["num"]
            assert e2[part]["objective"] == pytest.approx(e1[part]["objective"], rel=1e-4)
            assert e2[part]["top1err"] == pytest.approx(e1[part]["top1err"], abs=0.02)
    # one rank under mpiexec is a plain run, bit for bit
    p = mpirun(mpiexec, 1, spec, tmp_path / "n1")
    assert p.returncode == 0, p.stderr
    assert_close(tmp_path / "n1" / "net-epoch-3.npz", ref.checkpoint, exact=True)


def test_resume_with_another_number_of_ranks(mpiexec, tmp_path) -> None:
    spec = write_spec(tmp_path, epochs=4)
    ref = plain(spec, tmp_path / "ref")
    out = tmp_path / "out"
    p = mpirun(mpiexec, 2, spec, out, "--epochs", "2")   # epochs 1-2 on 2 ranks
    assert p.returncode == 0, p.stderr
    plain(spec, out, epochs=3)                            # epoch 3 on 1 process
    p = mpirun(mpiexec, 2, spec, out)                     # epoch 4 on 2 ranks
    assert p.returncode == 0, p.stderr
    assert "resuming from" in p.stdout and "epoch 3 of 4 done" in p.stdout
    assert_close(out / "net-epoch-4.npz", ref.checkpoint)
    stats = json.loads((out / "stats.json").read_text())
    assert [s["epoch"] for s in stats] == [1, 2, 3, 4]


def test_error_on_every_rank_is_printed_once(mpiexec, tmp_path) -> None:
    spec = write_spec(tmp_path, lr="1e9")
    t0 = time.monotonic()
    p = mpirun(mpiexec, 2, spec, tmp_path / "out")
    assert time.monotonic() - t0 < 30
    assert p.returncode == 1
    assert p.stderr.count("error: the loss is") == 1, p.stderr
    assert "MPI_Abort" not in p.stderr


def _start_long_run(exe: str, tmp_path: Path, **env: str,
                    ) -> tuple[subprocess.Popen, Path, Path, int]:
    spec = write_spec(tmp_path, epochs=200, train=1500)
    out, log = tmp_path / "out", tmp_path / "log.txt"
    cmd = [exe, "-n", "2", sys.executable, "-m", "layerspec", "run", str(spec), "--out",
           str(out), "--backend", "numpy"]
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env={**_env(), **env})
    deadline = time.monotonic() + 40
    pid = None
    while time.monotonic() < deadline and proc.poll() is None:
        m = re.search(r"rank 1 pid (\d+)", log.read_text())
        if m and (out / "net-epoch-1.npz").exists():
            pid = int(m.group(1))
            break
        time.sleep(0.1)
    if pid is None:
        proc.kill()
        pytest.fail(f"the run did not get going: {log.read_text()[-1000:]}")
    return proc, out, log, pid


def _ends_within(proc: subprocess.Popen, seconds: float) -> float:
    t0 = time.monotonic()
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the job did not stop within {seconds} s")
    return time.monotonic() - t0


def test_killed_rank_stops_the_job(mpiexec, tmp_path) -> None:
    proc, out, log, pid = _start_long_run(mpiexec, tmp_path)
    os.kill(pid, signal.SIGKILL)
    _ends_within(proc, 30)
    text = log.read_text()
    assert proc.returncode != 0
    # the launcher or layerspec's watchdog names the dead rank (MPICH's mpiexec by its pid,
    # which the start-up line maps to rank 1)
    assert "rank 1 of 2" in text or re.search(rf"\bPID {pid}\b", text), text[-2000:]
    ckpt, skipped = find_latest(out)
    assert ckpt is not None and not skipped
    load_checkpoint(ckpt.path)
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_rank_failing_alone_is_named_and_aborts(mpiexec, tmp_path) -> None:
    proc, out, log, pid = _start_long_run(mpiexec, tmp_path)
    os.kill(pid, signal.SIGINT)  # Ctrl-C on rank 1 only: the others wait in the Allreduce
    _ends_within(proc, 30)
    text = log.read_text()
    assert proc.returncode != 0
    assert re.search(rf"rank 1 of 2 \(pid {pid} on [^)]*\): interrupted", text), text[-2000:]
    ckpt, _ = find_latest(out)
    assert ckpt is not None and ckpt.epoch >= 1


def test_hung_rank_stops_the_job_after_the_timeout(mpiexec, tmp_path) -> None:
    proc, out, log, pid = _start_long_run(mpiexec, tmp_path, LAYERSPEC_DIST_TIMEOUT="3")
    os.kill(pid, signal.SIGSTOP)  # rank 1 hangs: rank 0's watchdog gives up after 3 s
    try:
        _ends_within(proc, 30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    text = log.read_text()
    assert proc.returncode != 0
    assert re.search(r"rank 0 of 2 \(pid \d+ on [^)]*\) got no answer from the other ranks "
                     r"for 3 s", text), text[-2000:]
    ckpt, _ = find_latest(out)
    assert ckpt is not None
