"""Crash safety of ``layerspec run``: kill -9 at random moments, then resume; a full disk.

* ``python -m layerspec run`` is killed with SIGKILL again and again -- at random moments of
  training and right inside checkpoint writes (the test watches the run folder and kills as
  soon as a checkpoint's temporary file appears) -- and resumed each time. After every kill
  each ``net-epoch-N.npz`` in the folder must read back whole; at the end the weights and the
  solver state equal an uninterrupted run's, bit for bit.
* A disk that fills up in the middle of a checkpoint write stops the run with one line (exit
  1) that names the intact previous checkpoint; after "freeing space" the run resumes and ends
  as the uninterrupted one.

The product has no test hook for slow writes, so nothing here needs one. Kept to a few
seconds: a tiny net on synthetic data, at most a handful of kills.
"""

from __future__ import annotations

import errno
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from layerspec import checkpoint as ck
from layerspec import runner
from layerspec.cli import main

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

EPOCHS = 6
TINY = f"""\
name: tiny
input: [8, 8, 1]
layers:
  - type: conv
    weights: ["0.1*randn(3,3,1,8,'single')", "zeros(1,8,'single')"]
  - {{type: relu}}
  - {{type: pool, method: max, pool: [2, 2], stride: 2}}
  - {{type: dropout, rate: 0.2}}
  - type: conv
    weights: ["0.1*randn(3,3,8,3,'single')", "zeros(1,3,'single')"]
  - {{type: softmaxloss}}
train: {{batchSize: 10, numEpochs: {EPOCHS}, learningRate: 0.05}}
data: {{dataset: synthetic, classes: 3, train: 120, test: 20}}
"""
#: wall-clock budget for the kill loop (the final resume comes after it)
BUDGET_S = 4.0


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def reference(spec: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The last checkpoint of an uninterrupted run (in-process)."""
    out = tmp_path_factory.mktemp("ref")
    runner.run(spec, out=out, backend="numpy", progress="off", stdout=io.StringIO())
    return out / f"net-epoch-{EPOCHS}.npz"


def arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k.startswith(("w", "opt_"))}


def assert_bitwise_equal(a: Path, b: Path) -> None:
    wa, wb = arrays(a), arrays(b)
    assert wa.keys() == wb.keys() and any(k.startswith("opt_") for k in wa)
    for k in wa:
        assert wa[k].dtype == wb[k].dtype and wa[k].tobytes() == wb[k].tobytes(), k


def assert_all_readable(out: Path) -> list[int]:
    """Every net-epoch-N.npz reads back whole and holds epoch N; the epochs found."""
    epochs = []
    for epoch, path in ck.list_checkpoints(out):
        ckpt = ck.load_checkpoint(path)  # raises CheckpointError if unreadable
        assert ckpt.epoch == epoch
        assert len(ckpt.stats) == epoch
        epochs.append(epoch)
    if (out / "stats.json").exists():
        json.loads((out / "stats.json").read_text())
    return sorted(epochs)


def temp_files(out: Path) -> set[str]:
    try:
        return {p.name for p in os.scandir(out) if ".tmp-" in p.name}
    except FileNotFoundError:
        return set()


def start(spec: Path, out: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "LAYERSPEC_PROGRESS_INTERVAL": "1000"}
    env.pop("LAYERSPEC_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "layerspec", "run", str(spec), "--out",
                             str(out), "--backend", "numpy"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def kill_mid_write(proc: subprocess.Popen[str], out: Path, rng: random.Random) -> bool:
    """SIGKILL as soon as a new checkpoint temporary file shows up (then it is being
    written); False when the run ended first."""
    before = temp_files(out)
    deadline = time.monotonic() + 5
    while proc.poll() is None and time.monotonic() < deadline:
        if temp_files(out) - before:
            time.sleep(rng.uniform(0, 0.0003))
            proc.send_signal(signal.SIGKILL)
            return True
    return False


def test_sigkill_at_random_moments_then_resume(spec: Path, reference: Path,
                                               tmp_path: Path) -> None:
    out = tmp_path / "out"
    rng = random.Random(int(os.environ.get("LAYERSPEC_CRASH_SEED", "0")) or None)
    kills = {"startup": 0, "training": 0, "mid-write": 0}
    left_mid_write = 0
    t0 = time.monotonic()
    progress = []
    while time.monotonic() - t0 < BUDGET_S and len(progress) < 6:
        left_before = temp_files(out)
        proc = start(spec, out)
        mode = ["training", "mid-write", "startup"][len(progress) % 3]
        try:
            if mode == "startup":
                time.sleep(rng.uniform(0.0, 0.4))  # before, during or after the imports
                proc.send_signal(signal.SIGKILL)
            else:
                proc.stdout.readline()  # the run's header line: training starts now
                if mode == "training":
                    time.sleep(rng.uniform(0.0, 0.3))
                    proc.send_signal(signal.SIGKILL)
                elif not kill_mid_write(proc, out, rng):
                    mode = "finished"
            rc = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        if rc == 0:  # the run ended before the kill
            if sum(kills.values()) >= 3:
                break
            shutil.rmtree(out)  # too few kills yet (a fast machine): start over
            continue
        assert rc == -signal.SIGKILL, (rc, proc.stderr)
        kills[mode] += 1
        left_mid_write += bool(temp_files(out) - left_before)
        progress.append(assert_all_readable(out))  # no checkpoint is ever unreadable
    # resume to the end, uninterrupted
    proc = start(spec, out)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert assert_all_readable(out)[-1] == EPOCHS
    assert_bitwise_equal(reference, out / f"net-epoch-{EPOCHS}.npz")
    stats = json.loads((out / "stats.json").read_text())
    assert [s["epoch"] for s in stats] == list(range(1, EPOCHS + 1))
    assert sum(kills.values()) >= 3, kills
    print(f"kills: {kills}; killed inside a checkpoint write (temporary file left): "
          f"{left_mid_write}; epochs on disk after each kill: {progress}")


class _FullDisk(io.RawIOBase):
    """A file that takes ``room`` bytes, then fails every write with ENOSPC (a full disk)."""

    def __init__(self, f: io.BufferedWriter, room: int) -> None:
        self.f = f
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if len(data) > self.room:
            self.f.write(bytes(data[:self.room]))
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.f.write(data)

    def seek(self, *args: int) -> int:
        return self.f.seek(*args)

    def tell(self) -> int:
        return self.f.tell()

    def seekable(self) -> bool:
        return True

    def flush(self) -> None:
        if not self.f.closed:
            self.f.flush()

    def fileno(self) -> int:
        return self.f.fileno()

    def close(self) -> None:
        if not self.closed:
            super().close()
            self.f.close()


def test_full_disk_mid_checkpoint_then_resume(spec: Path, reference: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    real_open = open
    full = {"on": True}

    def disk_open(file: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        f = real_open(file, mode, *args, **kwargs)
        name = Path(str(file)).name
        if full["on"] and mode == "wb" and name.startswith(".net-epoch-3.npz.tmp-"):
            return _FullDisk(f, room=3000)  # a third of the checkpoint, then ENOSPC
        return f

    monkeypatch.setattr(ck, "open", disk_open, raising=False)
    monkeypatch.delenv("LAYERSPEC_DEBUG", raising=False)
    rc = main(["run", str(spec), "--out", str(out), "--backend", "numpy"])
    _, err = capsys.readouterr()
    assert rc == 1
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "No space left on device (ENOSPC)" in err and "net-epoch-3.npz" in err
    assert f"{out / 'net-epoch-2.npz'} is intact" in err
    assert "free some space and resume with: layerspec run" in err
    assert assert_all_readable(out) == [1, 2]
    assert not temp_files(out)  # the partial file is gone
    # space is freed: the printed command resumes and ends as the uninterrupted run
    full["on"] = False
    assert main(["run", str(spec), "--out", str(out), "--backend", "numpy"]) == 0
    assert_bitwise_equal(reference, out / f"net-epoch-{EPOCHS}.npz")
