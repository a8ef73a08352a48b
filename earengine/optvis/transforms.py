"""Transforms: random, seeded changes to the dream batch that make the result robust.

Each is ``transform(x, generator) -> x`` on a batch of waveforms ``(B, N)`` or, for the masks,
on a scaleogram ``(B, C, F, T)``. Batch element 0 is always left untouched, so the batch holds
one clean view of the loop (as Immersions does).
"""

from __future__ import annotations

import torch

from torch import Tensor

__all__ = ["pitch_jitter", "time_mask", "freq_mask"]


def pitch_jitter(x: Tensor, generator: torch.Generator, *, cents: float) -> Tensor:
    """Resample each element (but the first) by a random factor within ±``cents``.

    Reads the waveform at ``2**(c/1200)`` times its rate (linear interpolation, differentiable),
    aligned at the end — the loop sits at the end of the batch's context — so pitch moves while
    the loop's position does not.
    """
    if cents <= 0 or x.shape[0] < 2:
        return x
    b, n = x.shape
    c = (torch.rand(b, generator=generator, device="cpu") * 2 - 1) * cents
    c[0] = 0.0
    rate = (2.0 ** (c / 1200.0)).to(x.device, x.dtype)  # (B,)
    end = torch.arange(n, device=x.device, dtype=x.dtype) - (n - 1)  # ... -2, -1, 0
    pos = (n - 1) + end[None, :] * rate[:, None]  # read position per output sample
    pos = pos.clamp(0, n - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=n - 1)
    frac = pos - lo
    return x.gather(1, lo) * (1 - frac) + x.gather(1, hi) * frac


def _band(size: int, width: float, b: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    span = max(1, int(round(width * size)))
    start = (torch.rand(b, generator=generator) * max(1, size - span + 1)).long()
    return start, start + span


def time_mask(s: Tensor, generator: torch.Generator, *, width: float, fill: float) -> Tensor:
    """Set one random band of ``width`` (fraction of frames) to ``fill`` in each element but the first."""
    if width <= 0 or s.shape[0] < 2:
        return s
    b, t = s.shape[0], s.shape[-1]
    start, stop = _band(t, width, b, generator)
    idx = torch.arange(t)[None, :]
    mask = ((idx >= start[:, None]) & (idx < stop[:, None])).to(s.device)
    mask[0] = False
    return torch.where(mask[:, None, None, :], torch.full_like(s, fill), s)


def freq_mask(s: Tensor, generator: torch.Generator, *, width: float, fill: float) -> Tensor:
    """Set one random band of ``width`` (fraction of bins) to ``fill`` in each element but the first."""
    if width <= 0 or s.shape[0] < 2:
        return s
    b, f = s.shape[0], s.shape[2]
    start, stop = _band(f, width, b, generator)
    idx = torch.arange(f)[None, :]
    mask = ((idx >= start[:, None]) & (idx < stop[:, None])).to(s.device)
    mask[0] = False
    return torch.where(mask[:, None, :, None], torch.full_like(s, fill), s)


