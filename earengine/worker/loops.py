"""The newest dreamed loop and its step statistics in shared memory.

Written by the worker process, read by the supervisor in the engine process, through a
:class:`~earengine.shm.SeqlockBuffer`: the reader never waits and never sees half a loop.
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np

from earengine.shm import OnSeqlock, SeqlockBuffer

__all__ = ["LoopBuffer"]

#: The float64 statistics written with each loop, in order.
STATS = ("n", "step", "loss", "target", "steps_per_s", "bars", "time", "sr", "settled")
_TIME = STATS.index("time")
_INTS = ("step", "bars", "sr")  # stored as float64, read back as int


class LoopBuffer(OnSeqlock):
    """The newest loop and its statistics, written by one process, read by another; a context
    manager.

    Parameters
    ----------
    capacity : int > 0
        Most samples a loop may have.
    name : str, optional
        Attach to an existing block instead of creating one.

    Examples
    --------
    >>> with LoopBuffer(100) as writer, LoopBuffer(name=writer.name) as reader:
    ...     writer.write(np.ones(3, np.float32), step=5, loss=-1.0, target=1.0, steps_per_s=2.0, bars=1, sr=8000)
    ...     seq, samples, stats = reader.read()
    ...     print(seq, samples.tolist(), stats["step"], reader.read(seq))
    2 [1.0, 1.0, 1.0] 5 None
    """

    def __init__(self, capacity: int = 44100 * 64, *, name: Optional[str] = None) -> None:
        fields = None if name else {"stats": ("float64", (len(STATS),)), "samples": ("float32", (int(capacity),))}
        self.block = SeqlockBuffer(fields, name=name)
        self.capacity = int(self.block.fields["samples"][1][0])

    def write(self, samples: np.ndarray, *, step: int, loss: float, target: float, steps_per_s: float,
              bars: int, sr: int, settled: float = 0.0) -> None:
        n = min(samples.size, self.capacity)
        with self.block.writing() as slot:
            slot["samples"][:n] = samples[:n]
            slot["stats"][:] = (n, step, loss, target, steps_per_s, bars, time.time(), sr, settled)

    def beat(self) -> None:
        """Heartbeat without a new loop (paused, or a step that produced nothing new)."""
        self.block.views()["stats"][_TIME] = time.time()

    def read(self, after: int = -1) -> Optional[tuple[int, np.ndarray, dict]]:
        """``(seq, samples, stats)`` if a loop newer than ``after`` is there, else None."""

        def copy(slot: dict) -> tuple:
            head = slot["stats"].copy()
            return head, slot["samples"][: int(head[0])].copy()

        got = self.block.read(copy, after=after)
        if got is None:
            return None
        seq, (head, samples) = got
        values = dict(zip(STATS, head.tolist()))
        stats = {k: int(values[k]) if k in _INTS else values[k] for k in STATS[1:]}
        return seq, samples, stats

    @property
    def heartbeat(self) -> float:
        """When the worker last wrote a loop or beat (``time.time()`` seconds)."""
        return float(self.block.views()["stats"][_TIME])
