"""``bnorm``: MatConvNet's ``vl_nnbnorm`` as ``vl_simplenn`` calls it.

Weights ``[g (C,), b (C,), moments (C, 2)]``; ``moments = [mu sigma]`` per channel, where
sigma already includes epsilon (``sigma = sqrt(var + epsilon)``).

* mode ``normal`` (training): per channel, over the ``m = N*H*W`` values of the batch,
  ``mu = s/m``, ``var = max(0, s2/m - mu^2)``, ``sigma = sqrt(var + epsilon)`` with ``s`` and
  ``s2`` the sums of ``x`` and ``x^2`` in the data's precision (MatConvNet's one-pass
  float32 variance: it loses digits when ``|mu|`` is much larger than the spread, and so
  does this layer, on purpose), then ``y = g * (x - mu) / sigma + b``.
* mode ``test``: ``y = g * (x - M[:, 0]) / M[:, 1] + b`` with the stored moments ``M``
  (epsilon is not added again; zero moments divide by zero, as in MatConvNet).
* backward, mode ``normal``: the derivative of the batch-statistics function, arranged as
  MatConvNet's CPU code does: ``db = sum(dy)``, ``dg = (sum(dy * x) - mu * db) / sigma``,
  ``dx = g/sigma * (dy - db/m) - g/sigma * dg/(m*sigma) * (x - mu)``.
* backward, mode ``test``: **the true derivative of the test-mode forward pass** (moments
  held fixed): ``dx = g / M[:, 1] * dy``, ``dg = sum(dy * (x - M[:, 0]) / M[:, 1])``,
  ``db = sum(dy)``. *This differs from MatConvNet*, whose ``vl_simplenn`` backward always
  recomputes batch statistics, even in mode ``test``, and so returns the derivative of a
  function the forward pass did not compute (central differences of the test-mode loss
  match layerspec, not MatConvNet).
* The third "derivative" (``dzdw{3}``) is not a derivative: it is the batch moments
  ``[mu sigma]`` (C, 2) of the current input, in both modes, as MatConvNet returns them.
  The trainer blends it into the stored moments, ``M = (1 - r) M + r [mu sigma]`` with
  ``r = learningRate[2]`` (1 without ``learningRate``), as cnn_train does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import ShapeError
from .base import Context, Layer, Shape, param


def _matlab_order(xp: Any, a: Any) -> Any:
    """(N, H, W, C) as (N*W*H, C) rows in MatConvNet's memory order (n, then w, then h), so
    that a sum over axis 0 — sequential on NumPy — adds in MatConvNet's order."""
    return xp.ascontiguousarray(a.transpose(0, 2, 1, 3)).reshape(-1, a.shape[-1])


def batch_moments(xp: Any, x: Any, epsilon: float) -> tuple[Any, Any]:
    """(mu, sigma) per channel of ``x`` (N, H, W, C), with MatConvNet's one-pass variance in
    the precision of ``x``."""
    flat = _matlab_order(xp, x)
    m = flat.shape[0]
    dt = x.dtype.type
    s = flat.sum(axis=0, dtype=x.dtype)
    s2 = (flat * flat).sum(axis=0, dtype=x.dtype)
    mu = s / dt(m)
    var = xp.maximum(s2 / dt(m) - mu * mu, dt(0))
    sigma = xp.sqrt(var + dt(epsilon))
    return mu, sigma


@dataclass(frozen=True, kw_only=True)
class Bnorm(Layer):
    """Batch normalisation. Weights ``[g (C,), b (C,), moments (C,2) = [mu sigma]]``; batch
    statistics in training, the stored moments in test mode (whose backward is the true
    derivative with the moments fixed, unlike MatConvNet's)."""

    weights: tuple[str, ...] | None = param(
        "weights", None,
        "initializers {g, b} or {g, b, moments}: g and b have C elements, moments is C x 2 "
        "[mu sigma] (sigma includes epsilon; zeros(C,2) when left out, as tidy does)")
    epsilon: float = param("float", 1e-5, "added to the variance (tidy's default 1e-5; the "
                           "vl_nnbnorm default is 1e-4)", minimum=0.0)

    type = "bnorm"
    weight_names = ("multipliers", "biases", "moments")
    weight_layouts = ("vector", "vector", "moments")
    #: the moments may be left out of ``weights`` (tidy adds zeros(C,2))
    min_weights: ClassVar[int] = 2

    def check_weights(self, shape: Shape, wshapes: list[tuple[int, ...]]) -> None:
        super().check_weights(shape, wshapes)
        c = shape[2]
        gs, bs, ms = wshapes
        ng = _numel(gs)
        nb = _numel(bs)
        if ng != c or nb != c:
            raise ShapeError(f"bnorm '{self.name}': the input has {c} channels but g has {ng} "
                             f"and b has {nb} elements; both need one per channel")
        if tuple(ms) != (c, 2):
            raise ShapeError(f"bnorm '{self.name}': moments must be {c} x 2 [mu sigma], got "
                             f"shape {list(ms)}")

    def flops(self, shape: Shape, out: Shape, wshapes: list[tuple[int, ...]]) -> int:
        return 4 * out[0] * out[1] * out[2]

    def summary(self, wshapes: list[tuple[int, ...]]) -> str:
        return f"C {wshapes[0][0]}, eps {self.epsilon:g}"

    def forward(self, x: Any, w: list[Any], ctx: Context, aux: Any = None) -> tuple[Any, Any]:
        xp = ctx.xp
        g, b, moments = w
        if ctx.mode == "test":
            mu, sigma = moments[:, 0], moments[:, 1]
        else:
            mu, sigma = batch_moments(xp, x, self.epsilon)
        return (g / sigma) * (x - mu) + b, (mu, sigma)

    def backward(self, x: Any, y: Any, aux: Any, w: list[Any], dy: Any,
                 ctx: Context) -> tuple[Any, list[Any]]:
        xp = ctx.xp
        g = w[0]
        mu, sigma = aux
        if ctx.mode == "test":
            batch_mu, batch_sigma = batch_moments(xp, x, self.epsilon)
        else:
            batch_mu, batch_sigma = mu, sigma
        dyf = _matlab_order(xp, dy)
        xf = _matlab_order(xp, x)
        db = dyf.sum(axis=0)
        g1 = g / sigma
        if ctx.mode == "test":
            dg = (dyf * (xf - mu)).sum(axis=0) / sigma
            dx = dy * g1
        else:
            # MatConvNet's arrangement (nnbnorm.cpp), float noise included
            m = x.dtype.type(dyf.shape[0])
            dg = ((dyf * xf).sum(axis=0) - mu * db) / sigma
            g2 = g1 * dg / (m * sigma)
            dx = g1 * (dy - db / m) - g2 * (x - mu)
        dmoments = xp.stack([batch_mu, batch_sigma], axis=1)
        return dx, [dg, db, dmoments]


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
