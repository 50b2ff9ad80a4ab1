"""``conv``: MatConvNet's ``vl_nnconv`` — cross-correlation with stride, asymmetric padding,
dilation and groups, computed as im2col + one GEMM (per group).

Filters ``F`` are ``(FH, FW, FC, K)``; when ``FC < C`` the input is split into ``G = C / FC``
groups, group ``g`` reads channels ``[g*FC, (g+1)*FC)`` and owns filters
``[g*K/G, (g+1)*K/G)``. The bias has ``K`` elements or none (an empty array).

Performance (NHWC, float32, every product through BLAS):

* im2col is one copy from an ``as_strided`` window view ``(N, Ho, Wo, FH, FW, C)`` whose inner
  ``FW*C`` run is contiguous; a 1x1 conv and a conv whose filter covers the whole input need
  no im2col at all (the input *is* the patch matrix).
* dX for a stride-1 conv with enough input channels is the transposed convolution: im2col of
  the zero-padded dY times the flipped filters, one fat GEMM. Otherwise the patch gradients
  are computed transposed, ``(FH*FW*C, M)``, and added back per kernel offset into a
  channel-major padded gradient, so each add runs over whole image rows.
* Buffers come from the net's :class:`~layerspec.workspace.Workspace` (``ctx.workspace``)
  and are reused from step to step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ShapeError
from ..workspace import NO_WORKSPACE, Workspace, workspace_of
from .base import Context, Layer, Shape, param, window

#: the transposed-convolution dX pays off from this many input channels on
TCONV_MIN_CHANNELS = 16


def out_size(n: int, f: int, stride: int, p0: int, p1: int, dil: int) -> int:
    return (n + p0 + p1 - ((f - 1) * dil + 1)) // stride + 1


def pad_into(xp: Any, x: Any, pad: tuple[int, int, int, int], out: Any,
             value: float = 0.0) -> Any:
    """Write ``x`` padded by ``pad = (top, bottom, left, right)`` into ``out``."""
    t, b, l, r = pad
    n, h, w, c = x.shape
    if t:
        out[:, :t] = value
    if b:
        out[:, t + h:] = value
    if l:
        out[:, t:t + h, :l] = value
    if r:
        out[:, t:t + h, l + w:] = value
    out[:, t:t + h, l:l + w] = x
    return out


def padded(xp: Any, x: Any, pad: tuple[int, int, int, int], ws: Workspace, tag: str,
           value: float = 0.0) -> Any:
    """``x`` padded (``x`` itself when every pad is 0), in the workspace's scratch ``tag``
    (drop it before the layer returns)."""
    t, b, l, r = pad
    if not (t or b or l or r):
        return x
    n, h, w, c = x.shape
    out = ws.scratch(xp, tag, (n, h + t + b, w + l + r, c), x.dtype)
    return pad_into(xp, x, pad, out, value)


def im2col(xp: Any, xpad: Any, fh: int, fw: int, dil: tuple[int, int], stride: tuple[int, int],
           ho: int, wo: int, out: Any = None) -> Any:
    """Patches of the padded input, ``(N*Ho*Wo, FH*FW*C)`` with columns ordered (u, v, c).

    One copy from a strided window view; ``out`` (any array of that many elements) receives
    it when given."""
    n, _, _, c = xpad.shape
    s = xpad.strides
    view = xp.lib.stride_tricks.as_strided(
        xpad, (n, ho, wo, fh, fw, c),
        (s[0], s[1] * stride[0], s[2] * stride[1], s[1] * dil[0], s[2] * dil[1], s[3]))
    if out is None:
        out = xp.empty((n, ho, wo, fh, fw, c), dtype=xpad.dtype)
    out = out.reshape(n, ho, wo, fh, fw, c)
    out[...] = view
    return out.reshape(n * ho * wo, fh * fw * c)


def col2im(xp: Any, cols: Any, padded_shape: tuple[int, int, int, int], fh: int, fw: int,
           dil: tuple[int, int], stride: tuple[int, int], ho: int, wo: int) -> Any:
    """Adjoint of :func:`im2col`: scatter-add patches back into a padded input."""
    n, hp, wp, c = padded_shape
    out = xp.zeros(padded_shape, dtype=cols.dtype)
    cols = cols.reshape(n, ho, wo, fh, fw, c)
    for u in range(fh):
        for v in range(fw):
            window(out, u * dil[0], v * dil[1], stride[0], stride[1], ho, wo)[...] += \
                cols[:, :, :, u, v, :]
    return out


def _kind(x_shape: tuple[int, ...], f_shape: tuple[int, ...], stride: tuple[int, int],
          pad: tuple[int, int, int, int], dilate: tuple[int, int]) -> str:
    """``"1x1"``: a pointwise conv; ``"full"``: the filter covers the whole (unpadded) input;
    ``"im2col"``: everything else."""
    n, h, w, c = x_shape
    fh, fw, fc, k = f_shape
    if fc != c or any(pad):
        return "im2col"
    if fh == 1 and fw == 1 and stride == (1, 1):
        return "1x1"
    if fh == h and fw == w:
        return "full"
    return "im2col"


def conv_forward(xp: Any, x: Any, f: Any, b: Any, stride: tuple[int, int],
                 pad: tuple[int, int, int, int], dilate: tuple[int, int],
                 ws: Workspace | None = None, key: Any = None,
                 fast: bool = True) -> tuple[Any, Any]:
    """y = conv(x, f) + b. Returns ``(y, cols)``: ``cols`` is the patch matrix when it is a
    view of ``x`` (1x1 and whole-input convs), kept for the backward pass; ``None`` otherwise —
    im2col patches are rebuilt in the backward pass into a shared scratch buffer instead of
    being kept per layer (on seed320 they would hold about 1.2 GB).

    ``ws``/``key``: where to take (and keep) buffers; ``fast=False`` forces the im2col path
    (the reference for the 1x1 and whole-input fast paths)."""
    ws = NO_WORKSPACE if ws is None else ws
    n, h, w, c = x.shape
    fh, fw, fc, k = f.shape
    g = c // fc
    ho = out_size(h, fh, stride[0], pad[0], pad[1], dilate[0])
    wo = out_size(w, fw, stride[1], pad[2], pad[3], dilate[1])
    kind = _kind(x.shape, f.shape, stride, pad, dilate) if fast else "im2col"
    if kind == "1x1":
        cols = xp.ascontiguousarray(x).reshape(n * h * w, c)
    elif kind == "full":
        cols = xp.ascontiguousarray(x).reshape(n, h * w * c)
    else:
        cols = _patches(xp, x, fh, fw, stride, pad, dilate, ho, wo, ws)
    m = cols.shape[0]
    if g == 1:
        y = ws.empty(xp, (key, "y"), (m, k), x.dtype)
        xp.matmul(cols, f.reshape(fh * fw * fc, k), out=y)
    else:
        kg = k // g
        cols_g = cols.reshape(m, fh * fw, g, fc).transpose(2, 0, 1, 3).reshape(g, m, fh * fw * fc)
        f_g = f.reshape(fh * fw * fc, g, kg).transpose(1, 0, 2)
        y = xp.matmul(cols_g, f_g).transpose(1, 0, 2).reshape(m, k)
    if b is not None and b.size:
        y += b
    return y.reshape(n, ho, wo, k), (cols if kind != "im2col" else None)


def _patches(xp: Any, x: Any, fh: int, fw: int, stride: tuple[int, int],
             pad: tuple[int, int, int, int], dilate: tuple[int, int], ho: int, wo: int,
             ws: Workspace) -> Any:
    """im2col patches of ``x`` in the shared ``"cols"`` scratch buffer (drop before return)."""
    n, _, _, c = x.shape
    xpad = padded(xp, x, pad, ws, "xpad")
    buf = ws.scratch(xp, "cols", (n * ho * wo, fh * fw * c), x.dtype)
    return im2col(xp, xpad, fh, fw, dilate, stride, ho, wo, out=buf)


def _dx_tconv(xp: Any, dy: Any, f: Any, x_shape: tuple[int, ...],
              pad: tuple[int, int, int, int], ws: Workspace, key: Any) -> Any:
    """dX of a stride-1, undilated conv as the transposed convolution: im2col of dY padded
    by ``F-1-pad`` times the flipped filters (one GEMM, inner dimension FH*FW*K)."""
    n, h, w, c = x_shape
    fh, fw, _, k = f.shape
    q = (fh - 1 - pad[0], fh - 1 - pad[1], fw - 1 - pad[2], fw - 1 - pad[3])
    dypad = padded(xp, dy, q, ws, "dypad")
    buf = ws.scratch(xp, "dycols", (n * h * w, fh * fw * k), dy.dtype)
    cols = im2col(xp, dypad, fh, fw, (1, 1), (1, 1), h, w, out=buf)
    del dypad
    ff = xp.ascontiguousarray(f[::-1, ::-1].transpose(0, 1, 3, 2)).reshape(fh * fw * k, c)
    dx = ws.empty(xp, (key, "dx"), (n * h * w, c), dy.dtype)
    xp.matmul(cols, ff, out=dx)
    return dx.reshape(n, h, w, c)


def _dx_col2im(xp: Any, dym: Any, f2: Any, x_shape: tuple[int, ...], f_shape: tuple[int, ...],
               stride: tuple[int, int], pad: tuple[int, int, int, int],
               dilate: tuple[int, int], ho: int, wo: int, ws: Workspace, key: Any) -> Any:
    """dX for any geometry: patch gradients computed transposed, ``(FH*FW*C, M)``, then added
    per kernel offset into a channel-major ``(C, N, Hp, Wp)`` gradient (whole-row runs)."""
    n, h, w, c = x_shape
    fh, fw = f_shape[:2]
    m = dym.shape[0]
    pt, pb, pl, pr = pad
    dct = ws.scratch(xp, "dcolsT", (fh * fw * c, m), dym.dtype)
    xp.matmul(f2, dym.T, out=dct)
    d = dct.reshape(fh, fw, c, n, ho, wo)
    dxt = ws.scratch_zeros(xp, "dxT", (c, n, h + pt + pb, w + pl + pr), dym.dtype)
    sy, sx = stride
    for u in range(fh):
        for v in range(fw):
            a, e = u * dilate[0], v * dilate[1]
            dxt[:, :, a:a + sy * (ho - 1) + 1:sy, e:e + sx * (wo - 1) + 1:sx] += d[u, v]
    del d
    dx = ws.empty(xp, (key, "dx"), (n, h, w, c), dym.dtype)
    dx[...] = dxt[:, :, pt:pt + h, pl:pl + w].transpose(1, 2, 3, 0)
    return dx


def dx_method(x_shape: tuple[int, ...], f_shape: tuple[int, ...], stride: tuple[int, int],
              pad: tuple[int, int, int, int], dilate: tuple[int, int]) -> str:
    """How :func:`conv_backward` computes dX for this geometry (groups == 1):
    ``"gemm"`` (1x1 / whole-input convs), ``"tconv"`` or ``"col2im"``."""
    kind = _kind(x_shape, f_shape, stride, pad, dilate)
    if kind != "im2col":
        return "gemm"
    fh, fw, fc, k = f_shape
    c = x_shape[3]
    # the transposed conv pads dY by (F-1-pad) per side: it pays only for "same"-padded
    # convs, where the padded dY is no bigger than X (measured: 2x slower on unpadded ones)
    if (stride == (1, 1) and dilate == (1, 1) and fc == c and c >= TCONV_MIN_CHANNELS
            and max(pad[0], pad[1]) < fh and max(pad[2], pad[3]) < fw
            and pad[0] + pad[1] >= fh - 1 and pad[2] + pad[3] >= fw - 1):
        return "tconv"
    return "col2im"


def conv_backward(xp: Any, x: Any, f: Any, b: Any, dy: Any, cols: Any, stride: tuple[int, int],
                  pad: tuple[int, int, int, int], dilate: tuple[int, int],
                  ws: Workspace | None = None, key: Any = None,
                  method: str | None = None) -> tuple[Any, Any, Any]:
    """(dx, df, db) for :func:`conv_forward`; derivatives are summed over the batch.

    ``method`` forces a dX method (``"gemm"`` only where it applies, ``"tconv"`` only for
    stride 1, ``"col2im"`` always, ``"none"`` to skip dX and return None); the default picks
    by :func:`dx_method`."""
    ws = NO_WORKSPACE if ws is None else ws
    n, h, w, c = x.shape
    fh, fw, fc, k = f.shape
    g = c // fc
    _, ho, wo, _ = dy.shape
    m = n * ho * wo
    dym = xp.ascontiguousarray(dy).reshape(m, k)
    if cols is None:
        cols = _patches(xp, x, fh, fw, stride, pad, dilate, ho, wo, ws)
    db = dym.sum(axis=0) if b is not None and b.size else xp.zeros((0,), dtype=dy.dtype)
    if g == 1:
        f2 = f.reshape(fh * fw * fc, k)
        method = method or dx_method(x.shape, f.shape, stride, pad, dilate)
        if method == "gemm":
            # 1x1 or whole-input conv: the patch matrix is the input itself
            df = (cols.reshape(-1, fh * fw * c).T @ dym).reshape(f.shape)
            dx = ws.empty(xp, (key, "dx"), (cols.shape[0], cols.shape[1]), dy.dtype)
            xp.matmul(dym.reshape(cols.shape[0], -1), f2.T, out=dx)
            return dx.reshape(x.shape), df, db
        df = (cols.T @ dym).reshape(f.shape)
        if method == "none":  # the caller needs no input derivative
            return None, df, db
        if method == "tconv":
            dx = _dx_tconv(xp, dym.reshape(dy.shape), f, x.shape, pad, ws, key)
        else:
            dx = _dx_col2im(xp, dym, f2, x.shape, f.shape, stride, pad, dilate, ho, wo, ws,
                            key)
        return dx, df, db
    kg = k // g
    cols_g = cols.reshape(m, fh * fw, g, fc).transpose(2, 0, 1, 3).reshape(g, m, fh * fw * fc)
    f_g = f.reshape(fh * fw * fc, g, kg).transpose(1, 0, 2)
    dy_g = dym.reshape(m, g, kg).transpose(1, 0, 2)
    df = xp.matmul(cols_g.transpose(0, 2, 1), dy_g).transpose(1, 0, 2).reshape(f.shape)
    dcols = xp.matmul(dy_g, f_g.transpose(0, 2, 1))
    dcols = dcols.reshape(g, m, fh * fw, fc).transpose(1, 2, 0, 3).reshape(m, fh * fw * c)
    padded_shape = (n, h + pad[0] + pad[1], w + pad[2] + pad[3], c)
    dxpad = col2im(xp, dcols, padded_shape, fh, fw, dilate, stride, ho, wo)
    dx = dxpad[:, pad[0]:pad[0] + h, pad[2]:pad[2] + w, :]
    return xp.ascontiguousarray(dx), df, db


@dataclass(frozen=True, kw_only=True)
class Conv(Layer):
    """Convolution (cross-correlation). Weights ``[F (FH,FW,FC,K), b (K,) or empty]``."""

    weights: tuple[str, ...] | None = param(
        "weights", None, "initializers {F, b}: F is [h w in out], b has `out` elements or is []")
    stride: tuple[int, int] = param("pair", (1, 1), "[sy sx] (a scalar means both)", minimum=1)
    pad: tuple[int, int, int, int] = param("quad", (0, 0, 0, 0),
                                           "[top bottom left right] (a scalar means all four)")
    dilate: tuple[int, int] = param("pair", (1, 1), "[dy dx] filter dilation", minimum=1)

    type = "conv"
    weight_names = ("filters", "biases")
    weight_layouts = ("4d", "vector")

    def _extent(self, axis: int, wshape: tuple[int, ...]) -> int:
        return (wshape[axis] - 1) * self.dilate[axis] + 1

    def check_weights(self, shape: Shape, wshapes: list[tuple[int, ...]]) -> None:
        super().check_weights(shape, wshapes)
        fshape, bshape = wshapes
        if len(fshape) != 4:
            raise ShapeError(f"conv '{self.name}': filters must be 4-D [h w in out], "
                             f"got shape {list(fshape)}")
        fh, fw, fc, k = fshape
        c = shape[2]
        if min(fshape) < 1:
            raise ShapeError(f"conv '{self.name}': filters have an empty dimension {list(fshape)}")
        if c % fc:
            raise ShapeError(
                f"conv '{self.name}': the input has {c} channels but the filters are "
                f"{fh}x{fw}x{fc}x{k}: their depth {fc} must equal {c} (or divide it, for "
                f"{c}/{fc} groups); write filters of size {fh}x{fw}x{c}x{k}")
        groups = c // fc
        if k % groups:
            raise ShapeError(f"conv '{self.name}': {groups} groups need a number of filters "
                             f"divisible by {groups}, got {k}")
        nb = 1
        for d in bshape:
            nb *= d
        if nb not in (0, k):
            raise ShapeError(f"conv '{self.name}': {k} filters need {k} biases (or none), "
                             f"got {nb}")

    def geometry(self, axis: int,
                 wshapes: list[tuple[int, ...]]) -> tuple[int, int, int, int] | None:
        return (self._extent(axis, wshapes[0]), self.stride[axis], self.pad[2 * axis],
                self.pad[2 * axis + 1])

    def out_channels(self, shape: Shape, wshapes: list[tuple[int, ...]]) -> int:
        return wshapes[0][3]

    def flops(self, shape: Shape, out: Shape, wshapes: list[tuple[int, ...]]) -> int:
        fh, fw, fc, k = wshapes[0]
        return 2 * out[0] * out[1] * k * fh * fw * fc

    def summary(self, wshapes: list[tuple[int, ...]]) -> str:
        return "x".join(str(d) for d in wshapes[0])

    def forward(self, x: Any, w: list[Any], ctx: Context, aux: Any = None) -> tuple[Any, Any]:
        return conv_forward(ctx.xp, x, w[0], w[1], self.stride, self.pad, self.dilate,
                            workspace_of(ctx), id(self))

    def backward(self, x: Any, y: Any, aux: Any, w: list[Any], dy: Any,
                 ctx: Context) -> tuple[Any, list[Any]]:
        dx, df, db = conv_backward(ctx.xp, x, w[0], w[1], dy, aux, self.stride, self.pad,
                                   self.dilate, workspace_of(ctx), id(self),
                                   method=None if ctx.input_grad else "none")
        return dx, [df, db]
