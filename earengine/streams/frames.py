"""Stream frames: which time step of each tap is sounding, and what a frame of it holds.

The streams cut *frames* from the activations of the loop playing
(:class:`~earengine.streams.activations.ActivationSet`): a frame covers the loop phases
``[p0, p1)`` that sound between two ticks of ``/stream/fps``. A tap with ``T`` time steps over
the loop is at step ``floor(p * T)`` at phase ``p``.

Reductions (``/stream/reduce``), each flattened channel-major (``c * F + f``):

``raw``
    every neuron (channel × frequency row) at the step sounding at ``p0``: the ear's activation,
    unchanged;
``channel_freq``
    every neuron, averaged over the steps the frame spans (one step when the frame rate is above
    the tap's step rate);
``channel``
    as ``channel_freq``, averaged over frequency as well: one value per channel.

Each is a :class:`Reduction` in :data:`REDUCTIONS`, a table checked against the row. Only numpy
here, so the engine process can use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from earengine.errors import ParameterError
from earengine.params.registry import check_choices
from earengine.params.spec import row
from earengine.streams.params import STREAM_PARAMS

__all__ = ["as_3d", "frame_steps", "reduce_frame", "reduce_mask", "frame_size", "Reduction", "REDUCTIONS"]


def as_3d(a: np.ndarray) -> np.ndarray:
    """An activation as ``(channels, freq, time)``: the autoregressive taps get a frequency axis of 1."""
    a = np.asarray(a)
    if a.ndim == 2:
        return a[:, None, :]
    if a.ndim != 3:
        raise ParameterError(f"activation shape={a.shape} must be (channels, time) or (channels, freq, time)")
    return a


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
