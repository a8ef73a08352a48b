"""The input's mono mix in shared memory: one writer (the audio thread), any readers, no waiting.

:class:`InputRing` is a ring of float32 samples in a :class:`~earengine.shm.SeqlockBuffer` block.
The writer copies each buffer of input in after the newest sample, then advances the *head*
(samples written since the start) behind the block's seqlock, together with the wall-clock time
the newest sample was heard and the loop player's clock sample it lines up with. A reader takes
the head, copies the samples it wants, and takes the head again: if the writer came round the
ring onto them meanwhile, the copy is refused (None) rather than torn. Neither side ever waits.

>>> ring = InputRing(capacity=16, sr=8)
>>> ring.write(np.arange(5, dtype=np.float32), time_s=10.0, clock_sample=100)
>>> ring.state()
RingState(head=5, time_s=10.0, clock_sample=100, sr=8)
>>> ring.window(3).tolist(), ring.window(7).tolist()
([2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0])
>>> ring.span(1, 3).tolist(), ring.span(4, 9)
([1.0, 2.0], None)
>>> ring.close()
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from earengine.errors import ParameterError
from earengine.shm import OnSeqlock, SeqlockBuffer

__all__ = ["InputRing", "RingState"]

#: Samples a reader keeps clear of the writer: the most one buffer can bring in at once.
MARGIN = 8192


class RingState(NamedTuple):
    """Where the writer is: ``head`` samples written so far; the newest of them heard at wall
    time ``time_s`` (``time.time()``) and lined up with the player's clock sample ``clock_sample``;
    the input's rate ``sr``."""

    head: int
    time_s: float
    clock_sample: int
    sr: int


class InputRing(OnSeqlock):
    """A ring of the input's samples in shared memory; a context manager.

    Parameters
    ----------
    capacity : int > MARGIN
        Samples the ring holds (the longest capture, plus the listener's window, must fit).
    sr : int > 0
        The input's sample rate in Hz.
    name : str, optional
        Attach to an existing ring (another process) instead of creating one.
    """

    def __init__(self, capacity: int = 0, *, sr: int = 44100, name: Optional[str] = None) -> None:
        fields = None
        if name is None:
            if capacity < 2:
                raise ParameterError(f"capacity={capacity} must be >= 2 samples")
            if sr <= 0:
                raise ParameterError(f"sr={sr} must be > 0")
            fields = {"ring": ("float32", (int(capacity),)), "clock": ("float64", (4,))}
        self.block = SeqlockBuffer(fields, slots=1, name=name)
        self.capacity = int(self.block.fields["ring"][1][0])
        self._ring = self.block.views()["ring"]
        if name is None:
            with self.block.writing() as v:
                v["clock"][:] = (0, 0.0, 0, sr)
        self._head = self.state().head  # the writer's own count (the writer never reads it back)

    # -- the writer (the audio thread) -------------------------------------------------------------
    def write(self, samples: np.ndarray, *, time_s: float, clock_sample: int) -> None:
        """Append ``samples`` (1-D float32, at most the capacity); the newest was heard at
        ``time_s`` and lines up with the player's clock sample ``clock_sample``. Never waits."""
        n = int(samples.shape[0])
        if n == 0:
            return
        start = self._head % self.capacity
        first = min(n, self.capacity - start)
        self._ring[start:start + first] = samples[:first]
        if first < n:
            self._ring[: n - first] = samples[first:]
        self._head += n
        with self.block.writing() as v:
            c = v["clock"]
            c[0], c[1], c[2] = self._head, time_s, clock_sample

    # -- readers -------------------------------------------------------------------------------
    def state(self) -> RingState:
        """The writer's newest head, time, clock sample and rate (it retries a write's race)."""
        for _ in range(1000):
            got = self.block.read(lambda v: v["clock"].copy())
            if got is not None:
                c = got[1]
                return RingState(int(c[0]), float(c[1]), int(c[2]), int(c[3]))
        raise RuntimeError("input ring: the writer never left its header")  # a writer killed mid-write

    def span(self, start: int, stop: int) -> Optional[np.ndarray]:
        """Samples ``start`` to ``stop`` (counted from the first ever written), copied; None when
        some are not written yet or already written over."""
        if stop < start:
            raise ParameterError(f"span {start}..{stop}: stop must be >= start")
        n = stop - start
        if n > self.capacity - MARGIN if self.capacity > 2 * MARGIN else n > self.capacity:
            raise ParameterError(f"{n} samples must be at most the ring's {self.capacity - MARGIN}")
        if stop > self.state().head or start < 0:
            return None
        out = self._copy(start, n)
        head = self.state().head
        margin = MARGIN if self.capacity > 2 * MARGIN else 0
        if head + margin - start > self.capacity:
            return None  # the writer came round onto them while they were copied
        return out

    def window(self, n: int) -> Optional[np.ndarray]:
        """The newest ``n`` samples (zeros before the first ever written); None if the writer
        came round onto them while they were copied."""
        head = self.state().head
        got = self.span(max(0, head - n), head)
        if got is None or got.size == n:
            return got
        return np.concatenate([np.zeros(n - got.size, np.float32), got])

    def _copy(self, start: int, n: int) -> np.ndarray:
        i = start % self.capacity
        first = min(n, self.capacity - i)
        out = np.empty(n, np.float32)
        out[:first] = self._ring[i:i + first]
        if first < n:
            out[first:] = self._ring[: n - first]
        return out

    def close(self) -> None:
        del self._ring
        super().close()

    def at_rate(self, state: RingState, end: int, n: int, sr: int) -> Optional[np.ndarray]:
        """The ``n`` samples at rate ``sr`` that end just before sample ``end`` of that rate
        (both rates counted from the ring's first sample; linear interpolation where ``sr``
        differs from the input's), as float32: zeros before the first sample ever written; None
        when some are written over, or not yet written by ``state``."""
        rate = state.sr
        if rate == sr:
            lo, hi = end - n, end
        else:
            lo, hi = (end - n) * rate // sr, -(-end * rate // sr) + 1
        if hi > state.head:
            return None
        got = self.span(max(0, lo), hi)
        if got is None:
            return None
        if lo < 0:
            got = np.concatenate([np.zeros(-lo, np.float32), got])
        if rate != sr:
            at = (end - n + np.arange(n)) * (rate / sr) - lo
            got = np.interp(at, np.arange(got.size), got).astype(np.float32)
        return np.ascontiguousarray(got, dtype=np.float32)
