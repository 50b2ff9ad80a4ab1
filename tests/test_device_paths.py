"""The device code paths of every layer, run on the CPU (no GPU needed).

The layers pick host-only strategies by ``is_host(xp)`` (``xp is numpy``): cache-sized
im2col blocks, host threads, NumPy's own BLAS, the shifted-slice convolution. On a GPU they
take the other branches: whole-matrix patches, plain allocations, one thread. Here NumPy is
handed to the layers under another module object (:class:`DeviceLikeNumPy`), so every
``is_host`` answers False and those branches run on NumPy arrays — once with the generic
code and once with the compiled CPU kernels standing in for the CUDA kernels (both modules
offer the same functions with the same arguments; ``Backend.kernels``). This does not test
CuPy itself (tests/test_gpu.py does, on a GPU); it tests the layerspec code that only a GPU
would otherwise run: every MatConvNet reference case, in float32 and float64, every layer's
gradient check, and several training steps against the NumPy backend.
"""

from __future__ import annotations

import functools
import types
from typing import Any

import numpy as np
import pytest
import test_gpu
import test_gradcheck
import test_reference

from layerspec.backend import Backend, cpu_kernels, is_host


class DeviceLikeNumPy(types.ModuleType):
    """NumPy under another module object: ``is_host`` is False for it."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


class DeviceLikeBackend(Backend):
    """A backend on :class:`DeviceLikeNumPy`; ``use_kernels`` hands the layers the compiled
    CPU kernels in the place of the CUDA ones."""

    @functools.cached_property
    def kernels(self) -> Any:
        return cpu_kernels() if self.use_kernels else None


DEVICE_XP = DeviceLikeNumPy("device_like_numpy")
GENERIC = DeviceLikeBackend("device-path", DEVICE_XP, use_kernels=False)
KERNELS = DeviceLikeBackend("device-path-kernels", DEVICE_XP)


@pytest.fixture(params=["generic", "kernels"])
def device(request):
    if request.param == "generic":
        return GENERIC
    if cpu_kernels() is None:
        pytest.skip("Numba is not installed (pip install 'layerspec[fast]'): kernels not built")
    return KERNELS


def test_the_device_like_backend_takes_the_device_paths():
    assert not is_host(DEVICE_XP) and DEVICE_XP.float32 is np.float32
    assert GENERIC.on_device and GENERIC.threads.count == 1 and GENERIC.kernels is None


@pytest.mark.parametrize("name", test_reference.CASES)
def test_reference_on_device_paths(device, name):
    test_reference.test_reference(name, backend=device)


@pytest.mark.parametrize("name", test_reference.F64_CASES)
def test_reference_float64_on_device_paths(device, name):
    test_reference.test_reference_float64(name, backend=device)


@pytest.mark.parametrize("test, kwargs", test_gpu.GRADIENT_TESTS)
def test_gradients_on_device_paths(test, kwargs):
    with test_gradcheck.gradient_backend(GENERIC):
        test(**kwargs)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_training_on_device_paths_agrees_with_numpy(device, solver):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((32, 10, 10, 3)).astype(np.float32)
    y = rng.integers(0, 4, 32)
    _, _, host = test_gpu._train("numpy", solver, x, y)
    net, _, dev = test_gpu._train(device, solver, x, y)
    assert net.backend is device and len(host) == len(dev) == 8
    for k, ((la, ea), (lb, eb)) in enumerate(zip(host, dev, strict=True)):
        assert lb == pytest.approx(la, rel=1e-4, abs=1e-6), f"step {k + 1}: objective"
        assert abs(ea - eb) <= 1.0 / 8 + 1e-9, f"step {k + 1}: top-1 error"
