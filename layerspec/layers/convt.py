"""``convt``: MatConvNet's ``vl_nnconvt`` — convolution transpose ("deconvolution").

Filters ``F`` are ``(FH, FW, K, D)`` — MatConvNet's ``[h w out in]``, the reverse of conv:
the 3rd dimension is the output channels per group, the 4th the input channels. With
``numGroups = G`` (G divides D), input channel d belongs to group ``floor(d / (D/G))``,
which uses the filter slices ``F[:, :, :, same range]`` and writes output channels
``[g*K, (g+1)*K)``; the output has ``K*G`` channels and the bias ``K*G`` elements (or none).

Scatter form (0-based, per group)::

    yfull[i*uy + a, j*ux + c, k] += x[i, j, d] * F[a, c, k, d]

``yfull`` has ``uy*(H-1) + FH`` rows and ``ux*(W-1) + FW`` columns; ``crop = [t b l r]``
drops rows/columns at the four sides, then the bias is added:
``Ho = uy*(H-1) + FH - ct - cb``. This is exactly the adjoint of ``vl_nnconv`` with the same
``F`` (read as a conv bank of depth K and D filters), ``stride = upsample``, ``pad = crop``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ShapeError, SpecError
from .base import Context, Layer, Shape, pad_hw, param, window


@dataclass(frozen=True, kw_only=True)
class Convt(Layer):
    """Convolution transpose. Weights ``[F (FH,FW,K,D), b (K*numGroups,) or empty]``."""

    weights: tuple[str, ...] | None = param(
        "weights", None,
        "initializers {F, b}: F is [h w out in] (out = K per group), b has K*numGroups "
        "elements or is []")
    upsample: tuple[int, int] = param("pair", (1, 1), "[uy ux] upsampling factor (the stride "
                                      "of the conv it transposes; a scalar means both)",
                                      minimum=1)
    crop: tuple[int, int, int, int] = param("quad", (0, 0, 0, 0),
                                            "[top bottom left right] rows/columns removed from "
                                            "the full output (a scalar means all four)")
    numGroups: int = param("int", 1, "G: the input channels are split into G groups, each "
                           "writing its own K output channels", minimum=1)

    type = "convt"
    weight_names = ("filters", "biases")
    weight_layouts = ("4d", "vector")

    def __post_init__(self) -> None:
        if self.numGroups < 1:
            raise SpecError(f"convt: numGroups must be >= 1, got {self.numGroups}")

    def check_weights(self, shape: Shape, wshapes: list[tuple[int, ...]]) -> None:
        super().check_weights(shape, wshapes)
        fshape, bshape = wshapes
        if len(fshape) != 4:
            raise ShapeError(f"convt '{self.name}': filters must be 4-D [h w out in], "
                             f"got shape {list(fshape)}")
        fh, fw, k, d = fshape
        if min(fshape) < 1:
            raise ShapeError(f"convt '{self.name}': filters have an empty dimension "
                             f"{list(fshape)}")
        c = shape[2]
        if d != c:
            raise ShapeError(
                f"convt '{self.name}': the input has {c} channels but the filters are "
                f"{fh}x{fw}x{k}x{d}: their 4th dimension (the input depth) must be {c}; "
                f"write filters of size {fh}x{fw}x{k}x{c} ([h w out in])")
        g = self.numGroups
        if d % g:
            raise ShapeError(f"convt '{self.name}': numGroups {g} must divide the input depth "
                             f"{d}")
        nb = 1
        for s in bshape:
            nb *= s
        if nb not in (0, k * g):
            raise ShapeError(f"convt '{self.name}': the output has {k}x{g} = {k * g} channels "
                             f"(filters' 3rd dimension x numGroups), so it needs {k * g} "
                             f"biases (or none), got {nb}")

    def spatial_out(self, axis: int, n: int, wshapes: list[tuple[int, ...]]) -> int:
        f = wshapes[0][axis]
        u = self.upsample[axis]
        c0, c1 = self.crop[2 * axis], self.crop[2 * axis + 1]
        out = u * (n - 1) + f - c0 - c1
        if out < 1:
            dim = "height" if axis == 0 else "width"
            raise ShapeError(
                f"convt '{self.name}': output {dim} = upsample {u} x ({n} - 1) + filter {f} - "
                f"crop {c0}+{c1} = {out} is smaller than 1")
        return out

    def out_channels(self, shape: Shape, wshapes: list[tuple[int, ...]]) -> int:
        return wshapes[0][2] * self.numGroups

    def flops(self, shape: Shape, out: Shape, wshapes: list[tuple[int, ...]]) -> int:
        fh, fw, k, d = wshapes[0]
        return 2 * shape[0] * shape[1] * fh * fw * k * d

    def _groups(self, f: Any) -> tuple[int, int, int, int, int, int]:
        fh, fw, k, d = f.shape
        g = self.numGroups
        return fh, fw, k, d, g, d // g

    def summary(self, wshapes: list[tuple[int, ...]]) -> str:
        up = "" if self.upsample == (1, 1) else " up " + "x".join(map(str, self.upsample))
        crop = "" if not any(self.crop) else " crop [" + " ".join(map(str, self.crop)) + "]"
        groups = "" if self.numGroups == 1 else f" G{self.numGroups}"
        return "x".join(str(d) for d in wshapes[0]) + up + crop + groups

    def forward(self, x: Any, w: list[Any], ctx: Context, aux: Any = None) -> tuple[Any, Any]:
        xp = ctx.xp
        f, b = w
        n, h, wd, _ = x.shape
        fh, fw, k, d, g, dg = self._groups(f)
        uy, ux = self.upsample
        ct, cb, cl, cr = self.crop
        m = n * h * wd
        # per group: cols = x_g (m, Dg) @ A_g (Dg, FH*FW*K)
        a = f.reshape(fh * fw * k, g, dg).transpose(1, 2, 0)
        xg = x.reshape(m, g, dg).transpose(1, 0, 2)
        cols = xp.matmul(xg, a)  # (G, m, FH*FW*K)
        cols = cols.reshape(g, n, h, wd, fh, fw, k).transpose(1, 2, 3, 4, 5, 0, 6)
        cols = cols.reshape(n, h, wd, fh, fw, g * k)
        hp, wp = uy * (h - 1) + fh, ux * (wd - 1) + fw
        full = xp.zeros((n, hp, wp, g * k), dtype=x.dtype)
        for u in range(fh):
            for v in range(fw):
                window(full, u, v, uy, ux, h, wd)[...] += cols[:, :, :, u, v, :]
        y = full[:, ct:hp - cb, cl:wp - cr, :]
        if b is not None and b.size:
            y = y + b
        return xp.ascontiguousarray(y), None

    def backward(self, x: Any, y: Any, aux: Any, w: list[Any], dy: Any,
                 ctx: Context) -> tuple[Any, list[Any]]:
        xp = ctx.xp
        f, b = w
        n, h, wd, c = x.shape
        fh, fw, k, d, g, dg = self._groups(f)
        uy, ux = self.upsample
        m = n * h * wd
        full = pad_hw(xp, dy, self.crop)
        dcols = xp.empty((n, h, wd, fh, fw, g * k), dtype=dy.dtype)
        for u in range(fh):
            for v in range(fw):
                dcols[:, :, :, u, v, :] = window(full, u, v, uy, ux, h, wd)
        dcols = dcols.reshape(m, fh * fw, g, k).transpose(2, 0, 1, 3).reshape(g, m, fh * fw * k)
        a = f.reshape(fh * fw * k, g, dg).transpose(1, 2, 0)  # (G, Dg, FH*FW*K)
        xg = x.reshape(m, g, dg).transpose(1, 0, 2)  # (G, m, Dg)
        dx = xp.matmul(dcols, a.transpose(0, 2, 1))  # (G, m, Dg)
        dx = dx.transpose(1, 0, 2).reshape(n, h, wd, c)
        da = xp.matmul(xg.transpose(0, 2, 1), dcols)  # (G, Dg, FH*FW*K)
        df = da.transpose(2, 0, 1).reshape(fh, fw, k, d)
        if b is not None and b.size:
            db = dy.reshape(-1, g * k).sum(axis=0)
        else:
            db = xp.zeros((0,), dtype=dy.dtype)
        return xp.ascontiguousarray(dx), [xp.ascontiguousarray(df), db]
