"""What the engine and the worker process say to each other over their two queues.

One frozen dataclass per kind of message, so a message is checked where it is made and read by
its field names. To the worker (its inbox, read at step boundaries): :class:`Settings`,
:class:`Reset`, :class:`Reference`, :class:`StreamActivations`, :class:`Stop`. From it (its
outbox, read by the supervisor): :class:`Ready`, :class:`Notes`, :class:`ActivationsNeed`,
:class:`WorkerError`. The loops themselves travel through shared memory
(:class:`~earengine.worker.loops.LoopBuffer`), not through the queues.

>>> Settings({"/opt/lr": 0.01}).values["/opt/lr"]
0.01
>>> Reset("noise")
Reset(kind='noise', samples=None)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

import numpy as np

__all__ = [
    "Settings",
    "Reset",
    "Reference",
    "StreamActivations",
    "Stop",
    "Ready",
    "Notes",
    "ActivationsNeed",
    "WorkerError",
    "ToWorker",
    "FromWorker",
]


# -- to the worker ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """Parameter values (registry address -> value) to apply at the next step boundary."""

    values: Mapping[str, Any]


@dataclass(frozen=True, eq=False)
class Reset:
    """Start the dream again from ``kind`` (``silence``, ``noise``, ``file``, ``current``),
    with ``samples`` for a file or the current loop."""

    kind: str
    samples: Optional[np.ndarray] = None


@dataclass(frozen=True, eq=False)
class Reference:
    """The ``/reg/reference`` clip the dream is mixed toward, or None for none."""

    samples: Optional[np.ndarray]


@dataclass(frozen=True)
class StreamActivations:
    """Publish every loop's activations into the shared block ``buffer`` (its name), or stop
    publishing them (None)."""

    buffer: Optional[str]


@dataclass(frozen=True)
class Stop:
    """End the worker process."""


# -- from the worker ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Ready:
    """The ear is loaded: its taps in order, and each tap's activation shape for one loop."""

    taps: tuple
    shapes: Mapping[str, list] = field(default_factory=dict)

    def info(self) -> dict:
        """As the supervisor keeps it: ``{"taps": [...], "shapes": {tap: [...]}}``."""
        return {"taps": list(self.taps), "shapes": {k: list(v) for k, v in self.shapes.items()}}


@dataclass(frozen=True)
class Notes:
    """The notes of the loop of optimizer step ``step`` (grid parameterization), sent before
    that loop so the supervisor can pair them."""

    step: int
    notes: Mapping[str, Any]


@dataclass(frozen=True)
class ActivationsNeed:
    """The activation buffer is too small: it needs ``floats`` float32 values."""

    floats: int


@dataclass(frozen=True)
class WorkerError:
    """A line for the console; ``fatal`` when the worker cannot start (restarting would not help)."""

    text: str
    fatal: bool = False


ToWorker = Union[Settings, Reset, Reference, StreamActivations, Stop]
FromWorker = Union[Ready, Notes, ActivationsNeed, WorkerError]
