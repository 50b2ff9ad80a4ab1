"""``layerspec port``: Matlab source (``.m``) or a MatConvNet ``.mat`` -> a spec (+ weights).

* ``.m``: translated by :mod:`layerspec.mfile` (nothing is run); the spec keeps the
  initializer expressions, so there is no weights file.
* ``.mat``: model files (top-level ``layers``/``meta``), nets saved under ``net``, and
  ``cnn_train`` checkpoints ``net-epoch-N.mat`` (``net``/``state``/``stats``) are read with
  :func:`layerspec.matconvnet.load_net`, tidied, and written as ``OUT.yaml`` naming its
  weights file ``OUT.npz`` (written beside it with :func:`layerspec.net.save_weights`).
  ``net.meta.trainOpts`` entries that are cnn_train options become the spec's ``train:``.
  A checkpoint's solver state (``state.solverState``: SGD momentum, adam/adadelta structs) is
  carried over with ``resume_dir`` (``--resume-dir DIR``): ``DIR/net-epoch-N.npz`` is then a
  layerspec checkpoint of epoch N with the ported spec, so ``layerspec run OUT.yaml --out DIR``
  continues at epoch N + 1.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MatFileError, SpecError
from .spec import TRAIN_DEFAULTS, Spec, tidy

__all__ = ["PortResult", "port", "port_mat_spec"]


@dataclasses.dataclass
class PortResult:
    """What :func:`port` wrote."""

    spec_path: Path
    weights_path: Path | None
    spec: Spec
    notes: list[str]
    warnings: list[str]


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _train_from_meta(meta: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    opts = meta.pop("trainOpts", None)
    if not isinstance(opts, Mapping):
        return {}
    train: dict[str, Any] = {}
    for k, v in opts.items():
        if k in TRAIN_DEFAULTS and isinstance(v, int | float | list) \
                and not isinstance(v, bool):
            train[k] = v
        else:
            notes.append(f"net.meta.trainOpts.{k} left out (not a cnn_train option layerspec "
                         f"uses)")
    return train


def port_mat_spec(src: str | Path, *, name: str | None = None,
                  weights_file: str | None = None,
                  ) -> tuple[Spec, list[list[np.ndarray]], list[str]]:
    """Read a MatConvNet ``.mat`` into a tidied :class:`Spec`, its weights and notes."""
    spec, weights, notes, _ = _read_mat(src, name=name, weights_file=weights_file)
    return spec, weights, notes


@dataclasses.dataclass
class _Checkpoint:
    """What a ``cnn_train`` checkpoint adds to its net."""

    epoch: int | None
    state: dict[str, np.ndarray]
    stats: list[dict[str, Any]]


def _read_mat(src: str | Path, *, name: str | None, weights_file: str | None,
              resume: bool = False,
              ) -> tuple[Spec, list[list[np.ndarray]], list[str], _Checkpoint | None]:
    from .matconvnet import (  # noqa: PLC0415
        checkpoint_epoch,
        checkpoint_stats,
        find_net,
        loadmat_clean,
        raw_spec_from_net,
        solver_state_arrays,
    )

    src = os.fspath(src)
    contents = loadmat_clean(src)
    notes: list[str] = []
    net = find_net(contents, src)
    raw = raw_spec_from_net(net, name=name, source=src)
    ckpt = None
    if "state" in contents and "net" in contents:
        opts = (raw.get("meta") or {}).get("trainOpts")
        solver = opts.get("solver") if isinstance(opts, Mapping) else None
        state = solver_state_arrays(contents, raw, solver=solver if isinstance(solver, str)
                                    else "sgd", file=src)
        epoch = checkpoint_epoch(contents, src)
        ckpt = _Checkpoint(epoch, state, checkpoint_stats(contents, epoch or 0))
        if not resume:
            notes.append("a cnn_train checkpoint: its solver state (momentum) is carried over "
                         "only with --resume-dir DIR" if state else
                         "a cnn_train checkpoint without solver state")
    meta = dict(raw.get("meta") or {})
    train = _train_from_meta(meta, notes)
    raw["meta"] = meta
    if not meta:
        raw.pop("meta")
    if train:
        raw["train"] = train
    if raw.get("input") is None:
        raw.pop("input", None)
        notes.append("the file gives no input size (meta.inputSize or "
                     "meta.normalization.imageSize); check the spec with --input H,W,C")
    if weights_file is not None:
        raw["weights"] = weights_file
    spec, weights = tidy(raw, file=src)
    if weights is None:  # pragma: no cover - load_net always gives arrays
        raise MatFileError("the network has no weights", file=src)
    if any(w.dtype == np.float64 for ws in weights for w in ws):
        notes.append("the file's weights are double; layerspec stores them as float32 "
                     "(MatConvNet itself runs single)")
        weights = [[np.asarray(w, dtype=np.float32) for w in ws] for ws in weights]
        if ckpt is not None:
            ckpt.state = {k: v if v.dtype != np.float64 else v.astype(np.float32)
                          for k, v in ckpt.state.items()}
    return spec, weights, notes, ckpt


def port(src: str | Path, out_yaml: str | Path, defines: Mapping[str, Any] | None = None, *,
         input_size: tuple[int, int, int] | None = None,
         skip_unsupported: bool = False, resume_dir: str | Path | None = None) -> PortResult:
    """Port ``src`` (``.m`` or ``.mat``) to the spec ``out_yaml`` (+ ``.npz`` for a ``.mat``).

    ``defines`` binds names or exact expressions of a ``.m`` file (``{'size(x,1)': 320}``);
    ``input_size`` sets (or overrides) the spec's ``input``. ``resume_dir`` (a ``cnn_train``
    checkpoint ``.mat`` only) also writes ``resume_dir/net-epoch-N.npz``, a layerspec
    checkpoint with the solver state, from which ``layerspec run`` continues.
    """
    src_path = Path(src)
    out = Path(out_yaml)
    ext = src_path.suffix.lower()
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise SpecError(f"-o {out}: the output spec must end in .yaml")
    if not src_path.exists():
        raise SpecError("no such file", file=str(src))
    if resume_dir is not None and ext != ".mat":
        raise SpecError("--resume-dir needs a cnn_train checkpoint (net-epoch-N.mat)",
                        file=str(src))
    if ext == ".m":
        return _port_m(src_path, out, defines, input_size, skip_unsupported)
    if ext == ".mat":
        return _port_mat(src_path, out, input_size, resume_dir)
    raise SpecError(f"cannot port a '{ext or 'extension-less'}' file: give a Matlab source "
                    f"(.m) or a MatConvNet network (.mat)", file=str(src))


def _port_m(src: Path, out: Path, defines: Mapping[str, Any] | None,
            input_size: tuple[int, int, int] | None, skip_unsupported: bool) -> PortResult:
    from .mfile import port_m, to_yaml  # noqa: PLC0415

    ported = port_m(src, defines=defines, skip_unsupported=skip_unsupported,
                    name=out.stem)
    if input_size is not None:
        raw = {}
        for k, v in ported.raw.items():
            if k == "layers" and "input" not in ported.raw:
                raw["input"] = list(input_size)
            raw[k] = list(input_size) if k == "input" else v
        ported.raw = raw
    text = to_yaml(ported)
    spec, _ = tidy(ported.raw, file=str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_text(out, text)
    return PortResult(out, None, spec, ported.notes, ported.warnings)


def _port_mat(src: Path, out: Path, input_size: tuple[int, int, int] | None,
              resume_dir: str | Path | None = None) -> PortResult:
    from .checkpoint import checkpoint_name, list_checkpoints  # noqa: PLC0415
    from .net import save_weights  # noqa: PLC0415

    npz = out.with_suffix(".npz")
    spec, weights, notes, ckpt = _read_mat(src, name=out.stem, weights_file=npz.name,
                                           resume=resume_dir is not None)
    if input_size is not None:
        spec = dataclasses.replace(spec, input=tuple(input_size))
    if resume_dir is not None:
        resume_dir = Path(resume_dir)
        if ckpt is None:
            raise MatFileError("--resume-dir: not a cnn_train checkpoint (variables 'net' and "
                               "'state')", file=str(src))
        if ckpt.epoch is None:
            raise MatFileError("--resume-dir: cannot tell the checkpoint's epoch (name the file "
                               "net-epoch-N.mat)", file=str(src))
        if resume_dir.is_dir() and list_checkpoints(resume_dir):
            raise SpecError(f"--resume-dir {resume_dir}: the folder already holds checkpoints; "
                            f"give an empty or new folder")
        if not ckpt.state:
            notes.append("the checkpoint holds no solver state: training resumes with fresh "
                         "momentum")
        notes.append(f"solver state of epoch {ckpt.epoch} written to "
                     f"{resume_dir / checkpoint_name(ckpt.epoch)}: `layerspec run {out} --out "
                     f"{resume_dir}` continues at epoch {ckpt.epoch + 1}")
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# ported by `layerspec port` from {src.name}; weights in {npz.name}\n"
              + "".join(f"# note: {n}\n" for n in notes))
    save_weights(npz, spec, weights)
    _write_text(out, header + spec.to_yaml())
    if resume_dir is not None and ckpt is not None and ckpt.epoch is not None:
        _write_resume_checkpoint(out, resume_dir, ckpt)
    return PortResult(out, npz, spec, notes, [])


def _write_resume_checkpoint(out: Path, folder: Path, ckpt: _Checkpoint) -> Path:
    """``folder/net-epoch-N.npz`` from the spec just written (so its digest is the one
    ``layerspec run out`` computes) and the checkpoint's solver state."""
    from .checkpoint import save_checkpoint  # noqa: PLC0415
    from .net import load  # noqa: PLC0415
    from .train import Trainer, TrainOptions  # noqa: PLC0415

    net = load(out)
    trainer = Trainer(net, TrainOptions.resolve(net))
    trainer.load_state_arrays(ckpt.state)
    folder.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(folder, net, trainer, ckpt.epoch or 0, ckpt.stats)
