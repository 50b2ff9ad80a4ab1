"""``normalize`` / ``lrn``: MatConvNet's ``vl_nnnormalize`` (local response normalisation
across channels).

``param = [N kappa alpha beta]``. For channel k (0-based, D channels) the window is
``Q(k) = [k - floor((N-1)/2), k + ceil((N-1)/2)]`` clipped to ``[0, D-1]``: centred for odd N,
one channel more *upwards* for even N (N = 4 gives ``[k-1, k+2]``). Then::

    L(k) = kappa + alpha * sum_{q in Q(k)} x(q)^2,        y(k) = x(k) * L(k)^(-beta)
    dx(q) = dy(q) L(q)^(-beta) - 2 alpha beta x(q) sum_{t : q in Q(t)} dy(t) x(t) L(t)^(-beta-1)

alpha is used as given: it is **not** divided by N (Caffe's ``alpha`` is N times this one;
MatConvNet's Caffe importer writes ``alpha / local_size``).

layerspec computes the power exactly. MatConvNet's CPU code (forward and backward, single
and double) instead uses a fast polynomial ``pow`` (cubic approximations of log2 and 2^x),
which is off by up to about 0.3% relative (0.18% on average for beta = 0.75); its GPU code
uses the exact ``powf``. So layerspec matches MatConvNet-GPU and the exact formula, and
differs from MatConvNet-CPU outputs by up to about 3e-3 relative.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import SpecError
from .base import Context, Layer, Shape, param


def _channel_window_sum(xp: Any, a: Any, below: int, above: int) -> Any:
    """``out[..., k] = sum(a[..., k-below : k+above+1])`` with the window clipped."""
    d = a.shape[-1]
    out = a.copy()
    for o in range(1, below + 1):
        if o < d:
            out[..., o:] += a[..., :d - o]
    for o in range(1, above + 1):
        if o < d:
            out[..., :d - o] += a[..., o:]
    return out


@dataclass(frozen=True, kw_only=True)
class Normalize(Layer):
    """Local response normalisation across channels, ``param = [N kappa alpha beta]``
    (alpha not divided by N)."""

    param: tuple[float, ...] = param(
        "floats", (5.0, 1.0, 0.0001 / 5, 0.75),
        "[N kappa alpha beta]: window of N channels, y = x * (kappa + alpha * sum x^2)^-beta "
        "(alpha is not divided by N)", length=4)

    type = "normalize"

    def __post_init__(self) -> None:
        if len(self.param) != 4:
            raise SpecError(f"{self.type}: param: expected 4 numbers [N kappa alpha beta], "
                            f"got {len(self.param)}")
        n = self.param[0]
        if n != int(n) or n < 1:
            raise SpecError(f"{self.type}: param: the window size N must be a whole number "
                            f">= 1, got {n:g}")

    @property
    def _window(self) -> tuple[int, int]:
        n = int(self.param[0])
        return (n - 1) // 2, n // 2  # floor((N-1)/2) below, ceil((N-1)/2) above

    def flops(self, shape: Shape, out: Shape, wshapes: list[tuple[int, ...]]) -> int:
        return out[0] * out[1] * out[2] * (int(self.param[0]) + 6)

    def summary(self, wshapes: list[tuple[int, ...]]) -> str:
        return "[" + " ".join(f"{v:g}" for v in self.param) + "]"

    def forward(self, x: Any, w: list[Any], ctx: Context, aux: Any = None) -> tuple[Any, Any]:
        xp = ctx.xp
        _, kappa, alpha, beta = self.param
        dt = x.dtype.type
        below, above = self._window
        big_l = dt(kappa) + dt(alpha) * _channel_window_sum(xp, x * x, below, above)
        return x * xp.power(big_l, dt(-beta)), big_l

    def backward(self, x: Any, y: Any, aux: Any, w: list[Any], dy: Any,
                 ctx: Context) -> tuple[Any, list[Any]]:
        xp = ctx.xp
        _, _, alpha, beta = self.param
        dt = x.dtype.type
        big_l = aux
        lb = xp.power(big_l, dt(-beta))
        inner = dy * x * lb / big_l  # dy * x * L^(-beta-1)
        below, above = self._window
        # q is in Q(t) for t in [q - above, q + below]: the mirrored window
        s = _channel_window_sum(xp, inner, above, below)
        return dy * lb - dt(2 * alpha * beta) * x * s, []


@dataclass(frozen=True, kw_only=True)
class Lrn(Normalize):
    """``lrn``: another name of ``normalize`` (vl_simplenn runs both the same way)."""

    type = "lrn"
