"""Synchronous data-parallel training over MPI (mpi4py), with NCCL for CuPy gradients.

Launch K identical processes the way HPC jobs are launched::

    mpiexec -n 4 layerspec run spec.yaml        # detected from the launcher's environment
    layerspec run spec.yaml --distributed       # force it (a singleton MPI run without mpiexec)

Every rank loads the spec and the data itself (the files must be readable on every host).
Rank 0 finds the checkpoint to resume from (or initialises the weights) and broadcasts
weights, solver state and statistics, so all ranks start from the same state whatever the
number of ranks that wrote the checkpoint; the ranks also check that they run the same spec
(:meth:`Spec.digest`).

**One step.** Every rank draws the same shuffle from the epoch generator ``(randomSeed, e)``
and cuts the same global batches of ``batchSize`` images. Rank r of K takes the contiguous
slice ``[r*n//K, (r+1)*n//K)`` of a batch of n images (a ragged last batch included). The
loss divides by the *local* batch size (MatConvNet master: ``/N``), so each rank multiplies
its gradients by ``n_local / n`` before the sum: the summed gradient is then the gradient of
the global batch's mean loss, the one a single process computes for the same ``batchSize``.
All gradients, then the batch's loss and error counts, travel in **one flat buffer per step**
(``Allreduce(SUM)``: MPI for NumPy, NCCL for CuPy when ``cupy.cuda.nccl`` works on every
rank, else MPI through host memory); then every rank applies the identical cnn_train update
(:func:`layerspec.train.apply_update`), so the replicas stay equal without sending weights.
A rank with nothing to do (a last batch with fewer images than ranks) computes on the batch's
first image with weight 0, so that it draws the same random numbers as the others.

**Random numbers.** A dropout (or LSTM) mask of a batch is drawn for the *whole global batch*
on every rank, from the same generator as in a single process, and each rank keeps its
images' rows (:class:`ShardBackend`). The masks are therefore those of a one-process run with
the same ``batchSize``, bit for bit, whatever the number of ranks (each rank pays for drawing
the full batch's masks, a small cost next to the convolutions); so results do not depend on
the number of ranks beyond float summation order, and ``mpiexec -n 1`` gives exactly the
weights of a plain run.

**Batch normalisation** uses each rank's local batch statistics in training (MatConvNet's
behaviour on several GPUs); the running moments are updated with the image-weighted mean of
the ranks' batch moments (the mean exactly, the deviation as the mean of the ranks'
deviations). So a net with ``bnorm`` trained on K ranks differs from a one-process run.

**Files.** Rank 0 alone writes checkpoints, ``stats.json`` and ``curves.png`` (atomically, as
a single process does) and prints progress; it tells the other ranks whether the write
succeeded, so a failed write stops every rank with the last checkpoint intact. A checkpoint
does not record the number of ranks: a run resumes with any number. After every epoch the
ranks compare a checksum of their weights; replicas that drifted apart (they should not) are
reset to rank 0's weights with a note.

**Failures.** An error raised on every rank (a spec error, a non-finite loss, a failed
checkpoint write) is printed once, by rank 0, and every rank exits with its status. An
error on one rank only (an exception, Ctrl-C on that rank) makes that rank print a line
naming itself (``rank r of K (pid, host)``) and call ``MPI_Abort``, which ends the job — no
hang. A rank killed outright (a signal, the OOM killer) is seen by ``mpiexec``, which stops the
job at once (MPICH's names the pid, which the start-up line maps to a rank; Open MPI's
names the rank). A watchdog thread covers the rest: while a rank waits in a collective it
aborts the job with a message naming the peer when a rank on the same machine (and pid
namespace) is gone, and after ``LAYERSPEC_DIST_TIMEOUT`` seconds (default 900) without an
answer (a rank that hangs, or died on another machine without the launcher noticing).
``LAYERSPEC_DIST_GRACE`` (default 10 s) is how long a failing rank waits to learn whether
the others failed too before it aborts the job.

Install: ``pip install 'layerspec[mpi]'`` (mpi4py; it uses the system's MPI library). For a
single machine without an MPI installation, ``pip install mpich mpi4py`` brings ``mpiexec``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
import traceback
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backend import Backend
from .errors import SpecError

#: environment variables that MPI launchers set (Open MPI, MPICH/Hydra, Intel MPI, PMIx)
LAUNCHER_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS",
                      "MV2_COMM_WORLD_SIZE")
LAUNCHER_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")
DEFAULT_TIMEOUT = 900.0
DEFAULT_GRACE = 10.0
INSTALL_HINT = ("pip install 'layerspec[mpi]' (mpi4py, which uses the system's MPI), or for one "
                "machine without MPI: pip install mpich mpi4py")


def launched_by_mpi(environ: dict[str, str] | None = None) -> bool:
    """Whether this process was started by an MPI launcher (mpiexec, mpirun, srun with PMI)."""
    env = os.environ if environ is None else environ
    return any(v in env for v in LAUNCHER_SIZE_VARS + LAUNCHER_RANK_VARS)


def _launcher_size(environ: dict[str, str] | None = None) -> int | None:
    env = os.environ if environ is None else environ
    for v in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE"):
        try:
            return int(env[v])
        except (KeyError, ValueError):
            continue
    return None


def _env_float(name: str, default: float) -> float:
    try:
        return max(0.1, float(os.environ[name]))
    except (KeyError, ValueError):
        return default


def _machine() -> tuple[str, str]:
    """(this machine's boot id, its boot id and pid namespace): ranks with the same first part
    share a machine (its GPUs), with the same second part they can see each other's pids."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = socket.gethostname()
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        ns = socket.gethostname()
    return boot, f"{boot}/{ns}"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` (on this host) exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[-1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class PeerError(Exception):
    """Raised on the other ranks when rank 0 failed in a step that it alone performs (finding
    the checkpoint, writing files); rank 0 prints the message, the others exit quietly."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def describe_error(exc: BaseException) -> tuple[int, str]:
    """Exit status and the one-line message the command line prints for ``exc``."""
    from .runner import RunError, RunInterrupted  # noqa: PLC0415

    if isinstance(exc, PeerError):
        return exc.code, exc.text
    if isinstance(exc, SpecError):
        return 2, str(exc)
    if isinstance(exc, RunError):
        return 1, f"error: {exc}"
    if isinstance(exc, RunInterrupted):
        return 130, ""          # the runner has said how to resume
    if isinstance(exc, KeyboardInterrupt):
        return 130, "interrupted"
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else 1
        return code, "" if code == 0 else f"exit {exc.code}"
    return 1, (f"error: {type(exc).__name__}: {exc} (set LAYERSPEC_DEBUG=1 for a traceback)")


# --------------------------------------------------------------------------------------------
# the process group


class World:
    """The ranks of one job: rank, size, host and pid of each, and the collectives layerspec
    uses (each under the watchdog)."""

    def __init__(self, comm: Any, mpi: Any) -> None:
        self.MPI = mpi
        self.comm = comm
        self.rank = int(comm.Get_rank())
        self.size = int(comm.Get_size())
        self.host = socket.gethostname()
        self.pid = os.getpid()
        # a second communicator for agreeing on failures: never mixed with the training
        # collectives, so a failing rank can wait on it while the others sit in an Allreduce
        self.fail_comm = comm.Dup()
        machine, pid_space = _machine()
        info = comm.allgather((self.host, self.pid, machine, pid_space))
        self.hosts = [i[0] for i in info]
        self.pids = [int(i[1]) for i in info]
        self.local_rank = sum(1 for r in range(self.rank) if info[r][2] == machine)
        #: ranks whose pids this rank can watch (same machine and pid namespace)
        self.watchable = [r for r in range(self.size) if r != self.rank and
                          info[r][3] == pid_space]
        self.timeout = _env_float("LAYERSPEC_DIST_TIMEOUT", DEFAULT_TIMEOUT)
        self.grace = _env_float("LAYERSPEC_DIST_GRACE", DEFAULT_GRACE)
        self.transport = "MPI"
        self._busy: tuple[str, float] | None = None
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._watchdog, name="layerspec-watchdog",
                                       daemon=True)
        self._watch.start()

    # ----- reporting ------------------------------------------------------------------------
    def who(self, rank: int | None = None) -> str:
        r = self.rank if rank is None else rank
        return f"rank {r} of {self.size} (pid {self.pids[r]} on {self.hosts[r]})"

    def describe(self) -> str:
        """The start-up line: ranks, pids and hosts (mpiexec reports a killed rank by pid)."""
        ranks = ", ".join(f"rank {r} pid {p} on {h}"
                          for r, (h, p) in enumerate(zip(self.hosts, self.pids, strict=True)))
        return f"distributed: {self.size} rank{'s' if self.size != 1 else ''} ({ranks})"

    def abort(self, text: str, code: int = 1) -> None:
        """Print ``text`` and end the whole job (``MPI_Abort``)."""
        with contextlib.suppress(Exception):
            os.write(2, (text.rstrip("\n") + "\n").encode("utf-8", "replace"))
        try:
            self.comm.Abort(code or 1)
        finally:
            os._exit(code or 1)

    # ----- watchdog -------------------------------------------------------------------------
    @contextlib.contextmanager
    def collective(self, what: str) -> Iterator[None]:
        """Mark a blocking collective for the watchdog."""
        self._busy = (what, time.monotonic())
        try:
            yield
        finally:
            self._busy = None

    def _watchdog(self) -> None:
        while not self._stop.wait(0.2):
            busy = self._busy
            if busy is None:
                continue
            what, t0 = busy
            for r in self.watchable:
                if not _alive(self.pids[r]) and self._busy is busy:
                    self.abort(f"layerspec: {self.who(r)} is gone (it died) while "
                               f"{self.who()} waited in {what}; stopping the job. The last "
                               f"checkpoint written is intact; resume with the same command.")
            if time.monotonic() - t0 > self.timeout and self._busy is busy:
                others = [r for r in range(self.size)
                          if r != self.rank and r not in self.watchable]
                where = (f"; ranks it cannot watch: {', '.join(map(str, others))}"
                         if others else "")
                self.abort(f"layerspec: {self.who()} got no answer from the other ranks for "
                           f"{self.timeout:.0f} s in {what} (a rank died or hangs{where}); "
                           f"stopping the job (LAYERSPEC_DIST_TIMEOUT sets the limit). The last "
                           f"checkpoint written is intact.")

    def close(self) -> None:
        self._busy = None
        self._stop.set()

    # ----- collectives ----------------------------------------------------------------------
    def bcast(self, obj: Any, what: str = "a broadcast") -> Any:
        if self.size == 1:
            return obj
        with self.collective(what):
            return self.comm.bcast(obj, root=0)

    def allgather(self, obj: Any, what: str = "an allgather") -> list[Any]:
        if self.size == 1:
            return [obj]
        with self.collective(what):
            return self.comm.allgather(obj)

    def allreduce_(self, buf: Any, what: str = "the gradient Allreduce") -> None:
        """Sum ``buf`` (a contiguous host or device array) over the ranks, in place."""
        if self.size == 1:
            return
        with self.collective(what):
            if isinstance(buf, np.ndarray):
                self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
            elif self.transport == "NCCL":
                _nccl_allreduce(self._nccl, buf)
            else:  # CuPy without NCCL: through host memory
                host = buf.get()
                self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
                buf.set(host)

    def from_root(self, fn: Callable[[], Any], what: str) -> Any:
        """Run ``fn`` on rank 0 and broadcast its result. When it raises, rank 0 re-raises and
        the other ranks raise :class:`PeerError` with rank 0's message, so that every rank
        stops at the same point."""
        if self.rank == 0:
            try:
                value = fn()
            except BaseException as exc:
                code, text = describe_error(exc)
                self.bcast(("error", code, text), what)
                raise
            self.bcast(("ok", value), what)
            return value
        msg = self.bcast(None, what)
        if msg[0] == "error":
            raise PeerError(msg[1], msg[2])
        return msg[1]

    def agree(self, ok: bool, text: str, code: int = 2) -> None:
        """Raise on every rank when ``ok`` is false on any (the message of the lowest such
        rank, naming it when it is not rank 0)."""
        flags = self.allgather(None if ok else (code, text), "a consistency check")
        bad = [(r, f) for r, f in enumerate(flags) if f is not None]
        if not bad:
            return
        r, (c, t) = bad[0]
        raise PeerError(c, t if r == 0 else f"{t} (on {self.who(r)})")

    def agree_on_failure(self) -> bool:
        """Called by a failing rank: True when every rank fails at this point (within the
        grace period), False when the others carry on (then this rank must abort the job)."""
        if self.size == 1:
            return True
        req = self.fail_comm.Ibarrier()
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline:
            if req.Test():
                return True
            time.sleep(0.02)
        return False

    # ----- devices --------------------------------------------------------------------------
    def use_device(self, backend: str | Backend) -> None:
        """With CuPy (or ``auto``): rank r uses GPU ``local_rank % GPUs`` of its host."""
        name = backend.name if isinstance(backend, Backend) else str(backend)
        if name not in ("cupy", "auto"):
            return
        try:
            import cupy  # noqa: PLC0415

            n = cupy.cuda.runtime.getDeviceCount()
        except Exception:
            return
        if n > 0:
            cupy.cuda.Device(self.local_rank % n).use()

    def setup_transport(self, backend: Backend) -> None:
        """NCCL for CuPy arrays when every rank can create a communicator, else MPI."""
        self.transport = "MPI"
        if backend.name != "cupy" or self.size == 1:
            return
        ok = True
        try:
            from cupy.cuda import nccl  # noqa: PLC0415

            ok = hasattr(nccl, "NcclCommunicator") and hasattr(nccl, "get_unique_id")
        except Exception:
            ok = False
        if not all(self.allgather(ok, "choosing the transport")):
            self.transport = "MPI (through host memory)"
            return
        uid = self.bcast(nccl.get_unique_id() if self.rank == 0 else None, "NCCL set-up")
        with self.collective("NCCL set-up"):
            self._nccl = nccl.NcclCommunicator(self.size, uid, self.rank)
        self.transport = "NCCL"


def _nccl_allreduce(comm: Any, buf: Any) -> None:  # pragma: no cover - needs GPUs
    import cupy  # noqa: PLC0415
    from cupy.cuda import nccl  # noqa: PLC0415

    kind = {np.dtype(np.float32): nccl.NCCL_FLOAT32,
            np.dtype(np.float64): nccl.NCCL_FLOAT64}[np.dtype(buf.dtype)]
    stream = cupy.cuda.get_current_stream()
    comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, kind, nccl.NCCL_SUM, stream.ptr)
    stream.synchronize()


def init_world() -> World:
    """The job's :class:`World` (imports mpi4py, which initialises MPI). Raises SpecError with
    the install command when mpi4py is missing."""
    try:
        from mpi4py import MPI  # noqa: PLC0415
    except ImportError as exc:
        raise SpecError(f"distributed training needs mpi4py, which is not installed ({exc}); "
                        f"{INSTALL_HINT}") from None
    except Exception as exc:  # mpi4py present but its MPI library is not
        raise SpecError(f"mpi4py cannot load an MPI library ({type(exc).__name__}: {exc}); "
                        f"{INSTALL_HINT}") from None
    comm = MPI.COMM_WORLD
    expected = _launcher_size()
    if expected is not None and expected > 1 and comm.Get_size() == 1:
        raise SpecError(f"the launcher started {expected} processes but mpi4py's MPI library "
                        f"sees only this one: mpiexec and mpi4py come from different MPI "
                        f"installations (use the mpiexec of the MPI that mpi4py loads: "
                        f"python -m mpi4py --mpi-lib-version)")
    return World(comm, MPI)


# --------------------------------------------------------------------------------------------
# the trainer's hooks


@dataclass
class _Shard:
    """This rank's part of the current batch: rows ``[lo, hi)`` of ``total``."""

    total: int = 0
    lo: int = 0
    hi: int = 0
    active: bool = False


@dataclass(frozen=True)
class ShardBackend(Backend):
    """A backend whose random draws are those of the whole global batch, cut to this rank's
    rows: ``uniform(rng, (n_local, ...))`` draws ``(n_global, ...)`` from ``rng`` exactly as a
    single process would and returns rows ``[lo, hi)``. Draws whose first dimension is not the
    local batch are passed through unchanged."""

    shard: _Shard = field(default_factory=_Shard, compare=False, repr=False)

    def uniform(self, rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> Any:
        s = self.shard
        shape = tuple(int(v) for v in shape)
        if s.active and shape and shape[0] == s.hi - s.lo and s.total != shape[0]:
            full = super().uniform(rng, (s.total, *shape[1:]), dtype)
            return full[s.lo:s.hi]
        return super().uniform(rng, shape, dtype)


class DataParallel:
    """The :class:`~layerspec.train.Trainer` hooks (``trainer.parallel``): ``shard`` picks
    this rank's images of a batch, ``reduce`` sums gradients and batch statistics over the
    ranks in one buffer, ``reduce_stats`` sums evaluation statistics."""

    def __init__(self, world: World, net: Any) -> None:
        self.world = world
        self.net = net
        self.shard_state = _Shard()
        base = net.backend
        if isinstance(base, ShardBackend):
            base = Backend(base.name, base.xp)
        net.backend = ShardBackend(base.name, base.xp, self.shard_state)
        self.weight = 1.0
        self.layout: list[tuple[int, int, int, int, tuple[int, ...]]] = []
        offset = 0
        for i, ws in enumerate(net.weights):
            for j, w in enumerate(ws):
                n = int(w.size)
                if n:
                    self.layout.append((i, j, offset, n, tuple(w.shape)))
                    offset += n
        self.numel = offset
        dtypes = {np.dtype(w.dtype) for ws in net.weights for w in ws if w.size}
        self.dtype = np.dtype(np.float64) if np.dtype(np.float64) in dtypes else \
            np.dtype(np.float32)

    @property
    def bytes_per_step(self) -> int:
        return (self.numel + 3) * self.dtype.itemsize

    def shard(self, batch: np.ndarray) -> np.ndarray:
        """This rank's indices of ``batch`` (the contiguous slice ``[r*n//K, (r+1)*n//K)``)."""
        n, k, r = len(batch), self.world.size, self.world.rank
        lo, hi = r * n // k, (r + 1) * n // k
        s = self.shard_state
        if hi > lo:
            s.total, s.lo, s.hi, s.active = n, lo, hi, True
            self.weight = (hi - lo) / n
            return batch[lo:hi]
        # an idle rank: computes on the first image with weight 0 (same random draws)
        s.total, s.lo, s.hi, s.active = n, 0, 1, True
        self.weight = 0.0
        return batch[:1]

    def reduce(self, dzdw: Sequence[Sequence[Any]], loss: float, top1: float, top5: float,
               ) -> tuple[list[list[Any]], float, float, float]:
        """Gradients and batch statistics summed over the ranks: ``dzdw`` of the global
        batch's mean loss, that mean loss, and the batch's error counts."""
        xp = self.net.backend.xp
        w = self.weight
        buf = xp.empty(self.numel + 3, dtype=self.dtype)
        scale = self.dtype.type(w)
        for i, j, o, n, _ in self.layout:
            g = dzdw[i][j] if j < len(dzdw[i]) else None
            if g is None or w == 0:
                buf[o:o + n] = 0
            else:
                xp.multiply(g.reshape(-1), scale, out=buf[o:o + n])
        tail = [loss * w, top1, top5] if w else [0.0, 0.0, 0.0]
        buf[self.numel:] = xp.asarray(np.asarray(tail, dtype=self.dtype))
        self.world.allreduce_(buf)
        out = [list(ws) for ws in dzdw]
        for i, j, o, n, shape in self.layout:
            while len(out[i]) <= j:
                out[i].append(None)
            out[i][j] = buf[o:o + n].reshape(shape)
        t = self.net.backend.to_numpy(buf[self.numel:])
        return out, float(t[0]), float(t[1]), float(t[2])

    def reduce_stats(self, loss: float, top1: float, top5: float) -> tuple[float, float, float]:
        """Evaluation: the global batch's mean loss and error counts."""
        w = self.weight
        buf = np.asarray([loss * w, top1, top5] if w else [0.0, 0.0, 0.0], dtype=np.float64)
        self.world.allreduce_(buf, "the evaluation Allreduce")
        return float(buf[0]), float(buf[1]), float(buf[2])

    def done(self) -> None:
        self.shard_state.active = False

    # ----- replicas -------------------------------------------------------------------------
    def checksum(self, trainer: Any) -> int:
        crc = 0
        for ws in self.net.host_weights():
            for w in ws:
                crc = zlib.crc32(np.ascontiguousarray(w).view(np.uint8).reshape(-1), crc)
        for key, v in sorted(trainer.state_arrays().items()):
            crc = zlib.crc32(key.encode(), crc)
            crc = zlib.crc32(np.ascontiguousarray(v).view(np.uint8).reshape(-1), crc)
        return crc

    def verify(self, trainer: Any) -> bool:
        """Compare the replicas (weights and solver state); when they differ, reset every
        rank to rank 0's. Returns True when they were equal."""
        sums = self.world.allgather(self.checksum(trainer), "comparing the replicas")
        if len(set(sums)) == 1:
            return True
        self.broadcast_state(trainer)
        return False

    def broadcast_state(self, trainer: Any) -> None:
        """Every rank takes rank 0's weights and solver state."""
        payload = (self.net.host_weights(), trainer.state_arrays()) \
            if self.world.rank == 0 else None
        weights, state = self.world.bcast(payload, "broadcasting rank 0's weights")
        if self.world.rank != 0:
            be = self.net.backend
            self.net.weights = [[be.asarray(w) for w in ws] for ws in weights]
            trainer.load_state_arrays(state)


def attach(world: World, trainer: Any) -> DataParallel:
    """Make ``trainer`` data-parallel over ``world``: checks that every rank runs the same
    spec, chooses the transport, and installs the hooks."""
    net = trainer.net
    digest = net.spec.digest()
    world.agree(world.allgather(digest, "comparing specs")[0] == digest,
                f"this rank's spec (digest {digest}) differs from rank 0's: every rank must "
                f"run the same spec", 2)
    world.setup_transport(net.backend)
    par = DataParallel(world, net)
    trainer.parallel = par
    return par


def run_main(world: World, fn: Callable[[], Any], debug: bool = False) -> int:
    """Run ``fn`` (the whole ``layerspec run``) on this rank and return the exit status.

    An exception that every rank raises at the same point is printed once, by rank 0. One
    raised here alone (the others carry on) is printed with this rank's name, then the job
    is aborted."""
    try:
        fn()
        return 0
    except BaseException as exc:
        code, text = describe_error(exc)
        if debug:
            traceback.print_exc()
        collective = world.agree_on_failure()
        if collective:
            if world.rank == 0 and text:
                print(text, file=sys.stderr, flush=True)
            return code
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        if not text:
            text = "interrupted" if code == 130 else "stopped"
        world.abort(f"layerspec: {world.who()}: {text}; the other ranks carry "
                    f"on without it, so the job stops (MPI_Abort). The last checkpoint "
                    f"written is intact.", code or 1)
        return code  # pragma: no cover - abort does not return
    finally:
        world.close()
