"""The layer base class, its field declarations, and the shared geometry helpers.

A layer is a frozen dataclass: its fields are the canonical (tidied) MatConvNet fields, so a
layer object *is* the canonical form of one ``net.layers{i}`` struct. Each field carries
metadata (``kind``, ``doc``) that the spec reader uses to parse and document it.

Array layout everywhere: data ``(N, H, W, C)``; conv filters ``(FH, FW, FC, K)``
(MatConvNet's ``[h w in out]``); biases ``(K,)``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from ..backend import Backend
from ..errors import ShapeError

Shape = tuple[int, int, int]  # (H, W, C) of one sample
SCALAR: Shape = (1, 1, 1)     # the output "shape" of a loss layer (a scalar)

REQUIRED = dataclasses.MISSING


def param(kind: str, default: Any = REQUIRED, doc: str = "", **extra: Any) -> Any:
    """Declare a layer field.

    kind: ``pair`` (positive int or ``[a b]``), ``quad`` (non-negative int or
    ``[top bottom left right]``), ``float``, ``int``, ``bool``, ``choice`` (``choices=...``),
    ``floats`` (number or list of numbers), ``weights`` (list of initializer expressions).
    ``extra`` may hold ``minimum``/``maximum``/``choices``/``aliases``.
    """
    meta = {"kind": kind, "doc": doc, **extra}
    if default is REQUIRED:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Context:
    """What a forward/backward call needs besides the data: passed in, never global.

    mode: ``"normal"`` (training: dropout active) or ``"test"``.
    labels: backend array of 0-based labels, ``(N,)`` or ``(N, H, W)``, ``-1`` = ignore.
    rng: host generator for random draws (dropout masks).
    step: ``(epoch, batch)`` (1-based) of a training step, set by the trainer, or ``None``;
    dropout layers with a ``seed`` derive their masks from it.
    """

    backend: Backend
    mode: str = "normal"
    labels: Any = None
    rng: Any = None
    step: tuple[int, ...] | None = None
    #: the net's :class:`~layerspec.workspace.Workspace` (buffers reused across steps) or None
    workspace: Any = None
    #: on a device backend, the labels as the host array they came from (or None): loss
    #: layers validate them there instead of reading the device copy back every step
    labels_host: Any = None
    #: False when the caller does not need the derivative w.r.t. this layer's input (the
    #: network input during training): layers may then skip computing it and return None
    input_grad: bool = True
    #: True when the executor keeps neither this layer's input after its forward pass nor
    #: the incoming derivative after its backward pass (``simplenn(conserve_memory=True)``,
    #: as the trainer runs): a layer may then write its output over its input, or its input
    #: derivative over ``dy``. Only layers whose inputs no other layer reads again use it.
    in_place: bool = False

    @property
    def xp(self) -> Any:
        return self.backend.xp


@dataclass(frozen=True, kw_only=True)
class Layer(ABC):
    """Base of every layer type. Subclasses set ``type`` and declare their fields."""

    name: str = param("str", "", "layer name; tidy names unnamed layers layer1, layer2, ...")
    learningRate: tuple[float, ...] | None = param(
        "floats", None, "per-parameter learning-rate multipliers (cnn_train default: all 1)")
    weightDecay: tuple[float, ...] | None = param(
        "floats", None, "per-parameter weight-decay multipliers (cnn_train default: all 1)")

    type: ClassVar[str] = ""
    #: names of the weight tensors (empty for layers without parameters)
    weight_names: ClassVar[tuple[str, ...]] = ()
    #: how each weight array is stored, parallel to ``weight_names``: ``"4d"`` (padded to 4-D,
    #: undoing Matlab's dropped trailing singletons), ``"matrix"`` (2-D), ``"vector"``
    #: (raveled) or ``"moments"`` (C x 2, read column-major from 2C numbers)
    weight_layouts: ClassVar[tuple[str, ...]] = ()
    #: True for layers whose output is a scalar loss computed against labels
    is_loss: ClassVar[bool] = False

    # ----- shapes -------------------------------------------------------------------------
    def geometry(self, axis: int,
                 wshapes: list[tuple[int, ...]]) -> tuple[int, int, int, int] | None:
        """(extent, stride, pad_before, pad_after) along ``axis`` (0 = H, 1 = W) for
        window layers; ``None`` for layers that keep the spatial size."""
        return None

    def spatial_out(self, axis: int, n: int, wshapes: list[tuple[int, ...]]) -> int:
        """Output size along ``axis`` for input size ``n``; ShapeError when it does not fit."""
        g = self.geometry(axis, wshapes)
        if g is None:
            return n
        extent, stride, p0, p1 = g
        if n + p0 + p1 < extent:
            dim = "height" if axis == 0 else "width"
            raise ShapeError(
                f"{self.type} '{self.name}': input {dim} {n} + pad {p0}+{p1} = {n + p0 + p1} "
                f"is smaller than the {'filter' if self.type == 'conv' else 'window'} "
                f"extent {extent}")
        return (n + p0 + p1 - extent) // stride + 1

    def check_weights(self, shape: Shape, wshapes: list[tuple[int, ...]]) -> None:
        """Raise ShapeError when weights of these shapes cannot work on input ``shape``."""
        if len(wshapes) != len(self.weight_names):
            raise ShapeError(f"{self.type} '{self.name}' takes {len(self.weight_names)} weight "
                             f"arrays, got {len(wshapes)}")

    def out_channels(self, shape: Shape, wshapes: list[tuple[int, ...]]) -> int:
        return shape[2]

    def output_shape(self, shape: Shape, wshapes: list[tuple[int, ...]]) -> Shape:
        """Output (H, W, C) for input ``shape``; raises ShapeError with the arithmetic."""
        self.check_weights(shape, wshapes)
        h = self.spatial_out(0, shape[0], wshapes)
        w = self.spatial_out(1, shape[1], wshapes)
        return (h, w, self.out_channels(shape, wshapes))

    def summary(self, wshapes: list[tuple[int, ...]]) -> str:
        """The ``filter`` column of ``layerspec check`` (filter size, window, parameters)."""
        return ""

    def flops(self, shape: Shape, out: Shape, wshapes: list[tuple[int, ...]]) -> int:
        """Forward floating-point operations for one sample (a multiply-add counts 2)."""
        return out[0] * out[1] * out[2]

    # ----- computation ----------------------------------------------------------------------
    @abstractmethod
    def forward(self, x: Any, w: list[Any], ctx: Context, aux: Any = None) -> tuple[Any, Any]:
        """Return ``(y, aux)``; ``aux`` is kept for the backward pass (dropout mask, argmax).
        A given ``aux`` (e.g. a recorded dropout mask) is used instead of drawing one."""

    @abstractmethod
    def backward(self, x: Any, y: Any, aux: Any, w: list[Any], dy: Any,
                 ctx: Context) -> tuple[Any, list[Any]]:
        """Return ``(dx, dw)``: the derivative w.r.t. the input and each weight."""


def pair_geometry(k: tuple[int, int], stride: tuple[int, int], pad: tuple[int, int, int, int],
                  axis: int) -> tuple[int, int, int, int]:
    """(extent, stride, pad_before, pad_after) along ``axis`` from MatConvNet's fields."""
    return (k[axis], stride[axis], pad[2 * axis], pad[2 * axis + 1])


def pad_hw(xp: Any, x: Any, pad: tuple[int, int, int, int], value: float = 0.0) -> Any:
    """Pad an (N, H, W, C) array by ``pad = (top, bottom, left, right)`` with ``value``."""
    t, b, l, r = pad
    if not (t or b or l or r):
        return x
    n, h, w, c = x.shape
    out = xp.full((n, h + t + b, w + l + r, c), value, dtype=x.dtype)
    out[:, t:t + h, l:l + w, :] = x
    return out


def window(xpad: Any, u: int, v: int, sy: int, sx: int, ho: int, wo: int) -> Any:
    """The strided view of ``xpad`` seen by window offset (u, v) at every output position."""
    return xpad[:, u:u + sy * (ho - 1) + 1:sy, v:v + sx * (wo - 1) + 1:sx, :]
