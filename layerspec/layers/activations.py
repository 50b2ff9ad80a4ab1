"""Pointwise and channel-wise layers: ``relu`` (vl_nnrelu), ``sigmoid`` (vl_nnsigmoid) and
``softmax`` (vl_nnsoftmax, over the channel dimension at every position)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..hostthreads import split_rows
from ..workspace import workspace_of
from .base import Context, Layer, param


@dataclass(frozen=True, kw_only=True)
class ReLU(Layer):
    """``y = x * (leak + (1 - leak) * [x > 0])``; the derivative at exactly 0 is ``leak``."""

    leak: float = param("float", 0.0, "slope for x <= 0 (leaky ReLU)")

    type = "relu"

    def forward(self, x: Any, w: list[Any], ctx: Context, aux: Any = None) -> tuple[Any, Any]:
        xp = ctx.xp
        if self.leak == 0:
            # in place: the backward pass reads only y ([x > 0] == [y > 0])
            y = x if ctx.in_place else workspace_of(ctx).empty(xp, (id(self), "y"), x.shape,
                                                               x.dtype)
            zero = x.dtype.type(0)
            split_rows(ctx.backend.threads, lambda x, y: xp.maximum(x, zero, out=y), x, y)
            return y, None
        return xp.where(x > 0, x, x * x.dtype.type(self.leak)), None

    def backward(self, x: Any, y: Any, aux: Any, w: list[Any], dy: Any,
                 ctx: Context) -> tuple[Any, list[Any]]:
        xp = ctx.xp
        if self.leak == 0:
            # [x > 0] == [y > 0]: reading y lets the forward pass run in place
            ws = workspace_of(ctx)
            kern = ctx.backend.kernels
            dx = dy if ctx.in_place else ws.empty(xp, (id(self), "dx"), dy.shape, dy.dtype)
            if kern is not None and y.flags.c_contiguous and dy.flags.c_contiguous \
                    and dx.flags.c_contiguous:
                if dx is dy:
                    split_rows(ctx.backend.threads, kern.relu_backward_in_place, y, dy)
                else:
                    split_rows(ctx.backend.threads, kern.relu_backward, y, dy, dx)
                return dx, []
            # dy * [y > 0], branch-free (same numbers as the select)
            pos = ws.empty(xp, (id(self), "pos"), y.shape, bool)
            xp.greater(y, y.dtype.type(0), out=pos)
            return xp.multiply(dy, pos, out=dx), []
        return xp.where(x > 0, dy, dy * dy.dtype.type(self.leak)), []


@dataclass(frozen=True, kw_only=True)
class Sigmoid(Layer):
    """``y = 1 / (1 + exp(-x))``; ``dx = dy * y * (1 - y)``."""

    type = "sigmoid"

    def forward(self, x: Any, w: list[Any], ctx: Context, aux: Any = None) -> tuple[Any, Any]:
        xp = ctx.xp
        one = x.dtype.type(1)
        return one / (one + xp.exp(-x)), None

    def backward(self, x: Any, y: Any, aux: Any, w: list[Any], dy: Any,
                 ctx: Context) -> tuple[Any, list[Any]]:
        return dy * (y * (y.dtype.type(1) - y)), []


def softmax(xp: Any, x: Any) -> Any:
    """Softmax over the last (channel) axis, max-subtracted for stability."""
    e = xp.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True, kw_only=True)
class Softmax(Layer):
    """Softmax over channels; backward ``dx = y * (dy - sum_k dy * y)``."""

    type = "softmax"

    def forward(self, x: Any, w: list[Any], ctx: Context, aux: Any = None) -> tuple[Any, Any]:
        return softmax(ctx.xp, x), None

    def backward(self, x: Any, y: Any, aux: Any, w: list[Any], dy: Any,
                 ctx: Context) -> tuple[Any, list[Any]]:
        return y * (dy - (dy * y).sum(axis=-1, keepdims=True)), []
