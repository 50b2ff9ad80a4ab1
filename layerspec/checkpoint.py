"""Training checkpoints: ``net-epoch-N.npz``, written atomically, readable on their own.

A checkpoint is an uncompressed ``.npz`` (``numpy.load(..., allow_pickle=False)`` reads it) with

* ``format`` -- ``"layerspec-checkpoint-1"``;
* ``w<i>_<j>`` -- weight j of layer i (0-based), as :func:`layerspec.net.save_weights` writes
  them, so a checkpoint is also a weights file;
* ``opt_s<i>_<j>_<name>`` -- the solver state (:meth:`Trainer.state_arrays`, e.g. momentum);
* ``epoch`` -- the number of epochs completed;
* ``random_seed`` -- cnn_train's ``randomSeed``; epoch e's shuffle and dropout masks derive from
  ``(randomSeed, e)``, so this is all the random state a resumed run needs;
* ``spec_yaml`` -- the canonical spec (:meth:`Spec.to_yaml`), so a checkpoint alone can be
  evaluated, exported or resumed; ``spec_digest`` -- :meth:`Spec.digest`; ``spec_source`` -- the
  spec file the run was started from (its folder resolves the spec's relative data paths);
* ``stats_json`` -- the per-epoch statistics so far (the ``stats.json`` entries) as JSON text.

Writes go to a temporary file in the same folder, which is flushed, fsynced and renamed over
the final name (then the folder is fsynced), so a crash, a full disk or Ctrl-C never leaves a
half-written ``net-epoch-N.npz``; the previous checkpoint is never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CheckpointError, SpecError
from .net import WEIGHTS_FORMAT, Net
from .npzcheck import check_npz
from .spec import Spec, tidy
from .yamlload import load_yaml

FORMAT = "layerspec-checkpoint-1"
#: ``net-epoch-<N>.npz``
NAME_RE = re.compile(r"^net-epoch-(\d+)\.npz$")
STATE_PREFIX = "opt_"


class CheckpointWriteError(RuntimeError):
    """A checkpoint (or another run file) could not be written, e.g. the disk is full.

    A runtime failure (exit status 1), not an input error; the previous file is intact."""


def checkpoint_name(epoch: int) -> str:
    return f"net-epoch-{int(epoch)}.npz"


# --------------------------------------------------------------------------------------------
# atomic writes


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (not possible on every platform: then skip)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | Path, what: str = "file") -> Iterator[Any]:
    """Open a temporary file beside ``path`` for binary writing; on success flush, fsync and
    rename it to ``path``. On any failure (or Ctrl-C) the temporary file is removed and
    ``path`` is left as it was; an ``OSError`` becomes a one-line
    :class:`CheckpointWriteError` naming ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            reason = exc.strerror or str(exc)
            code = f" ({_errno_name(exc.errno)})" if exc.errno else ""
            raise CheckpointWriteError(f"cannot write {what} '{path}': {reason}{code}") from exc
        raise
    _fsync_dir(path.parent)


def _errno_name(code: int) -> str:
    import errno  # noqa: PLC0415

    return errno.errorcode.get(code, str(code))


def write_text_atomic(path: str | Path, text: str, what: str = "file") -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, what) as f:
        f.write(text.encode("utf-8"))


# --------------------------------------------------------------------------------------------
# saving


def checkpoint_arrays(net: Net, trainer: Any, epoch: int,
                      stats: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Everything :func:`save_checkpoint` stores, as named arrays."""
    spec = net.spec
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT),
        "epoch": np.array(int(epoch), dtype=np.int64),
        "spec_yaml": np.array(spec.to_yaml()),
        "spec_digest": np.array(spec.digest()),
        "spec_source": np.array(str(Path(spec.source).resolve()) if spec.source else ""),
        "stats_json": np.array(json.dumps(list(stats), allow_nan=True)),
        "names": np.array([layer.name for layer in spec.layers]),
    }
    opts = getattr(trainer, "opts", None)
    if opts is not None:
        arrays["random_seed"] = np.array(int(opts.randomSeed), dtype=np.int64)
    for i, ws in enumerate(net.host_weights()):
        for j, w in enumerate(ws):
            arrays[f"w{i}_{j}"] = np.ascontiguousarray(w)
    if trainer is not None:
        for key, value in trainer.state_arrays().items():
            arrays[STATE_PREFIX + key] = np.asarray(value)
    return arrays


def save_checkpoint(path: str | Path, net: Net, trainer: Any, epoch: int,
                    stats: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``net``'s weights, ``trainer``'s solver state, ``epoch``, the canonical spec and
    ``stats`` atomically; return the file written.

    ``path`` is a folder (the file is ``net-epoch-<epoch>.npz`` in it) or a ``.npz`` file
    name. An ``OSError`` (a full disk, ...) raises :class:`CheckpointWriteError` after removing
    the temporary file; existing checkpoints are left intact."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path / checkpoint_name(epoch)
    arrays = checkpoint_arrays(net, trainer, epoch, stats)
    with atomic_open(path, "checkpoint") as f:
        np.savez(f, **arrays)
    return path


# --------------------------------------------------------------------------------------------
# loading


@dataclass
class Checkpoint:
    """A checkpoint read back (see the module docstring for the fields)."""

    path: Path
    epoch: int
    spec_yaml: str
    spec_digest: str
    spec_source: str = ""
    random_seed: int | None = None
    weight_arrays: dict[str, np.ndarray] = field(default_factory=dict)
    state: dict[str, np.ndarray] = field(default_factory=dict)
    stats: list[dict[str, Any]] = field(default_factory=list)

    def spec(self) -> Spec:
        """The embedded canonical spec. Relative data paths resolve against the folder of the
        spec file the run started from when it still exists, else the checkpoint's folder."""
        origin = Path(self.spec_source) if self.spec_source else None
        label = f"{self.path} (embedded spec)"
        try:
            raw = load_yaml(self.spec_yaml, label)
            spec, _ = tidy(raw, file=label, weights_supplied=True)
        except SpecError as err:
            raise CheckpointError(f"checkpoint '{self.path}': its embedded spec is invalid: "
                                  f"{err.message}") from None
        if origin is not None and origin.is_file():
            spec = replace(spec, source=str(origin))
        return spec

    def weights(self, spec: Spec) -> list[list[np.ndarray]]:
        """The weights, one list per layer of ``spec``, exactly as they were saved (already
        in layerspec's canonical layout: they came from ``net.weights``)."""
        out = []
        for i, layer in enumerate(spec.layers):
            arrays = []
            for j, wname in enumerate(layer.weight_names):
                key = f"w{i}_{j}"
                if key not in self.weight_arrays:
                    raise CheckpointError(f"checkpoint '{self.path}' has no array for layer "
                                          f"{i + 1} ({layer.type} '{layer.name}') {wname}")
                a = self.weight_arrays[key]
                dtype = np.float64 if a.dtype == np.float64 else np.float32
                arrays.append(np.ascontiguousarray(a, dtype=dtype))
            out.append(arrays)
        return out


def _text(files: Mapping[str, np.ndarray], key: str, path: Path) -> str:
    if key not in files:
        raise CheckpointError(f"checkpoint '{path}' has no '{key}' entry; it is not a "
                              f"layerspec checkpoint (or was written by another version)")
    return str(files[key].reshape(()).item()) if files[key].size == 1 else ""


def is_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is an ``.npz`` with a ``format`` entry naming a layerspec checkpoint
    (reads the archive's member list only)."""
    try:
        with zipfile.ZipFile(path) as z:
            return "spec_yaml.npy" in z.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint; every array is read (and its CRC checked), so a truncated or corrupt
    file raises :class:`CheckpointError` naming it."""
    path = Path(path)
    check_npz(path, f"checkpoint '{path}'", CheckpointError)
    try:
        with np.load(path, allow_pickle=False) as z:
            files = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint '{path}' not found") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        reason = str(exc) or type(exc).__name__
        raise CheckpointError(f"checkpoint '{path}' is unreadable (truncated or corrupt?): "
                              f"{reason}") from None
    fmt = _text(files, "format", path)
    if fmt == WEIGHTS_FORMAT:
        raise CheckpointError(f"'{path}' is a weights file, not a layerspec checkpoint (it "
                              f"holds no spec, epoch or solver state)")
    if fmt != FORMAT:
        raise CheckpointError(f"checkpoint '{path}': format {fmt!r} is not a layerspec "
                              f"checkpoint's ({FORMAT!r})")
    try:
        epoch = int(files["epoch"])
        stats = json.loads(_text(files, "stats_json", path) or "[]")
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint '{path}': malformed epoch or stats: {exc}") from None
    seed = files.get("random_seed")
    return Checkpoint(
        path=path,
        epoch=epoch,
        spec_yaml=_text(files, "spec_yaml", path),
        spec_digest=_text(files, "spec_digest", path),
        spec_source=str(files["spec_source"]) if "spec_source" in files else "",
        random_seed=None if seed is None else int(seed),
        weight_arrays={k: v for k, v in files.items() if re.fullmatch(r"w\d+_\d+", k)},
        state={k[len(STATE_PREFIX):]: v for k, v in files.items()
               if k.startswith(STATE_PREFIX)},
        stats=[s for s in stats if isinstance(s, dict)],
    )


def list_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of every ``net-epoch-N.npz`` in ``folder``, newest first (not
    opened)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = NAME_RE.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found, key=lambda t: t[0], reverse=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to someone else
        return True
    return True


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete temporary files (``.NAME.tmp-PID``) left in ``folder`` by writers that were
    killed mid-write (their process is gone); return what was removed. They are never read
    as checkpoints, but would pile up."""
    removed: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for tmp in folder.glob(".*.tmp-*"):
        pid_text = tmp.name.rsplit(".tmp-", 1)[-1]
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def find_latest(folder: str | Path,
                ) -> tuple[Checkpoint | None, list[tuple[Path, str]]]:
    """The newest checkpoint in ``folder`` that reads back completely, and the newer files
    skipped as unreadable (path, reason)."""
    skipped: list[tuple[Path, str]] = []
    for epoch, path in list_checkpoints(folder):
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as err:
            skipped.append((path, err.message))
            continue
        if ckpt.epoch != epoch:
            skipped.append((path, f"it holds epoch {ckpt.epoch}, not {epoch}"))
            continue
        return ckpt, skipped
    return None, skipped


def latest_checkpoint(folder: str | Path) -> tuple[int, Path] | None:
    """``(epoch, path)`` of the newest complete checkpoint in ``folder`` (a truncated or
    corrupt file is skipped), or None."""
    ckpt, _ = find_latest(folder)
    return None if ckpt is None else (ckpt.epoch, ckpt.path)


def net_from_checkpoint(ckpt: Checkpoint | str | Path, backend: Any = "numpy",
                        seed: int | None = None) -> Net:
    """A :class:`Net` from the spec and weights stored in a checkpoint."""
    if not isinstance(ckpt, Checkpoint):
        ckpt = load_checkpoint(ckpt)
    spec = ckpt.spec()
    net = Net(spec, ckpt.weights(spec), backend, seed)
    if spec.input is not None:
        net.info(spec.input)
    return net
