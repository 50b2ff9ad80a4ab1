"""``dropout``: MatConvNet's ``vl_nndropout``.

* ``scaling: inverted`` (default, MatConvNet): in training ``y = x * mask`` with
  ``mask = [u >= rate] / (1 - rate)``, u ~ U[0,1) per element; in test mode the identity.
* ``scaling: classic`` (the seed article's description): in training ``y = x * [u >= rate]``
  (kept units unscaled); in test mode ``y = x * (1 - rate)``.

The mask is drawn from the run's generator and kept (``res[i+1].aux``) for the backward pass.
The seed article's field name ``fraction`` is accepted as an alias of ``rate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import Context, Layer, param


@dataclass(frozen=True, kw_only=True)
class Dropout(Layer):
    """Dropout with probability ``rate`` of zeroing a unit."""

    rate: float = param("float", 0.5, "probability of dropping a unit, 0 <= rate < 1 "
                        "(alias: `fraction`, the seed article's name)",
                        minimum=0.0, maximum=1.0, exclusive_maximum=True, aliases=("fraction",))
    scaling: str = param("choice", "inverted",
                         "'inverted' (MatConvNet: scale kept units by 1/(1-rate) in training) or "
                         "'classic' (scale outputs by 1-rate at test time)",
                         choices=("inverted", "classic"))

    type = "dropout"

    def _keep_scale(self) -> float:
        return 1.0 / (1.0 - self.rate) if self.scaling == "inverted" else 1.0

    def forward(self, x: Any, w: list[Any], ctx: Context, aux: Any = None) -> tuple[Any, Any]:
        if ctx.mode == "test":
            if self.scaling == "classic":
                return x * x.dtype.type(1.0 - self.rate), None
            return x, None
        if aux is None:
            if ctx.rng is None:
                raise ValueError("dropout in 'normal' mode needs a random generator")
            u = ctx.backend.uniform(ctx.rng, x.shape, x.dtype)
            aux = (u >= x.dtype.type(self.rate)).astype(x.dtype) * x.dtype.type(self._keep_scale())
        return x * aux, aux

    def backward(self, x: Any, y: Any, aux: Any, w: list[Any], dy: Any,
                 ctx: Context) -> tuple[Any, list[Any]]:
        if aux is None:  # test mode
            if self.scaling == "classic":
                return dy * dy.dtype.type(1.0 - self.rate), []
            return dy, []
        return dy * aux, []
