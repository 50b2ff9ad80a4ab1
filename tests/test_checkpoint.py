"""Checkpoints: contents, atomic writes under failure, resumable state, skipping bad files."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from tinyspec import tiny_spec

import layerspec
from layerspec import checkpoint as ck
from layerspec.data import synthetic
from layerspec.errors import CheckpointError
from layerspec.net import read_weights, save_weights
from layerspec.train import Trainer, TrainOptions

TINY = tiny_spec()


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    return p


@pytest.fixture(scope="module")
def data():
    return synthetic((8, 8, 1), 3, 60, 30, seed=0)


def _trained(spec_path: Path, data, epochs: int = 1, **opts):
    net = layerspec.load(spec_path)
    trainer = Trainer(net, TrainOptions.resolve(net, **opts))
    stats = []
    for e in range(1, epochs + 1):
        tr = trainer.train_epoch(e, data.x_train, data.y_train)
        stats.append({"epoch": e, "train": tr.as_dict(),
                      "val": trainer.evaluate(data.x_test, data.y_test).as_dict()})
    return net, trainer, stats


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def test_round_trip(spec_path: Path, data, tmp_path: Path) -> None:
    net, trainer, stats = _trained(spec_path, data)
    out = tmp_path / "run"
    out.mkdir()
    path = ck.save_checkpoint(out, net, trainer, 1, stats)
    assert path == out / "net-epoch-1.npz"
    assert _leftovers(out) == []
    c = ck.load_checkpoint(path)
    assert c.epoch == 1 and c.stats == stats and c.random_seed == 0
    assert c.spec_digest == net.spec.digest()
    assert c.spec() == net.spec
    assert c.spec().base_dir == spec_path.parent.resolve()  # data paths still resolve
    state = trainer.state_arrays()
    assert state and set(c.state) == set(state)
    for k, v in state.items():
        assert np.array_equal(c.state[k], v) and c.state[k].dtype == v.dtype
    back = ck.net_from_checkpoint(c)
    for a, b in zip(back.host_weights(), net.host_weights(), strict=True):
        for x, y in zip(a, b, strict=True):
            assert x.dtype == y.dtype and np.array_equal(x, y)
    # a checkpoint is also a weights file
    for a, b in zip(read_weights(path, net.spec), net.host_weights(), strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    # readable without pickle, on its own
    with np.load(path, allow_pickle=False) as z:
        assert str(z["format"]) == ck.FORMAT
        assert "layers:" in str(z["spec_yaml"])
    assert ck.is_checkpoint(path)


def test_embedded_spec_without_source_file(spec_path: Path, data, tmp_path: Path) -> None:
    net, trainer, stats = _trained(spec_path, data)
    path = ck.save_checkpoint(tmp_path / "c.npz", net, trainer, 1, stats)
    spec_path.unlink()
    c = ck.load_checkpoint(path)
    assert c.spec() == net.spec
    assert c.spec().base_dir == tmp_path.resolve()


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_resume_from_checkpoint_is_exact(spec_path: Path, data, tmp_path: Path,
                                         solver: str) -> None:
    ref, _, _ = _trained(spec_path, data, epochs=2, solver=solver)
    net, trainer, stats = _trained(spec_path, data, epochs=1, solver=solver)
    path = ck.save_checkpoint(tmp_path, net, trainer, 1, stats)
    c = ck.load_checkpoint(path)
    net2 = ck.net_from_checkpoint(c)
    trainer2 = Trainer(net2, TrainOptions.resolve(net2, solver=solver))
    trainer2.load_state_arrays(c.state)
    trainer2.train_epoch(2, data.x_train, data.y_train)
    for a, b in zip(net2.host_weights(), ref.host_weights(), strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def _two_checkpoints(spec_path: Path, data, out: Path) -> tuple[Path, Path]:
    net, trainer, stats = _trained(spec_path, data)
    p1 = ck.save_checkpoint(out, net, trainer, 1, stats)
    trainer.train_epoch(2, data.x_train, data.y_train)
    p2 = ck.save_checkpoint(out, net, trainer, 2, stats)
    return p1, p2


def _fail_replace(monkeypatch, name: str) -> None:
    real = os.replace

    def replace(src, dst, *a, **k):
        if Path(dst).name == name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, *a, **k)

    monkeypatch.setattr(ck.os, "replace", replace)


def test_full_disk_at_rename_keeps_previous(spec_path, data, tmp_path, monkeypatch) -> None:
    net, trainer, stats = _trained(spec_path, data)
    p1 = ck.save_checkpoint(tmp_path, net, trainer, 1, stats)
    before = p1.read_bytes()
    _fail_replace(monkeypatch, "net-epoch-2.npz")
    with pytest.raises(ck.CheckpointWriteError) as info:
        ck.save_checkpoint(tmp_path, net, trainer, 2, stats)
    msg = str(info.value)
    assert "net-epoch-2.npz" in msg and "No space left on device" in msg and "ENOSPC" in msg
    assert "\n" not in msg
    assert not (tmp_path / "net-epoch-2.npz").exists()
    assert _leftovers(tmp_path) == []
    assert p1.read_bytes() == before
    assert ck.load_checkpoint(p1).epoch == 1
    assert ck.latest_checkpoint(tmp_path) == (1, p1)


def test_full_disk_mid_write_keeps_previous(spec_path, data, tmp_path, monkeypatch) -> None:
    net, trainer, stats = _trained(spec_path, data)
    p1 = ck.save_checkpoint(tmp_path, net, trainer, 1, stats)
    real_savez = np.savez

    def savez(file, **arrays):  # write part of the archive, then run out of space
        file.write(b"PK\x03\x04" + b"\0" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", savez)
    with pytest.raises(ck.CheckpointWriteError, match="No space left"):
        ck.save_checkpoint(tmp_path, net, trainer, 2, stats)
    monkeypatch.setattr(np, "savez", real_savez)
    assert not (tmp_path / "net-epoch-2.npz").exists()
    assert _leftovers(tmp_path) == []
    assert ck.latest_checkpoint(tmp_path) == (1, p1)


def test_fsync_failure_and_ctrl_c_leave_nothing(spec_path, data, tmp_path, monkeypatch) -> None:
    net, trainer, stats = _trained(spec_path, data)
    p1 = ck.save_checkpoint(tmp_path, net, trainer, 1, stats)

    def bad_fsync(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(ck.os, "fsync", bad_fsync)
    with pytest.raises(ck.CheckpointWriteError, match="EIO"):
        ck.save_checkpoint(tmp_path, net, trainer, 2, stats)
    monkeypatch.undo()

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(ck.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint(tmp_path, net, trainer, 2, stats)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == [p1.name]
    assert _leftovers(tmp_path) == []


def test_truncated_newest_is_skipped(spec_path, data, tmp_path) -> None:
    p1, p2 = _two_checkpoints(spec_path, data, tmp_path)
    assert ck.latest_checkpoint(tmp_path) == (2, p2)
    raw = p2.read_bytes()
    p2.write_bytes(raw[: len(raw) // 2])
    (tmp_path / "net-epoch-3.npz").write_bytes(b"")  # an empty file
    (tmp_path / ".net-epoch-4.npz.tmp-99").write_bytes(raw)  # a leftover temporary file
    with pytest.raises(CheckpointError, match="net-epoch-2.npz"):
        ck.load_checkpoint(p2)
    assert ck.latest_checkpoint(tmp_path) == (1, p1)
    found, skipped = ck.find_latest(tmp_path)
    assert found is not None and found.epoch == 1
    assert [p.name for p, _ in skipped] == ["net-epoch-3.npz", "net-epoch-2.npz"]


def test_corrupt_bytes_are_detected(spec_path, data, tmp_path) -> None:
    p1, p2 = _two_checkpoints(spec_path, data, tmp_path)
    raw = bytearray(p2.read_bytes())
    # flip bytes inside the largest array's data: the zip's CRC check catches it
    i = raw.find(b"w3_0.npy") + 400
    raw[i:i + 8] = bytes(b ^ 0xFF for b in raw[i:i + 8])
    p2.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="net-epoch-2.npz"):
        ck.load_checkpoint(p2)
    assert ck.latest_checkpoint(tmp_path) == (1, p1)


def test_not_a_checkpoint(spec_path, tmp_path) -> None:
    assert ck.latest_checkpoint(tmp_path / "nowhere") is None
    assert ck.latest_checkpoint(tmp_path) is None
    net = layerspec.load(spec_path)
    w = tmp_path / "weights.npz"
    save_weights(w, net.spec, net.host_weights())
    assert not ck.is_checkpoint(w)
    with pytest.raises(CheckpointError, match="not a layerspec checkpoint"):
        ck.load_checkpoint(w)
    with pytest.raises(CheckpointError, match="not found"):
        ck.load_checkpoint(tmp_path / "missing.npz")


FC_BNORM = """\
name: tinyfc
input: [8, 8, 1]
layers:
  - type: conv
    weights: ["0.1*randn(3,3,1,4,'single')", "zeros(1,4,'single')"]
  - {type: bnorm, weights: ["ones(4,1,'single')", "zeros(4,1,'single')"]}
  - {type: relu}
  - {type: fc, units: 3}
  - {type: softmaxloss}
train: {batchSize: 10, numEpochs: 2, learningRate: 0.05}
"""


def test_resume_keeps_canonical_layouts(tmp_path: Path, data) -> None:
    """Layers whose weights are not conv-shaped (fc filters [H W C units], bnorm moments
    C x 2) come back from a checkpoint with their shapes, and resume exactly."""
    if not {"fc", "bnorm"} <= layerspec.LAYER_TYPES:
        pytest.skip("fc/bnorm layers not available")
    p = tmp_path / "fc.yaml"
    p.write_text(FC_BNORM)
    ref, _, _ = _trained(p, data, epochs=2)
    net, trainer, stats = _trained(p, data, epochs=1)
    c = ck.load_checkpoint(ck.save_checkpoint(tmp_path, net, trainer, 1, stats))
    net2 = ck.net_from_checkpoint(c)
    assert net2.weight_shapes() == net.weight_shapes()
    trainer2 = Trainer(net2, TrainOptions.resolve(net2))
    trainer2.load_state_arrays(c.state)
    trainer2.train_epoch(2, data.x_train, data.y_train)
    for a, b in zip(net2.host_weights(), ref.host_weights(), strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    import subprocess
    import sys

    from layerspec.checkpoint import remove_stale_temporaries

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".net-epoch-2.npz.tmp-{dead.pid}"
    live = tmp_path / f".net-epoch-3.npz.tmp-{os.getpid()}"
    keep = tmp_path / "net-epoch-1.npz"
    for p in (stale, live, keep):
        p.write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and keep.exists()
