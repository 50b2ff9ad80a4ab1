"""MatConvNet reference cases (tests/data/matconvnet, see its README.md) in layerspec's
layout, and the tolerance check used against them.

``load_case(name)`` merges ``<name>.mat``, ``<name>_x.mat`` and ``<name>_grad.mat`` and
converts everything: the net to a raw spec dict, tensors to ``(N, H, W, C)``, labels to
0-based (``-1`` = ignore), ``res_dzdw`` to the weights' layout, dropout masks (``res_aux``)
to ``{0-based layer index: mask}``.

``compare(actual, ref, what)`` asserts ``|a - r| <= rtol*|r| + atol_scale*max|r|`` and
records the worst relative error (``max|a - r| / max|r|``) per case in ``WORST``;
``tests/conftest.py`` prints the table at the end of the session.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from layerspec.matconvnet import (
    find_net,
    labels_from_matlab,
    layer_weights,
    loadmat_clean,
    raw_spec_from_net,
    to_nhwc,
)

DATA = Path(__file__).resolve().parent / "data" / "matconvnet"

#: network cases whose layers are all in the first milestone
BASIC_CASES = (
    "lenet_mnist", "lenet_cifar", "seed_small", "seed_small_dropout", "seed_small_20",
    "edge_spatial_imglabel", "edge_spatial_pixlabel", "edge_spatial_pixlabel_ignore0",
)
#: network cases that need the layer types of issue 10
LATER_CASES = ("bnorm_net", "bnorm_net_test", "lrn_net", "convt_net", "lenet_mnist_bn")
NETWORK_CASES = BASIC_CASES + LATER_CASES

#: per-case (rtol, atol_scale); README: lenet_mnist_bn's float32 bnorm cancellation
TOLERANCES: dict[str, tuple[float, float]] = {"lenet_mnist_bn": (2e-4, 2e-4)}
DEFAULT_TOL = (1e-5, 1e-5)

#: worst relative error per case: {case: {"worst", "what", "compared", "failed"}}
WORST: dict[str, dict[str, Any]] = {}


@dataclass
class Case:
    name: str
    mode: str
    spec: dict[str, Any]
    types: list[str]
    x: np.ndarray
    labels: np.ndarray
    dzdy: float
    loss: np.ndarray
    res_x: list[np.ndarray]
    res_dzdx: list[np.ndarray]
    res_dzdw: list[list[np.ndarray]]
    masks: dict[int, np.ndarray]
    loss_f64: np.ndarray | None = None
    dzdx_f64: np.ndarray | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def _is_empty(v: Any) -> bool:
    return (isinstance(v, list) and not v) or (isinstance(v, np.ndarray) and v.size == 0)


def scalar(v: Any) -> np.ndarray:
    """A 1-element Matlab array (e.g. the 1x1 loss) as a 0-d array of the same dtype."""
    a = np.asarray(v)
    assert a.size == 1, f"expected a scalar, got shape {a.shape}"
    return a.reshape(())


def tensor(v: Any) -> np.ndarray:
    """A Matlab H x W x C x N tensor in NHWC, or a 0-d array for a 1x1 (loss, dzdy)."""
    a = np.asarray(v)
    return a.reshape(()) if a.ndim == 2 and a.shape == (1, 1) else to_nhwc(a)


def tensors(cells: list[Any]) -> list[np.ndarray]:
    """``res_x`` / ``res_dzdx``: every entry in NHWC, the last (loss / dzdy) as a 0-d array."""
    return [to_nhwc(c) for c in cells[:-1]] + [scalar(cells[-1])]


def convert_dzdw(cells: list[Any], spec: dict[str, Any]) -> list[list[np.ndarray]]:
    """``res_dzdw`` (L+1 cells) -> one list per layer, in the layout of the layer's weights."""
    out = []
    for i, layer in enumerate(spec["layers"]):
        c = cells[i]
        if _is_empty(c):
            out.append([])
        else:
            c = c if isinstance(c, list) else [c]
            out.append(layer_weights(layer["type"], c, layer=layer, where=f"res_dzdw{{{i + 1}}}"))
    return out


@functools.cache
def load_case(name: str) -> Case:
    """The merged, converted reference case ``name`` (cached: do not modify the arrays)."""
    contents: dict[str, Any] = {}
    for suffix in ("", "_x", "_grad"):
        path = DATA / f"{name}{suffix}.mat"
        if path.exists():
            contents.update(loadmat_clean(path))
    path = DATA / f"{name}.mat"
    spec = raw_spec_from_net(find_net(contents, path), name=name, source=path)
    types = [layer["type"] for layer in spec["layers"]]
    x = to_nhwc(contents["x"])
    masks = {}
    for j, aux in enumerate(contents.get("res_aux", [])):
        if not _is_empty(aux):  # res(i+1).aux belongs to layer i (1-based) = index j - 1
            masks[j - 1] = to_nhwc(aux)
    return Case(
        name=name,
        mode=contents["mode"],
        spec=spec,
        types=types,
        x=x,
        labels=labels_from_matlab(contents["labels"], x.shape[0]),
        dzdy=float(scalar(contents["dzdy"])),
        loss=scalar(contents["loss"]),
        res_x=tensors(contents["res_x"]),
        res_dzdx=tensors(contents["res_dzdx"]),
        res_dzdw=convert_dzdw(contents["res_dzdw"], spec),
        masks=masks,
        loss_f64=None if _is_empty(contents.get("loss_f64", [])) else scalar(contents["loss_f64"]),
        dzdx_f64=None if _is_empty(contents.get("dzdx_f64", [])) else to_nhwc(contents["dzdx_f64"]),
        raw=contents,
    )


def load_mat(name: str) -> dict[str, Any]:
    """A single reference file (e.g. ``layer_probes``) via loadmat_clean, cached."""
    return _load_mat(name)


@functools.cache
def _load_mat(name: str) -> dict[str, Any]:
    return loadmat_clean(DATA / f"{name}.mat")


def to_host(a: Any) -> np.ndarray:
    """NumPy view of a backend array (CuPy arrays have ``.get()``)."""
    if hasattr(a, "get") and not isinstance(a, (np.ndarray, dict)):
        a = a.get()
    return np.asarray(a)


def record(case: str | None, what: str, worst: float, ok: bool) -> None:
    if case is None:
        return
    entry = WORST.setdefault(case, {"worst": 0.0, "what": "", "compared": 0, "failed": 0})
    entry["compared"] += 1
    entry["failed"] += 0 if ok else 1
    if worst > entry["worst"] or not entry["what"]:
        entry["worst"], entry["what"] = max(worst, entry["worst"]), what


def compare(actual: Any, ref: Any, what: str, rtol: float = 1e-5, atol_scale: float = 1e-5,
            *, case: str | None = None, atol: float = 0.0, rec: bool = True) -> float:
    """Assert ``|a - r| <= rtol*|r| + atol_scale*max|r| + atol`` elementwise.

    Returns the worst relative error ``max|a - r| / max|r|`` (the absolute error when the
    reference is all zero) and records it under ``case`` (unless ``rec`` is False). A
    1-element ``actual`` is compared with a 1-element reference whatever their shapes.
    """
    a = to_host(actual)
    r = np.asarray(ref)
    if a.dtype.kind not in "biuf":
        if rec:
            record(case, what, float("inf"), False)
        raise AssertionError(f"{what}: got {type(actual).__name__} {actual!r:.80}, "
                             f"not a numeric array")
    if a.size == 1 and r.size == 1:
        a = a.reshape(r.shape)
    if a.shape != r.shape:
        if rec:
            record(case, what, float("inf"), False)
        raise AssertionError(f"{what}: shape {a.shape}, reference shape {r.shape}")
    if r.size == 0:
        if rec:
            record(case, what, 0.0, True)
        return 0.0
    a64 = a.astype(np.float64)
    r64 = r.astype(np.float64)
    scale = float(np.abs(r64).max())
    diff = np.abs(a64 - r64)
    finite = bool(np.all(np.isfinite(a64)))
    worst = float(diff.max()) / scale if scale > 0 else float(diff.max())
    if not finite:
        worst = float("inf")
    tol = rtol * np.abs(r64) + atol_scale * scale + atol
    bad = ~(diff <= tol)  # NaN counts as bad
    ok = finite and not bad.any()
    if rec:
        record(case, what, worst, ok)
    if not ok:
        idx = np.unravel_index(int(np.argmax(np.where(bad, diff - tol, -np.inf)))
                               if bad.any() else int(np.argmax(diff)), r.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {r.size} entries outside rtol {rtol:g} + "
            f"{atol_scale:g}*max|ref| ({atol_scale * scale:.3g})"
            f"{f' + atol {atol:g}' if atol else ''}; worst relative error {worst:.3g} "
            f"(max|a-r| / max|r|); e.g. at {tuple(int(i) for i in idx)}: "
            f"{float(a64[idx]):.7g} vs reference {float(r64[idx]):.7g}")
    return worst


def run_simplenn(spec: dict[str, Any], x: np.ndarray, *, labels: Any, mode: str,
                 dzdy: Any = 1.0, masks: dict[int, np.ndarray] | None = None,
                 backend: Any = "numpy", conserve_memory: bool = False) -> Any:
    """``layerspec.simplenn`` on ``layerspec.load(spec, backend=backend)``; ``backend``
    ``"numpy-generic"`` is NumPy without the compiled CPU kernels; a ``Backend`` is used as
    it is."""
    import layerspec  # lazily: the core is written concurrently
    from layerspec.backend import NUMPY_GENERIC

    net = layerspec.load(spec, backend=NUMPY_GENERIC if backend == "numpy-generic" else backend)
    kwargs = {"dzdy": dzdy, "labels": labels, "mode": mode, "conserve_memory": conserve_memory}
    if masks:
        kwargs["masks"] = masks
    return layerspec.simplenn(net, x.copy(), **kwargs)


def supports(*types: str) -> bool:
    """Whether the installed layerspec core implements every layer type in ``types``."""
    try:
        import layerspec
    except Exception:  # noqa: BLE001 - a half-written core must not break collection
        return False
    known = getattr(layerspec, "LAYER_TYPES", None)
    if known is None:
        try:
            from layerspec.layers import LAYER_TYPES as known
        except Exception:  # noqa: BLE001
            known = frozenset()
    return all(t in known for t in types)


def summary_lines() -> list[str]:
    """The table conftest.py prints: worst relative error per case."""
    if not WORST:
        return []
    width = max(len(c) for c in WORST) + 2
    lines = [f"{'case':<{width}}{'tensors':>8}{'failed':>8}  {'worst rel err':>13}  tensor"]
    for case in sorted(WORST):
        e = WORST[case]
        lines.append(f"{case:<{width}}{e['compared']:>8}{e['failed']:>8}  "
                     f"{e['worst']:>13.3g}  {e['what']}")
    return lines


def replay_setup(ref: dict[str, Any]) -> tuple[Any, Any, np.ndarray, np.ndarray, list[Any]]:
    """``(net, trainer, x, y, order)`` for replaying a recorded ``cnn_train`` run
    (``sgd_two_steps`` / ``bnorm_sgd_steps``) with its hyper-parameters."""
    import layerspec
    from layerspec.train import Trainer, TrainOptions

    net = layerspec.load(raw_spec_from_net(ref["net_before"]))
    x = to_nhwc(ref["images"])
    y = labels_from_matlab(ref["image_labels"], x.shape[0])
    order = [np.asarray(o, dtype=int).reshape(-1) - 1 for o in ref["batch_order"]]
    h = ref["hyper"]
    opts = TrainOptions.resolve(net, batchSize=int(h["batchSize"].item()),
                                numEpochs=len(order),
                                learningRate=float(h["learningRate"].item()),
                                weightDecay=float(h["weightDecay"].item()),
                                momentum=float(h["momentum"].item()))
    return net, Trainer(net, opts), x, y, order
