"""Per-tap activation statistics: mean and standard deviation of every channel.

Dreaming normalises the activation it maximises, as Immersions does, with
``(a - silence_mean) / (sqrt(data_std) + 0.1)``: how a channel responds to silence is its zero,
how much it varies over real music is its scale. Both are measured here, per channel, over the
batch, frequency and time positions, with the ear in eval mode, and stored in the checkpoint's
``config.json`` under ``stats``.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from earengine.corpus.clips import n_samples
from earengine.corpus.splits import sample_batch

__all__ = ["ChannelStats", "channel_stats", "ear_statistics", "stats_to_json", "stats_from_json"]

ChannelStats = dict  # tap -> {"mean": Tensor (C,), "std": Tensor (C,)}


class _Accumulator:
    """Running per-channel sums in float64 (activations of a deep tap can be large)."""

    def __init__(self) -> None:
        self.sum: dict[str, Tensor] = {}
        self.sumsq: dict[str, Tensor] = {}
        self.count: dict[str, int] = {}

    def add(self, acts: Mapping[str, Tensor]) -> None:
        for name, a in acts.items():
            a = a.detach().double()
            dims = [d for d in range(a.dim()) if d != 1]
            s, q = a.sum(dim=dims).cpu(), a.square().sum(dim=dims).cpu()
            n = a.numel() // a.shape[1]
            if name in self.sum:
                self.sum[name] += s
                self.sumsq[name] += q
                self.count[name] += n
            else:
                self.sum[name], self.sumsq[name], self.count[name] = s, q, n

    def result(self) -> ChannelStats:
        out = {}
        for name in self.sum:
            n = self.count[name]
            mean = self.sum[name] / n
            var = (self.sumsq[name] / n - mean.square()).clamp_min(0.0)
            out[name] = {"mean": mean.float(), "std": var.sqrt().float()}
        return out


@torch.no_grad()
def channel_stats(ear, waveforms: Iterable[Tensor], *, taps: Optional[Sequence[str]] = None) -> ChannelStats:
    """Mean and standard deviation per channel of every tap over some batches of audio.

    Parameters
    ----------
    ear : Ear
        Run in eval mode for the measurement (its mode is restored afterwards).
    waveforms : iterable of Tensor, each (batch, n_samples)
    taps : sequence of str, optional
        All taps by default.

    Returns
    -------
    dict
        ``{tap: {"mean": Tensor (channels,), "std": Tensor (channels,)}}``.
    """
    was_training = ear.training
    ear.eval()
    acc = _Accumulator()
    try:
        for x in waveforms:
            acc.add(ear(x, taps=taps))
    finally:
        ear.train(was_training)
    return acc.result()


def ear_statistics(
    ear,
    source,
    *,
    clip_s: float,
    n_clips: int,
    rng: np.random.Generator,
    batch_size: int = 8,
    device: str = "cpu",
) -> dict:
    """Statistics for silence and for ``n_clips`` training-split clips of ``source``.

    Parameters
    ----------
    ear : Ear
    source : ClipSource
    clip_s : float > 0
        Length of every clip (and of the silent input).
    n_clips : int > 0
    rng : numpy.random.Generator
    batch_size : int > 0
    device : str

    Returns
    -------
    dict
        ``{"silence": ChannelStats, "data": ChannelStats, "clip_s": …, "n_clips": …}``.
    """
    n = n_samples(clip_s, source.sr)
    silence = channel_stats(ear, [torch.zeros(1, n, device=device)])

    def batches():
        left = n_clips
        while left > 0:
            b = min(batch_size, left)
            audio, _ = sample_batch(source, batch_size=b, duration_s=clip_s, split="train", rng=rng)
            yield torch.from_numpy(audio).to(device)
            left -= b

    data = channel_stats(ear, batches())
    return {"clip_s": float(clip_s), "n_clips": int(n_clips), "silence": silence, "data": data}


def _round(values: Tensor) -> list:
    return [float(f"{v:.6g}") for v in values.tolist()]


def stats_to_json(stats: Mapping) -> dict:
    """JSON-able form (lists of floats, 6 significant digits) of :func:`ear_statistics`'s result."""
    out = {k: v for k, v in stats.items() if k not in ("silence", "data")}
    for kind in ("silence", "data"):
        if kind in stats:
            out[kind] = {
                tap: {"mean": _round(s["mean"]), "std": _round(s["std"])} for tap, s in stats[kind].items()
            }
    return out


def stats_from_json(data: Mapping) -> dict:
    """Inverse of :func:`stats_to_json`, with float32 tensors."""
    out = {k: v for k, v in data.items() if k not in ("silence", "data")}
    for kind in ("silence", "data"):
        if kind in data:
            out[kind] = {
                tap: {"mean": torch.tensor(s["mean"], dtype=torch.float32),
                      "std": torch.tensor(s["std"], dtype=torch.float32)}
                for tap, s in data[kind].items()
            }
    return out
