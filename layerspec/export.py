"""``layerspec export``: a spec (with its weights) or a checkpoint -> a MatConvNet ``.mat``.

The file holds what ``vl_simplenn`` expects after ``vl_simplenn_tidy`` (written with
``scipy.io.savemat``, MAT v5 with compression, which MATLAB's ``-v7`` also writes):

* ``layers``: a 1 x L cell of structs with ``type``, ``name``, ``precious`` (false) and the
  type's fields: conv ``weights`` = {F (single, h x w x in x out), b (single, 1 x K, or [])},
  ``stride``/``pad``/``dilate`` (double row vectors), ``opts`` ({}); pool ``method``, ``pool``,
  ``stride``, ``pad``, ``opts``; relu ``leak``; dropout ``rate``; per-layer ``learningRate`` /
  ``weightDecay`` multipliers when the spec gives them.
* ``meta``: ``inputSize`` (double 1 x 3), ``classes.name`` (a 1 x K cell of texts) and
  ``trainOpts`` (the spec's ``train:`` numbers).

Load it in MATLAB with ``net = load('OUT.mat'); res = vl_simplenn(net, x);``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SpecError
from .layers import Layer
from .matconvnet import _KEPT_FIELDS as KEPT_FIELDS
from .matconvnet import SIMPLENN_TYPES

__all__ = ["export_mat", "net_struct"]


def _row(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(1, -1)


def _cell(items: list[Any], shape: tuple[int, int] | None = None) -> np.ndarray:
    arr = np.empty(shape or (1, len(items)), dtype=object)
    for i, item in enumerate(items):
        arr.flat[i] = item
    return arr


def _empty_cell() -> np.ndarray:
    return np.empty((0, 0), dtype=object)


def _weights(t: str, weights: list[np.ndarray]) -> np.ndarray:
    if t == "convt":
        f, b = (np.asarray(w, dtype=np.float32) for w in weights)
        return _cell([f, b.reshape(1, -1) if b.size else np.zeros((0, 0), np.float32)])
    g, b, m = (np.asarray(w, dtype=np.float32) for w in weights)  # bnorm: C x 1, C x 2
    return _cell([g.reshape(-1, 1), b.reshape(-1, 1), m.reshape(-1, 2)])


def _generic_fields(layer: Layer, d: dict[str, Any]) -> None:
    """The fields MatConvNet knows (those a port keeps), numbers as double."""
    from .spec import layer_fields  # noqa: PLC0415

    for key in layer_fields(type(layer)):
        if key in ("name", "weights", "learningRate", "weightDecay") or key not in KEPT_FIELDS:
            continue
        v = getattr(layer, key)
        if v is None:
            continue
        if isinstance(v, bool):
            d[key] = np.array([[v]])
        elif isinstance(v, str):
            d[key] = v
        elif isinstance(v, tuple | list):
            d[key] = _row(v)
        else:
            d[key] = float(v)


def _layer_struct(layer: Layer, weights: list[np.ndarray]) -> dict[str, Any]:
    t = layer.type
    d: dict[str, Any] = {"type": t, "name": layer.name}
    if t == "conv":
        f, b = weights
        f = np.asarray(f, dtype=np.float32)
        b = np.asarray(b, dtype=np.float32).reshape(1, -1)
        if b.size == 0:
            b = np.zeros((0, 0), dtype=np.float32)
        d["weights"] = _cell([f, b])
        d["stride"] = _row(layer.stride)
        d["pad"] = _row(layer.pad)
        d["dilate"] = _row(layer.dilate)
        d["opts"] = _empty_cell()
    elif t == "pool":
        d["method"] = layer.method
        d["pool"] = _row(layer.pool)
        d["stride"] = _row(layer.stride)
        d["pad"] = _row(layer.pad)
        d["opts"] = _empty_cell()
    elif t == "relu":
        d["leak"] = float(layer.leak)
    elif t == "dropout":
        if getattr(layer, "scaling", "inverted") != "inverted":
            raise SpecError(f"dropout '{layer.name}': scaling '{layer.scaling}' has no "
                            f"MatConvNet equivalent (vl_nndropout scales kept units by "
                            f"1/(1-rate)); use scaling: inverted to export")
        d["rate"] = float(layer.rate)
    elif t == "loss" and (layer.loss != "softmaxlog" or layer.instanceWeights is not None):
        # vl_simplenn calls vl_nnloss(x, l.class) with no options: a .mat cannot carry them
        what = f"loss: {layer.loss}" if layer.loss != "softmaxlog" else "instanceWeights"
        raise SpecError(f"loss '{layer.name}': {what} has no MatConvNet SimpleNN equivalent "
                        f"(vl_simplenn calls vl_nnloss(x, class) without options, i.e. "
                        f"softmaxlog with unit weights); export only a plain loss layer "
                        f"(or softmaxloss)")
    elif t in ("convt", "bnorm"):
        d["weights"] = _weights(t, weights)
        _generic_fields(layer, d)
        if t == "convt":
            d["opts"] = _empty_cell()
    elif t in SIMPLENN_TYPES:
        _generic_fields(layer, d)
    else:
        raise SpecError(f"{t} '{layer.name}': not a MatConvNet SimpleNN layer type, so it "
                        f"cannot be exported to a .mat")
    for k in ("learningRate", "weightDecay"):
        v = getattr(layer, k, None)
        if v is not None:
            d[k] = _row(v)
    d["precious"] = np.array([[False]])
    return d


def _simplenn_form(layer: Any, weights: list[np.ndarray]) -> tuple[Any, list[np.ndarray]]:
    """A layer and its weights as MatConvNet knows them: an ``fc`` becomes its ``conv``."""
    as_conv = getattr(layer, "as_conv", None)
    if as_conv is None:
        return layer, weights
    return as_conv(), layer.conv_weights(weights)


def net_struct(net: Any) -> dict[str, Any]:
    """The MatConvNet SimpleNN struct (``layers``, ``meta``) of a :class:`~layerspec.Net`,
    ready for ``scipy.io.savemat``."""
    spec = net.spec
    weights = net.host_weights()
    layers = [_layer_struct(*_simplenn_form(layer, ws))
              for layer, ws in zip(spec.layers, weights, strict=True)]
    meta: dict[str, Any] = {}
    if spec.input is not None:
        meta["inputSize"] = _row(spec.input)
    classes = spec.meta.get("classes") if isinstance(spec.meta, Mapping) else None
    if classes:
        cls: dict[str, Any] = {"name": _cell([str(c) for c in classes])}
        desc = spec.meta.get("classDescriptions")
        if desc:
            cls["description"] = _cell([str(c) for c in desc])
        meta["classes"] = cls
    train = {}
    for k, v in (spec.train or {}).items():
        if isinstance(v, bool):
            continue
        if isinstance(v, int | float):
            train[k] = float(v)
        elif isinstance(v, tuple | list) and all(isinstance(e, int | float) for e in v):
            train[k] = _row(v)
    if train:
        meta["trainOpts"] = train
    return {"layers": _cell(layers), "meta": meta}


def _load(source: str | Path, defines: Mapping[str, Any] | None) -> Any:
    path = Path(source)
    if path.suffix.lower() == ".npz":
        try:
            from .checkpoint import is_checkpoint, net_from_checkpoint  # noqa: PLC0415
        except ImportError:  # pragma: no cover
            raise SpecError(f"{path}: reading checkpoints is not available") from None
        if not is_checkpoint(path):
            raise SpecError(f"{path}: not a layerspec checkpoint (a weights file needs its "
                            f"spec: export the spec, whose 'weights:' names the file)")
        return net_from_checkpoint(path)
    from .net import load  # noqa: PLC0415

    return load(path, defines=defines)


def export_mat(source: Any, out_mat: str | Path,
               defines: Mapping[str, Any] | None = None) -> Path:
    """Write ``source`` (a spec path, a checkpoint ``.npz``, or a :class:`~layerspec.Net`)
    as a MatConvNet SimpleNN ``.mat`` at ``out_mat``; returns the path."""
    import scipy.io as sio  # noqa: PLC0415

    out = Path(out_mat)
    if out.suffix.lower() != ".mat":
        raise SpecError(f"--mat {out}: the output file must end in .mat")
    net = source if hasattr(source, "spec") and hasattr(source, "host_weights") \
        else _load(source, defines)
    struct = net_struct(net)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as fh:
        sio.savemat(fh, struct, do_compression=True, format="5", oned_as="row")
    os.replace(tmp, out)
    return out
