"""The activations of a loop, from the worker that dreamed it to the streams that show it.

A loop's activations are computed once per dreamed loop, in the worker, with the loop heard after
a periodic copy of itself (as it is heard when it repeats; :func:`~earengine.viz.frames.loop_activations`),
written to shared memory by :class:`ActivationPublisher` and read in the engine process from
:class:`ActivationBuffer` as an :class:`ActivationSet`. The set then travels with its loop: the
player swaps both in at the same bar line, and the streams cut every frame from the set of the
loop that is playing (:class:`~earengine.streams.position.PlayerTracker`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np

from earengine.errors import ParameterError
from earengine.shm import OnSeqlock, SeqlockBuffer
from earengine.streams.frames import as_3d
from earengine.viz.frames import loop_activations, target_mask

__all__ = ["ActivationSet", "ActivationBuffer", "ActivationPublisher"]


@dataclass(frozen=True, eq=False)
class ActivationSet:
    """Every tap's activation over one loop, and what the dream's target reads.

    Attributes
    ----------
    key : int
        Identifies the loop these belong to (the loop buffer's sequence number).
    step : int
        Optimizer step that made the loop.
    loss : float
        Its loss.
    acts : dict[str, ndarray]
        ``(channels, freq, time)`` float32 per tap (``freq`` is 1 for ``ar.*``), ``time`` covering
        the loop once.
    mask : dict[str, ndarray]
        ``(channels, freq)`` bool per tap: True where the target reads (taps it does not read
        are absent).
    """

    key: int
    step: int
    loss: float
    acts: Mapping[str, np.ndarray]
    mask: Mapping[str, np.ndarray] = field(default_factory=dict)

    def shape(self, tap: str) -> tuple[int, int, int]:
        return tuple(self.acts[tap].shape)  # type: ignore[return-value]


# Shared memory: the worker writes, the engine process reads; nobody waits
_SLOT_HEAD = 4  # float64: step, loss, n_entries, floats used
_MAX_ENTRIES = 64  # taps (18) plus their masks, with room to spare
_ENTRY = 6  # float64: tap index, kind (0 activation, 1 mask), channels, freq, time, offset


class ActivationBuffer(OnSeqlock):
    """The activations of the newest loops in shared memory, written by the worker; a context
    manager.

    Two slots of a :class:`~earengine.shm.SeqlockBuffer`: the writer fills the slot it did not
    fill last, so the reader finds the set of the loop it was just handed even if the worker has
    already written the next one. Nobody blocks; a reader that raced a writer gets None and
    tries again at its next poll.

    Parameters
    ----------
    capacity : int > 0
        float32 values one slot holds (activations and masks of every tap together).
    name : str, optional
        Attach to an existing block instead of creating one.

    Examples
    --------
    >>> buf = ActivationBuffer(1000)
    >>> a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    >>> buf.write(7, 0.5, {"enc.0": a}, {"enc.0": np.eye(2, 3, dtype=bool)}, taps=("enc.0",))
    True
    >>> got = buf.read(7, taps=("enc.0",))
    >>> bool(np.array_equal(got.acts["enc.0"], a)), got.mask["enc.0"].tolist()
    (True, [[True, False, False], [False, True, False]])
    >>> buf.close()
    """

    def __init__(self, capacity: int = 1, *, name: Optional[str] = None) -> None:
        fields = None
        if name is None:
            if capacity <= 0:
                raise ParameterError(f"capacity={capacity} must be > 0")
            fields = {"head": ("float64", (_SLOT_HEAD,)), "table": ("float64", (_MAX_ENTRIES, _ENTRY)),
                      "data": ("float32", (int(capacity),))}
        self.block = SeqlockBuffer(fields, slots=2, name=name)
        self.capacity = int(self.block.fields["data"][1][0])

    @staticmethod
    def needed(acts: Mapping[str, np.ndarray], mask: Mapping[str, np.ndarray]) -> int:
        """float32 values a set of activations and masks takes."""
        return int(sum(np.asarray(a).size for a in acts.values()) + sum(np.asarray(m).size for m in mask.values()))

    def write(self, step: int, loss: float, acts: Mapping[str, np.ndarray], mask: Mapping[str, np.ndarray],
              *, taps: Sequence[str]) -> bool:
        """Publish one loop's set; False (and nothing written) when it does not fit."""
        index = {t: i for i, t in enumerate(taps)}
        items = [(t, 0, as_3d(a)) for t, a in acts.items()] + [(t, 1, np.asarray(m)[:, :, None]) for t, m in mask.items()]
        if len(items) > _MAX_ENTRIES or self.needed(acts, mask) > self.capacity:
            return False
        with self.block.writing() as slot:
            table, data = slot["table"], slot["data"]
            offset = 0
            for entry, (tap, kind, a) in enumerate(items):
                c, f, t = a.shape
                table[entry] = (index[tap], kind, c, f, t, offset)
                data[offset:offset + a.size] = a.reshape(-1)
                offset += a.size
            slot["head"][:] = (step, loss, len(items), offset)
        return True

    def read(self, step: Optional[int] = None, *, taps: Sequence[str], key: int = 0) -> Optional[ActivationSet]:
        """The set written for ``step`` (the newest when None), copied out; None if absent or
        being written."""

        def copy(slot: dict) -> Optional[tuple]:
            head = slot["head"].copy()
            if step is not None and int(head[0]) != int(step):
                return None
            return head, slot["table"][: int(head[2])].copy(), slot["data"][: int(head[3])].copy()

        got = self.block.read(copy)
        if got is None:
            return None
        head, rows, block = got[1]
        acts, mask = {}, {}
        for tap_i, kind, c, f, t, offset in rows:
            n = int(c) * int(f) * int(t)
            a = block[int(offset):int(offset) + n].reshape(int(c), int(f), int(t))
            if int(kind) == 0:
                acts[taps[int(tap_i)]] = a
            else:
                mask[taps[int(tap_i)]] = a[:, :, 0] > 0.5
        return ActivationSet(key=int(key), step=int(head[0]), loss=float(head[1]), acts=acts, mask=mask)


class ActivationPublisher:
    """The worker's side of the activation stream: one loop's set per finished step.

    Parameters
    ----------
    name : str
        The :class:`ActivationBuffer` the engine created for it.
    """

    def __init__(self, name: str) -> None:
        self.buffer = ActivationBuffer(name=name)
        self._mask_for: Optional[tuple] = None
        self._mask: dict = {}
        self._asked = 0

    def publish(self, dreamer, *, step: int, loss: float) -> Optional[int]:
        """Compute and write the activations of the dreamer's current loop.

        Returns the number of float32 values needed when the buffer is too small (once per
        size; the engine then makes a larger one), else None.
        """
        context = max(1, int(dreamer.settings.get("/opt/context", 1)))
        acts = loop_activations(dreamer.ear, dreamer.heard_tensor(), context=context)
        shapes = {t: a.shape for t, a in acts.items()}
        # the mask changes only with the target (or the loop's length): worth keeping
        mask_key = (str(dreamer.objective), tuple(sorted(shapes.items())))
        if mask_key != self._mask_for:
            self._mask = target_mask(dreamer.objective, shapes, stats=dreamer.stats)
            self._mask_for = mask_key
        taps = tuple(dreamer.ear.tap_names())
        if self.buffer.write(step, loss, acts, self._mask, taps=taps):
            return None
        need = ActivationBuffer.needed(acts, self._mask)
        if need > self._asked:
            self._asked = need
            return need
        return None

    def close(self) -> None:
        self.buffer.close()
