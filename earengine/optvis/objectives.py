"""Objectives: what the dream maximises. Always a score to *maximise*; the optimizer flips the
sign in exactly one place (:mod:`earengine.optvis.dream`).

An objective is called with a :class:`View` (the ear's activations for the dream batch, which
part of them is the loop, and the statistics that normalise them) and returns one score per
batch element. Objectives add (``a + b``), scale (``0.5 * a``) and describe themselves
(``str(a)``). The shorthand of :func:`parse` covers what a performer types::

    enc.5:12        channel 12 of enc.5 (every frequency and time)
    enc.5:0-31      channels 0…31 of enc.5
    enc.5:12@40     one neuron: channel 12 at frequency row 40
    ar.3            the whole layer
    surprise        what the ear cannot predict (high CPC loss)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

import torch
from torch import Tensor

from earengine.errors import ParameterError
from earengine.optvis.targets import KINDS, Target, parse_one
from earengine.params.registry import check_table

__all__ = [
    "View", "Objective", "Region", "Channels", "Neuron", "Layer", "Surprise", "Sum", "Scaled",
    "parse", "normalise",
]


@dataclass
class View:
    """What objectives see.

    Attributes
    ----------
    acts : dict[str, Tensor]
        Raw activations: ``(B, C, F, T)`` for ``scaleogram`` and ``enc.*``, ``(B, C, T)`` for ``ar.*``.
    loop : dict[str, tuple[int, int]]
        For each tap, the time positions ``[start, stop)`` that belong to the loop (the batch holds
        periodic context before it; only the loop counts).
    shifts : Tensor, shape (B,)
        Loop-phase offset in [0, 1) by which each batch element was rolled (time jitter), so a
        time region refers to the loop, not to the rolled copy.
    stats : dict, optional
        ``{"silence": {tap: {"mean", "std"}}, "data": {...}}`` from the ear's checkpoint.
    cpc : callable, optional
        ``cpc(acts) -> Tensor`` CPC loss, for :class:`Surprise`.
    """

    acts: dict
    loop: dict
    shifts: Tensor
    stats: Optional[Mapping] = None
    cpc: Optional[object] = None
    _cache: dict = field(default_factory=dict)

    def normalised(self, tap: str) -> Tensor:
        """The loop part of ``tap``, normalised per channel as Immersions does:
        ``(a - silence_mean) / (sqrt(data_std) + 0.1)``; 4-D ``(B, C, F, T)`` always."""
        if tap not in self._cache:
            a = self.acts[tap]
            start, stop = self.loop[tap]
            a = a[..., start:stop]
            if a.dim() == 3:
                a = a[:, :, None, :]
            self._cache[tap] = normalise(a, tap, self.stats)
        return self._cache[tap]

    def time_mask(self, tap: str, position: float, width: float) -> Tensor:
        """(B, T) mask of loop positions whose loop phase lies within ``position ± width/2``."""
        start, stop = self.loop[tap]
        n = stop - start
        phase = torch.arange(n, device=self.shifts.device, dtype=torch.float32)[None, :] / n
        phase = torch.remainder(phase - self.shifts[:, None].float(), 1.0)
        distance = torch.remainder(phase - position + 0.5, 1.0) - 0.5  # circular
        return (distance.abs() <= width / 2 + 0.5 / n).float()


def normalise(a: Tensor, tap: str, stats: Optional[Mapping]) -> Tensor:
    """Per-channel normalisation of a 4-D activation with the checkpoint's statistics."""
    if not stats or tap not in stats.get("silence", {}) or tap not in stats.get("data", {}):
        return a
    mean = stats["silence"][tap]["mean"].to(a.device)
    std = stats["data"][tap]["std"].to(a.device)
    if mean.numel() != a.shape[1]:
        return a
    return (a - mean[None, :, None, None]) / (std.clamp_min(0).sqrt()[None, :, None, None] + 0.1)


def _signed_power(x: Tensor, exponent: float) -> Tensor:
    return x if exponent == 1.0 else torch.sign(x) * x.abs().clamp_min(1e-12) ** exponent


class Objective:
    """Base: a score to maximise, per batch element."""

    taps: tuple = ()

    def __call__(self, view: View) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __add__(self, other: "Objective") -> "Objective":
        return Sum((self, other))

    def __mul__(self, weight: float) -> "Objective":
        return Scaled(self, float(weight))

    __rmul__ = __mul__


@dataclass(frozen=True)
class Region(Objective):
    """The Immersions target: a tap and a region of its channels, frequencies and loop time.

    Each region is a position and a width in [0, 1] of its axis (the time axis is the loop's
    phase, circular). The score is the mean normalised activation in the region, raised to
    ``exponent`` keeping its sign.
    """

    tap: str
    channel: float = 0.5
    channel_width: float = 1.0
    pitch: float = 0.5
    pitch_width: float = 1.0
    time: float = 0.5
    time_width: float = 1.0
    exponent: float = 1.0

    @property
    def taps(self) -> tuple:  # type: ignore[override]
        return (self.tap,)

    def _span(self, n: int, position: float, width: float) -> slice:
        lo = int(math.floor((position - width / 2) * n))
        hi = int(math.ceil((position + width / 2) * n))
        lo, hi = max(0, lo), min(n, hi)
        if hi <= lo:  # a region narrower than one row still holds the nearest row
            lo = min(n - 1, max(0, int(position * n)))
            hi = lo + 1
        return slice(lo, hi)

    def __call__(self, view: View) -> Tensor:
        a = view.normalised(self.tap)  # (B, C, F, T)
        a = a[:, self._span(a.shape[1], self.channel, self.channel_width)]
        a = a[:, :, self._span(a.shape[2], self.pitch, self.pitch_width)]
        if self.time_width >= 1.0:
            score = a.mean(dim=(1, 2, 3))
        else:
            mask = view.time_mask(self.tap, self.time, self.time_width)  # (B, T)
            per_time = a.mean(dim=(1, 2))
            score = (per_time * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return _signed_power(score, self.exponent)

    def __str__(self) -> str:
        return (f"{self.tap} channels {self.channel:.2f}±{self.channel_width / 2:.2f}, pitch "
                f"{self.pitch:.2f}±{self.pitch_width / 2:.2f}, time {self.time:.2f}±{self.time_width / 2:.2f}")


@dataclass(frozen=True)
class Channels(Objective):
    """Mean normalised activation of channels ``first…last`` (inclusive) of a tap."""

    tap: str
    first: int
    last: int

    @property
    def taps(self) -> tuple:  # type: ignore[override]
        return (self.tap,)

    def __call__(self, view: View) -> Tensor:
        a = view.normalised(self.tap)
        if self.last >= a.shape[1]:
            raise ParameterError(f"{self.tap} has channels 0-{a.shape[1] - 1}; {self} asks for {self.last}")
        return a[:, self.first:self.last + 1].mean(dim=(1, 2, 3))

    def __str__(self) -> str:
        return f"{self.tap}:{self.first}" if self.first == self.last else f"{self.tap}:{self.first}-{self.last}"


@dataclass(frozen=True)
class Neuron(Objective):
    """One neuron: a channel at one frequency row, over the loop's time."""

    tap: str
    channel: int
    row: int

    @property
    def taps(self) -> tuple:  # type: ignore[override]
        return (self.tap,)

    def __call__(self, view: View) -> Tensor:
        a = view.normalised(self.tap)
        if self.channel >= a.shape[1] or self.row >= a.shape[2]:
            raise ParameterError(f"{self} is outside {self.tap} ({a.shape[1]} channels × {a.shape[2]} rows)")
        return a[:, self.channel, self.row].mean(dim=-1)

    def __str__(self) -> str:
        return f"{self.tap}:{self.channel}@{self.row}"


@dataclass(frozen=True)
class Layer(Objective):
    """Mean normalised activation of a whole tap."""

    tap: str

    @property
    def taps(self) -> tuple:  # type: ignore[override]
        return (self.tap,)

    def __call__(self, view: View) -> Tensor:
        return view.normalised(self.tap).mean(dim=(1, 2, 3))

    def __str__(self) -> str:
        return self.tap


@dataclass(frozen=True)
class Surprise(Objective):
    """Sound the ear cannot predict: its CPC loss on the dream batch (higher = less predictable)."""

    taps = ("enc.7", "ar.8")

    def __call__(self, view: View) -> Tensor:
        if view.cpc is None:
            raise ParameterError("surprise needs the ear's CPC predictors (a checkpoint that has them)")
        loss = view.cpc(view.acts)
        return loss.expand(view.shifts.shape[0])

    def __str__(self) -> str:
        return "surprise"


@dataclass(frozen=True)
class Scaled(Objective):
    inner: Objective
    weight: float

    @property
    def taps(self) -> tuple:  # type: ignore[override]
        return self.inner.taps

    def __call__(self, view: View) -> Tensor:
        return self.weight * self.inner(view)

    def __str__(self) -> str:
        return f"{self.weight:g} × ({self.inner})"


@dataclass(frozen=True)
class Sum(Objective):
    parts: tuple

    @property
    def taps(self) -> tuple:  # type: ignore[override]
        seen: dict = {}
        for p in self.parts:
            for t in p.taps:
                seen.setdefault(t, None)
        return tuple(seen)

    def __call__(self, view: View) -> Tensor:
        return sum(p(view) for p in self.parts)

    def __str__(self) -> str:
        return " + ".join(str(p) for p in self.parts)


#: The objective of each kind of target (:data:`earengine.optvis.targets.KINDS`), from the target.
BUILDERS: dict[str, Callable[[Target], Objective]] = check_table("target kind", KINDS, {
    "surprise": lambda t: Surprise(),
    "layer": lambda t: Layer(t.tap),
    "neuron": lambda t: Neuron(t.tap, t.first, t.row),
    "channels": lambda t: Channels(t.tap, t.first, t.last),
})


def build(target: Target) -> Objective:
    """The objective for a parsed :class:`~earengine.optvis.targets.Target`."""
    return BUILDERS[target.kind](target)


def parse(spec: str, *, taps: Sequence[str], shapes: Optional[Mapping[str, tuple]] = None) -> Objective:
    """Turn the shorthand of :mod:`earengine.optvis.targets` into an objective.

    >>> str(parse("enc.5:0-31", taps=("enc.5",)))
    'enc.5:0-31'
    """
    return build(parse_one(spec, taps=taps, shapes=shapes))
