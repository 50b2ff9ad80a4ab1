"""layerspec: MatConvNet-style layer-list networks from YAML specs, on NumPy or CuPy, with
MatConvNet's numbers.

Python API (stable names)::

    net = layerspec.load("spec.yaml", backend="numpy", seed=0, weights=None)
    res = layerspec.simplenn(net, x, dzdy=1.0, labels=y, mode="normal")
    stats = layerspec.train(net, (x, y), val=(xv, yv), numEpochs=3, batchSize=10)
"""

from __future__ import annotations

from .errors import SpecError
from .layers import LAYER_TYPES
from .net import Net, load
from .simplenn import Res, simplenn
from .spec import Spec
from .train import train

__version__ = "0.1.0"

__all__ = ["LAYER_TYPES", "Net", "Res", "Spec", "SpecError", "load", "simplenn", "train",
           "__version__"]
