"""Regularizers: penalties the dream keeps small (each is minimised; its weight 0 means off).

Each is ``penalty(x, s, view) -> scalar``: ``x`` the loop waveform ``(N,)``, ``s`` the batch's
scaleogram ``(B, C, F, T)`` in log power, ``view`` the objectives' :class:`View`.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["activation_l1", "spectral_noise", "high_frequency", "loop_seam"]


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
