"""Shared memory one process writes and another reads, and neither ever waits: a seqlock.

:class:`SeqlockBuffer` is one block of shared memory holding a few named numpy arrays (a
*slot*), once or several times over, each slot behind a sequence counter. The writer makes the
counter odd, writes, and makes it even; a reader copies a slot and keeps the copy only if the
counter was even before and unchanged after. A reader that raced the writer gets nothing and
asks again at its next poll; a writer killed in the middle of a write leaves the counter odd, so
that half-written slot is never read, and the next write starts again from even.

With more than one slot the writer fills them in turn, and a reader looks at the newest first:
the set it was just told about is still there after the writer has moved on to the next.

The block describes itself (its fields, their types and shapes are written at its start), so a
process attaches to it by name alone. :class:`OnSeqlock` is the base of a buffer that gives
such a block its meaning: the worker's loops (:class:`earengine.worker.loops.LoopBuffer`)
and the streams' activations (:class:`earengine.streams.activations.ActivationBuffer`) are both built on it.
"""

from __future__ import annotations

import contextlib
import json
from multiprocessing import shared_memory
from typing import Callable, Iterator, Mapping, Optional, Sequence, TypeVar

import numpy as np

from earengine.errors import ParameterError

__all__ = ["SeqlockBuffer", "OnSeqlock"]

T = TypeVar("T")

_PREAMBLE = 3  # int64: bytes of the description, slots, slot written last


def _align(n: int) -> int:
    return (n + 7) // 8 * 8


class SeqlockBuffer:
    """Slots of named arrays in shared memory, each slot behind a seqlock; a context manager.

    Parameters
    ----------
    fields : mapping name -> (dtype, shape), optional
        The arrays of one slot. Required to create a block; read from the block to attach.
    slots : int > 0
        How many copies of the fields the writer fills in turn.
    name : str, optional
        Attach to an existing block instead of creating one. The creator unlinks the block when
        it closes; an attached process only lets go of it.

    Examples
    --------
    >>> with SeqlockBuffer({"step": ("int64", (1,)), "x": ("float32", (4,))}) as writer:
    ...     with SeqlockBuffer(name=writer.name) as reader:
    ...         print(reader.read(lambda v: v["x"].copy()))
    ...         with writer.writing() as v:
    ...             v["step"][0], v["x"][:] = 7, [1, 2, 3, 4]
    ...         seq, x = reader.read(lambda v: v["x"].copy())
    ...         print(seq, x.tolist(), reader.read(lambda v: v["x"].copy(), after=seq))
    None
    2 [1.0, 2.0, 3.0, 4.0] None
    """

    def __init__(self, fields: Optional[Mapping[str, tuple[str, Sequence[int]]]] = None, *, slots: int = 1,
                 name: Optional[str] = None) -> None:
        self._owner = name is None
        if self._owner:
            if not fields:
                raise ParameterError("fields must name at least one array to create a shared block")
            if slots < 1:
                raise ParameterError(f"slots={slots} must be >= 1")
            described = [[str(k), np.dtype(dt).str, [int(s) for s in shape]] for k, (dt, shape) in fields.items()]
            text = json.dumps(described).encode()
            size = self._size(described, text, slots)
            self.shm = shared_memory.SharedMemory(create=True, size=size)
            pre = np.ndarray((_PREAMBLE,), dtype=np.int64, buffer=self.shm.buf)
            pre[:] = (len(text), slots, slots - 1)  # the first write goes to slot 0
            self.shm.buf[_PREAMBLE * 8:_PREAMBLE * 8 + len(text)] = text
            del pre
        else:
            self.shm = shared_memory.SharedMemory(name=name)
        self._pre = np.ndarray((_PREAMBLE,), dtype=np.int64, buffer=self.shm.buf)
        length, self.n_slots = int(self._pre[0]), int(self._pre[1])
        described = json.loads(bytes(self.shm.buf[_PREAMBLE * 8:_PREAMBLE * 8 + length]))
        #: name -> (dtype, shape) of one slot's arrays
        self.fields = {k: (np.dtype(dt), tuple(shape)) for k, dt, shape in described}
        self._seqs: list[np.ndarray] = []
        self._views: list[dict[str, np.ndarray]] = []
        offset = _align(_PREAMBLE * 8 + length)
        for _ in range(self.n_slots):
            self._seqs.append(np.ndarray((1,), dtype=np.int64, buffer=self.shm.buf, offset=offset))
            offset += 8
            views = {}
            for k, (dt, shape) in self.fields.items():
                views[k] = np.ndarray(shape, dtype=dt, buffer=self.shm.buf, offset=offset)
                offset = _align(offset + views[k].nbytes)
            self._views.append(views)
        if self._owner:
            for seq in self._seqs:
                seq[0] = 0

    @staticmethod
    def _size(described: list, text: bytes, slots: int) -> int:
        slot = 8 + sum(_align(np.dtype(dt).itemsize * int(np.prod(shape, dtype=np.int64))) for _, dt, shape in described)
        return _align(_PREAMBLE * 8 + len(text)) + slots * slot

    def __enter__(self) -> "SeqlockBuffer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def name(self) -> str:
        return self.shm.name

    def seq(self, slot: int = 0) -> int:
        """A slot's sequence number: 0 before the first write, odd while one is under way."""
        return int(self._seqs[slot][0])

    def views(self, slot: int = 0) -> dict[str, np.ndarray]:
        """Live views of one slot's arrays, outside the lock (for a value that may be torn,
        such as a heartbeat)."""
        return self._views[slot]

    @contextlib.contextmanager
    def writing(self) -> Iterator[dict[str, np.ndarray]]:
        """Fill the next slot (the one written longest ago): yields its arrays.

        The slot counts as written when the block ends; a block that raises leaves it marked as
        being written, so what it wrote halfway is never read.
        """
        slot = (int(self._pre[2]) + 1) % self.n_slots
        counter = self._seqs[slot]
        seq = int(counter[0])
        seq += seq % 2  # a writer killed mid-write left it odd: start again from even
        counter[0] = seq + 1  # odd: writing
        yield self._views[slot]
        counter[0] = seq + 2  # even: done
        self._pre[2] = slot

    def read(self, copy: Callable[[dict[str, np.ndarray]], Optional[T]], *, after: int = -1) -> Optional[tuple[int, T]]:
        """``(seq, copy(views))`` from the newest written slot that ``copy`` accepts, else None.

        Parameters
        ----------
        copy : callable(views) -> value or None
            Copies what it needs out of a slot's arrays (views into shared memory: copy, do not
            keep them); None passes on to the next older slot. Its result is kept only if the
            writer did not touch the slot meanwhile, so anything beyond copying is best done on
            the value it returns.
        after : int
            Only slots written after this sequence number (as returned by an earlier read).
        """
        newest = int(self._pre[2])
        for k in range(self.n_slots):
            slot = (newest - k) % self.n_slots
            seq = self.seq(slot)
            if seq == 0 or seq % 2 or seq <= after:
                continue
            try:
                value = copy(self._views[slot])
            except (ValueError, IndexError):
                if self.seq(slot) != seq:  # a torn copy made no sense: the writer was there
                    continue
                raise
            if value is None or self.seq(slot) != seq:  # not wanted, or overwritten while copying
                continue
            return seq, value
        return None

    def close(self) -> None:
        """Let go of the block; its creator also removes it."""
        if not hasattr(self, "_views"):
            return
        del self._pre, self._seqs, self._views
        self.shm.close()
        if self._owner:
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass


class OnSeqlock:
    """Base of a buffer with a meaning of its own, kept in a :class:`SeqlockBuffer`
    (``self.block``); a context manager that lets go of the block."""

    block: SeqlockBuffer

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def name(self) -> str:
        """The shared block's name, for another process to attach to."""
        return self.block.name

    def close(self) -> None:
        self.block.close()
