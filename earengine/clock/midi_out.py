"""MIDI clock out: the grid the engine plays, sent as MIDI clock on a thread of its own.

:class:`MidiClockOut` sends start on a bar line of the master grid, 24 clock pulses per quarter
note on the grid's own times, and stop when the grid stops; the clock control runs it while the
engine is the master (``/clock/source`` internal or link) and ``/clock/midi_out`` is on.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable, Optional

from earengine.clock.grid import Timeline
from earengine.clock.midi_in import PPQ
from earengine.midi.wire import CLOCK, START, STOP
from earengine.service import ThreadService

__all__ = ["MidiClockOut"]

log = logging.getLogger("earengine.clock")


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
            self._send(bytes([STOP]), "stop")
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
                self._send(bytes([STOP]), "stop")
                self.running = False
            return 0.005
        now += self.lead_s  # act on what falls due within the lead
        beat_now = grid.beat_at(now)
        if self.running and not (self._next_beat - 2.0 <= beat_now <= self._next_beat + 1.0):
            # the grid jumped (a restart, a new session): stop, and start again on a bar line
            self._send(bytes([STOP]), "stop")
            self.running = False
        if not self.running:
            bar = max(1, self.beats_per_bar())
            first = max(0.0, math.ceil((beat_now + 1e-3) / bar) * bar)  # not in a count-in
            due = grid.time_at(first)
            if due - now > 0.002:
                return min(0.005, due - now - 0.002)
            self._send(bytes([START]), "start", due - 0.001)
            self.running = True
            self._next_beat = first
        due = grid.time_at(self._next_beat)
        if due - now > 0.0003:
            return min(0.005, due - now)
        self._send(bytes([CLOCK]), "clock", due)
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
