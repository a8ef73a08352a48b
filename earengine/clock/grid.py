"""The bar grid: pure timing on the audio timeline, no I/O, no threads.

:class:`BarClock` is the clock the loop player plays on. It is advanced by the audio thread once
per buffer, in samples, so bar lines are counted on the audio timeline itself; it holds no lock
and does no I/O. A bar line is reported (:class:`BarEvent`) for the buffer it falls in, with its
place inside that buffer, so the player can put a loop's first sample on it exactly rather than
on a buffer edge.

By default the clock keeps its own tempo (``internal``). It can instead *follow* a source that
publishes a :class:`Timeline` — a beat grid in :func:`time.monotonic` seconds: an Ableton Link
session (:mod:`earengine.clock.link`) or MIDI clock (:mod:`earengine.clock.midi_in`). Sources
publish by replacing one attribute (``timeline``), so the audio thread reads the newest grid
without a lock. On each buffer the clock maps its sample count onto monotonic time
(:class:`ArrivalClock`: the lower envelope of the callback times, because a callback can come
late but never early), adds ``offset_s`` (output latency: what is computed now is heard later)
and takes the source's beat at that time.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping, Optional

__all__ = ["BarClock", "BarEvent", "Timeline", "ArrivalClock"]


@dataclass(frozen=True)
class BarEvent:
    """A bar line, reported for the buffer it falls in.

    ``bar`` counts from 0; ``error_samples`` is the buffer's first sample minus the true bar line:
    in ``(-buffer, 0]`` while the clock runs on (the line is that many samples into the buffer),
    positive only for a line that had already passed when the clock jumped onto the grid (a start
    heard late, see :attr:`BarClock.LATE_START_S`).
    """

    bar: int
    error_samples: float


@dataclass(frozen=True)
class Timeline:
    """A beat grid: at monotonic time ``time_s`` the position is ``beat``, moving at ``bpm``.

    A stopped grid (``playing`` false) stays at ``beat``.

    Examples
    --------
    >>> grid = Timeline(time_s=10.0, beat=4.0, bpm=120.0)
    >>> grid.beat_at(11.0), grid.time_at(8.0)
    (6.0, 12.0)
    >>> Timeline.from_dict(grid.to_dict()) == grid
    True
    """

    time_s: float
    beat: float
    bpm: float
    playing: bool = True

    def beat_at(self, time_s: float) -> float:
        if not self.playing:
            return self.beat
        return self.beat + (time_s - self.time_s) * self.bpm / 60.0

    def time_at(self, beat: float) -> float:
        """When ``beat`` falls (as if playing)."""
        return self.time_s + (beat - self.beat) * 60.0 / self.bpm

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Timeline":
        return cls(float(data["time_s"]), float(data["beat"]), float(data["bpm"]), bool(data.get("playing", True)))


class ArrivalClock:
    """Maps a device's own count of seconds (samples / sr, JACK frames / sr) onto
    :func:`time.monotonic`, from the times its events are seen to arrive.

    An event is seen at ``local + offset + latency`` with a latency that is never negative, so
    the offset is the lowest ``arrival - local`` seen over the last ``window_s`` of the device's
    time. When the device loses time (an xrun that skips cycles, a suspended machine) every
    arrival after it is late: once ``run`` of them in a row are later than the offset by more
    than ``jump_s``, the offset moves to them at once rather than when the window has passed.

    Examples
    --------
    >>> clock = ArrivalClock()
    >>> [round(clock.update(k * 0.01, 100.0 + k * 0.01 + late), 4) for k, late in enumerate((0.002, 0.0, 0.003))]
    [100.002, 100.01, 100.02]
    """

    def __init__(self, *, window_s: float = 1.0, run: int = 12, jump_s: float = 0.002) -> None:
        self.window_s = float(window_s)
        self.jump_s = float(jump_s)
        self.offset: Optional[float] = None
        self._low: deque = deque()  # (local, arrival - local), increasing in both: the window's minima
        self._recent: deque = deque(maxlen=max(1, int(run)))

    def reset(self) -> None:
        self.offset = None
        self._low.clear()
        self._recent.clear()

    def update(self, local_s: float, arrival_s: float) -> float:
        """Record one arrival; returns the monotonic time of ``local_s``."""
        measured = arrival_s - local_s
        low = self._low
        recent = self._recent
        recent.append((local_s, measured))
        if low and local_s < low[-1][0]:
            low.clear()  # the device's count went back (restarted): start again
        elif (self.offset is not None and len(recent) == recent.maxlen
              and min(m for _, m in recent) - self.offset > self.jump_s):
            low.clear()  # time was lost: the arrivals since then are the new floor
            for item in list(recent)[:-1]:
                while low and low[-1][1] >= item[1]:
                    low.pop()
                low.append(item)
        while low and low[-1][1] >= measured:
            low.pop()
        low.append((local_s, measured))
        while low[0][0] < local_s - self.window_s:
            low.popleft()
        self.offset = low[0][1]
        return local_s + self.offset


class BarClock:
    """Beat position integrated sample by sample from the tempo, or taken from a source.

    Parameters
    ----------
    sr : int > 0
        Sample rate in Hz.
    bpm : float > 0
    beats_per_bar : int > 0
    now : callable, optional
        Monotonic seconds (``time.monotonic``); tests pass their own.

    Examples
    --------
    >>> clock = BarClock(sr=48000, bpm=120.0, beats_per_bar=4)   # a bar lasts 96000 samples
    >>> [e.bar for e in (clock.tick(1000) for _ in range(200)) if e]
    [0, 1, 2]
    """

    #: After a jump of the source (start, song position), a bar line this recent still starts
    #: loops: a start message cannot arrive before the beat it starts.
    LATE_START_S = 0.05

    def __init__(self, *, sr: int, bpm: float, beats_per_bar: int,
                 now: Callable[[], float] = time.monotonic) -> None:
        if sr <= 0:
            raise ValueError(f"sr={sr} must be > 0")
        self.sr = int(sr)
        self.bpm = float(bpm)
        self.beats_per_bar = int(beats_per_bar)
        self.beat = 0.0  # beats since start, at the start of the coming buffer
        self.buffer_beat = 0.0  # beats since start at the start of the buffer last ticked
        self.samples = 0  # samples since start
        self._last_bar = -1
        self.offset_s = 0.0  # output latency made up for: the grid is played this much early
        self.timer = ArrivalClock()
        self.timeline: Optional[Timeline] = None  # the grid as heard, published every buffer
        self.playing = True
        self._now = now
        self._source = None
        self._transport: Optional[str] = None  # "start" | "stop" requested for the internal clock

    @property
    def bar_s(self) -> float:
        """Duration of one bar at the current tempo, in seconds."""
        return self.beats_per_bar * 60.0 / self.bpm

    @property
    def bar_position(self) -> float:
        """Bars since start (fractional)."""
        return self.beat / self.beats_per_bar

    @property
    def following(self) -> bool:
        return self._source is not None

    def follow(self, source: Optional[object]) -> None:
        """Take beat and tempo from ``source.timeline`` (None: keep the clock's own tempo).

        A source whose ``timeline`` is still None (nothing heard yet) leaves the clock running on
        its own until it has one.
        """
        self._source = source
        self.playing = True

    def start(self) -> None:
        """Internal transport: play again from bar 0 at the next buffer."""
        self._transport = "start"

    def stop(self) -> None:
        """Internal transport: hold the position; no bar lines until :meth:`start`."""
        self._transport = "stop"

    def tick(self, n_samples: int) -> Optional[BarEvent]:
        """Called at the start of each buffer of ``n_samples``; returns a bar event when a bar
        line not reported yet falls before the end of this buffer, then advances."""
        heard = self.timer.update(self.samples / self.sr, self._now()) + self.offset_s
        request, self._transport = self._transport, None
        if request == "stop":
            self.playing = False
        elif request == "start":
            self.playing = True
            self._relocate(0.0, n_samples)
        source = self._source
        grid = getattr(source, "timeline", None) if source is not None else None
        if grid is not None:
            if grid.playing:
                beat = grid.beat_at(heard)
                if not self.playing and math.isfinite(beat):
                    self._relocate(beat, n_samples)  # started: whatever the old position was
                self._sync(beat, grid.bpm, n_samples)
            self.playing = grid.playing
        self.buffer_beat = self.beat
        if not self.playing:
            self.samples += n_samples
            self.timeline = Timeline(heard, self.beat, self.bpm, False)
            return None
        self.timeline = Timeline(heard, self.beat, self.bpm, True)
        beats_per_sample = self.bpm / 60.0 / self.sr
        event = None
        # beats before 0 count in to a start (a Link peer's start on a coming bar): no bar lines
        next_bar = max(0, self._last_bar + 1)
        until = (next_bar * self.beats_per_bar - self.beat) / beats_per_sample  # samples
        if until < n_samples:
            self._last_bar = next_bar
            event = BarEvent(next_bar, -until)
        self.beat += n_samples * beats_per_sample
        self.samples += n_samples
        return event

    def _sync(self, beat: float, bpm: float, n_samples: int) -> None:
        if math.isfinite(bpm) and bpm > 0:
            self.bpm = float(bpm)
        if not math.isfinite(beat):
            return
        if abs(beat - self.beat) > 0.5:  # a jump (start, song position, a new session), not drift
            self._relocate(beat, n_samples)
        else:
            self.beat = beat

    def _relocate(self, beat: float, n_samples: int) -> None:
        """Move to ``beat``; the next bar event is the bar line at or after it, or one that
        passed within :attr:`LATE_START_S`."""
        self.beat = beat
        late_beats = max(n_samples / 2.0 / self.sr, self.LATE_START_S) * self.bpm / 60.0
        self._last_bar = math.ceil((beat - late_beats) / self.beats_per_bar) - 1

    def set_tempo(self, bpm: float, beats_per_bar: Optional[int] = None) -> None:
        """Change tempo (and metre) from the next buffer on, keeping the bar count."""
        if beats_per_bar is not None and beats_per_bar != self.beats_per_bar:
            bars = self.beat / self.beats_per_bar
            self.beats_per_bar = int(beats_per_bar)
            self.beat = bars * self.beats_per_bar
        self.bpm = float(bpm)
        if not math.isfinite(self.bpm) or self.bpm <= 0:
            raise ValueError(f"bpm={bpm} must be > 0")
