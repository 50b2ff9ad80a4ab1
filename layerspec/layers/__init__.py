"""Layer types known to layerspec, keyed by their MatConvNet ``type`` string."""

from __future__ import annotations

from .activations import ReLU, Sigmoid, Softmax
from .base import SCALAR, Context, Layer, Shape
from .conv import Conv
from .dropout import Dropout
from .losses import Loss, SoftmaxLoss
from .pool import Pool

LAYER_CLASSES: dict[str, type[Layer]] = {
    cls.type: cls for cls in (Conv, Pool, ReLU, Sigmoid, Softmax, Dropout, SoftmaxLoss, Loss)
}

#: every layer ``type`` a spec may use
LAYER_TYPES = frozenset(LAYER_CLASSES)

#: SimpleNN types that layerspec does not implement yet (a clear error, not "unknown type")
PLANNED_TYPES = frozenset({"bnorm", "normalize", "lrn", "convt", "noffset", "spnorm", "pdist"})

__all__ = ["LAYER_CLASSES", "LAYER_TYPES", "PLANNED_TYPES", "SCALAR", "Context", "Layer",
           "Shape", "Conv", "Pool", "ReLU", "Sigmoid", "Softmax", "Dropout", "SoftmaxLoss",
           "Loss"]
