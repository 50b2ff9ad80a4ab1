"""``layerspec port``: Matlab source (``.m``) or a MatConvNet ``.mat`` -> a spec (+ weights).

* ``.m``: translated by :mod:`layerspec.mfile` (nothing is run); the spec keeps the
  initializer expressions, so there is no weights file.
* ``.mat``: model files (top-level ``layers``/``meta``), nets saved under ``net``, and
  ``cnn_train`` checkpoints ``net-epoch-N.mat`` (``net``/``state``/``stats``) are read with
  :func:`layerspec.matconvnet.load_net`, tidied, and written as ``OUT.yaml`` naming its
  weights file ``OUT.npz`` (written beside it with :func:`layerspec.net.save_weights`).
  ``net.meta.trainOpts`` entries that are cnn_train options become the spec's ``train:``.
  A checkpoint's solver state (``state``) is not carried over yet (a note says so).
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
    from .matconvnet import find_net, loadmat_clean, raw_spec_from_net  # noqa: PLC0415

    src = os.fspath(src)
    contents = loadmat_clean(src)
    notes: list[str] = []
    net = find_net(contents, src)
    if "state" in contents and "net" in contents:
        notes.append("a cnn_train checkpoint: its solver state (momentum) is not carried over; "
                     "training resumes from these weights with fresh momentum")
    raw = raw_spec_from_net(net, name=name, source=src)
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
    return spec, weights, notes


def port(src: str | Path, out_yaml: str | Path, defines: Mapping[str, Any] | None = None, *,
         input_size: tuple[int, int, int] | None = None,
         skip_unsupported: bool = False) -> PortResult:
    """Port ``src`` (``.m`` or ``.mat``) to the spec ``out_yaml`` (+ ``.npz`` for a ``.mat``).

    ``defines`` binds names or exact expressions of a ``.m`` file (``{'size(x,1)': 320}``);
    ``input_size`` sets (or overrides) the spec's ``input``.
    """
    src_path = Path(src)
    out = Path(out_yaml)
    ext = src_path.suffix.lower()
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise SpecError(f"-o {out}: the output spec must end in .yaml")
    if not src_path.exists():
        raise SpecError("no such file", file=str(src))
    if ext == ".m":
        return _port_m(src_path, out, defines, input_size, skip_unsupported)
    if ext == ".mat":
        return _port_mat(src_path, out, input_size)
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


def _port_mat(src: Path, out: Path, input_size: tuple[int, int, int] | None) -> PortResult:
    from .net import save_weights  # noqa: PLC0415

    npz = out.with_suffix(".npz")
    spec, weights, notes = port_mat_spec(src, name=out.stem, weights_file=npz.name)
    if input_size is not None:
        spec = dataclasses.replace(spec, input=tuple(input_size))
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# ported by `layerspec port` from {src.name}; weights in {npz.name}\n"
              + "".join(f"# note: {n}\n" for n in notes))
    save_weights(npz, spec, weights)
    _write_text(out, header + spec.to_yaml())
    return PortResult(out, npz, spec, notes, [])
