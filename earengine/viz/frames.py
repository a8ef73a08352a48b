"""Activation frames: which time step of each tap is sounding, and what a frame of it holds.

A loop's activations are computed once per dreamed loop, in the worker, with the loop heard after
a periodic copy of itself (as it is heard when it repeats), and handed to the engine process as
:class:`ActivationSet`. The engine's streams then cut *frames* from it: a frame covers the loop
phases ``[p0, p1)`` that sound between two ticks of ``/stream/fps``. A tap with ``T`` time steps
over the loop is at step ``floor(p * T)`` at phase ``p``.

Reductions (``/stream/reduce``), each flattened channel-major (``c * F + f``):

``raw``
    every neuron (channel × frequency row) at the step sounding at ``p0``: the ear's activation,
    unchanged;
``channel_freq``
    every neuron, averaged over the steps the frame spans (one step when the frame rate is above
    the tap's step rate);
``channel``
    as ``channel_freq``, averaged over frequency as well: one value per channel.

Each is a :class:`Reduction` in :data:`REDUCTIONS`, a table checked against the row.

Only numpy here, so the engine process can use it; the two functions that run the ear
(:func:`loop_activations`, :func:`target_mask`) import torch when called, in the worker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from earengine.errors import ParameterError
from earengine.params.registry import check_choices
from earengine.params.spec import row
from earengine.shm import OnSeqlock, SeqlockBuffer
from earengine.streams.params import STREAM_PARAMS

__all__ = [
    "ActivationSet",
    "ActivationBuffer",
    "ActivationPublisher",
    "frame_steps",
    "reduce_frame",
    "reduce_mask",
    "frame_size",
    "Reduction",
    "REDUCTIONS",
    "loop_activations",
    "target_mask",
    "as_3d",
]

def as_3d(a: np.ndarray) -> np.ndarray:
    """An activation as ``(channels, freq, time)``: the autoregressive taps get a frequency axis of 1."""
    a = np.asarray(a)
    if a.ndim == 2:
        return a[:, None, :]
    if a.ndim != 3:
        raise ParameterError(f"activation shape={a.shape} must be (channels, time) or (channels, freq, time)")
    return a


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


def frame_steps(p0: float, p1: float, n_steps: int) -> np.ndarray:
    """Indices of a tap's time steps sounding between loop phases ``p0`` and ``p1`` (circular).

    ``p1 <= p0`` wraps around the loop end; a frame shorter than a step still holds the step
    sounding at ``p0``.

    >>> frame_steps(0.0, 0.25, 8).tolist()
    [0, 1]
    >>> frame_steps(0.9, 0.1, 10).tolist()
    [9, 0]
    >>> frame_steps(0.51, 0.52, 4).tolist()
    [2]
    """
    if n_steps <= 0:
        raise ParameterError(f"n_steps={n_steps} must be > 0")
    p0, p1 = p0 % 1.0, p1 % 1.0
    first = min(n_steps - 1, int(math.floor(p0 * n_steps)))
    span = (p1 - p0) % 1.0
    # the last step whose start lies before p1 (exclusive): ceil(p1*T) - 1
    count = int(math.ceil((p0 + span) * n_steps - 1e-9)) - first
    count = max(1, min(n_steps, count))
    return (first + np.arange(count)) % n_steps


def _window(acts: np.ndarray, p0: float, p1: float) -> np.ndarray:
    """``(channels, freq)``: the mean over the steps sounding between ``p0`` and ``p1``."""
    steps = frame_steps(p0, p1, acts.shape[-1])
    return acts[:, :, steps[0]] if steps.size == 1 else acts[:, :, steps].mean(axis=-1)


def _raw(acts: np.ndarray, p0: float, p1: float) -> np.ndarray:
    n = acts.shape[-1]
    return np.ascontiguousarray(acts[:, :, int(math.floor((p0 % 1.0) * n)) % n], dtype=np.float32).reshape(-1)


@dataclass(frozen=True)
class Reduction:
    """One ``/stream/reduce`` choice, as three pieces.

    Attributes
    ----------
    frame : callable(acts, p0, p1) -> ndarray
        ``(channels, freq, time)`` activation -> one flat float32 frame.
    mask : callable(mask) -> ndarray
        ``(channels, freq)`` bool mask -> the same layout as a frame (still bool).
    size : callable(channels, freq) -> int
        Values in one frame.
    """

    frame: Callable[[np.ndarray, float, float], np.ndarray]
    mask: Callable[[np.ndarray], np.ndarray]
    size: Callable[[int, int], int]


#: ``/stream/reduce`` choice -> its :class:`Reduction` (checked against the row).
REDUCTIONS: dict[str, Reduction] = check_choices(row(STREAM_PARAMS, "/stream/reduce"), {
    "raw": Reduction(_raw, lambda m: m, lambda c, f: c * f),
    "channel": Reduction(lambda a, p0, p1: np.ascontiguousarray(_window(a, p0, p1).mean(axis=1), dtype=np.float32),
                         lambda m: m.any(axis=1), lambda c, f: c),
    "channel_freq": Reduction(lambda a, p0, p1: np.ascontiguousarray(_window(a, p0, p1), dtype=np.float32).reshape(-1),
                              lambda m: m, lambda c, f: c * f),
})


def _reduction(mode: str) -> Reduction:
    try:
        return REDUCTIONS[mode]
    except (KeyError, TypeError):
        raise ParameterError(f"/stream/reduce={mode!r} must be one of {', '.join(REDUCTIONS)}") from None


def reduce_frame(acts: np.ndarray, p0: float, p1: float, mode: str) -> np.ndarray:
    """One frame of a tap as a flat float32 vector (see the module notes for ``mode``).

    Parameters
    ----------
    acts : ndarray, shape (channels, freq, time)
        The tap's activation over the loop.
    p0, p1 : float
        Loop phases the frame spans.
    mode : {'raw', 'channel', 'channel_freq'}

    >>> acts = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    >>> reduce_frame(acts, 0.0, 0.4, "raw").tolist(), reduce_frame(acts, 0.0, 0.9, "channel").tolist()
    ([0.0, 2.0, 4.0, 6.0], [1.5, 5.5])
    """
    return _reduction(mode).frame(as_3d(acts), p0, p1)


def reduce_mask(mask: np.ndarray, mode: str) -> np.ndarray:
    """A target mask ``(channels, freq)`` in the layout of :func:`reduce_frame`'s output, as 0/1."""
    return _reduction(mode).mask(np.asarray(mask, dtype=bool)).astype(np.float32).reshape(-1)


def frame_size(shape: Sequence[int], mode: str) -> int:
    """Values in one frame of a tap of activation shape ``(channels, freq, time)``."""
    return _reduction(mode).size(int(shape[0]), int(shape[1]))


# ---------------------------------------------------------------------------------------------
# Shared memory: the worker writes, the engine process reads; nobody waits
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# In the worker (torch)
# ---------------------------------------------------------------------------------------------
def loop_activations(ear, waveform, *, context: int = 1, taps: Optional[Sequence[str]] = None) -> dict:
    """Every tap's activation over one loop, heard after ``context`` periodic copies of itself.

    The ear runs on the loop repeated ``1 + context`` times; the time positions of the last
    repetition are kept, the same split the dream optimizes over, so the autoregressive taps at
    the start of the loop hear its end as they do while it repeats.

    Parameters
    ----------
    ear : Ear
    waveform : array-like or Tensor, shape (n_samples,)
    context : int >= 0
    taps : sequence of str, optional
        All taps by default.

    Returns
    -------
    dict[str, ndarray]
        ``(channels, freq, time)`` float32 per tap (``freq`` is 1 for ``ar.*``).
    """
    import torch

    if context < 0:
        raise ParameterError(f"context={context} must be >= 0")
    device = next(ear.parameters()).device
    x = waveform if torch.is_tensor(waveform) else torch.from_numpy(np.array(waveform, dtype=np.float32))
    x = x.detach().float().to(device).reshape(-1)
    reps = 1 + int(context)
    with torch.no_grad():
        acts = ear(x.repeat(reps)[None, :], taps=taps)
    out = {}
    for tap, a in acts.items():
        total = a.shape[-1]
        start = int(round(total * (reps - 1) / reps))
        a = a[0, ..., start:]
        if a.dim() == 2:
            a = a[:, None, :]
        out[tap] = a.float().cpu().numpy()
    return out


def target_mask(objective, shapes: Mapping[str, Sequence[int]], *, stats=None) -> dict:
    """Which neurons an objective reads: ``{tap: bool array (channels, freq)}``.

    Found by differentiation, so it holds for any objective (regions, channels, neurons, sums):
    the objective is evaluated on stand-in activations of the given shapes and a neuron is in the
    mask when the score depends on it at some time step. An objective that cannot be evaluated
    that way (``surprise`` without predictors) marks its whole taps.
    """
    import torch

    from earengine.optvis.objectives import View

    taps = tuple(dict.fromkeys(objective.taps))
    g = torch.Generator().manual_seed(0)
    acts = {}
    for tap in taps:
        c, f, t = (int(v) for v in shapes[tap])
        size = (1, c, t) if tap.startswith("ar.") else (1, c, f, t)
        # positive and varied, so no mean or power sits at a point where its slope vanishes
        acts[tap] = (torch.rand(size, generator=g) + 0.5).requires_grad_(True)
    view = View(acts, {tap: (0, acts[tap].shape[-1]) for tap in taps}, torch.zeros(1), stats=stats)
    out = {}
    try:
        score = objective(view).sum()
        grads = torch.autograd.grad(score, [acts[t] for t in taps], allow_unused=True)
    except Exception:
        for tap in taps:
            c, f, _ = shapes[tap]
            out[tap] = np.ones((int(c), int(f)), dtype=bool)
        return out
    for tap, grad in zip(taps, grads):
        c, f, _ = (int(v) for v in shapes[tap])
        if grad is None:
            continue
        touched = grad[0].abs() > 0
        touched = touched.any(dim=-1)
        out[tap] = touched.reshape(c, f).cpu().numpy() if touched.dim() == 2 else touched.reshape(c, 1).cpu().numpy()
    return out


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
        acts = loop_activations(dreamer.ear, dreamer.waveform_tensor().detach(), context=context)
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
