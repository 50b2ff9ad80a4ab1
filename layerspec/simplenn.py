"""``simplenn``: the Python twin of MatConvNet's ``vl_simplenn``.

``res = simplenn(net, x, dzdy=1.0, labels=y, mode="normal")`` returns ``L + 1`` records:
``res[0].x`` is the input, ``res[i+1].x`` the output of layer i, ``res[i].dzdx`` the
derivative of the output w.r.t. ``res[i].x`` and ``res[i].dzdw`` the list of derivatives of
layer i's weights (shapes as ``net.weights[i]``). ``res[i+1].aux`` holds what layer i kept for
its backward pass (the dropout mask, the max-pool argmax, the conv patches).
A backward pass runs only when ``dzdy`` is given.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import DataError
from .layers import Context
from .net import Net
from .workspace import KEEP_PASS_BYTES

MODES = ("normal", "test")

#: layer types whose backward pass reads their input and dY but never their own output, so
#: that the next layer may overwrite that output in place (``conserve_memory``)
OUTPUT_UNUSED_IN_BACKWARD = frozenset({"conv", "convt"})


@dataclass
class Res:
    """One entry of the result list (as ``vl_simplenn``'s ``res(i)``)."""

    x: Any = None
    dzdx: Any = None
    dzdw: list[Any] = field(default_factory=list)
    aux: Any = None
    time: float = 0.0
    backwardTime: float = 0.0


def simplenn(net: Net, x: Any, dzdy: Any = None, labels: Any = None, mode: str = "normal",
             rng: np.random.Generator | None = None,
             masks: Mapping[int, Any] | None = None,
             step: tuple[int, ...] | None = None, input_grad: bool = True,
             conserve_memory: bool = False) -> list[Res]:
    """Run ``net`` forward on ``x`` (``(N, H, W, C)``) and, when ``dzdy`` is given, backward.

    labels: 0-based class indices, ``(N,)`` or ``(N, H', W')``; ``-1`` = ignore.
    mode: ``"normal"`` (dropout active) or ``"test"``.
    rng: generator for dropout masks (default ``net.rng``).
    masks: ``{layer index: mask}`` — recorded dropout masks (already scaled) used instead of
    drawing new ones, to replay a MatConvNet run.
    step: ``(epoch, batch)`` of a training step (the trainer passes it); dropout layers with
    a ``seed`` draw their masks from it (see ``layers/dropout.py``).
    input_grad: ``False`` lets the first layer skip ``res[0].dzdx`` (``None`` then), which
    training never reads; ``vl_simplenn`` always computes it.
    conserve_memory: ``vl_simplenn``'s ``conserveMemory`` (cnn_train turns it on): after layer
    i's backward pass ``res[i+1].x`` and ``res[i+1].dzdx`` are dropped (set to None), except the
    loss and the scores (``res[-1]``, ``res[-2]``), and layers may work in place
    (``Context.in_place``): a ReLU after a convolution overwrites the convolution's output, and
    a ReLU's backward pass writes over the incoming derivative. ``res[i].x`` of such a
    convolution then holds the ReLU's output until it is dropped.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    be = net.backend
    xp = be.xp
    dtype = net.dtype
    x = be.asarray(x, dtype=dtype)
    if x.ndim != 4:
        raise DataError(f"input must be (N, H, W, C), got shape {tuple(x.shape)}")
    lab = None if labels is None else be.asarray(labels)
    # labels given on the host keep their host copy for checks that need no device read-back
    host = labels if be.on_device and isinstance(labels, np.ndarray) else None
    ctx = Context(backend=be, mode=mode, labels=lab, rng=rng if rng is not None else net.rng,
                  step=step, workspace=getattr(net, "workspace", None), labels_host=host)
    masks = masks or {}
    if ctx.workspace is not None:
        # a backward pass follows: layers may keep a little of their work for it
        ctx.workspace.start_pass(KEEP_PASS_BYTES if dzdy is not None else 0)
    n_layers = len(net.layers)
    res = [Res() for _ in range(n_layers + 1)]
    res[0].x = x
    in_place = dataclasses.replace(ctx, in_place=True) if conserve_memory else ctx
    for i, layer in enumerate(net.layers):
        t0 = time.perf_counter()
        given = masks.get(i)
        if given is not None:
            given = be.asarray(given, dtype=dtype)
        # a layer may overwrite its input only where the layer that made it never reads its
        # own output again (conv, convt) and the caller gave up the intermediate results
        lctx = in_place if (conserve_memory and i > 0 and dzdy is not None
                            and net.layers[i - 1].type in OUTPUT_UNUSED_IN_BACKWARD) else ctx
        y, aux = layer.forward(res[i].x, net.weights[i], lctx, given)
        res[i + 1].x = y
        res[i + 1].aux = aux
        res[i].time = time.perf_counter() - t0
    if dzdy is None:
        return res
    top = res[n_layers].x
    res[n_layers].dzdx = xp.asarray(dzdy, dtype=dtype) if np.ndim(dzdy) else \
        xp.full(top.shape, dzdy, dtype=dtype)
    for i in range(n_layers - 1, -1, -1):
        t0 = time.perf_counter()
        layer = net.layers[i]
        lctx = in_place if conserve_memory and i < n_layers - 1 else ctx
        if not (i or input_grad):
            lctx = dataclasses.replace(lctx, input_grad=False)
        dx, dw = layer.backward(res[i].x, res[i + 1].x, res[i + 1].aux, net.weights[i],
                                res[i + 1].dzdx, lctx)
        res[i].dzdx = dx
        res[i].dzdw = dw
        if conserve_memory and i + 1 < n_layers - 1:
            res[i + 1].x = res[i + 1].dzdx = res[i + 1].aux = None
        res[i].backwardTime = time.perf_counter() - t0
    return res
