"""Regularizers: penalties the dream keeps small (each is minimised; its weight 0 means off).

The penalties themselves take what they need: ``x`` the loop waveform ``(N,)``, ``s`` the batch's
scaleogram ``(B, C, F, T)`` in log power, ``view`` the objectives' :class:`View`. The dreamer uses
them as pieces of one signature, ``penalty(heard) -> scalar``, from :data:`PENALTIES`: the table of
weight address -> piece. Only the pieces whose weight is above 0 are taken (see
:meth:`earengine.optvis.dream.Dreamer.configure`), and their weighted sum is added to the loss in
the table's order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from earengine.optvis.objectives import Objective, View
from earengine.optvis.specificity import others

__all__ = ["activation_l1", "spectral_noise", "high_frequency", "loop_seam", "Heard", "PENALTIES", "active"]


def activation_l1(view, taps) -> Tensor:
    """Mean absolute normalised activation of the target taps: fire *these* neurons, not all."""
    return sum(view.normalised(t).abs().mean() for t in taps) / max(1, len(taps))


def spectral_noise(s: Tensor, silence: float) -> Tensor:
    """Spectral flatness of every frame (1 for white noise, near 0 for tones), averaged.

    Computed on power above silence, in the log domain: ``exp(mean log p) / mean p``.
    """
    p = (s[:, 0] - silence).clamp_min(0) + 1e-3  # (B, F, T) power above silence (log units)
    return (p.log().mean(dim=1).exp() / p.mean(dim=1)).mean()


def high_frequency(x: Tensor, *, sr: int, cutoff_hz: float = 5512.5) -> Tensor:
    """Share of the loop's energy above ``cutoff_hz`` (default sr/8), in [0, 1].

    Measured on the waveform's spectrum rather than the log scaleogram: the log's gradient is
    largest where there is least energy, which would push noise in rather than take it out.
    """
    spectrum = torch.fft.rfft(x).abs().square()
    cut = int(cutoff_hz / (sr / 2) * (spectrum.numel() - 1))
    return spectrum[cut:].sum() / (spectrum.sum() + 1e-12)


def loop_seam(x: Tensor) -> Tensor:
    """Discontinuity from the loop's end back to its start: value and slope jump."""
    value = (x[0] - x[-1]) ** 2
    slope = ((x[1] - x[0]) - (x[-1] - x[-2])) ** 2
    return value + slope


@dataclass(frozen=True)
class Heard:
    """What one dream step heard, for the penalties: the loop, the batch's scaleogram, the view of
    the ear's activations, the objective and its taps, the sample rate and the scaleogram's silence."""

    loop: Tensor
    spec: Tensor
    view: View
    objective: Objective
    taps: tuple
    sr: int
    silence: float


def _act_l1(h: Heard) -> Tensor:
    return activation_l1(h.view, [t for t in h.taps if t != "scaleogram"] or h.taps)


#: Weight address -> ``penalty(heard)``; the dream adds ``weight × penalty`` for each weight above 0.
PENALTIES: dict[str, Callable[[Heard], Tensor]] = {
    "/target/specificity": lambda h: others(h.objective, h.view).mean(),
    "/reg/act_l1": _act_l1,
    "/reg/denoise": lambda h: spectral_noise(h.spec, h.silence),
    "/reg/high_freq": lambda h: high_frequency(h.loop, sr=h.sr),
    "/reg/seam": lambda h: loop_seam(h.loop),
}


def active(settings: Any) -> tuple[tuple[float, Callable[[Heard], Tensor]], ...]:
    """``(weight, penalty)`` for every penalty of :data:`PENALTIES` whose weight is above 0 in ``settings``.

    >>> [w for w, _ in active({"/reg/seam": 2.0, "/reg/denoise": 0.0})]
    [2.0]
    """
    return tuple((settings[a], piece) for a, piece in PENALTIES.items() if settings.get(a, 0.0) > 0)
