"""``Net``: a tidied spec plus its weights on one backend, and :func:`load`.

``net.weights[i]`` is the list of layer i's arrays in MatConvNet's layout: conv filters
``(FH, FW, FC, K)`` (``[h w in out]``), biases ``(K,)`` (an empty ``(0,)`` array = no bias).
The list is assignable: ``net.weights[0][0] = new_filters``.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .backend import Backend, get_backend
from .errors import ExpressionError, ShapeError, SpecError
from .expr import evaluate, parse
from .layers import Layer, Shape
from .npzcheck import check_npz
from .shapes import LayerInfo, infer
from .spec import Spec, layer_pos, spec_from_source, spec_pos
from .workspace import Workspace

WEIGHTS_FORMAT = "layerspec-weights-1"


def _fix_weight(layer: Layer, j: int, a: np.ndarray, dtype: Any) -> np.ndarray:
    """Bring an initializer's or a file's array into layerspec's layout for weight j
    (``layer.weight_layouts[j]``)."""
    a = np.asarray(a, dtype=dtype)
    layouts = layer.weight_layouts
    layout = layouts[j] if j < len(layouts) else "vector"
    if layout == "4d":
        if a.ndim > 4:
            layout_text = "[h w out in]" if layer.type == "convt" else "[h w in out]"
            raise ShapeError(f"{layer.type} '{layer.name}': filters must have at most 4 "
                             f"dimensions {layout_text}, got shape {list(a.shape)}")
        a = a.reshape(a.shape + (1,) * (4 - a.ndim))  # Matlab drops trailing singletons
    elif layout == "matrix":
        while a.ndim > 2 and a.shape[-1] == 1:
            a = a.reshape(a.shape[:-1])
        if a.ndim > 2:
            raise ShapeError(f"{layer.type} '{layer.name}': {layer.weight_names[j]} must be a "
                             f"matrix, got shape {list(a.shape)}")
        a = a.reshape((1,) * (2 - a.ndim) + a.shape)  # a Matlab row vector
    elif layout == "moments":
        # [mu sigma]: C x 2, or 2C numbers read column-major as Matlab does
        if not (a.ndim == 2 and a.shape[1] == 2):
            if a.size % 2 or a.size == 0:
                raise ShapeError(f"{layer.type} '{layer.name}': moments must be C x 2 "
                                 f"[mu sigma], got shape {list(a.shape)}")
            a = a.reshape(-1, order="F").reshape((-1, 2), order="F")
    else:
        a = a.reshape(-1)
    return np.ascontiguousarray(a)


def init_weights(spec: Spec, rng: np.random.Generator,
                 defines: Mapping[str, Any] | None = None,
                 dtype: Any = np.float32,
                 input_shape: Shape | None = None) -> list[list[np.ndarray]]:
    """Evaluate every layer's initializer expressions (host arrays, ``dtype``).

    ``vars`` are evaluated first, in order; random draws come from ``rng`` in layer order.
    The layers are walked with the sample shape (``input_shape``, default the spec's
    ``input``): a layer whose weights depend on its input (``fc``, ``lstm``) and that gives no
    initializers is initialised by its ``default_weights(shape, rng, dtype)``, and its
    initializers' values are put in its canonical layout (``layout_weight``)."""
    defines = {**dict(spec.defines), **(defines or {})}
    names: dict[str, Any] = {}
    for name, value in spec.vars:
        if isinstance(value, str):
            line, col = spec_pos(spec, f"vars.{name}")
            try:
                value = evaluate(parse(value, line=line or 1, column=col or 1), names=names,
                                 rng=rng, defines=defines)
            except ExpressionError as err:
                if line is not None:  # at the var's name: the value may be quoted or folded
                    err.line, err.column = line, col
                raise err.located(file=spec.source) from None
        names[name] = value
    walk = _ShapeWalk(spec, input_shape)
    out: list[list[np.ndarray]] = []
    for i, layer in enumerate(spec.layers):
        inits = getattr(layer, "weights", None)
        if not layer.weight_names:
            out.append([])
            walk.step(i, [])
            continue
        if inits is None:
            line, col = layer_pos(layer)
            if not getattr(layer, "default_init", False):
                raise SpecError(f"{layer.type} '{layer.name}' has no weights: give initializers "
                                f"or a weights file", file=spec.source, line=line, column=col)
            arrays = [np.ascontiguousarray(a, dtype=dtype)
                      for a in layer.default_weights(walk.need(i), rng, dtype)]
            out.append(arrays)
            walk.step(i, arrays)
            continue
        arrays = []
        for j, init in enumerate(inits):
            try:
                node = parse(init.expr, line=init.line or 1, column=init.column or 1)
                value = evaluate(node, names=names, rng=rng, defines=defines)
            except ExpressionError as err:
                if err.line is None:
                    err.line, err.column = init.line, init.column
                raise err.located(file=spec.source) from None
            if isinstance(value, (str, list)):
                raise SpecError(f"{layer.type} '{layer.name}': weights[{j}] = {init.expr!r} is "
                                f"not a numeric array", file=spec.source, line=init.line,
                                column=init.column)
            try:
                arrays.append(_layout_weight(layer, j, value, walk.shape, dtype))
            except ShapeError as err:
                raise err.located(spec.source, init.line, init.column) from None
        out.append(arrays)
        walk.step(i, arrays)
    return out


class _ShapeWalk:
    """The sample shape in front of each layer while :func:`init_weights` walks the layers.

    ``shape`` is ``None`` when unknown (no input size, or an earlier layer did not fit: then
    :func:`load` reports the misfit); :meth:`need` raises the located reason instead."""

    def __init__(self, spec: Spec, input_shape: Shape | None) -> None:
        self.spec = spec
        start = input_shape if input_shape is not None else spec.input
        self.shape: Shape | None = None if start is None else tuple(int(v) for v in start)
        self.start = self.shape
        self.wshapes: list[list[tuple[int, ...]]] = []
        self.failed: int | None = None

    def step(self, i: int, arrays: Sequence[np.ndarray]) -> None:
        self.wshapes.append([tuple(a.shape) for a in arrays])
        if self.shape is None:
            return
        try:
            self.shape = self.spec.layers[i].output_shape(self.shape, self.wshapes[i])
        except ShapeError:
            self.shape, self.failed = None, i

    def need(self, i: int) -> Shape:
        """The input shape of layer ``i``, which needs it for its default weights."""
        if self.shape is not None:
            return self.shape
        layer = self.spec.layers[i]
        if self.failed is not None:
            infer(self.spec.layers[:self.failed + 1], self.wshapes, self.start,
                  self.spec.source)
        line, col = layer_pos(layer)
        raise SpecError(f"{layer.type} '{layer.name}' sizes its default weights from its input: "
                        f"give the spec an 'input: [H, W, C]' (for sequences [1, T, D]) or "
                        f"write its initializers", file=self.spec.source, line=line, column=col)


def _layout_weight(layer: Layer, j: int, value: Any, shape: Shape | None,
                   dtype: Any) -> np.ndarray:
    """An initializer's value as weight j of ``layer``: :func:`_fix_weight`, after putting
    it in the layer's canonical layout when the layer has one for its input ``shape``."""
    layout = getattr(layer, "layout_weight", None)
    if layout is None or shape is None:
        return _fix_weight(layer, j, value, dtype)
    arr = layout(j, np.asarray(value), shape)
    fixed = _fix_weight(layer, j, arr, dtype)
    if fixed.shape != arr.shape and fixed.size == arr.size:
        fixed = np.ascontiguousarray(fixed.reshape(arr.shape))
    return fixed


def save_weights(path: str | Path, spec: Spec, weights: Sequence[Sequence[Any]]) -> None:
    """Write weights to an ``.npz`` (keys ``w<i>_<j>``, 0-based layer and tensor index)."""
    arrays: dict[str, np.ndarray] = {"format": np.array(WEIGHTS_FORMAT),
                                     "names": np.array([layer.name for layer in spec.layers])}
    for i, ws in enumerate(weights):
        for j, w in enumerate(ws):
            arrays[f"w{i}_{j}"] = np.asarray(w)
    np.savez(path, **arrays)


def read_weights(path: str | Path, spec: Spec, dtype: Any = np.float32,
                 ) -> list[list[np.ndarray]]:
    """Read an ``.npz`` written by :func:`save_weights` (or a checkpoint) for ``spec``."""
    path = Path(path)
    check_npz(path, f"weights file '{path}'", SpecError)
    try:
        with np.load(path, allow_pickle=False) as z:
            files = dict(z.items())
    except FileNotFoundError:
        raise SpecError(f"weights file '{path}' not found") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise SpecError(f"weights file '{path}' is not a readable .npz: {exc}") from None
    out: list[list[np.ndarray]] = []
    for i, layer in enumerate(spec.layers):
        arrays = []
        for j in range(len(layer.weight_names)):
            key = f"w{i}_{j}"
            if key not in files:
                raise SpecError(f"weights file '{path}' has no array for layer {i + 1} "
                                f"({layer.type} '{layer.name}') {layer.weight_names[j]}")
            arrays.append(_fix_weight(layer, j, files[key], dtype))
        out.append(arrays)
    return out


class Net:
    """A network ready to run: canonical ``spec``, ``weights`` on ``backend``.

    ``layers`` are the tidied layer objects; ``weights[i]`` the arrays of layer i.
    ``rng`` is the generator ``simplenn`` uses for dropout when none is passed in.
    """

    def __init__(self, spec: Spec, weights: Sequence[Sequence[Any]],
                 backend: Backend | str = "numpy", seed: int | None = None,
                 dtype: Any = None) -> None:
        self.spec = spec
        self.backend = get_backend(backend)
        if len(weights) != len(spec.layers):
            raise SpecError(f"{len(weights)} weight lists for {len(spec.layers)} layers")
        # own copies: training updates them in place, never the caller's arrays
        self.weights: list[list[Any]] = [[self.backend.xp.array(w, copy=True) for w in ws]
                                         for ws in weights]
        self.seed = spec.seed if seed is None else seed
        self.rng = np.random.default_rng([self.seed, 1])
        if dtype is None:
            dtype = next((w.dtype for ws in self.weights for w in ws), np.float32)
        #: the data type inputs are cast to (float32; float64 for gradient checks)
        self.dtype = np.dtype(dtype)
        #: buffers the layers reuse from one simplenn call to the next
        self.workspace = Workspace()

    @property
    def layers(self) -> tuple[Layer, ...]:
        return self.spec.layers

    @property
    def name(self) -> str:
        return self.spec.name

    def weight_shapes(self) -> list[list[tuple[int, ...]]]:
        return [[tuple(w.shape) for w in ws] for ws in self.weights]

    def info(self, input_shape: Shape | None = None) -> list[LayerInfo]:
        """Per-layer shapes, parameters, FLOPs and receptive fields (raises ShapeError)."""
        shape = input_shape or self.spec.input
        if shape is None:
            raise SpecError("the spec gives no 'input: [H, W, C]'; pass an input size")
        return infer(self.layers, self.weight_shapes(), tuple(shape), self.spec.source)

    def host_weights(self) -> list[list[np.ndarray]]:
        """The weights as host NumPy arrays (copies when on a device)."""
        return [[self.backend.to_numpy(w) for w in ws] for ws in self.weights]

    def to(self, backend: Backend | str) -> Net:
        """The same net on another backend (weights copied)."""
        return Net(self.spec, self.host_weights(), backend, self.seed, self.dtype)

    def astype(self, dtype: Any) -> Net:
        """A copy with weights cast to ``dtype`` (float64 for gradient checks)."""
        return Net(self.spec, [[np.asarray(w, dtype=dtype) for w in ws]
                               for ws in self.host_weights()], self.backend, self.seed, dtype)

    def __repr__(self) -> str:
        return f"<Net {self.name!r}: {len(self.layers)} layers on {self.backend.name}>"


def resolve_weights(spec: Spec, embedded: list[list[np.ndarray]] | None, weights: Any,
                    seed: int, defines: Mapping[str, Any] | None) -> list[list[np.ndarray]]:
    """The weights for ``spec`` (see :func:`load` for where they come from)."""
    def fixed(arrays: Sequence[Sequence[Any]]) -> list[list[np.ndarray]]:
        out = []
        for layer, lw in zip(spec.layers, arrays, strict=True):
            lw = [np.asarray(w) for w in lw]
            out.append([_fix_weight(layer, j, w, np.float64 if w.dtype == np.float64
                                    else np.float32) for j, w in enumerate(lw)])
        return out

    if weights is not None:
        if isinstance(weights, (str, Path)):
            return read_weights(weights, spec)
        if len(weights) != len(spec.layers):
            raise SpecError(f"{len(weights)} weight lists for {len(spec.layers)} layers")
        return fixed(weights)
    if embedded is not None:
        return fixed(embedded)
    if spec.weights is not None:
        try:
            return read_weights(spec.base_dir / spec.weights, spec)
        except SpecError as err:  # at the spec's 'weights:' line
            raise err.located(spec.source, *spec_pos(spec, "weights")) from None
    return init_weights(spec, np.random.default_rng(seed), defines)


def load(source: Any, backend: Backend | str = "numpy", seed: int | None = None,
         weights: Any = None, defines: Mapping[str, Any] | None = None) -> Net:
    """Build a :class:`Net` from a spec file path, a raw spec mapping, or a :class:`Spec`.

    Weights come from, in order: the ``weights`` argument (an ``.npz`` path or a list of
    per-layer lists of arrays), arrays embedded in a raw mapping (a ported ``.mat``), the
    spec's top-level ``weights:`` file, or the layers' initializer expressions evaluated with
    a generator seeded by ``seed`` (default: the spec's ``seed``). When the spec gives its
    ``input`` size, every layer's shapes are checked (a ShapeError names the first misfit).
    """
    spec, embedded = spec_from_source(source, weights_supplied=weights is not None)
    seed = spec.seed if seed is None else seed
    ws = resolve_weights(spec, embedded, weights, seed, defines)
    net = Net(spec, ws, backend, seed)
    if spec.input is not None:
        net.info(spec.input)
    return net
