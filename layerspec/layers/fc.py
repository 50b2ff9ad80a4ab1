"""``fc``: a fully connected layer, written the way MatConvNet writes one — a ``conv`` whose
filter covers the whole input.

For an input of one sample ``H x W x C`` the weights are ``[F (H, W, C, units), b (units,)]``
and ``y[n, 0, 0, k] = sum_{h,w,c} x[n, h, w, c] * F[h, w, c, k] + b[k]``: exactly
``vl_nnconv(x, F, b)`` with stride 1 and no padding, so the output is ``1 x 1 x units``.

Flatten order. The filter ``F`` is MatConvNet's ``[h w c units]`` array. Read as a weight
matrix ``(units, H*W*C)`` — PyTorch's ``Linear.weight`` — the columns follow Matlab's ``x(:)``
of one sample: **h fastest, then w, then c** (``F(:, :, :, k)(:)``). A PyTorch ``Linear``
that follows ``torch.flatten`` of an ``(N, C, H, W)`` tensor (w fastest, then h, then c)
therefore needs its columns permuted; for a ``1 x 1 x C`` input (the seed article's MLP) the
orders coincide and ``F[0, 0, :, :] = Linear.weight.T``. An initializer may give the filter as
``[h w c units]`` or as a ``(H*W*C) x units`` matrix, which is reshaped in that order (Matlab's
``reshape(A, h, w, c, units)``).

Default initialisation (``weights`` left out), PyTorch's ``nn.Linear``: weights and bias
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with ``fan_in = H*W*C``, drawn from the run's generator
in the order of the Matlab initializers ``(2*rand(H,W,C,units,'single')-1)/sqrt(fan_in)`` and
``(2*rand(1,units,'single')-1)/sqrt(fan_in)``, so a spec that writes those expressions out
gets the same numbers. The filter size depends on the input, so the spec needs ``input:``
(or explicit initializers).

Export and MatConvNet: :meth:`Fc.as_conv` gives the equivalent ``conv`` layer and
:meth:`Fc.conv_weights` its ``{F, b}`` (F always 4-D), which is what ``vl_simplenn`` runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import ShapeError, SpecError
from .base import Context, Layer, Shape, param
from .conv import Conv


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(int(d) for d in shape)


@dataclass(frozen=True, kw_only=True)
class Fc(Layer):
    """Fully connected: a conv whose filter covers the whole input. Weights
    ``[F (H,W,C,units), b (units,)]``; default init PyTorch's ``U(±1/sqrt(H*W*C))``."""

    units: int = param("int", doc="number of outputs (the filter is [H W C units], H W C the "
                       "layer's input size)", minimum=1)
    weights: tuple[str, ...] | None = param(
        "weights", None,
        "initializers {F, b}: F is [H W C units] (or a (H*W*C) x units matrix, h fastest), b "
        "has `units` elements or is []; left out: PyTorch's U(±1/sqrt(H*W*C)) for both")

    type = "fc"
    weight_names = ("filters", "biases")
    weight_layouts = ("4d", "vector")
    #: the layer can initialise itself (``weights`` may be left out)
    default_init: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.units < 1:
            raise SpecError(f"fc: units: must be >= 1, got {self.units}")

    # the conv this layer is: stride 1, no padding, no dilation (read by `check` and export)
    @property
    def stride(self) -> tuple[int, int]:
        return (1, 1)

    @property
    def pad(self) -> tuple[int, int, int, int]:
        return (0, 0, 0, 0)

    @property
    def dilate(self) -> tuple[int, int]:
        return (1, 1)

    # ----- shapes -------------------------------------------------------------------------
    def weight_shapes(self, shape: Shape) -> list[tuple[int, ...]]:
        """The canonical weight shapes for input ``shape`` (H, W, C)."""
        h, w, c = (int(v) for v in shape)
        return [(h, w, c, self.units), (self.units,)]

    def check_weights(self, shape: Shape, wshapes: list[tuple[int, ...]]) -> None:
        super().check_weights(shape, wshapes)
        fshape, bshape = (tuple(s) for s in wshapes)
        want = self.weight_shapes(shape)[0]
        h, w, c, k = want
        ok = fshape == want or (len(fshape) <= 1 and _numel(fshape) == _numel(want))
        if not ok:
            if len(fshape) == 4 and fshape[3] == k:
                raise ShapeError(
                    f"fc '{self.name}': the filter is {'x'.join(map(str, fshape))} but an fc "
                    f"filter must cover the whole input {h}x{w}x{c}: write "
                    f"{h}x{w}x{c}x{k} (or leave 'weights' out for the default init)")
            raise ShapeError(f"fc '{self.name}': filters must be [H W C units] = "
                             f"{h}x{w}x{c}x{k} for input {h}x{w}x{c}, got shape {list(fshape)}")
        nb = _numel(bshape)
        if nb not in (0, k):
            raise ShapeError(f"fc '{self.name}': {k} units need {k} biases (or none), got {nb}")

    def geometry(self, axis: int,
                 wshapes: list[tuple[int, ...]]) -> tuple[int, int, int, int] | None:
        fshape = wshapes[0] if wshapes else ()
        if len(fshape) != 4:
            return None
        return (int(fshape[axis]), 1, 0, 0)

    def spatial_out(self, axis: int, n: int, wshapes: list[tuple[int, ...]]) -> int:
        fshape = wshapes[0] if wshapes else ()
        if len(fshape) == 4 and fshape[axis] != n:
            dim = "height" if axis == 0 else "width"
            raise ShapeError(f"fc '{self.name}': input {dim} {n} differs from the filter's "
                             f"{fshape[axis]} (an fc filter covers the whole input)")
        return 1

    def output_shape(self, shape: Shape, wshapes: list[tuple[int, ...]]) -> Shape:
        self.check_weights(shape, wshapes)
        return (1, 1, self.units)

    def flops(self, shape: Shape, out: Shape, wshapes: list[tuple[int, ...]]) -> int:
        return 2 * _numel(shape) * self.units

    # ----- initialisation and conversion --------------------------------------------------------
    def default_weights(self, shape: Shape, rng: np.random.Generator,
                        dtype: Any = np.float32) -> list[np.ndarray]:
        """PyTorch's ``nn.Linear`` init for input ``shape``, as the Matlab initializers in the
        module docstring (same draws from ``rng``)."""
        from ..expr import evaluate  # noqa: PLC0415

        h, w, c = (int(v) for v in shape)
        k, fan = self.units, h * w * c
        f = evaluate(f"(2*rand({h},{w},{c},{k},'single')-1)/sqrt({fan})", rng=rng)
        b = evaluate(f"(2*rand(1,{k},'single')-1)/sqrt({fan})", rng=rng)
        return [np.ascontiguousarray(np.asarray(f, dtype=dtype).reshape(h, w, c, k)),
                np.ascontiguousarray(np.asarray(b, dtype=dtype).reshape(k))]

    def layout_weight(self, j: int, a: np.ndarray, shape: Shape) -> np.ndarray:
        """An initializer's value in the canonical layout for input ``shape``: a
        ``(H*W*C) x units`` matrix becomes ``[H W C units]`` (h fastest, Matlab's reshape);
        a 4-D filter with Matlab's trailing singletons dropped gets them back."""
        a = np.asarray(a)
        want = self.weight_shapes(shape)[j]
        if j == 1:
            return a.reshape(-1) if a.size == _numel(want) else a
        if a.ndim < 4 and a.shape + (1,) * (4 - a.ndim) == want:
            return a.reshape(want)
        if a.ndim == 2 and a.shape == (_numel(want[:3]), want[3]):
            return a.reshape(want, order="F")
        return a

    def conv_weights(self, weights: list[Any], shape: Shape | None = None) -> list[Any]:
        """``{F, b}`` of the equivalent conv, F ``(H, W, C, units)``. A flat F (as a weights
        file may hold it) needs the input ``shape``."""
        f, b = weights
        if f.ndim != 4:
            if shape is None:
                raise ShapeError(f"fc '{self.name}': the filter is stored flat; give the "
                                 f"input size to turn it into [H W C units]")
            f = f.reshape(self.weight_shapes(shape)[0])
        return [f, b]

    def as_conv(self) -> Conv:
        """The MatConvNet form: a ``conv`` (stride 1, no padding) with the same name,
        initializers and multipliers; its weights are :meth:`conv_weights`."""
        return Conv(name=self.name, weights=self.weights, learningRate=self.learningRate,
                    weightDecay=self.weightDecay)

    # ----- computation ------------------------------------------------------------------------
    def summary(self, wshapes: list[tuple[int, ...]]) -> str:
        return "x".join(str(d) for d in wshapes[0])

    def forward(self, x: Any, w: list[Any], ctx: Context, aux: Any = None) -> tuple[Any, Any]:
        n = x.shape[0]
        f, b = w
        y = x.reshape(n, -1) @ f.reshape(-1, self.units)
        if b is not None and b.size:
            y += b.reshape(1, -1)
        return y.reshape(n, 1, 1, self.units), None

    def backward(self, x: Any, y: Any, aux: Any, w: list[Any], dy: Any,
                 ctx: Context) -> tuple[Any, list[Any]]:
        xp = ctx.xp
        n = x.shape[0]
        f, b = w
        f2 = f.reshape(-1, self.units)
        dy2 = dy.reshape(n, self.units)
        dx = (dy2 @ f2.T).reshape(x.shape)
        df = (x.reshape(n, -1).T @ dy2).reshape(f.shape)
        db = dy2.sum(axis=0).reshape(b.shape) if b is not None and b.size else \
            xp.zeros((0,), dtype=dy.dtype)
        return dx, [df, db]
