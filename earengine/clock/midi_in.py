"""MIDI clock in: a clock source fed with MIDI realtime messages.

:class:`MidiClockIn` turns clock (24 pulses per quarter note), start, stop, continue and song
position into a :class:`~earengine.clock.grid.Timeline` that the bar grid follows;
:class:`PulseTempo` is its tempo estimate, a least-squares fit over the last pulses that restarts
its window when the residuals show a real tempo change. The MIDI input feeds it on its own
thread; nothing here opens a port.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Any, Callable, Optional

from earengine.clock.grid import Timeline
from earengine.midi.wire import CLOCK, CONTINUE, SONG_POSITION, START, STOP

__all__ = ["PulseTempo", "MidiClockIn", "PPQ"]

log = logging.getLogger("earengine.clock")

#: MIDI clock pulses per quarter note.
PPQ = 24


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
            if status == CLOCK:
                t = float(time_s)
                local = t if local_s is None else float(local_s)
                self._offset = t - local
                self._pulse(local)
            elif status == START:
                self._stop_grid()
                self._strict, self._armed, self._position = True, True, 0
                self._publish_stopped()
                self._transport("start")
            elif status == CONTINUE:
                self._strict = True
                if not self.playing:
                    self._armed = True
                    self._transport("continue")
            elif status == STOP:
                self._strict, self._armed = True, False
                if self.playing:
                    self._stop_grid()
                    self._transport("stop")
            elif status == SONG_POSITION and len(message) >= 3:
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
