"""Layer types known to layerspec, keyed by their MatConvNet ``type`` string."""

from __future__ import annotations

from .activations import ReLU, Sigmoid, Softmax
from .base import SCALAR, Context, Layer, Shape
from .bnorm import Bnorm
from .conv import Conv
from .convt import Convt
from .dropout import Dropout
from .fc import Fc
from .losses import Loss, SoftmaxLoss
from .lstm import Lstm
from .misc import Noffset, Pdist, Spnorm
from .normalize import Lrn, Normalize
from .pool import Pool

LAYER_CLASSES: dict[str, type[Layer]] = {
    cls.type: cls for cls in (Conv, Convt, Pool, Normalize, Lrn, Softmax, Loss, SoftmaxLoss,
                              ReLU, Sigmoid, Noffset, Spnorm, Dropout, Bnorm, Pdist,
                              Fc, Lstm)
}

#: every layer ``type`` a spec may use (all of vl_simplenn's except ``custom``)
LAYER_TYPES = frozenset(LAYER_CLASSES)

#: SimpleNN types that layerspec does not implement yet (a clear error, not "unknown type")
PLANNED_TYPES: frozenset[str] = frozenset()

__all__ = ["LAYER_CLASSES", "LAYER_TYPES", "PLANNED_TYPES", "SCALAR", "Context", "Layer",
           "Shape", "Conv", "Convt", "Pool", "Normalize", "Lrn", "ReLU", "Sigmoid", "Softmax",
           "Noffset", "Spnorm", "Dropout", "Bnorm", "Pdist", "SoftmaxLoss", "Loss",
           "Fc", "Lstm"]
