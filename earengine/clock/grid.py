"""Clocks: where tempo and bar lines come from.

:class:`BarClock` is the clock the loop player plays on. It is advanced by the audio thread once
per buffer, in samples, so bar lines are counted on the audio timeline itself; it holds no lock
and does no I/O. A bar line is reported for the buffer it falls in, with its place inside that
buffer, so the player can put a loop's first sample on it exactly rather than on a buffer edge.

By default the clock keeps its own tempo (``internal``). It can instead *follow* a source that
publishes a :class:`Timeline` — a beat grid in :func:`time.monotonic` seconds:

- :class:`LinkClock`, an Ableton Link session (the ``aalink`` package), polled on its own thread;
- :class:`MidiClockIn`, MIDI clock (24 pulses per quarter note, start, stop, continue, song
  position), with :class:`PulseTempo`, a least-squares tempo estimate over the last pulses that
  restarts its window when the residuals show a real tempo change.

Sources publish by replacing one attribute (``timeline``), so the audio thread reads the newest
grid without a lock. On each buffer the clock maps its sample count onto monotonic time
(:class:`ArrivalClock`: the lower envelope of the callback times, because a callback can come
late but never early), adds ``offset_s`` (output latency: what is computed now is heard later)
and takes the source's beat at that time. :class:`MidiClockOut` sends MIDI clock from the grid
the engine plays. :class:`ClockControl` keeps all of this in step with the registry's ``/clock/*``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping, Optional

from earengine.control.service import ThreadService

__all__ = [
    "BarClock",
    "BarEvent",
    "Timeline",
    "ArrivalClock",
    "PulseTempo",
    "MidiClockIn",
    "MidiClockOut",
    "LinkClock",
    "ClockControl",
    "PPQ",
]

log = logging.getLogger("earengine.clock")

#: MIDI clock pulses per quarter note.
PPQ = 24
_CLOCK, _START, _CONTINUE, _STOP, _SONG_POSITION = 0xF8, 0xFA, 0xFB, 0xFC, 0xF2


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


# ---------------------------------------------------------------------------------------------
# MIDI clock in
# ---------------------------------------------------------------------------------------------
class PulseTempo:
    """Tempo and phase from pulse times, steady under jitter and quick to follow a real change.

    The tempo is the slope of a least-squares line through every pulse since the last tempo
    change (at most ``window``): timing noise averages out the longer the tempo holds, whether
    it is noise around a steady grid (timestamps rounded to an audio period) or noise in each
    interval (a clock whose beats wander). A real change shows as a short fit (the last
    ``short`` pulses) that departs from the long one by more than ``z`` times its usual
    departure (learnt as it runs, at least ``min_change``) for ``persist`` pulses in a row; the
    long fit then starts again from the recent pulses. The phase is the line with the long
    slope through the last ``phase`` pulses, so the grid stays on the pulses as they come.

    Parameters
    ----------
    ppq : int > 0
        Pulses per quarter note.
    window : int >= 64
        Most pulses in the long fit.
    bpm : float > 0
        Tempo assumed until pulses say otherwise.

    Examples
    --------
    >>> est = PulseTempo()
    >>> for k in range(48):
    ...     est.add(k, 5.0 + k * 60.0 / 128.0 / 24.0)
    >>> round(est.bpm, 6)
    128.0
    """

    def __init__(self, *, ppq: int = PPQ, window: int = 2048, short: int = 48, phase: int = 24,
                 bpm: float = 120.0, z: float = 4.0, min_change: float = 0.005, persist: int = 8) -> None:
        self.ppq = int(ppq)
        self.window = max(64, int(window))
        self.short, self.phase = int(short), int(phase)
        self.z, self.min_change, self.persist = float(z), float(min_change), int(persist)
        self.period_s = 60.0 / float(bpm) / self.ppq
        self.restarts = 0
        self.scale = 0.004  # usual relative departure of the short fit from the long one
        self._pulses: deque = deque(maxlen=self.window)
        self._run = 0
        self._sign = 0
        self._anchor_k = 0
        self._anchor_t = 0.0
        self._origin = (0, 0.0)
        self._sums = [0.0] * 5  # n, Σk, Σt, Σkk, Σkt about the origin

    @property
    def bpm(self) -> float:
        return 60.0 / (self.period_s * self.ppq)

    @property
    def count(self) -> int:
        return len(self._pulses)

    def time_of(self, k: float) -> float:
        """Time of pulse ``k`` on the fitted grid."""
        return self._anchor_t + (k - self._anchor_k) * self.period_s

    def restart(self, keep: int = 0) -> None:
        """Start the long fit again from the last ``keep`` pulses (the tempo stays as the prior)."""
        kept = list(self._pulses)[-keep:] if keep > 0 else []
        self._pulses.clear()
        self._sums = [0.0] * 5
        self._run = 0
        if kept:
            self._origin = kept[0]
        for k, t in kept:
            self._push(k, t)

    def _push(self, k: int, t: float) -> None:
        if len(self._pulses) == self._pulses.maxlen:
            self._account(*self._pulses[0], -1.0)
        self._pulses.append((k, t))
        if not self._sums[0]:
            self._origin = (k, t)
        elif k - self._origin[0] > 4 * self.window:  # keep the sums small numbers
            self._origin = self._pulses[0]
            self._sums = [0.0] * 5
            for kk, tt in list(self._pulses)[:-1]:
                self._account(kk, tt, 1.0)
        self._account(k, t, 1.0)

    def _account(self, k: int, t: float, sign: float) -> None:
        dk, dt = k - self._origin[0], t - self._origin[1]
        s = self._sums
        s[0] += sign
        s[1] += sign * dk
        s[2] += sign * dt
        s[3] += sign * dk * dk
        s[4] += sign * dk * dt

    def _long_slope(self) -> Optional[float]:
        n, sk, st, skk, skt = self._sums
        if n < 2:
            return None
        sxx = skk - sk * sk / n
        sxy = skt - sk * st / n
        return sxy / sxx if sxx > 0 and sxy > 0 else None

    def _short_slope(self) -> Optional[float]:
        pts = list(self._pulses)[-self.short:]
        n = len(pts)
        mk = sum(k for k, _ in pts) / n
        mt = sum(t for _, t in pts) / n
        sxx = sum((k - mk) ** 2 for k, _ in pts)
        sxy = sum((k - mk) * (t - mt) for k, t in pts)
        return sxy / sxx if sxx > 0 and sxy > 0 else None

    def add(self, k: int, t_s: float) -> None:
        """One pulse: its index (increasing) and its time in seconds."""
        if self._pulses and (k <= self._pulses[-1][0] or t_s < self._pulses[-1][1]):
            return  # out of order: nothing a line could use
        self._push(k, t_s)
        n = len(self._pulses)
        slope = self._long_slope()
        if slope is not None:
            # two or three pulses say little: lean on the prior until there are more
            self.period_s = slope if n >= 4 else 0.5 * (slope + self.period_s)
        if n >= self.short + self.phase:
            short = self._short_slope()
            if short is not None:
                self._watch(short / self.period_s - 1.0)
        recent = list(self._pulses)[-self.phase:]
        self._anchor_k = k
        self._anchor_t = sum(t - (kk - k) * self.period_s for kk, t in recent) / len(recent)

    def _since_change(self) -> int:
        """How many of the last ``short`` pulses follow the new tempo: the split of them into two
        lines that fits best."""
        pts = list(self._pulses)[-self.short:]

        def sse(part: list) -> float:
            n = len(part)
            mk = sum(k for k, _ in part) / n
            mt = sum(t for _, t in part) / n
            sxx = sum((k - mk) ** 2 for k, _ in part)
            sxy = sum((k - mk) * (t - mt) for k, t in part)
            syy = sum((t - mt) ** 2 for _, t in part)
            return syy - (sxy * sxy / sxx if sxx > 0 else 0.0)

        best, split = math.inf, len(pts) // 2
        for c in range(3, len(pts) - 5):
            cost = sse(pts[:c]) + sse(pts[c:])
            if cost < best:
                best, split = cost, c
        return len(pts) - split

    def _watch(self, departure: float) -> None:
        limit = max(self.z * self.scale, self.min_change)
        if abs(departure) > limit:
            sign = 1 if departure > 0 else -1
            self._run = self._run + 1 if sign == self._sign else 1
            self._sign = sign
            if self._run >= self.persist:
                self.restarts += 1
                self.restart(keep=self._since_change())
                slope = self._long_slope()
                if slope is not None:
                    self.period_s = slope
                return
        else:
            self._run = 0
        # learn the usual departure from what is not a change (a clipped running mean)
        self.scale += (min(abs(departure), limit) - self.scale) / 64.0


class MidiClockIn:
    """MIDI clock as a clock source: feed it realtime messages, read :attr:`timeline`.

    Start plays from song position 0 at the next clock pulse; continue plays from the position
    where it stopped (or that a song position pointer set); stop holds it. Clock that arrives
    before any transport message (start, continue, stop, song position) is followed as it is (a
    device that sends only clock). If the
    clock stops without a stop message (a cable pulled, a port gone), the grid keeps time at the
    last tempo, and when pulses come back they are counted from where that grid says they are.

    Parameters
    ----------
    bpm : float > 0
        Tempo assumed before pulses say otherwise.

    :attr:`on_transport`, when set, is called with ``"start"``, ``"continue"`` or ``"stop"`` on
    the thread that feeds, before the first pulse of the new state is published.
    """

    def __init__(self, *, bpm: float = 120.0) -> None:
        self.tempo = PulseTempo(bpm=bpm)
        self.on_transport: Optional[Callable[[str], None]] = None
        self.timeline: Optional[Timeline] = None
        self.playing = False
        self.counts = {"pulses": 0, "ignored": 0, "gaps": 0}
        self._k = -1  # pulses counted (with the ones a gap swallowed)
        self._k0: Optional[int] = None  # pulse count at song position 0 while playing
        self._position = 0  # song position (pulses) of the next pulse, while stopped
        self._armed = False
        self._strict = False  # a transport message was seen: clock alone no longer plays
        self._last_t: Optional[float] = None  # on the port's time line
        self._offset = 0.0  # port time line → monotonic

    @property
    def bpm(self) -> float:
        return self.tempo.bpm

    def _transport(self, what: str) -> None:
        if self.on_transport is not None:
            try:
                self.on_transport(what)
            except Exception:
                log.exception("transport callback failed on %s", what)

    def feed(self, message: Any, time_s: float, local_s: Optional[float] = None) -> None:
        """One message (status byte first) seen at monotonic ``time_s``. Never raises.

        ``local_s`` is the same moment on the port's own time line (JACK frames / sr, summed
        MIDI delta times) where the port has one: pulses are fitted there, where their spacing
        is exact, and only the grid's anchor is put on the monotonic time line, with the newest
        mapping. Without it, ``time_s`` serves for both.
        """
        try:
            status = message[0]
            if status == _CLOCK:
                t = float(time_s)
                local = t if local_s is None else float(local_s)
                self._offset = t - local
                self._pulse(local)
            elif status == _START:
                self._stop_grid()
                self._strict, self._armed, self._position = True, True, 0
                self._publish_stopped()
                self._transport("start")
            elif status == _CONTINUE:
                self._strict = True
                if not self.playing:
                    self._armed = True
                    self._transport("continue")
            elif status == _STOP:
                self._strict, self._armed = True, False
                if self.playing:
                    self._stop_grid()
                    self._transport("stop")
            elif status == _SONG_POSITION and len(message) >= 3:
                # a source that sends song position has a transport: clock after it, while
                # stopped, waits for continue (as jack_midi_clock's does after a locate)
                self._strict = True
                self._position = 6 * ((message[1] & 0x7F) | (message[2] & 0x7F) << 7)  # sixteenths
                if self.playing:
                    self._k0 = self._k + 1 - self._position
                else:
                    self._publish_stopped()
            else:
                self.counts["ignored"] += 1
        except Exception:  # bad input never stops the clock
            self.counts["ignored"] += 1
            log.debug("ignored MIDI clock message %r", message, exc_info=True)

    def _stop_grid(self) -> None:
        if self.playing and self._k0 is not None:
            self._position = self._k + 1 - self._k0
        self.playing = False
        self._k0 = None
        self._publish_stopped()

    def _publish_stopped(self) -> None:
        when = self._last_t + self._offset if self._last_t is not None else 0.0
        self.timeline = Timeline(when, self._position / PPQ, self.tempo.bpm, False)

    def _pulse(self, t: float) -> None:
        if self._last_t is not None and t < self._last_t - 1e-4:
            self.counts["ignored"] += 1  # stamped before the pulse before it: out of order
            return
        self.counts["pulses"] += 1
        period = self.tempo.period_s
        if self._last_t is not None and t - self._last_t > max(0.25, 6.0 * period):
            # pulses stopped and came back: count the ones the gap swallowed
            self.counts["gaps"] += 1
            missed = max(0, int(round((t - self._last_t) / period)) - 1)
            if self.playing and self.timeline is not None and self._k0 is not None:
                expected = self.timeline.beat_at(t + self._offset) * PPQ  # where the kept grid says we are
                self._k = self._k0 + int(round(expected)) - 1
            else:
                self._k += missed
            self.tempo.restart()
        self._last_t = t
        self._k += 1
        self.tempo.add(self._k, t)
        if self._armed or (not self._strict and not self.playing):
            free = not self._armed
            self._armed = False
            self._k0 = self._k - (self._position if self._strict else 0)
            self.playing = True
            if free:  # clock with no transport messages: follow it as it comes
                self._transport("continue")
        if self.playing:
            beat = (self._k - self._k0) / PPQ
            fitted = self.tempo.time_of(self._k) if self.tempo.count >= 8 else t
            self.timeline = Timeline(fitted + self._offset, beat, self.tempo.bpm, True)
        else:
            self.timeline = Timeline(t + self._offset, self._position / PPQ, self.tempo.bpm, False)


# ---------------------------------------------------------------------------------------------
# MIDI clock out
# ---------------------------------------------------------------------------------------------
class MidiClockOut(ThreadService):
    """Sends MIDI clock from a master grid on its own thread; a context manager.

    Clock starts on the next bar line of the grid (start, then the first pulse on the line), so
    a receiver's bar 1 is one of ours; stop is sent when the grid stops or the sender is closed.
    Pulse times come from the grid itself, so nothing accumulates however late a wake-up is.

    Parameters
    ----------
    grid : callable() -> Timeline or None
        The grid as heard (the player's :attr:`BarClock.timeline`).
    send : callable(bytes, due_s)
        Sends one MIDI message due at monotonic ``due_s``; must not block for long.
    beats_per_bar : callable() -> int
    lead_s : float >= 0
        How early messages are handed to ``send`` (an output that places each message on the
        frame of its due time wants them a little ahead; one that sends at once, none).
    """

    thread_name = "earengine-midi-clock-out"

    def __init__(self, grid: Callable[[], Optional[Timeline]], send: Callable[[bytes, float], None], *,
                 beats_per_bar: Callable[[], int] = lambda: 4, lead_s: float = 0.0,
                 now: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.grid, self.send, self.beats_per_bar = grid, send, beats_per_bar
        self.lead_s = float(lead_s)
        self._now, self._sleep = now, sleep
        self.running = False
        self.sent = {"clock": 0, "start": 0, "stop": 0}
        self._next_beat = 0.0
        self._init_thread()

    def close(self) -> None:
        self._stop_thread()
        if self.running:
            self._send(bytes([_STOP]), "stop")
            self.running = False

    def _send(self, message: bytes, what: str, due_s: Optional[float] = None) -> None:
        try:
            self.send(message, self._now() if due_s is None else due_s)
            self.sent[what] += 1
        except Exception:
            log.debug("cannot send MIDI clock", exc_info=True)

    def step(self) -> float:
        """Do what is due now; returns how long to wait before the next call (seconds)."""
        grid = self.grid()
        now = self._now()
        if grid is None or not grid.playing or grid.bpm <= 0:
            if self.running:
                self._send(bytes([_STOP]), "stop")
                self.running = False
            return 0.005
        now += self.lead_s  # act on what falls due within the lead
        beat_now = grid.beat_at(now)
        if self.running and not (self._next_beat - 2.0 <= beat_now <= self._next_beat + 1.0):
            # the grid jumped (a restart, a new session): stop, and start again on a bar line
            self._send(bytes([_STOP]), "stop")
            self.running = False
        if not self.running:
            bar = max(1, self.beats_per_bar())
            first = max(0.0, math.ceil((beat_now + 1e-3) / bar) * bar)  # not in a count-in
            due = grid.time_at(first)
            if due - now > 0.002:
                return min(0.005, due - now - 0.002)
            self._send(bytes([_START]), "start", due - 0.001)
            self.running = True
            self._next_beat = first
        due = grid.time_at(self._next_beat)
        if due - now > 0.0003:
            return min(0.005, due - now)
        self._send(bytes([_CLOCK]), "clock", due)
        self._next_beat += 1.0 / PPQ
        return max(0.0, min(0.005, grid.time_at(self._next_beat) - now))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.step()
            except Exception:
                log.exception("MIDI clock out failed")
                wait = 0.05
            if wait > 0:
                self._sleep(wait)


# ---------------------------------------------------------------------------------------------
# Ableton Link
# ---------------------------------------------------------------------------------------------
class LinkClock:
    """An Ableton Link session as a clock source (``aalink``); a context manager.

    aalink needs an asyncio loop; the session lives on a thread of its own that runs one and
    reads the session every ``poll_s``, publishing :attr:`timeline`, :attr:`peers` and
    :attr:`playing`. Joining adopts the session's tempo and beat grid and never changes them;
    only :meth:`set_tempo` (a user's ``/clock/bpm``) does. The quantum is the bar, so bar lines
    line up with every peer that uses the same quantum.

    Parameters
    ----------
    bpm : float > 0
        Tempo of a session this peer starts alone.
    beats_per_bar : int > 0
        The Link quantum.
    start_stop_sync : bool
        Share start and stop with the session; without it the grid always plays. With it, a
        start puts this peer's beat 0 (its bar 0) where the session starts playing, so loops
        start on the bar where the other peers start.
    """

    def __init__(self, *, bpm: float = 120.0, beats_per_bar: int = 4, start_stop_sync: bool = False,
                 poll_s: float = 0.005) -> None:
        self.bpm = float(bpm)
        self.quantum = int(beats_per_bar)
        self.start_stop_sync = bool(start_stop_sync)
        self.poll_s = float(poll_s)
        self.timeline: Optional[Timeline] = None
        self.peers = 0
        self.playing = True
        self.error: Optional[str] = None
        self._loop = None
        self._link = None
        self._ready = threading.Event()
        self._done = None
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "LinkClock":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def available() -> Optional[str]:
        """None when aalink can be imported, else how to install it."""
        try:
            import aalink  # noqa: F401
        except ImportError:
            return "Ableton Link needs the aalink package: pip install aalink"
        return None

    def start(self, timeout_s: float = 5.0) -> None:
        """Join (or start) the session; returns once the first grid is published."""
        from earengine.errors import DeviceError

        why = self.available()
        if why:
            raise DeviceError(why)
        self._thread = threading.Thread(target=self._main, name="earengine-link", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s) or self.error:
            raise DeviceError(f"cannot join Ableton Link: {self.error or 'no answer'}")

    def close(self) -> None:
        loop, done = self._loop, self._done
        if loop is not None and done is not None:
            try:
                loop.call_soon_threadsafe(done.set)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=3)
            self._thread = None

    def _call(self, fn: Callable[[Any], None]) -> None:
        """Run ``fn(link)`` on the session's thread (aalink objects belong to their loop)."""
        loop = self._loop
        if loop is None:
            return

        def run() -> None:
            if self._link is not None:
                try:
                    fn(self._link)
                except Exception:
                    log.exception("Link call failed")

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:
            pass

    def set_tempo(self, bpm: float) -> None:
        """Propose a tempo to the whole session."""
        self._call(lambda link: setattr(link, "tempo", float(bpm)))

    def set_quantum(self, beats_per_bar: int) -> None:
        self.quantum = int(beats_per_bar)
        self._call(lambda link: setattr(link, "quantum", float(beats_per_bar)))

    def set_start_stop_sync(self, on: bool) -> None:
        self.start_stop_sync = bool(on)
        self._call(lambda link: setattr(link, "start_stop_sync_enabled", bool(on)))

    def set_playing(self, on: bool) -> None:
        """Start or stop the session (with start/stop sync). A start lands on the session's
        next bar line (at once when alone), as a start from any peer does."""
        if on:
            self._call(lambda link: link.set_is_playing_and_request_beat_at_time(True, link.time, 0.0))
        else:
            self._call(lambda link: setattr(link, "playing", False))

    def _main(self) -> None:
        import asyncio

        try:
            asyncio.run(self._session())
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("Link session failed")
        finally:
            self._ready.set()

    async def _session(self) -> None:
        import asyncio

        import aalink

        self._loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        link = aalink.Link(self.bpm)
        link.quantum = float(self.quantum)
        link.start_stop_sync_enabled = self.start_stop_sync
        link.enabled = True
        self._link = link
        try:
            while not self._done.is_set():
                self._read(link)
                self._ready.set()
                try:
                    await asyncio.wait_for(self._done.wait(), self.poll_s)
                except asyncio.TimeoutError:
                    pass
        finally:
            link.enabled = False
            self._link = None

    def _read(self, link: Any) -> None:
        playing = bool(link.playing) if self.start_stop_sync else True
        if playing and not self.playing:
            # A start (ours or another peer's): this peer's beat 0 goes where the session starts
            # playing, quantised to the bar, as Link asks of every peer that shares start and
            # stop. Until then the beat is negative and the clock waits for bar 0.
            link.request_beat_at_start_playing_time(0.0)
        before = time.monotonic()
        beat = float(link.beat)  # the session's beat at Link's own "now", taken inside the call
        after = time.monotonic()
        # Link keeps its own clock; the grid is told in time.monotonic, and the moment of the
        # reading is the middle of the two stamps around it (a few microseconds apart).
        tempo = float(link.tempo)
        self.peers = int(link.num_peers)
        self.playing = playing
        self.timeline = Timeline(0.5 * (before + after), beat, tempo, playing)


# ---------------------------------------------------------------------------------------------
# The registry's /clock/* and the active source, kept in step
# ---------------------------------------------------------------------------------------------
class ClockControl(ThreadService):
    """Keeps the player's :class:`BarClock`, the active source and ``/clock/*`` in step.

    - ``/clock/source`` switches what the clock follows (Link is joined on first use);
    - a source's tempo is written to ``/clock/bpm`` (so loops are resampled and the next dream
      has the new length) once it moves by ``publish_bpm``; a user's ``/clock/bpm`` under Link
      sets the session's tempo;
    - ``/clock/offset_ms``, ``/clock/beats_per_bar`` (the Link quantum), ``/clock/playing``,
      ``/clock/link_start_stop`` and ``/clock/midi_out`` act at once;
    - transport changes reach ``on_transport("start" | "continue" | "stop")``.

    All registry writes happen on this object's thread or a source's (MIDI) thread, never on the
    audio thread. A context manager.

    Parameters
    ----------
    registry : Registry
    clock : BarClock
        The player's clock.
    midi_in : MidiClockIn, optional
        MIDI clock source (fed by the MIDI input).
    midi_send : callable(bytes, due_s), optional
        MIDI output for clock out.
    schedules : bool
        Whether ``midi_send`` places a message on the frame of its due time (then clock is
        handed over a little ahead of time).
    on_transport : callable(str), optional
    say : callable(str), optional
        Where plain status lines go.
    """

    SOURCE = "clock"

    thread_name = "earengine-clock"

    def __init__(self, registry, clock: BarClock, *, midi_in: Optional[MidiClockIn] = None,
                 midi_send: Optional[Callable[[bytes, float], None]] = None, schedules: bool = False,
                 on_transport: Optional[Callable[[str], None]] = None,
                 say: Callable[[str], None] = lambda line: None, poll_s: float = 0.02,
                 publish_bpm: float = 0.05, link_factory: Optional[Callable[..., LinkClock]] = None) -> None:
        self.registry = registry
        self.clock = clock
        self.midi_in = midi_in or MidiClockIn(bpm=registry.get("/clock/bpm"))
        self.midi_in.on_transport = self._midi_transport
        self.midi_send = midi_send
        self.schedules = schedules
        self.on_transport = on_transport
        self.say = say
        self.poll_s = poll_s
        self.publish_bpm = publish_bpm
        self.link_factory = link_factory or LinkClock
        self.link: Optional[LinkClock] = None
        self.clock_out: Optional[MidiClockOut] = None
        self.source = "internal"
        self._lock = threading.RLock()
        self._init_thread()
        self._sub = None
        self._last_publish_s = 0.0
        self._playing = bool(registry.get("/clock/playing"))

    def start(self) -> None:
        self.clock.offset_s = self.registry.get("/clock/offset_ms") / 1000.0
        self._sub = self.registry.subscribe(self._on_change)
        self._select(self.registry.get("/clock/source"))
        self._midi_out(self.registry.get("/clock/midi_out"))
        if not self._playing and self.source == "internal":
            self.clock.stop()
        self._start_thread()

    def close(self) -> None:
        if self._sub is not None:
            self._sub.close()
            self._sub = None
        self._stop_thread()
        if self.clock_out is not None:
            self.clock_out.close()
            self.clock_out = None
        self.clock.follow(None)
        if self.link is not None:
            self.link.close()
            self.link = None

    # -- sources -----------------------------------------------------------------------------
    def active(self) -> Optional[object]:
        return {"link": self.link, "midi": self.midi_in}.get(self.source)

    def _select(self, source: str) -> None:
        with self._lock:
            if source == "link" and self.link is None:
                try:
                    link = self.link_factory(bpm=self.registry.get("/clock/bpm"),
                                             beats_per_bar=self.registry.get("/clock/beats_per_bar"),
                                             start_stop_sync=self.registry.get("/clock/link_start_stop"))
                    link.start()
                    self.link = link
                except Exception as exc:
                    self.say(f"clock: {exc}; keeping the internal clock")
                    log.warning("cannot join Link: %s", exc)
                    self.source = "internal"
                    self.clock.follow(None)
                    return
            self.source = source
            self.clock.follow(self.active())
            if source == "internal" and not self.registry.get("/clock/playing"):
                self.clock.stop()
            if source == "link":
                self.say("clock: following the Ableton Link session")
            elif source == "midi":
                self.say("clock: following MIDI clock on the MIDI input")
            if self.clock_out is not None or self.registry.get("/clock/midi_out"):
                self._midi_out(self.registry.get("/clock/midi_out"))

    def _midi_out(self, on: bool) -> None:
        want = bool(on) and self.midi_send is not None and self.source != "midi"
        if want and self.clock_out is None:
            self.clock_out = MidiClockOut(lambda: self.clock.timeline, self.midi_send,
                                          beats_per_bar=lambda: self.clock.beats_per_bar,
                                          lead_s=0.01 if self.schedules else 0.0)
            self.clock_out.start()
        elif not want and self.clock_out is not None:
            self.clock_out.close()
            self.clock_out = None

    # -- registry → clock --------------------------------------------------------------------
    def _on_change(self, change) -> None:
        a, v = change.address, change.value
        mine = change.source == self.SOURCE
        if a == "/clock/source":
            self._select(v)
        elif a == "/clock/offset_ms":
            self.clock.offset_s = v / 1000.0
        elif a == "/clock/bpm" and not mine and self.source == "link" and self.link is not None:
            self.link.set_tempo(v)
            self.say(f"clock: {v:g} BPM proposed to the Link session (from {change.source or 'a user'})")
        elif a == "/clock/beats_per_bar" and self.link is not None:
            self.link.set_quantum(v)
        elif a == "/clock/link_start_stop" and self.link is not None:
            self.link.set_start_stop_sync(v)
        elif a == "/clock/midi_out":
            self._midi_out(v)
        elif a == "/clock/playing" and not mine:
            if self.source == "internal":
                self._set_playing(bool(v), "start" if v else "stop", write=False)
                if v:
                    self.clock.start()
                else:
                    self.clock.stop()
            elif self.source == "link" and self.link is not None and self.link.start_stop_sync:
                self.link.set_playing(bool(v))
            # under MIDI clock the master decides; the poll puts the value back

    # -- transport ---------------------------------------------------------------------------
    def _midi_transport(self, what: str) -> None:
        if self.source == "midi":
            self._set_playing(what != "stop", what)

    def _set_playing(self, playing: bool, what: str, *, write: bool = True) -> None:
        with self._lock:
            changed = playing != self._playing
            self._playing = playing
        if write and self.registry.get("/clock/playing") != playing:
            try:
                self.registry.set("/clock/playing", playing, source=self.SOURCE)
            except Exception:
                log.exception("cannot write /clock/playing")
        if (changed or what == "start") and self.on_transport is not None:
            try:
                self.on_transport(what)
            except Exception:
                log.exception("transport handler failed on %s", what)

    # -- source → registry -------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.poll()
            except Exception:
                log.exception("clock poll failed")

    def poll(self) -> None:
        """Publish the active source's tempo, peers and transport (called every ``poll_s``)."""
        source = self.active()
        if self.link is not None and self.registry.get("/clock/peers") != self.link.peers:
            self.registry.set("/clock/peers", self.link.peers, source=self.SOURCE)
        grid = getattr(source, "timeline", None) if source is not None else None
        if grid is None:
            return
        bpm = round(min(400.0, max(20.0, grid.bpm)), 3)
        current = self.registry.get("/clock/bpm")
        now = time.monotonic()
        moved, since = abs(bpm - current), now - self._last_publish_s
        beat_s = 60.0 / bpm
        # A big move is published at once, a small one at most once a beat, and a trim (the
        # loop player reads loops at the published tempo) once in four bars: a noisy estimate
        # must not resample the loop and the dream over and over.
        if moved >= 1.0 or (moved >= self.publish_bpm and since >= beat_s) or (moved >= 0.002 and since >= 16 * beat_s):
            self._last_publish_s = now
            self.registry.set("/clock/bpm", bpm, source=self.SOURCE)
        # MIDI transport arrives through the source's callback, ahead of its first pulse
        if self.source == "link" and grid.playing != self._playing:
            self._set_playing(grid.playing, "start" if grid.playing else "stop")
