"""Single-layer MatConvNet probes (layer_probes.mat, misc_layers.mat) as one-layer nets.

Each probe is a direct ``vl_nn*`` call in the reference data; here it becomes a one-layer
spec run through ``layerspec.simplenn`` with the probe's ``dzdy``. The probe parameters
(pool sizes, strides, pads...) are the ones the README describes; they were checked by
recomputing every stored forward output in NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from refcases import compare, load_mat, run_simplenn, scalar, supports, to_host

from layerspec.matconvnet import (
    find_net,
    labels_from_matlab,
    layer_weights,
    raw_spec_from_net,
    to_nhwc,
)


@dataclass
class Probe:
    name: str
    layer: dict[str, Any]
    x: np.ndarray
    dzdy: Any = 1.0
    labels: Any = None
    mode: str = "test"
    masks: dict[int, np.ndarray] | None = None
    expect: dict[str, Any] = field(default_factory=dict)  # y, dzdx, dzdw
    spec: dict[str, Any] | None = None  # a ready spec (from a .mat net) instead of `layer`


def _t(v: Any) -> np.ndarray:
    return to_nhwc(v)


def _ones_like_output(y: np.ndarray) -> np.ndarray:
    return np.ones_like(y)


def layer_probes() -> list[Probe]:
    P = load_mat("layer_probes")
    avg = {"type": "pool", "method": "avg", "pool": [3, 3], "stride": 2}
    conv_w = [P["conv_w"], P["conv_b"]]
    conv_dzdw = layer_weights("conv", [P["conv_dzdw"], P["conv_dzdb"]])
    probes = [
        Probe("avg_ones", {**avg, "pad": 1}, _t(P["avg_ones_x"]),
              _ones_like_output(_t(P["avg_ones_y"])),
              expect={"y": _t(P["avg_ones_y"]), "dzdx": _t(P["avg_ones_dzdx"])}),
        Probe("avg_pad1", {**avg, "pad": 1}, _t(P["avg_x"]), _t(P["avg_pad1_dzdy"]),
              expect={"y": _t(P["avg_pad1_y"]), "dzdx": _t(P["avg_pad1_dzdx"])}),
        Probe("avg_asym", {**avg, "pad": [0, 1, 0, 1]}, _t(P["avg_x"]), _t(P["avg_asym_dzdy"]),
              expect={"y": _t(P["avg_asym_y"]), "dzdx": _t(P["avg_asym_dzdx"])}),
        Probe("maxneg", {"type": "pool", "method": "max", "pool": [3, 3], "stride": 2, "pad": 1},
              _t(P["maxneg_x"]), _ones_like_output(_t(P["maxneg_y"])),
              expect={"y": _t(P["maxneg_y"])}),
        Probe("maxtie", {"type": "pool", "method": "max", "pool": [2, 2], "stride": 1, "pad": 0},
              _t(P["maxtie_x"]), np.ones((1, 3, 3, 1), np.float32),
              expect={"y": np.ones((1, 3, 3, 1), np.float32), "dzdx": _t(P["maxtie_dzdx"])}),
        Probe("max_ov", {"type": "pool", "method": "max", "pool": [3, 3], "stride": 2,
                         "pad": [1, 0, 1, 0]}, _t(P["max_x"]), _t(P["max_ov_dzdy"]),
              expect={"y": _t(P["max_ov_y"]), "dzdx": _t(P["max_ov_dzdx"])}),
        Probe("max_rect", {"type": "pool", "method": "max", "pool": [2, 3], "stride": [1, 2],
                           "pad": 0}, _t(P["max_x"]), _t(P["max_rect_dzdy"]),
              expect={"y": _t(P["max_rect_y"]), "dzdx": _t(P["max_rect_dzdx"])}),
        Probe("conv", {"type": "conv", "stride": [2, 3], "pad": [1, 2, 0, 1], "dilate": 1,
                       "weights": layer_weights("conv", conv_w)},
              _t(P["conv_x"]), _t(P["conv_dzdy"]),
              expect={"y": _t(P["conv_y"]), "dzdx": _t(P["conv_dzdx"]), "dzdw": conv_dzdw}),
        # the bias does not enter the backward pass, so dzdx and dW are conv's
        Probe("conv_nobias", {"type": "conv", "stride": [2, 3], "pad": [1, 2, 0, 1],
                              "weights": layer_weights("conv", [P["conv_w"], np.zeros((0, 0))])},
              _t(P["conv_x"]), _t(P["conv_dzdy"]),
              expect={"y": _t(P["conv_nobias_y"]), "dzdx": _t(P["conv_dzdx"]),
                      "dzdw": [conv_dzdw[0], np.zeros((0,), np.float32)]}),
        Probe("conv_dil", {"type": "conv", "stride": 1, "pad": 1, "dilate": 2,
                           "weights": layer_weights("conv", conv_w)},
              _t(P["conv_x"]), _t(P["conv_dil_dzdy"]),
              expect={"y": _t(P["conv_dil_y"]), "dzdx": _t(P["conv_dil_dzdx"]),
                      "dzdw": layer_weights("conv", [P["conv_dil_dzdw"], P["conv_dil_dzdb"]])}),
        Probe("fc", {"type": "conv", "stride": 1, "pad": 0,
                     "weights": layer_weights("conv", [P["fc_w"], P["fc_b"]])},
              _t(P["conv_x"]), _t(P["fc_dzdy"]),
              expect={"y": _t(P["fc_y"]), "dzdx": _t(P["fc_dzdx"]),
                      "dzdw": layer_weights("conv", [P["fc_dzdw"], P["fc_dzdb"]])}),
        Probe("relu", {"type": "relu"}, _t(P["relu_x"]), _t(P["relu_dzdy"]),
              expect={"y": _t(P["relu_y"]), "dzdx": _t(P["relu_dzdx"])}),
        Probe("relu_leak", {"type": "relu", "leak": 0.1}, _t(P["relu_x"]), _t(P["relu_dzdy"]),
              expect={"y": _t(P["relu_leak_y"]), "dzdx": _t(P["relu_leak_dzdx"])}),
        Probe("sml", {"type": "softmaxloss"}, _t(P["sml_x"]), 1.0,
              labels_from_matlab(P["sml_c"], 3),
              expect={"y": scalar(P["sml_loss"]), "dzdx": _t(P["sml_dzdx"])}),
        Probe("sml_dzdy2p5", {"type": "softmaxloss"}, _t(P["sml_x"]), 2.5,
              labels_from_matlab(P["sml_c"], 3),
              expect={"y": scalar(P["sml_loss"]), "dzdx": _t(P["sml_dzdx_2p5"])}),
        Probe("sml_sp", {"type": "softmaxloss"}, _t(P["sml_sp_x"]), 1.0,
              labels_from_matlab(P["sml_sp_c"], 3),
              expect={"y": scalar(P["sml_sp_loss"]), "dzdx": _t(P["sml_sp_dzdx"])}),
        # dropout: y = mask .* x, dzdx = mask .* dzdy (dzdy = 1 gives the mask)
        Probe("drop", {"type": "dropout", "rate": 0.5}, _t(P["drop_x"]),
              np.ones_like(_t(P["drop_x"])), mode="normal", masks={0: _t(P["drop_mask"])},
              expect={"y": _t(P["drop_y"]), "dzdx": _t(P["drop_mask"])}),
    ]
    return probes


def _net_probe(name: str, M: dict[str, Any], var: str) -> tuple[dict[str, Any], Any]:
    """A one-layer SimpleNN net stored in misc_layers.mat: its spec and its `class`."""
    net = find_net({"net": M[var]}, None)
    layers = net["layers"]
    cls = (layers[0] if isinstance(layers, list) else layers)["class"]
    return raw_spec_from_net(net, name=name), cls


#: vl_nnloss options of the probes in misc_layers.mat other than the defaults (README (i))
LOSS_OPTIONS = {"topkerror_k2": {"topK": 2}, "binaryerror_t05": {"threshold": 0.5}}


def misc_probes() -> list[tuple[Probe, tuple[str, ...]]]:
    """(probe, layer types it needs). Every vl_nnloss type is probed through a `loss` layer
    whose `loss`/`topK`/`threshold` fields select the option (a layerspec extension:
    MatConvNet's SimpleNN always calls vl_nnloss with its defaults)."""
    M = load_mat("misc_layers")
    out: list[tuple[Probe, tuple[str, ...]]] = []

    def add(probe: Probe, *types: str) -> None:
        out.append((probe, types))

    for t in ("softmax", "sigmoid"):
        add(Probe(t, {"type": t}, _t(M[f"{t}_x"]), _t(M[f"{t}_dzdy"]),
                  expect={"y": _t(M[f"{t}_y"]), "dzdx": _t(M[f"{t}_dzdx"])}), t)
    add(Probe("noffset", {"type": "noffset", "param": [1, 0.5]}, _t(M["noffset_x"]),
              _t(M["noffset_dzdy"]),
              expect={"y": _t(M["noffset_y"]), "dzdx": _t(M["noffset_dzdx"])}), "noffset")
    for v, key in (("spnorm", "spnorm"), ("spnorm_even", "spnorm_even")):
        param = [float(p) for p in np.ravel(M[f"{key}_param"])]
        add(Probe(v, {"type": "spnorm", "param": [int(p) for p in param[:2]] + param[2:]},
                  _t(M["spnorm_x"]), _t(M["spnorm_dzdy"]),
                  expect={"y": _t(M[f"{key}_y"]), "dzdx": _t(M[f"{key}_dzdx"])}), "spnorm")

    # pdist: the target x0 goes in as `labels` (SimpleNN's per-batch layer.class) in NHWC.
    # Direct vl_nnpdist calls default to epsilon 1e-6 (tidy gives a SimpleNN layer 1e-3).
    cases = M["cases"]
    k = len(cases) // 3  # an 8 x 3 cell {name, p, opts}, flattened column-major
    for name, p, opts in zip(cases[:k], cases[k:2 * k], cases[2 * k:], strict=True):
        opts = opts if isinstance(opts, list) else [opts]
        kv = dict(zip(opts[::2], opts[1::2], strict=True))
        layer = {"type": "pdist", "p": int(scalar(p)),
                 "noRoot": bool(scalar(kv.get("noRoot", 0))),
                 "aggregate": bool(scalar(kv.get("aggregate", 0))),
                 "epsilon": float(scalar(kv.get("epsilon", 1e-6)))}
        dzdy = float(scalar(M["pdist_dzdy_agg"])) if layer["aggregate"] else _t(M["pdist_dzdy"])
        y = M[f"pdist_{name}_y"]
        add(Probe(f"pdist_{name}", layer, _t(M["pdist_x"]), dzdy, _t(M["pdist_x0"]),
                  expect={"y": scalar(y) if layer["aggregate"] else _t(y),
                          "dzdx": _t(M[f"pdist_{name}_dzdx"])}), "pdist")
    add(Probe("pdist_p2_vec", {"type": "pdist", "p": 2, "noRoot": False, "aggregate": False,
                               "epsilon": 1e-6},
              _t(M["pdist_x"]), _t(M["pdist_dzdy"]), _t(M["pdist_x0vec"]),
              expect={"y": _t(M["pdist_p2_vec_y"]), "dzdx": _t(M["pdist_p2_vec_dzdx"])}),
        "pdist")
    spec, cls = _net_probe("simplenn_pdist", M, "simplenn_pdist_net")
    add(Probe("simplenn_pdist", {}, _t(M["pdist_x"]), _t(M["pdist_dzdy"]), _t(cls),
              spec=spec,
              expect={"y": _t(M["simplenn_pdist_y"]), "dzdx": _t(M["simplenn_pdist_dzdx"])}),
        "pdist")

    # softmax-log-loss: SimpleNN `loss` (vl_nnloss defaults) and `softmaxloss`
    spec, cls = _net_probe("simplenn_loss", M, "simplenn_loss_net")
    n = 3
    add(Probe("simplenn_loss", {}, _t(M["loss_x"]), 1.0, labels_from_matlab(cls, n), spec=spec,
              expect={"y": scalar(M["simplenn_loss_y"]), "dzdx": _t(M["simplenn_loss_dzdx"])}),
        "loss")
    add(Probe("softmaxloss_pix", {"type": "softmaxloss"}, _t(M["loss_x"]), 1.0,
              labels_from_matlab(M["loss_c_pix"], n),
              expect={"y": scalar(M["softmaxloss_pix_y"]),
                      "dzdx": _t(M["softmaxloss_pix_dzdx"])}), "softmaxloss")
    dzdy = float(scalar(M["loss_dzdy"]))
    for v, c in (("softmaxlog_img", "loss_c_img"), ("softmaxlog", "loss_c_pix")):
        for t in ("loss", "softmaxloss"):
            add(Probe(f"{t}_{v}", {"type": t}, _t(M["loss_x"]), dzdy,
                      labels_from_matlab(M[c], n),
                      expect={"y": scalar(M[f"loss_{v}_y"]), "dzdx": _t(M[f"loss_{v}_dzdx"])}),
                t)
    # every vl_nnloss type: loss_cases is a 14 x 3 cell {name, x variable, label variable}
    lc = M["loss_cases"]
    k = len(lc) // 3
    for v, xvar, cvar in zip(lc[:k], lc[k:2 * k], lc[2 * k:], strict=True):
        kind = v.removesuffix("_img").removesuffix("_k2").removesuffix("_t05")
        # binary losses take +1/-1 labels (0 = ignore) of the scores' shape, as they are
        labels = _t(M[cvar]) if cvar == "loss_bc" else labels_from_matlab(M[cvar], n)
        add(Probe(f"loss_type_{v}", {"type": "loss", "loss": kind, **LOSS_OPTIONS.get(v, {})},
                  _t(M[xvar]), dzdy, labels,
                  expect={"y": scalar(M[f"loss_{v}_y"]), "dzdx": _t(M[f"loss_{v}_dzdx"])}),
            "loss")
    return out


def _params():
    try:
        basic = [pytest.param(p, id=p.name) for p in layer_probes()]
        misc = [pytest.param(p, id=p.name, marks=pytest.mark.skipif(
            not supports(*types), reason=f"layer type {'/'.join(types)} arrives with issue 10"))
            for p, types in misc_probes()]
    except Exception as e:  # noqa: BLE001 - report a data problem as a failing test
        msg = f"{type(e).__name__}: {e}"
        return [pytest.param(msg, id="probe-data-error")]
    return basic + misc


@pytest.mark.parametrize("probe", _params())
def test_probe(probe):
    if isinstance(probe, str):
        pytest.fail(f"could not build the probes: {probe}")
    spec = probe.spec or {
        "name": f"probe_{probe.name}", "input": list(probe.x.shape[1:]),
        "layers": [{"name": probe.name, **probe.layer}]}
    res = run_simplenn(spec, probe.x, labels=probe.labels, mode=probe.mode, dzdy=probe.dzdy,
                       masks=probe.masks)
    case = f"probe:{probe.name}"
    errors = []

    def check(actual, ref, what):
        try:
            compare(actual, ref, what, case=case)
        except AssertionError as e:
            errors.append(str(e))

    if "y" in probe.expect:
        check(res[1].x, probe.expect["y"], "y")
    if "dzdx" in probe.expect:
        check(res[0].dzdx, probe.expect["dzdx"], "dzdx")
    if "dzdw" in probe.expect:
        got = list(res[0].dzdw or [])
        if len(got) != len(probe.expect["dzdw"]):
            errors.append(f"dzdw: {len(got)} arrays, expected {len(probe.expect['dzdw'])}")
        else:
            for j, (g, r) in enumerate(zip(got, probe.expect["dzdw"], strict=True)):
                check(g, r, f"dzdw[{j}]")
    y = to_host(res[1].x)
    if y.dtype != np.float32:
        errors.append(f"y: dtype {y.dtype}, MatConvNet's is float32")
    if errors:
        raise AssertionError(f"{probe.name}: " + "\n  ".join(errors))
