"""Clocks: where tempo and bar lines come from.

:class:`BarClock` is the internal clock. It is advanced by the audio thread once per buffer, in
samples, so bar lines are counted on the audio timeline itself; it holds no lock and does no
I/O. Bar events are reported on the buffer boundary nearest to the true bar line, so a loop that
starts on one is off the grid by at most half an audio buffer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

__all__ = ["BarClock", "BarEvent"]


@dataclass(frozen=True)
class BarEvent:
    """A bar line taken at a buffer boundary.

    ``bar`` counts from 0; ``error_samples`` is boundary minus true bar line (|e| <= buffer/2).
    """

    bar: int
    error_samples: float


class BarClock:
    """Beat position integrated sample by sample from the tempo.

    Parameters
    ----------
    sr : int > 0
        Sample rate in Hz.
    bpm : float > 0
    beats_per_bar : int > 0

    Examples
    --------
    >>> clock = BarClock(sr=48000, bpm=120.0, beats_per_bar=4)   # a bar lasts 96000 samples
    >>> [e.bar for e in (clock.tick(1000) for _ in range(200)) if e]
    [0, 1, 2]
    """

    def __init__(self, *, sr: int, bpm: float, beats_per_bar: int) -> None:
        if sr <= 0:
            raise ValueError(f"sr={sr} must be > 0")
        self.sr = int(sr)
        self.bpm = float(bpm)
        self.beats_per_bar = int(beats_per_bar)
        self.beat = 0.0  # beats since start, at the start of the coming buffer
        self.samples = 0  # samples since start
        self._last_bar = -1

    @property
    def bar_s(self) -> float:
        """Duration of one bar at the current tempo, in seconds."""
        return self.beats_per_bar * 60.0 / self.bpm

    @property
    def bar_position(self) -> float:
        """Bars since start (fractional)."""
        return self.beat / self.beats_per_bar

    def tick(self, n_samples: int) -> Optional[BarEvent]:
        """Called at the start of each buffer of ``n_samples``; returns a bar event when the
        bar line nearest this boundary has not been reported yet, then advances."""
        beats_per_sample = self.bpm / 60.0 / self.sr
        event = None
        next_bar = self._last_bar + 1
        until = (next_bar * self.beats_per_bar - self.beat) / beats_per_sample  # samples
        if until < n_samples / 2.0:
            self._last_bar = next_bar
            event = BarEvent(next_bar, -until)
        self.beat += n_samples * beats_per_sample
        self.samples += n_samples
        return event

    def set_tempo(self, bpm: float, beats_per_bar: Optional[int] = None) -> None:
        """Change tempo (and metre) from the next buffer on, keeping the bar count."""
        if beats_per_bar is not None and beats_per_bar != self.beats_per_bar:
            bars = self.beat / self.beats_per_bar
            self.beats_per_bar = int(beats_per_bar)
            self.beat = bars * self.beats_per_bar
        self.bpm = float(bpm)
        if not math.isfinite(self.bpm) or self.bpm <= 0:
            raise ValueError(f"bpm={bpm} must be > 0")
