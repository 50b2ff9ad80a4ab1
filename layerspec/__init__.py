"""layerspec: MatConvNet-style layer-list networks from YAML specs, on NumPy or CuPy, with
MatConvNet's numbers.

Python API (stable names)::

    net = layerspec.load("spec.yaml", backend="numpy", seed=0, weights=None)
    res = layerspec.simplenn(net, x, dzdy=1.0, labels=y, mode="normal")
    stats = layerspec.train(net, (x, y), val=(xv, yv), numEpochs=3, batchSize=10)
"""

from __future__ import annotations

from .hostthreads import prefer_short_blas_spin

prefer_short_blas_spin()  # before anything imports NumPy: OpenBLAS reads it once

from .errors import SpecError  # noqa: E402
from .layers import LAYER_TYPES  # noqa: E402
from .net import Net, load  # noqa: E402
from .simplenn import Res, simplenn  # noqa: E402
from .spec import Spec  # noqa: E402
from .train import train  # noqa: E402

__version__ = "0.1.0"

__all__ = ["LAYER_TYPES", "Net", "Res", "Spec", "SpecError", "load", "simplenn", "train",
           "__version__"]
