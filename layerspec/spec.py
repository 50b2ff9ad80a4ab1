"""Spec files: reading, validating and tidying them into one canonical, immutable form.

A spec is a YAML mapping (see README): ``name``, ``input: [H, W, C]``, ``vars``, ``layers``
(a list of MatConvNet layer structs, field names as in Matlab), ``meta``, ``train`` (cnn_train
options), ``data``, ``weights`` (an ``.npz`` beside the spec) and ``seed``.

:func:`tidy` plays the role of ``vl_simplenn_tidy``: it fills MatConvNet's defaults, accepts the
legacy aliases (``filters``/``biases`` -> ``weights``; the seed article's dropout ``fraction`` ->
``rate``), names unnamed layers ``layer1, layer2, ...`` and returns a :class:`Spec` whose
layers are frozen layer objects. Tidying the canonical form again changes nothing.

Every problem raises :class:`~layerspec.errors.SpecError` located at ``file:line:column``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from .errors import ExpressionError, SpecError
from .expr import evaluate
from .layers import LAYER_CLASSES, PLANNED_TYPES, Layer
from .suggest import did_you_mean
from .yamlload import YMap, YSeq, key_mark_of, load_yaml, mark_of

TOP_LEVEL_KEYS = ("name", "description", "input", "vars", "defines", "layers", "meta", "train",
                  "data", "weights", "seed")

#: cnn_train options a spec's ``train:`` section may set, with cnn_train's defaults.
TRAIN_DEFAULTS: Mapping[str, Any] = MappingProxyType({
    "batchSize": 256,
    "numEpochs": 300,
    "learningRate": 0.001,
    "weightDecay": 0.0005,
    "momentum": 0.9,
    "nesterovUpdate": False,
    "solver": "sgd",
    "solverOpts": {},
    "randomSeed": 0,
    "errorFunction": "multiclass",
    "numSubBatches": 1,
    "epochSize": math.inf,
    "val": "test",
})

Pos = tuple[int | None, int | None]
NOWHERE: Pos = (None, None)


def _pos(container: Any, key: Any) -> Pos:
    m = mark_of(container, key) if isinstance(container, (YMap, YSeq)) else None
    return (m.line, m.column) if m is not None else NOWHERE


def _key_pos(container: Any, key: str) -> Pos:
    m = key_mark_of(container, key) if isinstance(container, YMap) else None
    return (m.line, m.column) if m is not None else _pos(container, key)


def _node_pos(node: Any) -> Pos:
    m = getattr(node, "mark", None)
    return (m.line, m.column) if m is not None else NOWHERE


def _raw_text(container: Any, key: Any) -> str | None:
    if isinstance(container, YMap):
        return getattr(container, "value_texts", {}).get(key)
    if isinstance(container, YSeq):
        texts = getattr(container, "item_texts", None)
        if texts is not None and 0 <= key < len(texts):
            return texts[key]
    return None


class _Ctx:
    """Where we are (the file name, for error positions) and whether the weights come from
    elsewhere (a weights file or arrays), so layers may omit initializers."""

    def __init__(self, file: str | None, weights_supplied: bool = False) -> None:
        self.file = file
        self.weights_supplied = weights_supplied
        self.vars: list[tuple[str, Any]] = []
        self.defines: dict[str, Any] = {}

    def names(self) -> dict[str, Any]:
        """The spec's ``vars`` evaluated (random ones with a throw-away generator)."""
        names: dict[str, Any] = {}
        rng = np.random.default_rng(0)
        for name, value in self.vars:
            names[name] = evaluate(value, names=names, rng=rng, defines=self.defines) \
                if isinstance(value, str) else value
        return names

    def error(self, message: str, pos: Pos = NOWHERE) -> SpecError:
        return SpecError(message, file=self.file, line=pos[0], column=pos[1])


# ----------------------------------------------------------------------------------------
# scalar/field parsing
# ----------------------------------------------------------------------------------------

def _describe(value: Any, raw: str | None) -> str:
    if isinstance(value, bool):
        shown = raw if raw is not None else str(value).lower()
        return (f"a boolean ({shown!r}; YAML reads yes/no/on/off/true/false as booleans — "
                f"quote it if you meant text)")
    if value is None:
        return "nothing (null)"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)}"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"{value!r}"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _as_float(v: Any, what: str, ctx: _Ctx, pos: Pos, raw: str | None = None) -> float:
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.reshape(()).item()
    if not _is_number(v):
        raise ctx.error(f"{what}: expected a number, got {_describe(v, raw)}", pos)
    f = float(v)
    if not math.isfinite(f):
        raise ctx.error(f"{what}: expected a finite number, got {f}", pos)
    return f


def _as_int(v: Any, what: str, ctx: _Ctx, pos: Pos, raw: str | None = None) -> int:
    f = _as_float(v, what, ctx, pos, raw)
    if f != int(f):
        raise ctx.error(f"{what}: expected a whole number, got {f:g}", pos)
    return int(f)


def _as_list(v: Any) -> list[Any] | None:
    """A YAML list, a numpy vector or a scalar, as a Python list (None when not list-like)."""
    if isinstance(v, np.ndarray):
        return [x.item() for x in v.reshape(-1)]
    if isinstance(v, (list, tuple)):
        return list(v)
    return None


def _ints(v: Any, what: str, ctx: _Ctx, pos: Pos, container: Any, key: Any,
          sizes: tuple[int, ...], minimum: int) -> tuple[int, ...]:
    """An int or list of ints of one of ``sizes`` lengths, each >= minimum."""
    raw = _raw_text(container, key)
    items = _as_list(v)
    if items is None:
        items = [v]
        item_pos = [pos]
        item_raw: list[str | None] = [raw]
    else:
        item_pos = [_pos(v, i) if isinstance(v, YSeq) else pos for i in range(len(items))]
        item_raw = [_raw_text(v, i) for i in range(len(items))]
    if len(items) not in sizes:
        shapes = " or ".join(str(s) for s in sizes)
        raise ctx.error(f"{what}: expected {shapes} numbers, got {len(items)}"
                        + (" (pad is [top bottom left right]; a 2-element pad is ambiguous)"
                           if 4 in sizes else ""), pos)
    out = []
    for item, p, r in zip(items, item_pos, item_raw, strict=True):
        n = _as_int(item, what, ctx, p, r)
        if n < minimum:
            raise ctx.error(f"{what}: must be >= {minimum}, got {n}", p)
        out.append(n)
    return tuple(out)


def _parse_field(f: dataclasses.Field, value: Any, ctx: _Ctx, where: str, container: Any,
                 key: str) -> Any:
    meta = f.metadata
    kind = meta["kind"]
    what = f"{where}: {f.name}"
    pos = _pos(container, key)
    raw = _raw_text(container, key)
    if kind == "pair":
        vals = _ints(value, what, ctx, pos, container, key, (1, 2), meta.get("minimum", 1))
        return (vals[0], vals[0]) if len(vals) == 1 else vals
    if kind == "quad":
        vals = _ints(value, what, ctx, pos, container, key, (1, 4), 0)
        return vals * 4 if len(vals) == 1 else vals
    if kind == "float":
        x = _as_float(value, what, ctx, pos, raw)
        lo, hi = meta.get("minimum"), meta.get("maximum")
        if lo is not None and x < lo:
            raise ctx.error(f"{what}: must be >= {lo:g}, got {x:g}", pos)
        if hi is not None and (x > hi or (meta.get("exclusive_maximum") and x >= hi)):
            op = "<" if meta.get("exclusive_maximum") else "<="
            raise ctx.error(f"{what}: must be {op} {hi:g}, got {x:g}", pos)
        return x
    if kind == "int":
        return _as_int(value, what, ctx, pos, raw)
    if kind == "str":
        if not isinstance(value, str) or not value:
            raise ctx.error(f"{what}: expected a non-empty text, got {_describe(value, raw)}",
                            pos)
        return value
    if kind == "choice":
        choices = meta["choices"]
        if not isinstance(value, str) or value.lower() not in choices:
            hint = did_you_mean(value, choices) if isinstance(value, str) else \
                f" (expected one of: {', '.join(choices)})"
            raise ctx.error(f"{what}: {_describe(value, raw)} is not allowed{hint}", pos)
        return value.lower()
    if kind == "floats":
        if value is None:
            return None
        items = _as_list(value)
        if items is None:
            out = (_as_float(value, what, ctx, pos, raw),)
        else:
            out = tuple(_as_float(x, what, ctx,
                                  _pos(value, i) if isinstance(value, YSeq) else pos,
                                  _raw_text(value, i)) for i, x in enumerate(items))
        length = meta.get("length")
        if length is not None and len(out) != length:
            raise ctx.error(f"{what}: expected {length} numbers ({meta['doc'].split(':')[0]}), "
                            f"got {len(out)}", pos)
        return out
    if kind == "bool":
        if isinstance(value, np.ndarray) and value.size == 1:
            value = value.reshape(()).item()
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if _is_number(value) and float(value) in (0.0, 1.0):
            return bool(value)
        raise ctx.error(f"{what}: expected true or false, got {_describe(value, raw)}", pos)
    raise AssertionError(f"unknown field kind {kind}")


def layer_fields(cls: type[Layer]) -> dict[str, dataclasses.Field]:
    """The spec fields of a layer class (name -> dataclass field), in declaration order."""
    return {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("kind") != "internal"}


def _field_aliases(cls: type[Layer]) -> dict[str, str]:
    out = {}
    for f in dataclasses.fields(cls):
        for alias in f.metadata.get("aliases", ()):
            out[alias] = f.name
    if cls.weight_names:
        out["filters"] = "weights"
        out["biases"] = "weights"
    return out


# ----------------------------------------------------------------------------------------
# layers
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WeightInit:
    """A weight initializer: a Matlab expression and where it stands in the spec file."""

    expr: str
    line: int | None = field(default=None, compare=False)
    column: int | None = field(default=None, compare=False)


def _parse_weights(value: Any, ctx: _Ctx, where: str, container: Any, key: str,
                   count: int, min_count: int | None = None,
                   ) -> tuple[tuple[WeightInit, ...] | None, list[np.ndarray] | None]:
    """``weights:`` as initializer expressions (YAML) or arrays (a ported ``.mat``).

    A bnorm layer may leave out its moments (``min_count`` entries): like
    ``vl_simplenn_tidy``, they become ``zeros(C, 2, 'single')``."""
    pos = _pos(container, key)
    if (min_count is not None and isinstance(value, (list, tuple))
            and min_count <= len(value) < count):
        inits, arrays = _parse_weights(value, ctx, where, container, key, len(value))
        if arrays is not None:
            c = arrays[0].size
            return None, arrays + [np.zeros((c, 2), dtype=arrays[0].dtype)]
        return inits + (_moments_init(inits[0], ctx, where),), None
    if isinstance(value, str):
        raise ctx.error(f"{where}: weights: expected a list of {count} initializers "
                        f"(e.g. [\"0.01*randn(5,5,1,20,'single')\", \"zeros(1,20,'single')\"]), "
                        f"got the text {value!r}", pos)
    if not isinstance(value, (list, tuple)):
        raise ctx.error(f"{where}: weights: expected a list of {count} initializers, "
                        f"got {_describe(value, None)}", pos)
    if len(value) != count:
        raise ctx.error(f"{where}: weights: expected {count} entries "
                        f"({', '.join(LAYER_WEIGHT_DOC.get(where.split(' ')[0], ()))}), "
                        f"got {len(value)}", pos)
    if all(isinstance(v, np.ndarray) for v in value):
        return None, [np.asarray(v) for v in value]
    inits = []
    for i, v in enumerate(value):
        p = _pos(value, i) if isinstance(value, YSeq) else pos
        if _is_number(v):
            v = repr(float(v)) if isinstance(v, float) else str(v)
        if isinstance(v, (list, tuple)) and len(v) == 0:
            v = "[]"
        if not isinstance(v, str):
            raise ctx.error(f"{where}: weights[{i}]: expected an initializer expression such as "
                            f"\"zeros(1,20,'single')\", got {_describe(v, None)}", p)
        raw = _raw_text(value, i)
        line, col = p
        if col is not None and raw and raw[:1] in "'\"":
            col += 1  # the expression starts after the opening quote
        inits.append(WeightInit(v, line, col))
    return tuple(inits), None


def _moments_init(g: WeightInit, ctx: _Ctx, where: str) -> WeightInit:
    """``zeros(C,2,'single')`` for a bnorm layer given only {g, b}; C is the number of
    elements of g's initializer (evaluated with a throw-away generator: sizes do not
    depend on random draws)."""
    try:
        value = evaluate(g.expr, names=ctx.names(), rng=np.random.default_rng(0),
                         defines=ctx.defines)
        c = int(np.asarray(value).size)
    except (ExpressionError, SpecError, ValueError, TypeError):
        raise ctx.error(f"{where}: weights: cannot tell the number of channels from "
                        f"{g.expr!r} to make the moments; give them as a third initializer, "
                        f"e.g. \"zeros(C,2,'single')\"", (g.line, g.column)) from None
    return WeightInit(f"zeros({c},2,'single')", g.line, g.column)


LAYER_WEIGHT_DOC = {"conv": ("filters [h w in out]", "biases [out] or []"),
                    "convt": ("filters [h w out in]", "biases [out*numGroups] or []"),
                    "bnorm": ("g [C]", "b [C]", "optionally moments [C 2]")}


def tidy_layer(raw: Any, index: int, ctx: _Ctx, pos: Pos,
               ) -> tuple[Layer, list[np.ndarray] | None]:
    """One raw layer mapping -> (canonical layer, given weight arrays or None)."""
    if isinstance(raw, Layer):
        return raw, None
    label = f"layer {index + 1}"
    if not isinstance(raw, Mapping):
        raise ctx.error(f"{label}: expected a mapping such as {{type: relu}}, "
                        f"got {_describe(raw, None)}", pos)
    if "type" not in raw:
        raise ctx.error(f"{label}: missing 'type' (one of: {', '.join(sorted(LAYER_CLASSES))})",
                        pos)
    ltype = raw["type"]
    tpos = _pos(raw, "type")
    if not isinstance(ltype, str):
        raise ctx.error(f"{label}: type: expected a layer type name, got "
                        f"{_describe(ltype, _raw_text(raw, 'type'))}", tpos)
    if ltype not in LAYER_CLASSES:
        if ltype.lower() in LAYER_CLASSES:
            ltype = ltype.lower()
        elif ltype == "custom":
            raise ctx.error(f"{label}: 'custom' layers run Matlab function handles, which "
                            f"layerspec never executes; write the layer as one of: "
                            f"{', '.join(sorted(LAYER_CLASSES))}", tpos)
        elif ltype in PLANNED_TYPES:
            raise ctx.error(f"{label}: layer type '{ltype}' is a SimpleNN type that layerspec "
                            f"does not implement yet", tpos)
        else:
            raise ctx.error(f"{label}: unknown layer type '{ltype}'"
                            + did_you_mean(ltype, LAYER_CLASSES), tpos)
    cls = LAYER_CLASSES[ltype]
    fields = layer_fields(cls)
    aliases = _field_aliases(cls)
    where = ltype
    kwargs: dict[str, Any] = {}
    given: list[np.ndarray] | None = None
    seen_from: dict[str, str] = {}
    legacy: dict[str, Any] = {}
    for key in raw:
        if key == "type":
            continue
        kpos = _key_pos(raw, key)
        if not isinstance(key, str):
            raise ctx.error(f"{where}: field names must be text, got {key!r}", kpos)
        target = key
        if key in aliases:
            target = aliases[key]
            if target == "weights":
                legacy[key] = raw[key]
                continue
        if target not in fields or target == "weights" and not cls.weight_names:
            known = [f for f in fields if f != "weights" or cls.weight_names]
            raise ctx.error(f"{where}: unknown field '{key}'" + did_you_mean(key, known), kpos)
        if target == "weights":
            inits, given = _parse_weights(raw[key], ctx, where, raw, key, len(cls.weight_names),
                                          getattr(cls, "min_weights", None))
            kwargs["weights"] = inits
            continue
        value = _parse_field(fields[target], raw[key], ctx, where, raw, key)
        if target in kwargs and kwargs[target] != value:
            other = seen_from[target]
            raise ctx.error(f"{where}: '{key}' ({value:g}) and '{other}' ({kwargs[target]:g}) "
                            f"are both given and differ; '{key}' is another name for "
                            f"'{target}': give only '{target}'"
                            if isinstance(value, float) else
                            f"{where}: '{key}' and '{other}' are both given and differ; give "
                            f"only '{target}'", kpos)
        kwargs[target] = value
        seen_from[target] = key
    if legacy:
        if "weights" in seen_from or "weights" in kwargs:
            raise ctx.error(f"{where}: give either 'weights' or the legacy 'filters'/'biases', "
                            f"not both", _key_pos(raw, next(iter(legacy))))
        seq = [legacy.get("filters"), legacy.get("biases", [])]
        if seq[0] is None:
            raise ctx.error(f"{where}: 'biases' given without 'filters'",
                            _key_pos(raw, "biases"))
        if all(isinstance(v, np.ndarray) for v in seq) and ltype != "bnorm":
            given = [np.asarray(v) for v in seq]
            kwargs["weights"] = None
        else:
            kwargs["weights"], given = _parse_weights(
                [s if not (isinstance(s, list) and not s) else "[]" for s in seq], ctx, where,
                raw, "filters", len(cls.weight_names), getattr(cls, "min_weights", None))
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING:
            raise ctx.error(f"{where}: missing required field '{name}' ({f.metadata['doc']})",
                            pos)
    if (cls.weight_names and kwargs.get("weights") is None and given is None
            and not ctx.weights_supplied and not getattr(cls, "default_init", False)):
        raise ctx.error(f"{where}: missing 'weights': give initializers, e.g. weights: "
                        f"[\"0.01*randn(5,5,1,20,'single')\", \"zeros(1,20,'single')\"], or "
                        f"load them with a top-level 'weights: file.npz'", pos)
    for mult in ("learningRate", "weightDecay"):
        vals = kwargs.get(mult)
        allowed = {len(cls.weight_names)}
        if mult == "weightDecay" and ltype == "bnorm":
            allowed.add(2)  # cnn_mnist_init's [0 0]: the moments are never decayed
        if vals is not None and len(vals) not in allowed:
            raise ctx.error(f"{where}: {mult}: expected {len(cls.weight_names)} multipliers "
                            f"(one per weight array), got {len(vals)}", _pos(raw, mult))
    if not kwargs.get("name"):
        kwargs["name"] = f"layer{index + 1}"
    try:
        layer = cls(**kwargs)
    except SpecError as err:
        raise ctx.error(err.message, pos) from None
    object.__setattr__(layer, "_pos", pos)
    return layer, given


def layer_pos(layer: Layer) -> Pos:
    """Where a tidied layer stands in its spec file."""
    return getattr(layer, "_pos", NOWHERE)


def layer_to_dict(layer: Layer) -> dict[str, Any]:
    """A canonical layer as plain data (the spec form, defaults filled)."""
    out: dict[str, Any] = {"type": layer.type}
    for name in layer_fields(type(layer)):
        v = getattr(layer, name)
        if v is None:
            continue
        if name == "weights":
            out[name] = [w.expr for w in v]
        elif isinstance(v, tuple):
            out[name] = list(v)
        else:
            out[name] = v
    return out


# ----------------------------------------------------------------------------------------
# the whole spec
# ----------------------------------------------------------------------------------------

def _freeze(v: Any) -> Any:
    """Plain, immutable-ish JSON data: mappings become read-only, sequences tuples."""
    if isinstance(v, Mapping):
        return MappingProxyType({str(k): _freeze(x) for k, x in v.items()})
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, np.ndarray):
        return tuple(v.reshape(-1).tolist()) if v.size != 1 else v.reshape(()).item()
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    return v


def _thaw(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: _thaw(x) for k, x in v.items()}
    if isinstance(v, tuple):
        return [_thaw(x) for x in v]
    return v


@dataclass(frozen=True)
class Spec:
    """A tidied spec: the one canonical form everything downstream uses.

    ``input`` is (H, W, C) of one sample or None (then it comes from the data). ``vars`` is
    an ordered tuple of (name, value) where a value is a number or an expression text.
    """

    name: str
    layers: tuple[Layer, ...]
    input: tuple[int, int, int] | None = None
    vars: tuple[tuple[str, Any], ...] = ()
    defines: tuple[tuple[str, Any], ...] = ()
    meta: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    train: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    data: Mapping[str, Any] | None = None
    weights: str | None = None
    seed: int = 0
    description: str = ""
    source: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The canonical spec as plain data; ``tidy(spec.to_dict()) == spec``."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        if self.input is not None:
            out["input"] = list(self.input)
        if self.vars:
            out["vars"] = {k: v for k, v in self.vars}
        if self.defines:
            out["defines"] = {k: v for k, v in self.defines}
        out["layers"] = [layer_to_dict(layer) for layer in self.layers]
        if self.meta:
            out["meta"] = _thaw(self.meta)
        if self.train:
            out["train"] = _thaw(self.train)
        if self.data is not None:
            out["data"] = _thaw(self.data)
        if self.weights is not None:
            out["weights"] = self.weights
        out["seed"] = self.seed
        return out

    def to_yaml(self) -> str:
        """The canonical spec as YAML text (what `port` writes)."""
        import yaml  # noqa: PLC0415

        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None,
                              width=100)

    def digest(self) -> str:
        """A hash of the canonical spec (layers and initializers), stored in checkpoints."""
        d = self.to_dict()
        keep = {k: d[k] for k in ("layers", "input", "vars", "defines") if k in d}
        text = json.dumps(keep, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the spec are resolved against."""
        return Path(self.source).resolve().parent if self.source else Path.cwd()


def _eval_schedule(text: str, ctx: _Ctx, pos: Pos) -> list[float]:
    """A learning-rate schedule written as a Matlab expression, e.g.
    ``"[0.05*ones(1,30) 0.005*ones(1,10)]"`` or ``"logspace(-2,-4,60)"``."""
    line, col = pos
    try:
        value = evaluate(text)
    except ExpressionError as err:
        raise ctx.error(f"train: learningRate: {err.message}", pos) from None
    arr = np.asarray(value, dtype=float).reshape(-1)
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ctx.error(f"train: learningRate: {text!r} gives no usable rates", (line, col))
    return [float(v) for v in arr]


def _check_train_options(train: Mapping[str, Any], ctx: _Ctx) -> None:
    """The cnn_train options that TrainOptions would refuse (or misread) without a position."""
    from .train import SOLVER_DEFAULTS, SOLVERS  # noqa: PLC0415 - train imports spec

    def pos(k: str) -> Pos:
        return _pos(train, k)

    if "randomSeed" in train:
        n = _as_int(train["randomSeed"], "train: randomSeed", ctx, pos("randomSeed"),
                    _raw_text(train, "randomSeed"))
        if n < 0:
            raise ctx.error(f"train: randomSeed: must be >= 0, got {n}", pos("randomSeed"))
    size = train.get("epochSize", math.inf)  # cnn_train's default is Inf (a ported .mat)
    if not _is_number(size) or not float(size) >= 1:
        raise ctx.error(f"train: epochSize: expected a number >= 1, got "
                        f"{_describe(size, _raw_text(train, 'epochSize'))}", pos("epochSize"))
    nesterov = train.get("nesterovUpdate", False)
    if not (isinstance(nesterov, bool) or (_is_number(nesterov) and nesterov in (0, 1))):
        raise ctx.error("train: nesterovUpdate: expected true or false, got "
                        f"{_describe(train['nesterovUpdate'], _raw_text(train, 'nesterovUpdate'))}",
                        pos("nesterovUpdate"))
    for k, choices in (("solver", SOLVERS), ("errorFunction", ("multiclass", "none"))):
        v = train.get(k)
        if k in train and not (isinstance(v, str)
                               and (v.lower() if k == "solver" else v) in choices):
            hint = did_you_mean(v, choices) if isinstance(v, str) else \
                f" (expected one of: {', '.join(choices)})"
            raise ctx.error(f"train: {k}: {_describe(v, _raw_text(train, k))} is not allowed"
                            f"{hint}", pos(k))
    if "numSubBatches" in train and train["numSubBatches"] != 1:
        raise ctx.error("train: numSubBatches: only 1 is supported (use a smaller batchSize)",
                        pos("numSubBatches"))
    opts = train.get("solverOpts")
    if "solverOpts" in train and not isinstance(opts, Mapping):
        raise ctx.error("train: solverOpts: expected a mapping of option names to numbers, "
                        f"got {_describe(opts, _raw_text(train, 'solverOpts'))}",
                        pos("solverOpts"))
    solver = str(train.get("solver", "sgd")).lower()
    for k, v in (opts or {}).items():
        if k not in SOLVER_DEFAULTS[solver]:
            raise ctx.error(f"train: solverOpts: '{k}' is not an option of {solver}"
                            + did_you_mean(str(k), SOLVER_DEFAULTS[solver] or ["(none)"]),
                            _key_pos(opts, k))
        _as_float(v, f"train: solverOpts: {k}", ctx, _pos(opts, k), _raw_text(opts, k))


def _positions(raw: Mapping[str, Any]) -> dict[str, Pos]:
    """Where the top-level values (``"data"``), the data keys (``"data.path"``) and the vars
    (``"vars.f"``) stand in the spec file: for errors found after tidying."""
    out = {str(k): _pos(raw, k) for k in raw}
    for section in ("data", "vars"):
        sub = raw.get(section)
        if isinstance(sub, YMap):
            out.update({f"{section}.{k}": _key_pos(sub, k) for k in sub})
    return out


def spec_pos(spec: Spec, key: str) -> Pos:
    """Where ``key`` (see :func:`_positions`) stands in ``spec``'s file, if known."""
    return getattr(spec, "_positions", {}).get(key, NOWHERE)


def tidy(raw: Any, *, file: str | None = None, weights_supplied: bool = False,
         ) -> tuple[Spec, list[list[np.ndarray]] | None]:
    """Validate a raw spec (a parsed YAML mapping or a plain dict) and return the canonical
    :class:`Spec` and, when the raw layers held arrays (a ported ``.mat``), those weights."""
    ctx = _Ctx(file, weights_supplied)
    if isinstance(raw, Spec):
        return raw, None
    if not isinstance(raw, Mapping):
        raise ctx.error("a spec is a mapping with at least 'layers:' (a list of layer structs), "
                        f"got {_describe(raw, None)}", _node_pos(raw) if raw is not None
                        else (1, 1))
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise ctx.error(f"unknown top-level key '{key}'" + did_you_mean(str(key),
                                                                            TOP_LEVEL_KEYS),
                            _key_pos(raw, key))
    if "layers" not in raw:
        raise ctx.error("the spec has no 'layers:' list (write layers: [{type: conv, ...}, ...])",
                        _node_pos(raw) if _node_pos(raw) != NOWHERE else (1, 1))
    if "weights" in raw:
        ctx.weights_supplied = True
    name = raw.get("name")
    if name is None:
        name = Path(file).stem if file else "net"
    if not isinstance(name, str) or not name:
        raise ctx.error(f"name: expected a text, got {_describe(name, _raw_text(raw, 'name'))}",
                        _pos(raw, "name"))
    input_shape = None
    if raw.get("input") is not None:
        vals = _ints(raw["input"], "input", ctx, _pos(raw, "input"), raw, "input", (3, 4), 1)
        input_shape = (vals[0], vals[1], vals[2])
    vars_: list[tuple[str, Any]] = []
    if raw.get("vars") is not None:
        v = raw["vars"]
        if not isinstance(v, Mapping):
            raise ctx.error(f"vars: expected a mapping of names to numbers or expressions, got "
                            f"{_describe(v, None)}", _pos(raw, "vars"))
        for k, x in v.items():
            if not (isinstance(k, str) and k.isidentifier()):
                raise ctx.error(f"vars: '{k}' is not a valid name", _key_pos(v, k))
            if not (_is_number(x) or isinstance(x, str)):
                raise ctx.error(f"vars: {k}: expected a number or an expression, got "
                                f"{_describe(x, _raw_text(v, k))}", _pos(v, k))
            vars_.append((k, float(x) if _is_number(x) and not isinstance(x, int) else x))
    defines: list[tuple[str, Any]] = []
    if raw.get("defines") is not None:
        d = raw["defines"]
        if not isinstance(d, Mapping):
            raise ctx.error("defines: expected a mapping of Matlab expressions to values, e.g. "
                            "\"size(imdb.images.data,1)\": 320", _pos(raw, "defines"))
        for k, x in d.items():
            if not _is_number(x):
                raise ctx.error(f"defines: {k}: expected a number, got "
                                f"{_describe(x, _raw_text(d, k))}", _pos(d, k))
            defines.append((str(k), x))
    ctx.vars, ctx.defines = vars_, dict(defines)
    layers_raw = raw["layers"]
    if not isinstance(layers_raw, (list, tuple)) or not layers_raw:
        raise ctx.error("layers: expected a non-empty list of layer structs",
                        _pos(raw, "layers"))
    layers: list[Layer] = []
    given: list[list[np.ndarray] | None] = []
    for i, item in enumerate(layers_raw):
        p = _pos(layers_raw, i) if isinstance(layers_raw, YSeq) else NOWHERE
        if p == NOWHERE:
            p = _node_pos(item)
        layer, arrays = tidy_layer(item, i, ctx, p)
        layers.append(layer)
        given.append(arrays)
    for layer in layers[:-1]:
        if layer.is_loss:
            raise ctx.error(f"{layer.type} '{layer.name}' must be the last layer (it reduces the "
                            f"output to one number)", layer_pos(layer))
    sections: dict[str, Any] = {}
    for key in ("meta", "train", "data"):
        v = raw.get(key)
        if v is not None and not isinstance(v, Mapping):
            raise ctx.error(f"{key}: expected a mapping, got {_describe(v, None)}",
                            _pos(raw, key))
        sections[key] = v
    train = sections["train"] or {}
    for k in train:
        if k not in TRAIN_DEFAULTS:
            raise ctx.error(f"train: unknown cnn_train option '{k}'"
                            + did_you_mean(str(k), TRAIN_DEFAULTS), _key_pos(train, k))
    for k in ("batchSize", "numEpochs", "numSubBatches"):
        if k in train:
            n = _as_int(train[k], f"train: {k}", ctx, _pos(train, k), _raw_text(train, k))
            if n < 1:
                raise ctx.error(f"train: {k}: must be >= 1, got {n}", _pos(train, k))
    for k in ("weightDecay", "momentum"):
        if k in train:
            _as_float(train[k], f"train: {k}", ctx, _pos(train, k), _raw_text(train, k))
    _check_train_options(train, ctx)
    if isinstance(train.get("learningRate"), str):
        train = dict(train)
        train["learningRate"] = _eval_schedule(train["learningRate"], ctx,
                                               _pos(raw["train"], "learningRate"))
    if "learningRate" in train:
        lr = train["learningRate"]
        lrs = _as_list(lr) if _as_list(lr) is not None else [lr]
        if not lrs:
            raise ctx.error("train: learningRate: expected a number or a per-epoch list",
                            _pos(train, "learningRate"))
        for i, x in enumerate(lrs):
            _as_float(x, "train: learningRate", ctx,
                      _pos(lr, i) if isinstance(lr, YSeq) else _pos(train, "learningRate"))
    weights_file = raw.get("weights")
    if weights_file is not None and not isinstance(weights_file, str):
        raise ctx.error("weights: expected the path of an .npz file beside the spec, got "
                        f"{_describe(weights_file, None)}", _pos(raw, "weights"))
    seed = 0
    if raw.get("seed") is not None:
        seed = _as_int(raw["seed"], "seed", ctx, _pos(raw, "seed"), _raw_text(raw, "seed"))
        if seed < 0:
            raise ctx.error(f"seed: must be >= 0, got {seed}", _pos(raw, "seed"))
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ctx.error("description: expected a text", _pos(raw, "description"))
    spec = Spec(name=name, layers=tuple(layers), input=input_shape, vars=tuple(vars_),
                defines=tuple(defines),
                meta=_freeze(sections["meta"] or {}), train=_freeze(train),
                data=_freeze(sections["data"]) if sections["data"] is not None else None,
                weights=weights_file, seed=seed, description=description, source=file)
    object.__setattr__(spec, "_positions", _positions(raw))
    has_arrays = any(g is not None for g in given)
    if has_arrays and not all(g is not None for i, g in enumerate(given)
                              if layers[i].weight_names):
        missing = [layers[i].name for i, g in enumerate(given)
                   if layers[i].weight_names and g is None]
        raise ctx.error(f"some layers carry weight arrays but {', '.join(missing)} do not")
    weights = [g if g is not None else [] for g in given] if has_arrays else None
    return spec, weights


def _first_content(data: bytes) -> dict[str, int]:
    """``line=``/``column=`` of the first character that is not blank, a comment or a
    document marker (the text was read as UTF-8 already)."""
    lines = data.decode("utf-8", "replace").removeprefix("\ufeff").splitlines()
    for n, text in enumerate(lines, 1):
        body = text.removeprefix("---") if text.startswith("---") else text
        stripped = body.lstrip()
        if stripped and not stripped.startswith(("#", "%")):
            return {"line": n, "column": len(text) - len(stripped) + 1}
    return {"line": 1, "column": 1}


def spec_from_source(source: Any, *, weights_supplied: bool = False,
                     ) -> tuple[Spec, list[list[np.ndarray]] | None]:
    """A :class:`Spec` (and embedded arrays) from a path, a raw mapping or a Spec."""
    if isinstance(source, Spec):
        return source, None
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise SpecError(f"spec file '{path}' not found") from None
        except OSError as exc:
            raise SpecError(f"cannot read spec file '{path}': {exc.strerror}") from None
        raw = load_yaml(data, str(path))
        if not isinstance(raw, (YMap, YSeq)) and raw is not None:  # a lone scalar: where?
            raise SpecError("a spec is a mapping with at least 'layers:' (a list of layer "
                            f"structs), got {_describe(raw, None)}", file=str(path),
                            **_first_content(data))
        return tidy(raw, file=str(path), weights_supplied=weights_supplied)
    if isinstance(source, Mapping):
        return tidy(source, weights_supplied=weights_supplied)
    if isinstance(source, Sequence):
        return tidy({"layers": list(source)}, weights_supplied=weights_supplied)
    raise SpecError(f"cannot build a network from {type(source).__name__}")
