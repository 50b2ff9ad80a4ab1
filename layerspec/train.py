"""Training with MatConvNet's ``cnn_train`` semantics.

Per batch: forward + backward with ``dzdy = 1`` in mode ``normal``, then for every layer l and
weight j (``g`` the derivative, already a per-image mean because the loss divides by N)::

    g = dzdw + weightDecay * layer.weightDecay[j] * w
    sgd (default): m = momentum * m - g;  w += lr * layer.learningRate[j] * m
                   (nesterovUpdate: w += lr * lr_j * (momentum * m - g), with the new m)
    adam, adagrad, adadelta, rmsprop: as MatConvNet's examples/+solver/*.m

Biases are decayed unless a layer says ``weightDecay: [1, 0]``. ``learningRate`` may be a
per-epoch list (the last entry repeats). Epoch ``e`` draws its shuffle and its dropout masks
from a generator seeded with ``(randomSeed, e)``, as cnn_train's ``rng(epoch + randomSeed)``,
so a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .errors import SpecError
from .hostthreads import split_rows
from .net import Net
from .simplenn import simplenn
from .spec import TRAIN_DEFAULTS
from .suggest import did_you_mean

SOLVERS = ("sgd", "adam", "adagrad", "adadelta", "rmsprop")
SOLVER_DEFAULTS: Mapping[str, Mapping[str, float]] = {
    "sgd": {},
    "adam": {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
    "adagrad": {"epsilon": 1e-10, "rho": 1.0},
    "adadelta": {"epsilon": 1e-6, "rho": 0.9},
    "rmsprop": {"epsilon": 1e-8, "rho": 0.99},
}


@dataclass(frozen=True)
class TrainOptions:
    """cnn_train's options (names as in Matlab)."""

    batchSize: int = 256
    numEpochs: int = 300
    learningRate: tuple[float, ...] = (0.001,)
    weightDecay: float = 0.0005
    momentum: float = 0.9
    nesterovUpdate: bool = False
    solver: str = "sgd"
    solverOpts: Mapping[str, float] = field(default_factory=dict)
    randomSeed: int = 0
    errorFunction: str = "multiclass"
    numSubBatches: int = 1
    epochSize: float = math.inf
    val: str = "test"

    def lr(self, epoch: int) -> float:
        """Learning rate of 1-based ``epoch`` (the last entry of a schedule repeats)."""
        return self.learningRate[min(epoch, len(self.learningRate)) - 1]

    @classmethod
    def resolve(cls, net: Net | None = None, **overrides: Any) -> TrainOptions:
        """Options from ``overrides``, then the spec's ``train:`` section, then cnn_train's
        defaults."""
        merged: dict[str, Any] = dict(TRAIN_DEFAULTS)
        if net is not None:
            merged.update({k: v for k, v in net.spec.train.items()})
        for k, v in overrides.items():
            if k not in TRAIN_DEFAULTS:
                raise SpecError(f"unknown cnn_train option '{k}'" + did_you_mean(k,
                                                                                TRAIN_DEFAULTS))
            if v is not None:
                merged[k] = v
        lr = merged["learningRate"]
        lrs = tuple(float(v) for v in np.asarray(lr, dtype=float).reshape(-1))
        if not lrs:
            raise SpecError("learningRate: the schedule is empty")
        solver = str(merged["solver"] or "sgd").lower()
        if solver not in SOLVERS:
            raise SpecError(f"solver: unknown solver '{solver}'" + did_you_mean(solver, SOLVERS))
        opts = {**SOLVER_DEFAULTS[solver], **dict(merged.get("solverOpts") or {})}
        for k in opts:
            if k not in SOLVER_DEFAULTS[solver]:
                raise SpecError(f"solverOpts: '{k}' is not an option of {solver}"
                                + did_you_mean(k, SOLVER_DEFAULTS[solver] or ["(none)"]))
        if merged["errorFunction"] not in ("multiclass", "none"):
            raise SpecError("errorFunction: layerspec knows 'multiclass' and 'none'")
        if int(merged["numSubBatches"]) != 1:
            raise SpecError("numSubBatches: only 1 is supported (use a smaller batchSize)")
        return cls(batchSize=int(merged["batchSize"]), numEpochs=int(merged["numEpochs"]),
                   learningRate=lrs, weightDecay=float(merged["weightDecay"]),
                   momentum=float(merged["momentum"]),
                   nesterovUpdate=bool(merged["nesterovUpdate"]), solver=solver,
                   solverOpts=opts, randomSeed=int(merged["randomSeed"]),
                   errorFunction=merged["errorFunction"], numSubBatches=1,
                   epochSize=float(merged["epochSize"]), val=str(merged["val"]))


@dataclass
class EpochStats:
    """Running statistics of one pass (cnn_train's stats.train(e) / stats.val(e))."""

    objective: float = 0.0
    top1err: float = 0.0
    top5err: float = 0.0
    num: int = 0
    time: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {"objective": self.objective, "top1err": self.top1err, "top5err": self.top5err,
                "num": self.num, "time": self.time}


class Accumulator:
    """Sums per batch, divided by the number of images (cnn_train's running averages)."""

    def __init__(self) -> None:
        self.loss = 0.0
        self.top1 = 0.0
        self.top5 = 0.0
        self.num = 0
        self.start = time.perf_counter()

    def add(self, loss_sum: float, top1: float, top5: float, n: int) -> None:
        self.loss += loss_sum
        self.top1 += top1
        self.top5 += top5
        self.num += n

    def stats(self) -> EpochStats:
        n = max(self.num, 1)
        return EpochStats(self.loss / n, self.top1 / n, self.top5 / n, self.num,
                          time.perf_counter() - self.start)


def multiclass_errors(xp: Any, scores: Any, labels: Any) -> tuple[float, float]:
    """cnn_train's error_multiclass: summed top-1 and top-m errors over labelled positions
    (m = min(5, classes)); ties go to the lower class index as Matlab's stable sort does."""
    top1, top5 = error_counts(xp, scores, labels)
    return float(top1), float(top5)


def error_counts(xp: Any, scores: Any, labels: Any) -> tuple[Any, Any]:
    """:func:`multiclass_errors` as two 0-d arrays of the backend (nothing read back)."""
    n, h, w, k = scores.shape
    lab = xp.asarray(labels)
    if lab.ndim == 1:
        lab = xp.broadcast_to(lab.reshape(n, 1, 1), (n, h, w))
    mass = lab >= 0
    c = xp.where(mass, lab, 0)
    sc = scores.reshape(n, h, w, k)
    own = xp.take_along_axis(sc, c[..., None], axis=-1)
    idx = xp.arange(k)
    # rank of the true class under a stable descending sort: strictly greater scores, plus
    # equal scores of lower class index
    rank = ((sc > own) | ((sc == own) & (idx < c[..., None]))).sum(axis=-1)
    m = min(5, k)
    return ((rank >= 1) & mass).sum(), ((rank >= m) & mass).sum()


def init_solver_state(net: Net, solver: str) -> list[list[dict[str, Any]]]:
    """Zero state per weight tensor (``{}`` until a first update, as MatConvNet's scalar 0)."""
    return [[{} for _ in ws] for ws in net.weights]


def _update(xp: Any, w: Any, g: Any, st: dict[str, Any], opts: TrainOptions, lr: float) -> Any:
    """One solver step on weight ``w`` with gradient ``g`` (decay already added)."""
    o = opts.solverOpts
    if opts.solver == "sgd":
        m = st.get("m")
        m = -g if m is None else opts.momentum * m - g
        st["m"] = m
        delta = opts.momentum * m - g if opts.nesterovUpdate else m
        return w + w.dtype.type(lr) * delta
    if opts.solver == "adam":
        m = st.get("m", 0) * o["beta1"] + (1 - o["beta1"]) * g
        v = st.get("v", 0) * o["beta2"] + (1 - o["beta2"]) * g * g
        t = st.get("t", 0) + 1
        st.update(m=m, v=v, t=t)
        alpha = lr * math.sqrt(1 - o["beta2"] ** t) / (1 - o["beta1"] ** t)
        return w - w.dtype.type(alpha) * m / (xp.sqrt(v) + w.dtype.type(o["epsilon"]))
    if opts.solver in ("adagrad", "rmsprop"):
        rho = o["rho"]
        acc = st.get("g2", 0)
        acc = rho * acc + (g * g if opts.solver == "adagrad" else (1 - rho) * g * g)
        st["g2"] = acc
        return w - w.dtype.type(lr) * g / (xp.sqrt(acc) + w.dtype.type(o["epsilon"]))
    # adadelta (ignores the learning rate, as MatConvNet's)
    rho, eps = o["rho"], o["epsilon"]
    g2 = rho * st.get("g2", 0) + (1 - rho) * g * g
    d2 = st.get("d2", 0)
    delta = -xp.sqrt((d2 + eps) / (g2 + eps)) * g
    st["g2"] = g2
    st["d2"] = rho * d2 + (1 - rho) * delta * delta
    return w + delta.astype(w.dtype)


def apply_update(net: Net, dzdw: Sequence[Sequence[Any]], state: list[list[dict[str, Any]]],
                 opts: TrainOptions, lr: float) -> None:
    """cnn_train's accumulateGradients for one batch: updates ``net.weights`` in place.

    bnorm moments (j = 2) are not a gradient step: ``M = (1 - r) M + r * moments_batch``
    with ``r = layer.learningRate[2]`` (1 without learningRate), no global rate, decay or
    momentum."""
    xp = net.backend.xp
    for i in range(len(net.layers) - 1, -1, -1):
        layer = net.layers[i]
        lrs = layer.learningRate or (1.0,) * len(net.weights[i])
        wds = layer.weightDecay or (1.0,) * len(net.weights[i])
        for j, w in enumerate(net.weights[i]):
            if w.size == 0:
                continue
            g = dzdw[i][j]
            if layer.type == "bnorm" and j == 2:
                r = lrs[2]
                net.weights[i][j] = w * w.dtype.type(1 - r) + w.dtype.type(r) * g
                continue
            decay = opts.weightDecay * wds[j]
            if opts.solver == "sgd" and not opts.nesterovUpdate:
                _sgd_in_place(net, (i, j), w, g, state[i][j], opts.momentum, decay, lr * lrs[j])
                continue
            if decay:
                g = g + w.dtype.type(decay) * w
            net.weights[i][j] = _update(xp, w, g, state[i][j], opts, lr * lrs[j])


def _sgd_in_place(net: Net, key: tuple[int, int], w: Any, g: Any, st: dict[str, Any],
                  momentum: float, decay: float, lr: float) -> None:
    """cnn_train's SGD step on ``w`` and its momentum ``st["m"]``, both updated in place:
    ``m = momentum*m - (g + decay*w)``, ``w = w + lr*m`` (the first step starts from
    ``m = 0``). One fused pass with the compiled CPU kernels, else a few in-place array
    operations on a reused scratch buffer — no fresh allocation per step either way (on
    seed320's 14M weights the allocating version took ~39 ms a step)."""
    xp = net.backend.xp
    t = w.dtype.type
    kern = net.backend.kernels
    m = st.get("m")
    if kern is not None and w.flags.c_contiguous and g.flags.c_contiguous:
        if m is None:
            m = st["m"] = xp.zeros_like(w)
        args = t(momentum), t(decay), t(lr)
        split_rows(net.backend.threads, lambda w, g, m: kern.sgd_momentum(w, g, m, *args),
                   w.reshape(-1), g.reshape(-1), m.reshape(-1))
        return
    tmp = net.workspace.empty(xp, ("sgd", key), w.shape, w.dtype)
    if decay:
        xp.multiply(w, t(decay), out=tmp)
        tmp += g
    else:
        tmp[...] = g
    if m is None:
        m = st["m"] = xp.negative(tmp)
    else:
        m *= t(momentum)
        m -= tmp
    xp.multiply(m, t(lr), out=tmp)
    w += tmp


def epoch_rng(opts: TrainOptions, epoch: int) -> np.random.Generator:
    """The generator of 1-based ``epoch``: its shuffle, then its dropout masks."""
    return np.random.default_rng([opts.randomSeed, epoch])


BatchCallback = Callable[[int, int, EpochStats], None]


class Trainer:
    """Trains ``net.weights`` in place, one epoch at a time, with resumable state."""

    def __init__(self, net: Net, opts: TrainOptions) -> None:
        self.net = net
        self.opts = opts
        self.state = init_solver_state(net, opts.solver)
        #: data parallelism (:class:`layerspec.distributed.DataParallel`) or None: every
        #: batch is cut by ``parallel.shard(batch)`` into this process's images, and
        #: ``parallel.reduce`` sums gradients and statistics over the processes
        self.parallel: Any = None

    def _scores_index(self) -> int:
        return len(self.net.layers) - 1 if self.net.layers[-1].is_loss else len(self.net.layers)

    def _errors(self, res: list[Any], labels: Any) -> tuple[float, float]:
        if self.opts.errorFunction == "none":
            return 0.0, 0.0
        scores = res[self._scores_index()].x
        if scores.ndim != 4:
            return 0.0, 0.0
        return multiclass_errors(self.net.backend.xp, scores, labels)

    def _stats(self, res: list[Any], labels: Any) -> tuple[float, float, float]:
        """(loss, top1, top5) of a batch: the one statistics read per step. On a device the
        three numbers come back in one transfer (one wait for the queued work)."""
        be = self.net.backend
        scores = res[self._scores_index()].x
        if not be.on_device or self.opts.errorFunction == "none" or scores.ndim != 4:
            loss = float(res[-1].x)
            return (loss, *self._errors(res, labels))
        xp = be.xp
        top1, top5 = error_counts(xp, scores, labels)
        vals = be.to_numpy(xp.stack([xp.asarray(v, dtype=xp.float64)
                                     for v in (res[-1].x, top1, top5)]))
        return float(vals[0]), float(vals[1]), float(vals[2])

    def train_epoch(self, epoch: int, x: np.ndarray, y: np.ndarray,
                    order: Sequence[int] | None = None,
                    on_batch: BatchCallback | None = None) -> EpochStats:
        """One training epoch (1-based ``epoch``) over ``x``/``y`` (host arrays)."""
        rng = epoch_rng(self.opts, epoch)
        idx = np.asarray(order, dtype=np.int64) if order is not None else rng.permutation(len(x))
        if math.isfinite(self.opts.epochSize):
            idx = idx[:int(self.opts.epochSize)]
        lr = self.opts.lr(epoch)
        be = self.net.backend
        acc = Accumulator()
        bs = self.opts.batchSize
        nb = math.ceil(len(idx) / bs)
        par = self.parallel
        for b in range(nb):
            batch = idx[b * bs:(b + 1) * bs]
            mine = batch if par is None else par.shard(batch)
            xb = be.asarray(x[mine], dtype=self.net.dtype)
            yh = y[mine]  # host labels: the loss layer checks them without a device read
            yb = be.asarray(yh)
            res = simplenn(self.net, xb, dzdy=1.0, labels=yh, mode="normal", rng=rng,
                           input_grad=False, conserve_memory=True, step=(epoch, b + 1))
            dzdw = [r.dzdw for r in res[:-1]]
            if par is not None:  # the global batch's gradients, mean loss and errors
                loss = float(res[-1].x)
                dzdw, loss, top1, top5 = par.reduce(dzdw, loss, *self._errors(res, yb))
            else:  # the step's statistics read (and its one wait on a device)
                loss, top1, top5 = self._stats(res, yb)
            if not math.isfinite(loss):
                raise FloatingPointError(f"the loss is {loss} at epoch {epoch}, batch {b + 1}: "
                                         f"lower the learning rate")
            del res  # its buffers go back to the net's workspace before the next step
            apply_update(self.net, dzdw, self.state, self.opts, lr)
            del dzdw
            acc.add(loss * len(batch), top1, top5, len(batch))
            if on_batch is not None:
                on_batch(b + 1, nb, acc.stats())
        return acc.stats()

    def evaluate(self, x: np.ndarray, y: np.ndarray,
                 on_batch: BatchCallback | None = None) -> EpochStats:
        """Loss and errors in mode ``test`` (dropout off), no update."""
        be = self.net.backend
        acc = Accumulator()
        bs = self.opts.batchSize
        nb = math.ceil(len(x) / bs)
        par = self.parallel
        for b in range(nb):
            lo, hi = b * bs, min((b + 1) * bs, len(x))
            mine = slice(lo, hi) if par is None else par.shard(np.arange(lo, hi))
            xb = be.asarray(x[mine], dtype=self.net.dtype)
            yh = y[mine]
            yb = be.asarray(yh)
            res = simplenn(self.net, xb, labels=yh, mode="test")
            n = hi - lo
            if self.net.layers[-1].is_loss:
                loss, top1, top5 = self._stats(res, yb)
            else:
                loss, (top1, top5) = 0.0, self._errors(res, yb)
            if par is not None:
                loss, top1, top5 = par.reduce_stats(loss, top1, top5)
            acc.add(loss * n, top1, top5, n)
            if on_batch is not None:
                on_batch(b + 1, nb, acc.stats())
        return acc.stats()

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Solver state as host arrays keyed ``s<i>_<j>_<name>`` (for checkpoints)."""
        out = {}
        for i, layer_state in enumerate(self.state):
            for j, st in enumerate(layer_state):
                for k, v in st.items():
                    out[f"s{i}_{j}_{k}"] = self.net.backend.to_numpy(v) if k != "t" else \
                        np.asarray(v)
        return out

    def load_state_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.state = init_solver_state(self.net, self.opts.solver)
        for key, v in arrays.items():
            if not key.startswith("s"):
                continue
            i, j, k = key[1:].split("_", 2)
            self.state[int(i)][int(j)][k] = int(v) if k == "t" else self.net.backend.asarray(v)


def _split_data(data: Any) -> tuple[np.ndarray, np.ndarray]:
    if data is None:
        return None, None
    x, y = data
    return np.asarray(x), np.asarray(y)


def train(net: Net, data: tuple[Any, Any], val: tuple[Any, Any] | None = None,
          order: Sequence[Sequence[int]] | None = None, **options: Any) -> list[dict[str, Any]]:
    """Train ``net.weights`` in place with cnn_train's rules; return per-epoch statistics.

    ``data``/``val`` are ``(x, y)``: x ``(N, H, W, C)`` float32, y 0-based labels. ``order``
    (one list of training indices per epoch) replays a recorded run. Options are cnn_train's
    names (``numEpochs``, ``batchSize``, ``learningRate``, ``momentum``, ``weightDecay``,
    ``solver``, ...); missing ones come from the spec's ``train:`` section, then cnn_train's
    defaults.
    """
    opts = TrainOptions.resolve(net, **options)
    if order is not None and len(order) < opts.numEpochs:
        opts = replace(opts, numEpochs=len(order))
    trainer = Trainer(net, opts)
    x, y = _split_data(data)
    xv, yv = _split_data(val)
    stats = []
    for epoch in range(1, opts.numEpochs + 1):
        tr = trainer.train_epoch(epoch, x, y, None if order is None else order[epoch - 1])
        entry: dict[str, Any] = {"epoch": epoch, "train": tr.as_dict()}
        if xv is not None:
            entry["val"] = trainer.evaluate(xv, yv).as_dict()
        stats.append(entry)
    return stats
