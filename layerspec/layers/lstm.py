"""``lstm``: a long short-term memory layer over sequences, with Keras's variational
``dropout`` and ``recurrent_dropout``.

Layout. A batch of sequences ``(N, T, D)`` travels through the network as ``(N, 1, T, D)``:
height 1, width T (time), channels D — so ``dropout``, ``relu``, ``fc`` and ``softmaxloss``
work on it unchanged. A spec for sequences writes ``input: [1, T, D]``. The output is
``(N, 1, T, units)`` (``return_sequences: true``, every step's ``h``) or ``(N, 1, 1, units)``
(the last step's ``h``, the default, as Keras).

Weights ``[W (D, 4U), R (U, 4U), b (4U,)]``, U = ``units``, gate blocks in the order
**i, f, c, o** (input, forget, cell candidate, output) — Keras's order, and PyTorch's
``i, f, g, o``. Per step, with ``h_0 = c_0 = 0``::

    z   = (x_t * m_x) @ W + (h_{t-1} * m_h) @ R + b
    i = sigmoid(z_i)   f = sigmoid(z_f)   g = tanh(z_c)   o = sigmoid(z_o)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)

which is Keras's ``LSTM`` (activation tanh, recurrent_activation sigmoid) and PyTorch's
``nn.LSTM`` with ``W = weight_ih_l0.T``, ``R = weight_hh_l0.T``, ``b = bias_ih_l0 + bias_hh_l0``.
``b`` may be empty (no bias).

Dropout (mode ``normal`` only; identity in mode ``test``). Variational, as Keras: one input
mask ``m_x`` (N, D) and one recurrent mask ``m_h`` (N, U) per sequence, reused at every
step (Keras draws one mask per sequence for the inputs and one for the state; with
``implementation=2``, its default, the same mask serves all four gates, as here). Masks are
inverted dropout, ``[u >= rate] / (1 - rate)`` with ``u ~ U[0, 1)``, drawn from the run's
generator (``ctx.rng``): one ``(N, D + U)`` draw per call, columns ``[0, D)`` for the input
mask and ``[D, D + U)`` for the recurrent one. They are kept in ``aux`` for the backward
pass; a fixed mask (``simplenn(..., masks={i: m})``) is that ``(N, D + U)`` array, already
scaled. Nothing is drawn when both rates are 0.

Default initialisation (``weights`` left out), Keras's: ``W`` Glorot uniform
``U(±sqrt(6 / (D + 4U)))``; ``R`` orthogonal (a ``(4U, U)`` standard normal matrix, its QR
``q`` with columns multiplied by ``sign(diag(r))``, transposed: ``R`` has orthonormal rows —
computed by Gram-Schmidt, which gives that same ``q``);
``b`` zero except the forget block ``b[U:2U] = 1`` (``unit_forget_bias``). Drawn from the
run's generator in that order (W, then R). PyTorch's own default would be ``U(±1/sqrt(U))``
for all three.

Backward: full backpropagation through time over the whole sequence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import ShapeError, SpecError
from .base import Context, Layer, Shape, param


def _sigmoid(xp: Any, z: Any) -> Any:
    """Logistic function without overflow: ``(tanh(z/2) + 1) / 2``."""
    half = z.dtype.type(0.5)
    return half * (xp.tanh(half * z) + z.dtype.type(1.0))


def _orthonormal_columns(a: np.ndarray) -> np.ndarray:
    """``q`` of the QR decomposition ``a = q r`` with ``diag(r) > 0`` (Keras's orthogonal
    initializer: Householder ``q`` times ``sign(diag(r))``, the same matrix), by Gram-Schmidt
    with re-orthogonalisation — matrix-vector products only, which stay fast where a
    threaded LAPACK ``qr`` crawls on a busy machine."""
    q = np.empty_like(a, dtype=np.float64)
    for j in range(a.shape[1]):
        v = a[:, j].astype(np.float64)
        for _ in range(2):
            v -= q[:, :j] @ (q[:, :j].T @ v)
        q[:, j] = v / np.linalg.norm(v)
    return q


@dataclass(frozen=True, kw_only=True)
class Lstm(Layer):
    """LSTM over ``(N, 1, T, D)`` sequences (Keras gate order i, f, c, o). Weights
    ``[W (D,4U), R (U,4U), b (4U,)]``; variational ``dropout``/``recurrent_dropout``."""

    units: int = param("int", doc="size U of the state h (and of the output channels)",
                       minimum=1)
    return_sequences: bool = param("bool", False, "true: output every step, (N,1,T,U); "
                                   "false: the last step only, (N,1,1,U)")
    dropout: float = param("float", 0.0, "fraction of the input units dropped, one mask per "
                           "sequence reused at every step (Keras)", minimum=0.0, maximum=1.0,
                           exclusive_maximum=True)
    recurrent_dropout: float = param("float", 0.0, "fraction of the state units h_{t-1} "
                                     "dropped in the recurrence, one mask per sequence",
                                     minimum=0.0, maximum=1.0, exclusive_maximum=True)
    weights: tuple[str, ...] | None = param(
        "weights", None,
        "initializers {W, R, b}: W is D x 4U, R is U x 4U, b has 4U elements (gates i f c o); "
        "left out: Glorot uniform W, orthogonal R, b = 0 with forget block 1 (Keras)")

    type = "lstm"
    weight_names = ("input_weights", "recurrent_weights", "biases")
    weight_layouts = ("matrix", "matrix", "vector")
    #: the layer can initialise itself (``weights`` may be left out)
    default_init: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.units < 1:
            raise SpecError(f"lstm: units: must be >= 1, got {self.units}")

    # ----- shapes -------------------------------------------------------------------------
    def weight_shapes(self, shape: Shape) -> list[tuple[int, ...]]:
        """The canonical weight shapes for input ``shape`` (1, T, D)."""
        d, u = int(shape[2]), self.units
        return [(d, 4 * u), (u, 4 * u), (4 * u,)]

    def check_weights(self, shape: Shape, wshapes: list[tuple[int, ...]]) -> None:
        super().check_weights(shape, wshapes)
        h, t, d = shape
        if h != 1:
            raise ShapeError(
                f"lstm '{self.name}' takes sequences (N, 1, T, D) — height 1, width T steps, "
                f"D channels — but its input is {h}x{t}x{d}; write the spec's input as "
                f"[1, T, D]")
        u = self.units
        want = self.weight_shapes(shape)
        what = (f"W [D 4U] = {d}x{4 * u}", f"R [U 4U] = {u}x{4 * u}")
        for j in (0, 1):
            s = tuple(wshapes[j])
            if s != want[j] and not (len(s) <= 1 and math.prod(s) == math.prod(want[j])):
                raise ShapeError(f"lstm '{self.name}': {self.weight_names[j]} must be "
                                 f"{what[j]} (D = {d} input channels, U = {u} units), got "
                                 f"shape {list(s)}")
        nb = math.prod(wshapes[2])
        if nb not in (0, 4 * u):
            raise ShapeError(f"lstm '{self.name}': the bias must have 4U = {4 * u} elements "
                             f"(or none), got {nb}")

    def spatial_out(self, axis: int, n: int, wshapes: list[tuple[int, ...]]) -> int:
        if axis == 0 and n != 1:
            raise ShapeError(f"lstm '{self.name}': input height {n}: sequences have height 1")
        return n if axis == 1 and self.return_sequences else 1

    def output_shape(self, shape: Shape, wshapes: list[tuple[int, ...]]) -> Shape:
        self.check_weights(shape, wshapes)
        return (1, shape[1] if self.return_sequences else 1, self.units)

    def flops(self, shape: Shape, out: Shape, wshapes: list[tuple[int, ...]]) -> int:
        t, d, u = shape[1], shape[2], self.units
        return t * (2 * (d + u) * 4 * u + 12 * u)

    # ----- initialisation -----------------------------------------------------------------
    def default_weights(self, shape: Shape, rng: np.random.Generator,
                        dtype: Any = np.float32) -> list[np.ndarray]:
        """Keras's init (see the module docstring), drawn from ``rng``: W, then R."""
        d, u = int(shape[2]), self.units
        lim = math.sqrt(6.0 / (d + 4 * u))
        w = rng.uniform(-lim, lim, size=(d, 4 * u))
        q = _orthonormal_columns(rng.standard_normal((4 * u, u)))
        b = np.zeros(4 * u)
        b[u:2 * u] = 1.0
        return [np.ascontiguousarray(x, dtype=dtype) for x in (w, q.T, b)]

    def layout_weight(self, j: int, a: np.ndarray, shape: Shape) -> np.ndarray:
        """An initializer's value in the canonical layout: vectors are reshaped, matrices
        must already be ``D x 4U`` / ``U x 4U``."""
        a = np.asarray(a)
        want = self.weight_shapes(shape)[j]
        if a.size == math.prod(want) and (a.ndim <= 1 or sum(s > 1 for s in a.shape) <= 1):
            return a.reshape(want)
        return a

    # ----- dropout masks ------------------------------------------------------------------
    def _mask(self, ctx: Context, n: int, d: int, dtype: Any) -> Any:
        """The ``(N, D + U)`` mask of one call: inverted-dropout input then recurrent mask."""
        xp = ctx.xp
        if ctx.rng is None:
            raise ValueError("lstm dropout in 'normal' mode needs a random generator")
        u = self.units
        thr = np.concatenate([np.full(d, self.dropout), np.full(u, self.recurrent_dropout)])
        scale = np.concatenate([np.full(d, 1.0 / (1.0 - self.dropout)),
                                np.full(u, 1.0 / (1.0 - self.recurrent_dropout))])
        draw = ctx.backend.uniform(ctx.rng, (n, d + u), dtype)
        keep = draw >= xp.asarray(thr.astype(dtype))
        return keep.astype(dtype) * xp.asarray(scale.astype(dtype))

    # ----- computation --------------------------------------------------------------------
    def summary(self, wshapes: list[tuple[int, ...]]) -> str:
        return f"{self.units} units" + (", sequences" if self.return_sequences else "")

    def forward(self, x: Any, w: list[Any], ctx: Context, aux: Any = None) -> tuple[Any, Any]:
        xp = ctx.xp
        n, _, t, d = x.shape
        u = self.units
        wx = w[0].reshape(d, 4 * u)
        wr = w[1].reshape(u, 4 * u)
        xs = x.reshape(n, t, d)
        mask = None
        if ctx.mode != "test":
            if aux is not None:
                mask = aux
            elif self.dropout > 0 or self.recurrent_dropout > 0:
                mask = self._mask(ctx, n, d, x.dtype)
        if mask is not None:
            xm = xs * mask[:, None, :d]
            mh = mask[:, d:]
        else:
            xm, mh = xs, None
        z = (xm.reshape(n * t, d) @ wx).reshape(n, t, 4 * u)
        if w[2].size:
            z += w[2].reshape(1, 1, 4 * u)
        gates = xp.empty((n, t, 4 * u), dtype=x.dtype)
        cs = xp.zeros((n, t + 1, u), dtype=x.dtype)
        hs = xp.zeros((n, t + 1, u), dtype=x.dtype)
        tcs = xp.empty((n, t, u), dtype=x.dtype)
        for s in range(t):
            h_prev = hs[:, s] if mh is None else hs[:, s] * mh
            zs = z[:, s] + h_prev @ wr
            g = gates[:, s]
            g[:, :2 * u] = _sigmoid(xp, zs[:, :2 * u])
            g[:, 2 * u:3 * u] = xp.tanh(zs[:, 2 * u:3 * u])
            g[:, 3 * u:] = _sigmoid(xp, zs[:, 3 * u:])
            c = g[:, u:2 * u] * cs[:, s] + g[:, :u] * g[:, 2 * u:3 * u]
            cs[:, s + 1] = c
            tc = xp.tanh(c)
            tcs[:, s] = tc
            hs[:, s + 1] = g[:, 3 * u:] * tc
        if self.return_sequences:
            y = xp.ascontiguousarray(hs[:, 1:]).reshape(n, 1, t, u)
        else:
            y = xp.ascontiguousarray(hs[:, t]).reshape(n, 1, 1, u)
        return y, (mask, xm, gates, cs, tcs, hs)

    def backward(self, x: Any, y: Any, aux: Any, w: list[Any], dy: Any,
                 ctx: Context) -> tuple[Any, list[Any]]:
        xp = ctx.xp
        n, _, t, d = x.shape
        u = self.units
        one = x.dtype.type(1.0)
        mask, xm, gates, cs, tcs, hs = aux
        wx = w[0].reshape(d, 4 * u)
        wr = w[1].reshape(u, 4 * u)
        mh = None if mask is None else mask[:, d:]
        dys = dy.reshape(n, t if self.return_sequences else 1, u)
        dz = xp.empty((n, t, 4 * u), dtype=x.dtype)
        dh_next = xp.zeros((n, u), dtype=x.dtype)
        dc_next = xp.zeros((n, u), dtype=x.dtype)
        for s in range(t - 1, -1, -1):
            if self.return_sequences:
                dh = dys[:, s] + dh_next
            elif s == t - 1:
                dh = dys[:, 0] + dh_next
            else:
                dh = dh_next
            g = gates[:, s]
            gi, gf, gc, go = g[:, :u], g[:, u:2 * u], g[:, 2 * u:3 * u], g[:, 3 * u:]
            tc = tcs[:, s]
            dc = dc_next + dh * go * (one - tc * tc)
            dzs = dz[:, s]
            dzs[:, :u] = dc * gc * gi * (one - gi)
            dzs[:, u:2 * u] = dc * cs[:, s] * gf * (one - gf)
            dzs[:, 2 * u:3 * u] = dc * gi * (one - gc * gc)
            dzs[:, 3 * u:] = dh * tc * go * (one - go)
            dc_next = dc * gf
            dh_next = dzs @ wr.T
            if mh is not None:
                dh_next = dh_next * mh
        dz2 = dz.reshape(n * t, 4 * u)
        h_prev = hs[:, :t] if mh is None else hs[:, :t] * mh[:, None, :]
        dwr = (h_prev.reshape(n * t, u).T @ dz2).reshape(w[1].shape)
        dwx = (xm.reshape(n * t, d).T @ dz2).reshape(w[0].shape)
        db = dz2.sum(axis=0).reshape(w[2].shape) if w[2].size else \
            xp.zeros((0,), dtype=dy.dtype)
        dxm = (dz2 @ wx.T).reshape(n, t, d)
        if mask is not None:
            dxm = dxm * mask[:, None, :d]
        return dxm.reshape(x.shape), [dwx, dwr, db]
