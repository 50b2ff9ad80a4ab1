"""Shape inference over a layer list: output sizes, parameters, FLOPs, receptive fields, and
an explanation of which input sizes fit when a spec does not fit its input.

Sizes are per sample, (H, W, C). Receptive fields follow ``vl_simplenn_display``: size,
stride and offset (1-based centre of the first output's field) per axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ShapeError
from .layers import SCALAR, Layer, Shape
from .spec import layer_pos

WShapes = Sequence[Sequence[tuple[int, ...]]]


@dataclass(frozen=True)
class LayerInfo:
    """What `check` shows for one layer."""

    index: int
    layer: Layer
    in_shape: Shape
    out_shape: Shape
    wshapes: tuple[tuple[int, ...], ...]
    params: int
    flops: int
    rf_size: tuple[int, int]
    rf_stride: tuple[int, int]
    rf_offset: tuple[float, float]

    @property
    def memory(self) -> int:
        """Bytes of float32 activations this layer outputs, per sample."""
        h, w, c = self.out_shape
        return 4 * h * w * c

    @property
    def is_scalar(self) -> bool:
        return self.layer.is_loss and self.out_shape == SCALAR


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def infer(layers: Sequence[Layer], wshapes: WShapes, input_shape: Shape,
          file: str | None = None) -> list[LayerInfo]:
    """Propagate ``input_shape`` through ``layers``; raise a located ShapeError at the first
    layer that does not fit."""
    shape = tuple(input_shape)
    rf_size, rf_stride, rf_off = [1, 1], [1, 1], [1.0, 1.0]
    out: list[LayerInfo] = []
    for i, layer in enumerate(layers):
        ws = [tuple(s) for s in wshapes[i]]
        try:
            new = layer.output_shape(shape, ws)
        except ShapeError as err:
            line, col = layer_pos(layer)
            msg = err.message
            prefix = f"{layer.type} '{layer.name}'"
            if msg.startswith(prefix):
                msg = msg[len(prefix):].lstrip(": ")
            err.message = (f"layer {i + 1} ({layer.type} '{layer.name}') does not fit its input "
                           f"{shape[0]}x{shape[1]}x{shape[2]}: {msg}")
            err.args = (err.message,)
            raise err.located(file, line, col) from None
        for axis in (0, 1):
            g = layer.geometry(axis, ws)
            if g is not None:
                extent, stride, p0, _ = g
                rf_off[axis] += ((extent - 1) / 2 - p0) * rf_stride[axis]
                rf_size[axis] += (extent - 1) * rf_stride[axis]
                rf_stride[axis] *= stride
        out.append(LayerInfo(
            index=i, layer=layer, in_shape=shape, out_shape=new, wshapes=tuple(ws),
            params=sum(_numel(s) for s in ws), flops=layer.flops(shape, new, ws),
            rf_size=(rf_size[0], rf_size[1]), rf_stride=(rf_stride[0], rf_stride[1]),
            rf_offset=(rf_off[0], rf_off[1])))
        shape = new
    return out


def _final_size(layers: Sequence[Layer], wshapes: WShapes, axis: int, n: int) -> int | None:
    """Spatial size along ``axis`` after every layer, or None when some layer does not fit."""
    for i, layer in enumerate(layers):
        if layer.is_loss:
            break
        try:
            n = layer.spatial_out(axis, n, [tuple(s) for s in wshapes[i]])
        except ShapeError:
            return None
        if n < 1:
            return None
    return n


def _ranges(values: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def fitting_sizes(layers: Sequence[Layer], wshapes: WShapes, axis: int,
                  limit: int = 4096) -> str:
    """A sentence saying which input sizes along ``axis`` fit, and what output they give,
    e.g. ``H >= 313 fits; output height 1 for H = 313..344, 2 for 345..376, ...``."""
    label = "H" if axis == 0 else "W"
    dim = "height" if axis == 0 else "width"
    by_out: dict[int, list[int]] = {}
    fits: list[int] = []
    for n in range(1, limit + 1):
        o = _final_size(layers, wshapes, axis, n)
        if o is not None:
            fits.append(n)
            by_out.setdefault(o, []).append(n)
    if not fits:
        return f"no input {dim} up to {limit} fits"
    runs = _ranges(fits)
    if len(runs) == 1 and runs[0][1] == limit:
        head = f"{label} >= {runs[0][0]} fits"
    else:
        head = "fits for " + ", ".join(f"{label} = {a}..{b}" if a != b else f"{label} = {a}"
                                       for a, b in runs[:4])
    parts = []
    for o in sorted(by_out)[:3]:
        r = _ranges(by_out[o])
        txt = ", ".join(f"{a}..{b}" if a != b else f"{a}" for a, b in r[:2])
        parts.append(f"{o} for {label} = {txt}")
    return f"{head}; output {dim} " + ", ".join(parts) + (", ..." if len(by_out) > 3 else "")
