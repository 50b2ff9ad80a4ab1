"""``dropout``: MatConvNet's ``vl_nndropout``.

* ``scaling: inverted`` (default, MatConvNet): in training ``y = x * mask`` with
  ``mask = [u >= rate] / (1 - rate)``, u ~ U[0,1) per element; in test mode the identity.
* ``scaling: classic`` (the seed article's description): in training ``y = x * [u >= rate]``
  (kept units unscaled); in test mode ``y = x * (1 - rate)``.

The mask is drawn from the run's generator and kept (``res[i+1].aux``) for the backward pass.
The seed article's field name ``fraction`` is accepted as an alias of ``rate``.

``seed`` (the seed article's Keras ``Dropout(0.4, seed=1001)``): the layer's masks no longer
come from the run's generator but from their own,
``numpy.random.default_rng([seed, crc32(name), epoch, batch])`` — ``name`` the layer's
(tidied) name as UTF-8, ``(epoch, batch)`` the 1-based training step the trainer passes in
``ctx.step``. One ``U[0,1)`` draw per element of the input, in C order of ``(N, H, W, C)``
(float32 for float32 data), then ``mask = [u >= rate] * scale`` as above. So the masks of a
seeded layer are the same in every run and on every backend, whatever ``randomSeed``, the
data order or the other layers do, yet differ from batch to batch and epoch to epoch; two
layers with the same seed (as in the article) still differ through their names. A call
without a step (``simplenn`` used directly) takes ``k``, one 63-bit integer drawn from the
run's generator, in place of ``(epoch, batch)``: ``default_rng([seed, crc32(name), k])``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SpecError
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
    seed: int | None = param("int", None, "masks from their own generator, seeded with [seed, "
                             "crc32(name), epoch, batch]: reproducible whatever the run's seed "
                             "(Keras's `seed`); left out: the run's generator")

    type = "dropout"

    def __post_init__(self) -> None:
        if self.seed is not None and self.seed < 0:
            raise SpecError(f"dropout: seed: must be >= 0, got {self.seed}")

    def mask_generator(self, ctx: Context) -> np.random.Generator:
        """The generator this call's mask is drawn from (see the module docstring)."""
        if self.seed is None:
            if ctx.rng is None:
                raise ValueError("dropout in 'normal' mode needs a random generator")
            return ctx.rng
        step = ctx.step
        if step is None:
            if ctx.rng is None:
                raise ValueError("dropout in 'normal' mode needs a random generator")
            step = (int(ctx.rng.integers(0, 2**63 - 1)),)
        key = [int(self.seed), zlib.crc32(self.name.encode("utf-8"))]
        return np.random.default_rng(key + [int(v) for v in step])

    def _keep_scale(self) -> float:
        return 1.0 / (1.0 - self.rate) if self.scaling == "inverted" else 1.0

    def forward(self, x: Any, w: list[Any], ctx: Context, aux: Any = None) -> tuple[Any, Any]:
        if ctx.mode == "test":
            if self.scaling == "classic":
                return x * x.dtype.type(1.0 - self.rate), None
            return x, None
        if aux is None:
            u = ctx.backend.uniform(self.mask_generator(ctx), x.shape, x.dtype)
            aux = (u >= x.dtype.type(self.rate)).astype(x.dtype) * x.dtype.type(self._keep_scale())
        return x * aux, aux

    def backward(self, x: Any, y: Any, aux: Any, w: list[Any], dy: Any,
                 ctx: Context) -> tuple[Any, list[Any]]:
        if aux is None:  # test mode
            if self.scaling == "classic":
                return dy * dy.dtype.type(1.0 - self.rate), []
            return dy, []
        return dy * aux, []
