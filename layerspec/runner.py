"""``layerspec run`` and ``layerspec eval``: train a spec on its data with cnn_train's rules,
with checkpoints, resume, progress and curves; evaluate a checkpoint on the test split.

A run writes into its output folder (default ``runs/<name>/``, relative to the current folder):

* ``net-epoch-N.npz`` after every epoch (:mod:`layerspec.checkpoint`; written atomically);
* ``stats.json`` -- a list, one entry per epoch: ``{"epoch": N, "train": {...}, "val": {...}}``
  with ``objective``, ``top1err``, ``top5err``, ``num`` and ``time`` (``val`` is null when the
  data has no test split); written atomically;
* ``curves.png`` -- objective and top-1 error of train and val against the epoch (matplotlib,
  drawn off-screen with the Agg renderer; skipped with a note when matplotlib is missing),
  redrawn after an epoch when 10 s passed since the last drawing, and after the last epoch.

A run resumes from the newest complete checkpoint in the folder unless ``fresh`` (which deletes
the folder's old checkpoints first). Epoch e's shuffle and dropout masks derive from
``(randomSeed, e)`` and the solver state is checkpointed, so an interrupted and resumed run ends
with the same weights, bit for bit, as an uninterrupted one. A checkpoint of a different spec
(another :meth:`Spec.digest`) or another ``randomSeed`` is refused.

Progress: on a terminal (stderr is a tty) a tqdm bar per pass with objective, top-1 error and
images/s; otherwise one line every 5 seconds (``LAYERSPEC_PROGRESS_INTERVAL`` seconds when set)
on stdout. Every epoch prints one line, and the last line summarises the run.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shlex
import sys
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .checkpoint import (
    Checkpoint,
    CheckpointWriteError,
    atomic_open,
    find_latest,
    is_checkpoint,
    list_checkpoints,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    write_text_atomic,
)
from .data import Dataset, load_spec_data, locate_data_error
from .errors import CheckpointError, DataError, SpecError
from .net import Net, read_weights, resolve_weights
from .simplenn import simplenn
from .spec import Spec, spec_from_source
from .train import Accumulator, EpochStats, Trainer, TrainOptions, multiclass_errors

PROGRESS_INTERVAL = 5.0
PROGRESS_MODES = ("auto", "bar", "lines", "off")
#: curves.png is redrawn after an epoch when this many seconds passed since the last drawing
#: (and always after the last epoch)
PLOT_INTERVAL = 10.0


class RunError(RuntimeError):
    """A run stopped by a runtime failure (a non-finite loss, a file that cannot be written).
    The message says what happened and which checkpoint is intact (exit status 1)."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, after the run has said how to resume."""


@dataclass
class RunResult:
    """What :func:`run` did."""

    out_dir: Path
    stats: list[dict[str, Any]]
    start_epoch: int                 # epochs already done when the run started (resumed)
    end_epoch: int                   # epochs done when it ended
    net: Net
    dataset: Dataset
    resumed_from: Path | None = None
    checkpoint: Path | None = None   # the newest checkpoint written or resumed from
    wall_time: float = 0.0

    @property
    def final(self) -> dict[str, Any] | None:
        return self.stats[-1] if self.stats else None


# --------------------------------------------------------------------------------------------
# progress


def _interval() -> float:
    text = os.environ.get("LAYERSPEC_PROGRESS_INTERVAL")
    if text:
        try:
            return max(0.0, float(text))
        except ValueError:
            pass
    return PROGRESS_INTERVAL


def _rate(images_per_s: float) -> str:
    r = images_per_s
    return f"{r:,.0f}" if r >= 100 else f"{r:.1f}" if r >= 1 else f"{r:.2f}"


def _fmt_stats(st: Mapping[str, Any]) -> str:
    return (f"objective {st['objective']:.4f} top1err {st['top1err']:.4f} "
            f"top5err {st['top5err']:.4f}")


class Progress:
    """Per-batch progress (a tqdm bar, or a line every few seconds) and per-epoch lines."""

    def __init__(self, mode: str | None, num_epochs: int, out: TextIO | None = None,
                 err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.num_epochs = num_epochs
        self._bar: Any = None
        self._label = ""
        self._last = 0.0
        mode = mode or "auto"
        if mode not in PROGRESS_MODES:
            raise ValueError(f"progress must be one of {PROGRESS_MODES}, got {mode!r}")
        self._tqdm: Any = None
        if mode in ("auto", "bar"):
            tty = bool(getattr(self.err, "isatty", lambda: False)())
            if mode == "bar" or tty:
                try:
                    from tqdm import tqdm  # noqa: PLC0415
                except ImportError:
                    if tty:
                        self.say("note: tqdm is not installed; showing progress as lines "
                                 "(pip install tqdm for a bar)")
                    mode = "lines"
                else:
                    self._tqdm = tqdm
                    mode = "bar"
            else:
                mode = "lines"
        self.mode = mode
        self.interval = _interval()

    def say(self, text: str) -> None:
        if self._bar is not None:
            self._bar.clear()
        print(text, file=self.out, flush=True)

    def start(self, epoch: int, kind: str, label: str | None = None) -> None:
        self.close()
        self._label = label or f"epoch {epoch}/{self.num_epochs} {kind}"
        self._last = time.perf_counter()

    def on_batch(self, b: int, nb: int, st: EpochStats) -> None:
        rate = st.num / st.time if st.time > 0 else 0.0
        if self.mode == "bar":
            if self._bar is None:
                self._bar = self._tqdm(total=nb, desc=self._label, unit="batch", leave=False,
                                       file=self.err, dynamic_ncols=True)
            self._bar.set_postfix_str(f"objective {st.objective:.4f} top1err {st.top1err:.4f} "
                                      f"{_rate(rate)} img/s", refresh=False)
            self._bar.update(b - self._bar.n)
        elif self.mode == "lines":
            now = time.perf_counter()
            if now - self._last >= self.interval:
                self._last = now
                print(f"  {self._label}: batch {b}/{nb} objective {st.objective:.4f} "
                      f"top1err {st.top1err:.4f} ({_rate(rate)} img/s)", file=self.out,
                      flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def epoch_line(self, entry: Mapping[str, Any]) -> None:
        tr, val = entry["train"], entry.get("val")
        rate = tr["num"] / tr["time"] if tr["time"] > 0 else 0.0
        text = f"epoch {entry['epoch']}/{self.num_epochs}: train {_fmt_stats(tr)}"
        if val is not None:
            text += f" | val {_fmt_stats(val)}"
        secs = tr["time"] + (val["time"] if val is not None else 0.0)
        self.close()
        self.say(f"{text} ({_duration(secs)}, {_rate(rate)} img/s)")


# --------------------------------------------------------------------------------------------
# curves


def plot_curves(stats: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> bool:
    """Write objective and top-1 error of train and val against the epoch as a PNG.

    Uses matplotlib's object API (no pyplot, no display: the Agg renderer). Returns False when
    matplotlib is not installed."""
    try:
        from matplotlib.figure import Figure  # noqa: PLC0415
        from matplotlib.ticker import MaxNLocator  # noqa: PLC0415
    except ImportError:
        return False
    fig = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key, label in ((axes[0], "objective", "objective"),
                           (axes[1], "top1err", "top-1 error")):
        for part, style in (("train", "o-"), ("val", "s--")):
            pts = [(s["epoch"], s[part][key]) for s in stats if s.get(part) is not None]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, style, label=part, markersize=4)
        ax.set_xlabel("epoch")
        ax.set_title(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    with atomic_open(path, "plot") as f:
        fig.savefig(f, format="png")
    return True


# --------------------------------------------------------------------------------------------
# run


def resume_command(spec_path: str | Path, *, backend: str = "numpy", epochs: int | None = None,
                   out: str | Path | None = None, seed: int | None = None,
                   defines: Mapping[str, Any] | None = None) -> str:
    """The ``layerspec run`` command line that continues a run (never ``--fresh``)."""
    parts = ["layerspec", "run", str(spec_path)]
    if backend != "auto":
        parts += ["--backend", str(backend)]
    if epochs is not None:
        parts += ["--epochs", str(epochs)]
    if out is not None:
        parts += ["--out", str(out)]
    if seed is not None:
        parts += ["--seed", str(seed)]
    for k, v in (defines or {}).items():
        parts += ["--define", f"{k}={v}"]
    return shlex.join(parts)


def _check_labels(net: Net, shape: tuple[int, int, int], ds: Dataset) -> None:
    """A softmaxloss net must give at least as many scores as the data has classes."""
    last = net.layers[-1]
    if last.type != "softmaxloss":
        return
    infos = net.info(shape)
    k = infos[-2].out_shape[2] if len(infos) >= 2 else shape[2]
    labels = [y for y in (ds.y_train, ds.y_test) if y.size]
    top = max(int(y.max()) for y in labels) if labels else -1
    if top >= k:
        n = ds.num_classes or top + 1
        raise locate_data_error(DataError(
            f"data: {ds.name} has {n} classes (labels up to {top}) but the network gives {k} "
            f"class scores before '{last.name}'"), net.spec)


def _quiet_fp() -> Any:
    """No NumPy overflow warnings: a non-finite loss is reported once, by epoch and batch."""
    return np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore")


def _remove_old(out_dir: Path) -> int:
    n = 0
    for _, p in list_checkpoints(out_dir):
        p.unlink()
        n += 1
    return n


def run(spec_path: str | Path, *, backend: str = "numpy", epochs: int | None = None,
        out: str | Path | None = None, seed: int | None = None, fresh: bool = False,
        defines: Mapping[str, Any] | None = None, progress: str | None = None,
        stdout: TextIO | None = None, stderr: TextIO | None = None,
        world: Any = None) -> RunResult:
    """Train the spec at ``spec_path`` on its data (``layerspec run``); see the module doc.

    ``epochs`` overrides ``numEpochs``; ``seed`` sets the weight-initialisation seed and
    cnn_train's ``randomSeed``; ``defines`` bind names for the initializers; ``progress`` is
    ``auto`` (bar on a terminal, else lines), ``bar``, ``lines`` or ``off``.

    Raises SpecError (input errors, a checkpoint of another spec), RunError (a non-finite
    loss, a file that cannot be written) and RunInterrupted, a KeyboardInterrupt (after
    printing how to resume).

    ``world`` (a :class:`layerspec.distributed.World`) trains data-parallel over its ranks:
    rank 0 finds the checkpoint, prints and writes the files; see :mod:`layerspec.distributed`.
    """
    t0 = time.perf_counter()
    root = world is None or world.rank == 0
    if not root:  # only rank 0 prints
        stdout = stderr = open(os.devnull, "w")
        progress = "off"
    out_stream = stdout or sys.stdout
    err_stream = stderr or sys.stderr
    defines = dict(defines or {})
    spec, embedded = spec_from_source(spec_path)
    ds = load_spec_data(spec)
    out_dir = Path(out) if out is not None else Path("runs") / spec.name
    if out_dir.exists() and not out_dir.is_dir():
        raise SpecError(f"--out '{out_dir}' is a file, not a folder")

    def find_state() -> tuple[Checkpoint | None, list[str]]:
        ckpt: Checkpoint | None = None
        notes: list[str] = []
        stale = remove_stale_temporaries(out_dir)
        if stale:
            notes.append(f"note: removed {len(stale)} temporary file"
                         f"{'s' if len(stale) > 1 else ''} left by an interrupted write")
        if fresh:
            n = _remove_old(out_dir)
            if n:
                notes.append(f"--fresh: removed {n} old checkpoint{'s' if n > 1 else ''} "
                             f"from {out_dir}")
        else:
            ckpt, skipped = find_latest(out_dir)
            for path, why in skipped:
                notes.append(f"note: skipping {path}: {why}")
            if ckpt is not None and ckpt.spec_digest != spec.digest():
                raise CheckpointError(
                    f"{ckpt.path} was written by a different spec (digest {ckpt.spec_digest}, "
                    f"'{spec_path}' now has {spec.digest()}); refusing to resume. Use --fresh "
                    f"to start over in {out_dir}, or --out DIR for a new folder")
        return ckpt, notes

    # distributed: rank 0 alone looks at the folder and sends what it found to the others
    ckpt, notes = (find_state() if world is None
                   else world.from_root(find_state, "reading the checkpoint"))

    init_seed = spec.seed if seed is None else seed
    # a checkpoint's arrays are net.weights as saved (canonical layout): used as they are
    weights = (ckpt.weights(spec) if ckpt is not None
               else resolve_weights(spec, embedded, None, init_seed, defines))
    if world is not None:
        world.use_device(backend)
    net = Net(spec, weights, backend, init_seed)
    shape = spec.input or ds.image_shape
    net.info(shape)
    _check_labels(net, shape, ds)
    opts = TrainOptions.resolve(net, numEpochs=epochs, randomSeed=seed)
    if ckpt is not None and ckpt.random_seed is not None and ckpt.random_seed != opts.randomSeed:
        raise CheckpointError(
            f"{ckpt.path} was trained with randomSeed {ckpt.random_seed} but this run uses "
            f"{opts.randomSeed}; pass --seed {ckpt.random_seed} to resume it exactly, or "
            f"--fresh to start over")
    trainer = Trainer(net, opts)
    stats: list[dict[str, Any]] = []
    start = 0
    if ckpt is not None:
        trainer.load_state_arrays(ckpt.state)
        stats = [s for s in ckpt.stats if int(s.get("epoch", 0)) <= ckpt.epoch]
        start = ckpt.epoch
    par = None
    if world is not None:
        from .distributed import attach  # noqa: PLC0415

        par = attach(world, trainer)
        par.verify(trainer)  # all ranks start from rank 0's state
    n_epochs = opts.numEpochs

    prog = Progress(progress, n_epochs, out_stream, err_stream)
    for note in notes:
        prog.say(note)
    params = sum(int(w.size) for ws in net.weights for w in ws)
    prog.say(f"{spec.name}: {len(spec.layers)} layers, {params:,} parameters, "
             f"{net.backend.describe()}; data: {ds.description}; batch {opts.batchSize}, "
             f"{n_epochs} epoch{'s' if n_epochs != 1 else ''} -> {out_dir}/")
    if par is not None:
        prog.say(f"{world.describe()}; {par.bytes_per_step:,} bytes per step summed by "
                 f"{world.transport} Allreduce")
    if ckpt is not None:
        prog.say(f"resuming from {ckpt.path} (epoch {ckpt.epoch} of {n_epochs} done)")
    result = RunResult(out_dir, stats, start, start, net, ds,
                       resumed_from=ckpt.path if ckpt is not None else None,
                       checkpoint=ckpt.path if ckpt is not None else None)
    if start >= n_epochs:
        prog.say(f"{out_dir}: {start} epochs already trained; nothing to do (--epochs N trains "
                 f"longer, --fresh starts over)")
    else:
        if root:
            out_dir.mkdir(parents=True, exist_ok=True)
        has_val = len(ds.x_test) > 0
        if not has_val:
            prog.say("note: the data has no test split; no validation")
        cmd = resume_command(spec_path, backend=backend, epochs=epochs, out=out, seed=seed,
                             defines=defines)
        if world is not None:
            cmd = f"mpiexec -n {world.size} {cmd}"
        plot_note = True
        last_plot = -math.inf
        epoch = start + 1
        try:
            for epoch in range(start + 1, n_epochs + 1):
                prog.start(epoch, "train")
                try:
                    with _quiet_fp():
                        tr = trainer.train_epoch(epoch, ds.x_train, ds.y_train,
                                                 on_batch=prog.on_batch)
                except FloatingPointError as exc:
                    prog.close()
                    last = (f"the last good checkpoint {result.checkpoint} is intact"
                            if result.checkpoint is not None else "no checkpoint was written")
                    raise RunError(f"{exc}; the run stopped and {last}") from None
                if par is not None and not par.verify(trainer):
                    prog.say("note: the ranks' weights had drifted apart; all now use rank 0's")
                val: EpochStats | None = None
                if has_val:
                    prog.start(epoch, "val")
                    with _quiet_fp():
                        val = trainer.evaluate(ds.x_test, ds.y_test, on_batch=prog.on_batch)
                prog.close()
                entry = {"epoch": epoch, "train": tr.as_dict(),
                         "val": val.as_dict() if val is not None else None}
                stats.append(entry)

                def save(epoch: int = epoch) -> Path:
                    path = save_checkpoint(out_dir, net, trainer, epoch, stats)
                    result.checkpoint, result.end_epoch = path, epoch
                    write_text_atomic(out_dir / "stats.json",
                                      json.dumps(stats, indent=1) + "\n", "stats")
                    return path

                try:
                    # distributed: rank 0 writes and tells the others whether it succeeded
                    result.checkpoint = (save() if world is None
                                         else world.from_root(save, "saving the checkpoint"))
                    result.end_epoch = epoch
                except CheckpointWriteError as exc:
                    prev = result.checkpoint
                    keep = (f"{prev} is intact" if prev is not None
                            else "no checkpoint was written")
                    cause = exc.__cause__
                    full = getattr(cause, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
                    fix = "free some space and resume" if full else "resume"
                    raise RunError(f"{exc}; the run stopped at epoch {epoch}: {keep}; {fix} "
                                   f"with: {cmd}") from None
                prog.epoch_line(entry)
                if epoch < n_epochs and time.perf_counter() - last_plot < PLOT_INTERVAL:
                    continue  # short epochs: redraw at most every PLOT_INTERVAL seconds
                if not root:
                    continue
                last_plot = time.perf_counter()
                try:
                    drawn = plot_curves(stats, out_dir / "curves.png", spec.name)
                except Exception as exc:  # a plot must never stop a run
                    drawn = True
                    prog.say(f"note: could not draw {out_dir / 'curves.png'}: {exc}")
                if not drawn and plot_note:
                    plot_note = False
                    prog.say("note: matplotlib is not installed; skipping curves.png "
                             "(pip install matplotlib)")
        except KeyboardInterrupt:
            prog.close()
            where = (f"the last complete checkpoint is {result.checkpoint}"
                     if result.checkpoint is not None else "no checkpoint was written yet")
            when = "after" if result.end_epoch >= epoch else "during"
            print(f"\ninterrupted {when} epoch {epoch}; {where}. Resume with:\n  {cmd}",
                  file=err_stream, flush=True)
            raise RunInterrupted from None
    result.wall_time = time.perf_counter() - t0
    prog.say(summary_line(result))
    return result


def _duration(secs: float) -> str:
    if secs < 10:
        return f"{secs:.2f} s"
    if secs < 120:
        return f"{secs:.1f} s"
    m, s = divmod(round(secs), 60)
    return f"{m} min {s} s" if m < 60 else f"{m // 60} h {m % 60} min"


def summary_line(result: RunResult) -> str:
    """The last line of a run: epochs, final accuracy, wall time, output folder."""
    final = result.final
    if result.end_epoch > result.start_epoch:
        first, last = result.start_epoch + 1, result.end_epoch
        if not result.start_epoch:
            done = f"trained {last} epoch{'s' if last != 1 else ''}"
        elif first == last:
            done = f"trained epoch {last} of {last}"
        else:
            done = f"trained epochs {first}-{last} of {last}"
    else:
        done = f"{result.end_epoch} epochs already trained"
    text = f"done: {result.net.name}: {done} in {_duration(result.wall_time)}"
    if final is not None:
        part = "val" if final.get("val") is not None else "train"
        err = final[part]["top1err"]
        text += f"; final {part} top1err {err:.4f} (accuracy {100 * (1 - err):.2f}%)"
    return text + f"; output in {result.out_dir}/"


# --------------------------------------------------------------------------------------------
# eval


@dataclass
class ClassAccuracy:
    """One row of the per-class table: labelled positions of the class and how many of them
    the network's top-1 prediction gets right."""

    index: int
    name: str
    count: int = 0
    correct: int = 0

    @property
    def accuracy(self) -> float:
        return self.correct / self.count if self.count else math.nan


def _scores_index(net: Net) -> int:
    return len(net.layers) - 1 if net.layers[-1].is_loss else len(net.layers)


def evaluate_classes(net: Net, x: np.ndarray, y: np.ndarray, batch_size: int = 256,
                     classes: Sequence[str] | None = None, on_batch: Any = None,
                     ) -> tuple[EpochStats, list[ClassAccuracy]]:
    """Loss, top-1/top-5 errors (mode ``test``) and per-class top-1 accuracy of ``net`` on
    ``x``/``y`` (labels ``(N,)`` or ``(N, H', W')``, ``-1`` ignored)."""
    be = net.backend
    xp = be.xp
    acc = Accumulator()
    counts: np.ndarray = np.zeros(0, dtype=np.int64)
    correct: np.ndarray = np.zeros(0, dtype=np.int64)
    idx = _scores_index(net)
    nb = math.ceil(len(x) / batch_size)
    for b in range(nb):
        sl = slice(b * batch_size, (b + 1) * batch_size)
        xb = be.asarray(x[sl], dtype=net.dtype)
        yb = be.asarray(y[sl])
        res = simplenn(net, xb, labels=yb, mode="test")
        scores = res[idx].x
        n = len(xb)
        loss = float(res[-1].x) * n if net.layers[-1].is_loss else 0.0
        top1 = top5 = 0.0
        if scores.ndim == 4:
            top1, top5 = multiclass_errors(xp, scores, yb)
            k = scores.shape[-1]
            pred = be.to_numpy(scores.argmax(axis=-1))
            lab = np.asarray(y[sl])
            if lab.ndim == 1:
                lab = np.broadcast_to(lab.reshape(n, 1, 1), pred.shape)
            mask = lab >= 0
            size = max(k, int(lab.max()) + 1 if mask.any() else 0, len(counts))
            counts = np.pad(counts, (0, size - len(counts)))
            correct = np.pad(correct, (0, size - len(correct)))
            counts += np.bincount(lab[mask], minlength=size)
            correct += np.bincount(lab[mask & (pred == lab)], minlength=size)
        acc.add(loss, top1, top5, n)
        if on_batch is not None:
            on_batch(b + 1, nb, acc.stats())
    names = list(classes or ())
    rows = [ClassAccuracy(i, names[i] if i < len(names) else str(i), int(counts[i]),
                          int(correct[i])) for i in range(len(counts))]
    return acc.stats(), rows


def class_table(rows: Sequence[ClassAccuracy]) -> str:
    """The per-class accuracy table as text."""
    width = max([len("class")] + [len(f"{r.index} {r.name}") for r in rows])
    lines = [f"{'class':<{width}}  {'images':>8}  {'correct':>8}  {'accuracy':>8}"]
    for r in rows:
        acc = "-" if r.count == 0 else f"{100 * r.accuracy:.1f}%"
        label = r.name if r.name == str(r.index) else f"{r.index} {r.name}"
        lines.append(f"{label:<{width}}  {r.count:>8,}  {r.correct:>8,}  {acc:>8}")
    return "\n".join(lines)


@dataclass
class EvalResult:
    net: Net
    dataset: Dataset
    stats: EpochStats
    classes: list[ClassAccuracy]
    origin: str = ""            # what was evaluated (a checkpoint, a spec and weights)
    notes: list[str] = field(default_factory=list)

    def report(self) -> str:
        st = self.stats
        lines = [f"{self.net.name} ({self.origin}): {st.num:,} test images of "
                 f"{self.dataset.description}",
                 f"objective {st.objective:.4f}  top-1 error {st.top1err:.4f} "
                 f"(accuracy {100 * (1 - st.top1err):.2f}%)  top-5 error {st.top5err:.4f}",
                 "",
                 class_table(self.classes)]
        return "\n".join(lines)


def _net_for_eval(source: str | Path, weights: str | Path | None, backend: str,
                  defines: Mapping[str, Any] | None) -> tuple[Net, str, list[str]]:
    source = Path(source)
    notes: list[str] = []
    ckpt: Checkpoint | None = None
    if source.is_dir():
        ckpt, _ = find_latest(source)
        if ckpt is None:
            raise CheckpointError(f"'{source}' holds no complete checkpoint (net-epoch-N.npz)")
    elif source.suffix.lower() == ".npz":
        if source.is_file() and zipfile.is_zipfile(source) and not is_checkpoint(source):
            raise SpecError(f"'{source}' holds weights but no spec; give the spec: layerspec "
                            f"eval SPEC --weights {source}")
        ckpt = load_checkpoint(source)
    if ckpt is not None:
        spec = ckpt.spec()
        origin = f"{ckpt.path}, epoch {ckpt.epoch}"
        if weights is None:
            return Net(spec, ckpt.weights(spec), backend), origin, notes
        embedded = None
    else:
        spec, embedded = spec_from_source(source, weights_supplied=weights is not None)
        origin = str(source)
    if weights is not None:
        wpath = Path(weights)
        if is_checkpoint(wpath):
            wck = load_checkpoint(wpath)
            if wck.spec_digest != spec.digest():
                notes.append(f"note: {wpath} was trained from a different spec (digest "
                             f"{wck.spec_digest}, this spec {spec.digest()})")
            ws = wck.weights(spec)
            origin = f"{wpath}, epoch {wck.epoch}"
        else:
            ws = read_weights(wpath, spec)
            origin = str(wpath)
    else:
        ws = resolve_weights(spec, embedded, None, spec.seed, defines)
        if embedded is None and spec.weights is None:
            notes.append("note: no --weights given: evaluating the spec's initial weights")
    return Net(spec, ws, backend), origin, notes


def evaluate(source: str | Path, *, weights: str | Path | None = None, backend: str = "numpy",
             defines: Mapping[str, Any] | None = None, progress: str | None = None,
             ) -> EvalResult:
    """Evaluate on the test split of the spec's data (``layerspec eval``).

    ``source`` is a spec file, a checkpoint (its embedded spec and weights) or a run folder
    (its newest complete checkpoint); ``weights`` a checkpoint or weights ``.npz`` to use
    instead."""
    net, origin, notes = _net_for_eval(source, weights, backend, defines)
    spec: Spec = net.spec
    ds = load_spec_data(spec)
    if len(ds.x_test) == 0:
        raise DataError(f"data: {ds.name} has no test split to evaluate on")
    shape = spec.input or ds.image_shape
    net.info(shape)
    _check_labels(net, shape, ds)
    opts = TrainOptions.resolve(net)
    classes = ds.classes or tuple(str(c) for c in spec.meta.get("classes", ()))
    prog = Progress(progress if progress is not None else "auto", 1, sys.stderr, sys.stderr)
    if prog.mode == "lines" and progress is None:
        prog.mode = "off"
    prog.start(1, "eval", label="eval")
    try:
        with _quiet_fp():
            stats, rows = evaluate_classes(net, ds.x_test, ds.y_test, opts.batchSize,
                                           classes, on_batch=prog.on_batch)
    finally:
        prog.close()
    return EvalResult(net, ds, stats, rows, origin, notes)
