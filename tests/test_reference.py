"""layerspec.simplenn against MatConvNet's own numbers (tests/data/matconvnet/README.md).

Every ``res_x``, ``res_dzdx`` and ``res_dzdw`` entry of each network case is compared with
rtol 1e-5 and atol 1e-5 * max|ref| per tensor (lenet_mnist_bn: 2e-4, see its README
section (j)). Exceptions: lrn_net is compared with its exact-arithmetic reference (MatConvNet's
CPU LRN uses an approximate pow), and bnorm_net_test's derivatives with the true test-mode
derivative ``dzdx_frozen_moments_f64`` where MatConvNet's batch-statistics backward differs
(see FROZEN_MOMENTS). Cases whose layer types the core lacks are skipped.
"""

from __future__ import annotations

import numpy as np
import pytest
from refcases import (
    BASIC_CASES,
    DEFAULT_TOL,
    TOLERANCES,
    compare,
    convert_dzdw,
    load_case,
    run_simplenn,
    supports,
    tensors,
    to_host,
)

from layerspec.matconvnet import to_nhwc

#: the layer types each later case needs (issue 10)
LATER_TYPES = {
    "bnorm_net": ("bnorm",),
    "bnorm_net_test": ("bnorm",),
    "lrn_net": ("normalize",),
    "convt_net": ("convt",),
    "lenet_mnist_bn": ("bnorm",),
}

#: (res_dzdw, layer, entry) pairs compared with an absolute tolerance only: README (j),
#: the db of bnorm layers 2 and 5 of lenet_mnist_bn are theoretically zero (float noise)
ABSOLUTE_ONLY = {"lenet_mnist_bn": {(1, 1), (4, 1)}}

#: test-mode bnorm cases: layerspec's backward is the true derivative with the stored moments
#: held fixed (README (e): MatConvNet recomputes batch statistics there, which is not the
#: derivative of its test-mode forward pass); dzdx is compared with dzdx_frozen_moments_f64
FROZEN_MOMENTS = ("bnorm_net_test",)


def _needs(*types: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not supports(*types),
                              reason=f"layer type {'/'.join(types)} arrives with issue 10")


CASES = [pytest.param(c, id=c) for c in BASIC_CASES] + [
    pytest.param(c, id=c, marks=_needs(*t)) for c, t in LATER_TYPES.items()]


class Checker:
    """Collects every mismatch, so that one run reports all of them."""

    def __init__(self, case: str, rtol: float, atol_scale: float) -> None:
        self.case, self.rtol, self.atol_scale = case, rtol, atol_scale
        self.errors: list[str] = []

    def __call__(self, actual, ref, what, **kw) -> None:
        kw.setdefault("rtol", self.rtol)
        kw.setdefault("atol_scale", self.atol_scale)
        try:
            compare(actual, ref, what, case=self.case, **kw)
        except AssertionError as e:
            self.errors.append(str(e))

    def dtype(self, actual, expected, what) -> None:
        got = to_host(actual).dtype
        if got != expected:
            self.errors.append(f"{what}: dtype {got}, MatConvNet's is {expected}")

    def done(self) -> None:
        if self.errors:
            raise AssertionError(f"{self.case}: {len(self.errors)} mismatches:\n  "
                                 + "\n  ".join(self.errors))


def check_res(check: Checker, res, ref_x, ref_dzdx, ref_dzdw, *, absolute=(),
              dtypes=True, grads_from=0, also=()) -> None:
    """Compare every res entry; derivatives only from layer ``grads_from`` on (0-based),
    plus the (layer, entry) dzdw pairs in ``also``."""
    L = len(ref_dzdw)
    assert len(res) == L + 1, f"res has {len(res)} entries, expected L+1 = {L + 1}"
    for i in range(L + 1):
        check(res[i].x, ref_x[i], f"res_x[{i}]")
        if i >= grads_from:
            check(res[i].dzdx, ref_dzdx[i], f"res_dzdx[{i}]")
        if dtypes and i < L:
            check.dtype(res[i + 1].x, ref_x[i + 1].dtype, f"res_x[{i + 1}]")
            check.dtype(res[i].dzdx, ref_dzdx[i].dtype, f"res_dzdx[{i}]")
    for i in range(L):
        got = list(res[i].dzdw or [])
        if len(got) != len(ref_dzdw[i]):
            check.errors.append(f"res_dzdw[{i}]: {len(got)} arrays, reference has "
                                f"{len(ref_dzdw[i])}")
            continue
        for j, (g, r) in enumerate(zip(got, ref_dzdw[i], strict=True)):
            what = f"res_dzdw[{i}][{j}]"
            if i < grads_from and (i, j) not in also:
                continue
            if (i, j) in absolute:
                check(g, r, what + " (absolute 1e-6)", rtol=0.0, atol_scale=0.0, atol=1e-6,
                      rec=False)
            else:
                check(g, r, what)
                if dtypes:
                    check.dtype(g, r.dtype, what)


def _label(name, backend):
    """The case's row in the reference table (tests/test_gpu.py runs these on "cupy",
    tests/test_device_paths.py on Backend objects)."""
    backend = getattr(backend, "name", backend)
    return name if backend == "numpy" else f"{name} [{backend}]"


@pytest.mark.parametrize("name", CASES)
def test_reference(name, backend="numpy"):
    case = load_case(name)
    rtol, atol_scale = TOLERANCES.get(name, DEFAULT_TOL)
    res = run_simplenn(case.spec, case.x, labels=case.labels, mode=case.mode, dzdy=case.dzdy,
                       masks=case.masks, backend=backend)
    check = Checker(_label(name, backend), rtol, atol_scale)
    if name == "lrn_net":
        # MatConvNet's CPU LRN uses an approximate pow(); README (g): match the exact
        # reference (computed in double with the exact formula) instead
        raw = case.raw
        check(res[-1].x, raw["loss_exact"], "loss (exact)")
        check_res(check, res, tensors(raw["res_x_exact"]), tensors(raw["res_dzdx_exact"]),
                  convert_dzdw(raw["res_dzdw_exact"], case.spec), dtypes=False)
    elif name in FROZEN_MOMENTS:
        # forward: MatConvNet's numbers; backward: the true test-mode derivative, so MatConvNet's
        # derivatives hold only above the last bnorm, plus what does not depend on the bnorm
        # backward: its db (= sum dy) and its third "derivative", the batch [mu sigma]
        bn = [i for i, t in enumerate(case.types) if t == "bnorm"]
        also = {(i, 2) for i in bn} | {(bn[-1], 1)}
        check(res[-1].x, case.loss, "loss")
        check_res(check, res, case.res_x, case.res_dzdx, case.res_dzdw, grads_from=bn[-1] + 1,
                  also=also)
        check(res[0].dzdx, to_nhwc(case.raw["dzdx_frozen_moments_f64"]),
              "dzdx (vs dzdx_frozen_moments_f64)")
    else:
        check(res[-1].x, case.loss, "loss")
        check_res(check, res, case.res_x, case.res_dzdx, case.res_dzdw,
                  absolute=ABSOLUTE_ONLY.get(name, ()))
    check.done()


@pytest.mark.parametrize("name", CASES)
def test_reference_generic(name):
    """The same cases on NumPy without the compiled CPU kernels (the generic array code)."""
    test_reference(name, backend="numpy-generic")


@_needs("normalize")
def test_lrn_net_close_to_matconvnet_approximation():
    """README (g): against MatConvNet's own (approximate-pow) LRN results, about 5e-3."""
    case = load_case("lrn_net")
    res = run_simplenn(case.spec, case.x, labels=case.labels, mode=case.mode)
    check = Checker("lrn_net (vs MatConvNet approx)", 5e-3, 5e-3)
    check(res[-1].x, case.loss, "loss")
    for i in range(len(case.res_x)):
        check(res[i].x, case.res_x[i], f"res_x[{i}]", rec=False)
        check(res[i].dzdx, case.res_dzdx[i], f"res_dzdx[{i}]", rec=False)
    check.done()


def _float64_spec(spec):
    out = dict(spec)
    out["layers"] = [
        {**layer, "weights": [np.asarray(w, dtype=np.float64) for w in layer["weights"]]}
        if "weights" in layer else dict(layer) for layer in spec["layers"]]
    return out


F64_CASES = [pytest.param(c, id=c) for c in BASIC_CASES if c != "seed_small_dropout"] + [
    pytest.param(c, id=c, marks=_needs(*t)) for c, t in LATER_TYPES.items() if c != "lrn_net"]


@pytest.mark.parametrize("name", F64_CASES)
def test_reference_float64(name, backend="numpy"):
    """The same net and input in double against MatConvNet's double run (loss_f64,
    dzdx_f64). lrn_net is left out: MatConvNet's double LRN is just as approximate;
    seed_small_dropout has no f64 run (a new mask would be drawn)."""
    from layerspec.errors import SpecError

    case = load_case(name)
    try:
        res = run_simplenn(_float64_spec(case.spec), case.x.astype(np.float64),
                           labels=case.labels, mode=case.mode, dzdy=case.dzdy, backend=backend)
    except SpecError as e:
        pytest.skip(f"the {backend} backend refuses float64: {e}")
    if to_host(res[0].dzdx).dtype != np.float64:
        pytest.skip(f"the {backend} backend does not keep float64")
    row = _label(f"{name} (f64)", backend)
    compare(res[-1].x, case.loss_f64, "loss (f64)", 1e-9, 1e-9, case=row)
    if name in FROZEN_MOMENTS:  # the true test-mode derivative (see FROZEN_MOMENTS)
        compare(res[0].dzdx, to_nhwc(case.raw["dzdx_frozen_moments_f64"]),
                "dzdx (f64, frozen moments)", 1e-9, 1e-9, case=row)
    else:
        compare(res[0].dzdx, case.dzdx_f64, "dzdx (f64)", 1e-9, 1e-9, case=row)


@pytest.mark.parametrize("backend", ["numpy", "numpy-generic"])
@pytest.mark.parametrize("name", CASES)
def test_conserve_memory_gives_the_same_derivatives(name, backend):
    """``conserve_memory`` (the trainer's mode: in-place ReLUs, intermediate results dropped)
    computes the same loss, scores, weight derivatives and input derivative bit for bit, and
    drops what vl_simplenn's conserveMemory drops."""
    case = load_case(name)
    kw = {"labels": case.labels, "mode": case.mode, "dzdy": case.dzdy, "masks": case.masks,
          "backend": backend}
    full = run_simplenn(case.spec, case.x, **kw)
    lean = run_simplenn(case.spec, case.x, conserve_memory=True, **kw)
    n = len(full) - 1
    for i in (n, n - 1):
        np.testing.assert_array_equal(to_host(lean[i].x), to_host(full[i].x))
    np.testing.assert_array_equal(to_host(lean[0].dzdx), to_host(full[0].dzdx))
    for i in range(n):
        for a, b in zip(lean[i].dzdw, full[i].dzdw, strict=True):
            np.testing.assert_array_equal(to_host(a), to_host(b), err_msg=f"dzdw[{i}]")
    assert all(lean[i].x is None and lean[i].dzdx is None for i in range(1, n - 1))
