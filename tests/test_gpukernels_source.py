"""The CUDA kernels of layerspec/gpukernels.py, checked without a GPU: each kernel's source is
wrapped as CuPy's ElementwiseKernel would wrap it (one function of the element index ``i``,
``T`` = float, ``I`` = int, raw arguments as pointers, outputs as references, the operation
followed by ``;``) and compiled by the host C++ compiler (``-fsyntax-only``), so a typo or an
undeclared name fails here instead of on the first GPU machine. Their numbers are tested in
tests/test_gpu.py, on a device."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import types

import pytest

KERNEL_FACTORIES = ("_maxpool_forward", "_maxpool_backward", "_avgpool_forward",
                    "_avgpool_backward", "_col2im", "_relu_backward", "_relu_backward_in_place",
                    "_sgd_momentum")
C_TYPES = {"int32": "int", "int64": "long long"}


@pytest.fixture
def kernel_sources(monkeypatch):
    """``[(name, in_params, out_params, operation)]`` of every gpukernels kernel, read through
    a stand-in ``cupy`` module that records ElementwiseKernel's arguments."""
    recorded = []

    class ElementwiseKernel:
        def __init__(self, in_params, out_params, operation, name):
            recorded.append((name, in_params, out_params, operation))

    fake = types.ModuleType("cupy")
    fake.__version__ = "stand-in"
    fake.ElementwiseKernel = ElementwiseKernel
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.delitem(sys.modules, "layerspec.gpukernels", raising=False)
    gk = importlib.import_module("layerspec.gpukernels")
    for factory in KERNEL_FACTORIES:
        getattr(gk, factory)()
    monkeypatch.delitem(sys.modules, "layerspec.gpukernels")  # not the stand-in's next time
    return recorded


def _c_function(name: str, in_params: str, out_params: str, operation: str) -> str:
    args = []
    for group, is_out in ((in_params, False), (out_params, True)):
        for p in group.split(","):
            words = p.split()
            if words[0] == "raw":
                args.append(f"const {words[1]}* {words[2]}")
            else:
                ctype = C_TYPES.get(words[0], words[0])
                args.append(f"{ctype}{'&' if is_out else ''} {words[1]}")
    return ("#include <algorithm>\nusing std::max;\nusing std::min;\n"
            "typedef float T;\ntypedef int I;\n"
            f"void {name}(long long i, {', '.join(args)}) {{\n{operation};\n}}\n")


def test_every_cuda_kernel_compiles_as_cxx(kernel_sources, tmp_path):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no host C++ compiler to check the CUDA kernel sources with")
    assert {name for name, *_ in kernel_sources} == {
        "layerspec_maxpool_forward", "layerspec_maxpool_backward", "layerspec_avgpool_forward",
        "layerspec_avgpool_backward", "layerspec_col2im", "layerspec_relu_backward",
        "layerspec_relu_backward_in_place", "layerspec_sgd_momentum"}
    failures = []
    for name, ins, outs, op in kernel_sources:
        src = tmp_path / f"{name}.cpp"
        src.write_text(_c_function(name, ins, outs, op))
        r = subprocess.run([cxx, "-fsyntax-only", "-Wall", "-Werror", str(src)],
                           capture_output=True, text=True)
        if r.returncode:
            failures.append(f"{name}:\n{r.stderr[:2000]}")
    assert not failures, "\n".join(failures)
