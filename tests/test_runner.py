"""``layerspec run`` / ``layerspec eval`` end to end on a tiny spec (a few seconds in all)."""

from __future__ import annotations

import errno
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tinyspec import tiny_spec

from layerspec import checkpoint as ck
from layerspec import runner
from layerspec.cli import main

REPO = Path(__file__).resolve().parents[1]

TINY = tiny_spec(lr="LR")


def write_spec(folder: Path, name: str = "tiny.yaml", lr: str = "0.05", text: str = TINY) -> Path:
    p = folder / name
    p.write_text(text.replace("LR", lr))
    return p


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    return write_spec(tmp_path)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def weights_of(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k.startswith(("w", "opt_"))}


def assert_same(a: Path, b: Path) -> None:
    wa, wb = weights_of(a), weights_of(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert wa[k].dtype == wb[k].dtype and np.array_equal(wa[k], wb[k]), k


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".tmp" in p.name]


def test_run_end_to_end(spec, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    rc, stdout, err = cli(capsys, "run", spec, "--out", out, "--backend", "numpy")
    assert rc == 0, err
    names = sorted(p.name for p in out.iterdir())
    expected = ["net-epoch-1.npz", "net-epoch-2.npz", "net-epoch-3.npz", "stats.json"]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in stdout
    else:
        expected.append("curves.png")
        assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert names == sorted(expected)
    stats = json.loads((out / "stats.json").read_text())
    assert [s["epoch"] for s in stats] == [1, 2, 3]
    for s in stats:
        assert set(s) == {"epoch", "train", "val"}
        for part, n in (("train", 60), ("val", 30)):
            assert set(s[part]) == {"objective", "top1err", "top5err", "num", "time"}
            assert s[part]["num"] == n and np.isfinite(s[part]["objective"])
    assert stats[-1]["train"]["objective"] < stats[0]["train"]["objective"]
    lines = stdout.strip().splitlines()
    assert sum(line.startswith("epoch ") for line in lines) == 3
    last = lines[-1]
    assert last.startswith("done: tiny: trained 3 epochs") and str(out) in last
    acc = 100 * (1 - stats[-1]["val"]["top1err"])
    assert f"accuracy {acc:.2f}%" in last
    assert ck.load_checkpoint(out / "net-epoch-3.npz").stats == stats
    # running again: nothing left to do, says so
    rc, stdout, _ = cli(capsys, "run", spec, "--out", out)
    assert rc == 0 and "resuming from" in stdout and "nothing to do" in stdout


def test_default_output_folder(spec, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    rc, stdout, err = cli(capsys, "run", "tiny.yaml", "--epochs", "1")
    assert rc == 0, err
    assert (tmp_path / "runs" / "tiny" / "net-epoch-1.npz").is_file()
    assert "runs/tiny/" in stdout.splitlines()[-1]


def test_resume_equals_uninterrupted(spec, tmp_path, capsys) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli(capsys, "run", spec, "--out", a)[0] == 0
    assert cli(capsys, "run", spec, "--out", b, "--epochs", "1")[0] == 0
    assert sorted(p.name for p in b.glob("*.npz")) == ["net-epoch-1.npz"]
    rc, stdout, _ = cli(capsys, "run", spec, "--out", b)
    assert rc == 0
    assert f"resuming from {b / 'net-epoch-1.npz'}" in stdout
    assert "trained epochs 2-3 of 3" in stdout.splitlines()[-1]
    assert_same(a / "net-epoch-3.npz", b / "net-epoch-3.npz")
    sa = json.loads((a / "stats.json").read_text())
    sb = json.loads((b / "stats.json").read_text())
    for x, y in zip(sa, sb, strict=True):
        for part in ("train", "val"):
            x[part].pop("time"), y[part].pop("time")
    assert sa == sb


def test_ctrl_c_then_printed_command_resumes(spec, tmp_path, capsys, monkeypatch) -> None:
    ref = tmp_path / "ref"
    assert cli(capsys, "run", spec, "--out", ref, "--seed", "3")[0] == 0
    out = tmp_path / "out"
    real = runner.Trainer.train_epoch

    def interrupted(self, epoch, x, y, order=None, on_batch=None):
        def cb(b, nb, st):
            if epoch == 2 and b == 3:
                raise KeyboardInterrupt
            if on_batch is not None:
                on_batch(b, nb, st)
        return real(self, epoch, x, y, order, cb)

    monkeypatch.setattr(runner.Trainer, "train_epoch", interrupted)
    rc, _, err = cli(capsys, "run", spec, "--out", out, "--seed", "3")
    assert rc == 130
    assert "interrupted during epoch 2" in err
    assert f"last complete checkpoint is {out / 'net-epoch-1.npz'}" in err
    assert sorted(p.name for p in out.glob("*.npz")) == ["net-epoch-1.npz"]
    assert no_temp_files(out)
    command = err.strip().splitlines()[-1].strip()
    assert command.startswith("layerspec run ") and "--fresh" not in command
    monkeypatch.undo()
    rc, stdout, _ = cli(capsys, *shlex.split(command)[1:])
    assert rc == 0 and "resuming from" in stdout
    assert_same(ref / "net-epoch-3.npz", out / "net-epoch-3.npz")


def test_changed_spec_is_refused(spec, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert cli(capsys, "run", spec, "--out", out, "--epochs", "1")[0] == 0
    spec.write_text(spec.read_text().replace("0.1*randn(3,3,4,3", "0.2*randn(3,3,4,3"))
    rc, _, err = cli(capsys, "run", spec, "--out", out)
    assert rc == 2
    assert "different spec" in err and "--fresh" in err and "--out" in err
    assert len(err.strip().splitlines()) == 1
    # another randomSeed would not continue the same run either
    spec.write_text(spec.read_text().replace("0.2*randn(3,3,4,3", "0.1*randn(3,3,4,3"))
    rc, _, err = cli(capsys, "run", spec, "--out", out, "--seed", "5")
    assert rc == 2 and "randomSeed 0" in err and "--seed 0" in err
    # --fresh starts over
    rc, stdout, err = cli(capsys, "run", spec, "--out", out, "--fresh", "--epochs", "2",
                          "--seed", "5")
    assert rc == 0, err
    assert "removed 1 old checkpoint" in stdout and "resuming" not in stdout
    assert ck.load_checkpoint(out / "net-epoch-2.npz").random_seed == 5


def test_full_disk_stops_with_previous_checkpoint_intact(spec, tmp_path, capsys,
                                                         monkeypatch) -> None:
    out = tmp_path / "out"
    real = os.replace

    def replace(src, dst, *a, **k):
        if Path(dst).name == "net-epoch-2.npz":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, *a, **k)

    monkeypatch.setattr(ck.os, "replace", replace)
    rc, _, err = cli(capsys, "run", spec, "--out", out)
    assert rc == 1
    assert len(err.strip().splitlines()) == 1
    assert "No space left on device" in err and "net-epoch-2.npz" in err
    assert f"{out / 'net-epoch-1.npz'} is intact" in err
    assert sorted(p.name for p in out.glob("*.npz")) == ["net-epoch-1.npz"]
    assert no_temp_files(out)
    assert ck.load_checkpoint(out / "net-epoch-1.npz").epoch == 1
    assert len(json.loads((out / "stats.json").read_text())) == 1


def test_truncated_newest_checkpoint_is_skipped_on_resume(spec, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert cli(capsys, "run", spec, "--out", out, "--epochs", "2")[0] == 0
    p2 = out / "net-epoch-2.npz"
    p2.write_bytes(p2.read_bytes()[:1000])
    rc, stdout, _ = cli(capsys, "run", spec, "--out", out)
    assert rc == 0
    assert f"skipping {p2}" in stdout and "resuming from" in stdout
    assert "net-epoch-1.npz" in stdout
    assert ck.load_checkpoint(p2).epoch == 2  # rewritten whole
    assert ck.latest_checkpoint(out) == (3, out / "net-epoch-3.npz")


def test_nan_loss_stops_naming_epoch_and_batch(tmp_path, capsys) -> None:
    spec = write_spec(tmp_path, lr="[0.05, 1.0e+30]")  # epoch 2 explodes
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "run", spec, "--out", out)
    assert rc == 1
    assert "at epoch 2, batch" in err and "lower the learning rate" in err
    assert f"{out / 'net-epoch-1.npz'} is intact" in err
    assert len(err.strip().splitlines()) == 1  # no NumPy warnings, no traceback
    assert sorted(p.name for p in out.glob("*.npz")) == ["net-epoch-1.npz"]
    assert ck.load_checkpoint(out / "net-epoch-1.npz").epoch == 1


def test_input_errors_exit_2(tmp_path, capsys) -> None:
    spec = write_spec(tmp_path, text=TINY.replace(
        "{dataset: synthetic, classes: 3, train: 60, test: 30}", "{path: missing.npz}"))
    rc, _, err = cli(capsys, "run", spec, "--out", tmp_path / "out")
    assert rc == 2 and "missing.npz" in err and "not found" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    many = write_spec(tmp_path, "many.yaml", text=TINY.replace("classes: 3", "classes: 5"))
    rc, _, err = cli(capsys, "run", many, "--out", tmp_path / "out")
    assert rc == 2 and "5 classes" in err and "3 class scores" in err
    (tmp_path / "file").write_text("")
    rc, _, err = cli(capsys, "run", write_spec(tmp_path), "--out", tmp_path / "file")
    assert rc == 2 and "not a folder" in err


def test_eval(spec, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert cli(capsys, "run", spec, "--out", out, "--epochs", "2")[0] == 0
    stats = json.loads((out / "stats.json").read_text())[-1]["val"]
    ckpt = out / "net-epoch-2.npz"
    spec.unlink()  # the checkpoint alone is enough
    rc, stdout, err = cli(capsys, "eval", ckpt)
    assert rc == 0, err
    assert "30 test images" in stdout and "epoch 2" in stdout
    assert f"top-1 error {stats['top1err']:.4f}" in stdout
    assert f"objective {stats['objective']:.4f}" in stdout
    rows = [line.split() for line in stdout.splitlines() if line.startswith(("0 ", "1 ", "2 "))]
    assert [r[1] for r in rows] == ["class0", "class1", "class2"]
    assert sum(int(r[2]) for r in rows) == 30
    correct = sum(int(r[3]) for r in rows)
    assert correct == round(30 * (1 - stats["top1err"]))
    # a run folder: its newest checkpoint; a spec with --weights
    assert cli(capsys, "eval", out)[1] == stdout
    spec = write_spec(tmp_path)
    rc, stdout2, _ = cli(capsys, "eval", spec, "--weights", ckpt)
    assert rc == 0 and stdout2.splitlines()[1:] == stdout.splitlines()[1:]
    # a damaged checkpoint is an input error naming the file
    ckpt.write_bytes(ckpt.read_bytes()[:500])
    rc, _, err = cli(capsys, "eval", ckpt)
    assert rc == 2 and "net-epoch-2.npz" in err


def test_per_class_accuracy_helper() -> None:
    rows = [runner.ClassAccuracy(0, "a", 4, 3), runner.ClassAccuracy(1, "b", 0, 0)]
    table = runner.class_table(rows)
    assert "75.0%" in table and table.splitlines()[2].split()[-1] == "-"


def test_subprocess_progress_lines(spec, tmp_path) -> None:
    env = dict(os.environ, LAYERSPEC_PROGRESS_INTERVAL="0",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "layerspec", "run", str(spec), "--out",
                           str(tmp_path / "out"), "--epochs", "2", "--backend", "numpy"],
                          capture_output=True, text=True, env=env, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert any("epoch 1/2 train: batch 6/6" in line for line in lines)
    assert any("epoch 2/2 val: batch 3/3" in line for line in lines)
    assert sum(line.startswith("epoch ") for line in lines) == 2
    assert lines[-1].startswith("done: tiny: trained 2 epochs")
    assert "\r" not in proc.stdout and "\x1b" not in proc.stdout + proc.stderr
