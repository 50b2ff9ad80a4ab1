"""Scratch and output buffers reused from one step to the next.

A :class:`Workspace` belongs to one :class:`~layerspec.net.Net` (``net.workspace``) and reaches
the layers through ``Context.workspace``. Reusing a layer's big arrays (padded inputs, im2col
patches, outputs, gradients) instead of allocating fresh ones each step spares the page faults
of freshly mapped memory, which cost as much as the arithmetic on small CPU workloads.

Reuse is safe without any bookkeeping by the caller: a buffer is handed out again only when
nothing but the workspace refers to it (no array, view or ``res`` record of an earlier call
still holds it); otherwise a new one is allocated. Each key keeps one buffer by default: the
trainer drops a step's results before the next step, so every buffer is reused and the
activations are held once, not twice (``slots=2`` suits a caller that keeps the previous
step's ``res`` alive while computing the next). Only NumPy arrays are cached; other array
modules (CuPy, with its own memory pool) get plain allocations.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable
from typing import Any

import numpy as np


def _refs(bufs: list[Any], i: int) -> int:
    return sys.getrefcount(bufs[i])


#: the reference count of a cached buffer that nobody else holds (measured, not assumed)
_FREE = _refs([np.empty(0)], 0)


class Workspace:
    """Per-key buffers (a key is e.g. ``(id(layer), "cols")``), reused when free."""

    def __init__(self, slots: int = 1) -> None:
        self.slots = slots
        self._bufs: dict[Hashable, list[np.ndarray]] = {}
        self._keep_left = 0

    def start_pass(self, keep_bytes: int = 0) -> None:
        """A new forward pass begins: layers may keep up to ``keep_bytes`` of intermediate
        data for its backward pass (0 when no backward pass follows)."""
        self._keep_left = keep_bytes

    def keep(self, nbytes: int) -> bool:
        """Whether a layer may keep ``nbytes`` for the backward pass instead of recomputing
        them (at most :data:`KEEP_LAYER_BYTES` per layer, within the pass's budget); the
        bytes are then counted against the budget."""
        if nbytes > KEEP_LAYER_BYTES or nbytes > self._keep_left:
            return False
        self._keep_left -= nbytes
        return True

    def empty(self, xp: Any, key: Hashable, shape: tuple[int, ...], dtype: Any) -> Any:
        """An uninitialised array of ``shape``/``dtype``, reused from an earlier call when one
        under ``key`` is free."""
        shape = tuple(int(s) for s in shape)
        if xp is not np:
            return xp.empty(shape, dtype=dtype)
        dtype = np.dtype(dtype)
        bufs = self._bufs.setdefault(key, [])
        free = -1
        for i in range(len(bufs)):
            if _refs(bufs, i) == _FREE:
                if bufs[i].shape == shape and bufs[i].dtype == dtype:
                    return bufs[i]
                free = i
        a = np.empty(shape, dtype=dtype)
        if free >= 0:
            bufs[free] = a
        elif len(bufs) < self.slots:
            bufs.append(a)
        return a

    def zeros(self, xp: Any, key: Hashable, shape: tuple[int, ...], dtype: Any) -> Any:
        a = self.empty(xp, key, shape, dtype)
        a.fill(0)
        return a

    def scratch(self, xp: Any, tag: str, shape: tuple[int, ...], dtype: Any) -> Any:
        """An uninitialised temporary that the caller drops before returning: one arena per
        ``tag`` shared by all layers (it grows to the largest request), so scratch memory is
        the largest layer's, not the sum over layers."""
        shape = tuple(int(s) for s in shape)
        if xp is not np:
            return xp.empty(shape, dtype=dtype)
        dtype = np.dtype(dtype)
        size = 1
        for d in shape:
            size *= d
        key = ("scratch", tag, dtype.str)
        bufs = self._bufs.setdefault(key, [])
        if bufs and _refs(bufs, 0) == _FREE and bufs[0].size >= size:
            return bufs[0][:size].reshape(shape)
        a = np.empty(max(size, 1), dtype=dtype)
        if not bufs:
            bufs.append(a)
        elif _refs(bufs, 0) == _FREE:
            bufs[0] = a
        return a[:size].reshape(shape)

    def scratch_zeros(self, xp: Any, tag: str, shape: tuple[int, ...], dtype: Any) -> Any:
        a = self.scratch(xp, tag, shape, dtype)
        a.fill(0)
        return a

    def clear(self) -> None:
        """Drop every cached buffer."""
        self._bufs.clear()

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for bufs in self._bufs.values() for b in bufs)


class _NoWorkspace(Workspace):
    """Plain allocation every time (used when a caller passes no workspace)."""

    def empty(self, xp: Any, key: Hashable, shape: tuple[int, ...], dtype: Any) -> Any:
        return xp.empty(tuple(int(s) for s in shape), dtype=dtype)

    def scratch(self, xp: Any, tag: str, shape: tuple[int, ...], dtype: Any) -> Any:
        return xp.empty(tuple(int(s) for s in shape), dtype=dtype)

    def keep(self, nbytes: int) -> bool:
        return False


#: size of one block of im2col patches on the CPU: the copy and the GEMM that reads the block
#: stay in the cache (lenet_cifar conv2: the copy of 1-image blocks took 2.9 ms against 10 ms
#: for the whole 82 MB matrix; 1, 4, 8 and 64 MB blocks gave lenet_cifar steps of 107, 101,
#: 103 and 112 ms), and the patches are never held whole (seed320: ~330 MB per conv)
CPU_BLOCK_BYTES = 4 << 20


def block_bytes(xp: Any) -> int:
    """How many bytes of patches a blocked layer computes at once: a cache-sized block on
    the CPU; everything at once on a device, where each block would cost kernel launches."""
    return CPU_BLOCK_BYTES if xp is np else 1 << 62


#: most bytes one layer keeps for its backward pass instead of recomputing them, and most
#: bytes a training pass keeps in all (interleaved A/B on this project's 2-core machine:
#: keeping lenet_cifar's conv1/conv3 patches (31 + 20 MB) instead of rebuilding them for dF
#: made its step 4 % faster, lenet_mnist's 11 %; the peaks stay far below PyTorch's)
KEEP_LAYER_BYTES = 32 << 20
KEEP_PASS_BYTES = 64 << 20


#: stateless stand-in for "no workspace"
NO_WORKSPACE: Workspace = _NoWorkspace()


def workspace_of(ctx: Any) -> Workspace:
    """The context's workspace, or :data:`NO_WORKSPACE`."""
    ws = getattr(ctx, "workspace", None)
    return NO_WORKSPACE if ws is None else ws
