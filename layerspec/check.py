"""``layerspec check``: the ``vl_simplenn_display``-like table, the fit explanation, and the
``--diagnose`` forward pass at initialisation."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import ShapeError, SpecError
from .layers import Layer
from .net import Net
from .shapes import LayerInfo, fitting_sizes
from .simplenn import simplenn


def _fmt_pair(v: Sequence[int]) -> str:
    return str(v[0]) if len(set(v)) == 1 else "x".join(str(x) for x in v)


def _fmt_pad(v: Sequence[int]) -> str:
    return str(v[0]) if len(set(v)) == 1 else "[" + " ".join(str(x) for x in v) + "]"


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}" if isinstance(n, float) else str(n)


def _bytes(n: int) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n}B"


def _filter_text(info: LayerInfo) -> str:
    return info.layer.summary(list(info.wshapes))


def rows(infos: Sequence[LayerInfo]) -> list[dict[str, Any]]:
    """One plain-data row per layer (what ``--json`` prints)."""
    out = []
    for info in infos:
        layer = info.layer
        out.append({
            "index": info.index + 1, "name": layer.name, "type": layer.type,
            "filter": _filter_text(info),
            "stride": list(getattr(layer, "stride", (1, 1))),
            "pad": list(getattr(layer, "pad", (0, 0, 0, 0))),
            "output": None if info.is_scalar else list(info.out_shape),
            "params": info.params, "flops": info.flops,
            "rf_size": list(info.rf_size), "rf_stride": list(info.rf_stride),
            "rf_offset": list(info.rf_offset),
            "memory_per_sample": info.memory,
        })
    return out


def table(infos: Sequence[LayerInfo], input_shape: Sequence[int]) -> str:
    """The per-layer table with totals, as text."""
    head = ["#", "name", "type", "filter", "stride", "pad", "output", "params", "FLOPs",
            "rf size", "rf stride", "rf offset", "mem/sample"]
    body = [["0", "input", "", "", "", "", "x".join(str(d) for d in input_shape), "", "",
             "1", "1", "1", _bytes(4 * int(np.prod(input_shape)))]]
    for info in infos:
        layer = info.layer
        has_geo = layer.geometry(0, list(info.wshapes)) is not None
        body.append([
            str(info.index + 1), layer.name, layer.type, _filter_text(info),
            _fmt_pair(layer.stride) if has_geo else "",
            _fmt_pad(layer.pad) if has_geo else "",
            "loss" if info.is_scalar else "x".join(str(d) for d in info.out_shape),
            _human(info.params) if info.params else "",
            _human(info.flops),
            _fmt_pair(info.rf_size), _fmt_pair(info.rf_stride),
            _fmt_pair([f"{o:g}" for o in info.rf_offset]),
            "" if info.is_scalar else _bytes(info.memory),
        ])
    total_params = sum(i.params for i in infos)
    total_flops = sum(i.flops for i in infos)
    total_mem = 4 * int(np.prod(input_shape)) + sum(i.memory for i in infos if not i.is_scalar)
    body.append(["", "total", "", "", "", "", "", _human(total_params), _human(total_flops),
                 "", "", "", _bytes(total_mem)])
    widths = [max(len(r[c]) for r in [head, *body]) for c in range(len(head))]
    right = {0, 7, 8, 12}

    def line(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if k in right else c.ljust(w)
                         for k, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), sep, *(line(r) for r in body[:-1]), sep, line(body[-1])])


def fit_explanation(net: Net, err: ShapeError) -> list[str]:
    """Which input heights and widths fit this net, one line each."""
    ws = net.weight_shapes()
    return [f"input height: {fitting_sizes(net.layers, ws, 0)}",
            f"input width: {fitting_sizes(net.layers, ws, 1)}"]


#: most bytes of activations the --diagnose forward pass may hold
MAX_DIAGNOSE_BYTES = 2**30


def diagnose_mode(net: Net) -> str:
    """The mode :func:`diagnose` runs ``net`` in (see there)."""
    return "normal" if any(layer.type == "bnorm" for layer in net.layers) else "test"


def diagnose(net: Net, input_shape: Sequence[int], seed: int = 0,
             batch: int = 2) -> tuple[list[dict[str, Any]], list[str]]:
    """Forward pass at initialisation on N(0,1) input: per-layer mean, std and fraction of
    exact zeros, plus warnings where activations die. Mode 'test', except for a net with
    bnorm layers: their stored moments are zeros until training fills them (MatConvNet's
    initialisation), so those nets run in mode 'normal' — batch statistics, as training
    sees them (dropout then draws from ``seed``)."""
    need = batch * (4 * int(np.prod(input_shape)) + sum(i.memory for i in
                                                         net.info(tuple(input_shape))))
    if need > MAX_DIAGNOSE_BYTES:
        from .spec import spec_pos  # noqa: PLC0415

        line, col = spec_pos(net.spec, "input")
        shape = "x".join(str(int(v)) for v in input_shape)
        raise SpecError(f"--diagnose: a forward pass on {batch} inputs of {shape} would hold "
                        f"about {need / 2**30:.1f} GiB of activations; the limit is "
                        f"{MAX_DIAGNOSE_BYTES / 2**30:.0f} GiB (check a smaller --input)",
                        file=net.spec.source, line=line, column=col)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *input_shape), dtype=np.float32)
    last: Layer = net.layers[-1]
    labels = None
    if last.is_loss:
        k = net.info(tuple(input_shape))[-2].out_shape[2] if len(net.layers) > 1 else 1
        labels = rng.integers(0, k, size=batch)
    mode = diagnose_mode(net)
    res = simplenn(net, x, labels=labels, mode=mode, rng=np.random.default_rng([seed, 2]))
    stats, warnings = [], []
    dead_from = None
    for i, layer in enumerate(net.layers):
        y = net.backend.to_numpy(res[i + 1].x).astype(np.float64)
        zeros = float(np.mean(y == 0)) if y.size else 0.0
        stats.append({"index": i + 1, "name": layer.name, "type": layer.type,
                      "mean": float(y.mean()), "std": float(y.std()), "zeros": zeros})
        if not layer.is_loss and zeros >= 0.99 and dead_from is None:
            dead_from = i
            warnings.append(
                f"activations die at layer {i + 1} ({layer.type} '{layer.name}'): "
                f"{zeros:.1%} of its outputs are exactly 0, so nothing after it learns")
        if not layer.is_loss and not np.all(np.isfinite(y)):
            warnings.append(f"layer {i + 1} ({layer.type} '{layer.name}') outputs NaN or Inf")
    if dead_from is not None:
        for i in range(dead_from - 1, -1, -1):
            layer = net.layers[i]
            if layer.type == "conv":
                f = net.backend.to_numpy(net.weights[i][0]).astype(np.float64)
                if abs(f.mean()) > 0.2 * f.std():
                    warnings.append(
                        f"layer {i + 1} ({layer.type} '{layer.name}') has filters with mean "
                        f"{f.mean():.3g} against std {f.std():.3g}: a biased initializer such "
                        f"as (randn(...)-0.5)*s pushes pre-activations negative and the ReLUs "
                        f"output 0; use a zero-mean initializer")
                    break
    return stats, warnings


def diagnose_text(stats: list[dict[str, Any]]) -> str:
    head = f"{'#':>3}  {'name':<10} {'type':<12} {'mean':>11} {'std':>11} {'zeros':>7}"
    lines = [head]
    for s in stats:
        lines.append(f"{s['index']:>3}  {s['name']:<10} {s['type']:<12} {s['mean']:>11.4g} "
                     f"{s['std']:>11.4g} {s['zeros']:>7.1%}")
    return "\n".join(lines)


def to_json(net: Net, infos: Sequence[LayerInfo], input_shape: Sequence[int]) -> str:
    return json.dumps({"name": net.name, "input": list(input_shape), "layers": rows(infos),
                       "total_params": sum(i.params for i in infos),
                       "total_flops": sum(i.flops for i in infos)}, indent=2)
