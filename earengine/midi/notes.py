"""The dream's notes on the MIDI output, on the bar grid (``/opt/param grid``, ``/grid/midi``).

:class:`NoteOut` plays the :class:`~earengine.pattern.Pattern` of the loop that is playing, over and
over, on its own thread: each note on at its step's time on the grid the loop player hears
(:attr:`~earengine.clock.grid.BarClock.timeline`), off ``length_steps`` later. A new loop's
pattern (:meth:`NoteOut.queue`) takes over at the next bar line, as the player swaps loops, and in
the same place in the loop cycle (counted from the bar where the player's sequence began). When
the grid stops, every held note is let go. Times are handed to ``send`` with each message, so an
output that places messages on frames (JACK) puts each note on its sample.

Examples
--------
>>> from earengine.clock.grid import Timeline
>>> from earengine.pattern import Note, Pattern
>>> sent = []
>>> clock = [0.0]
>>> out = NoteOut(lambda: Timeline(0.0, 0.0, 120.0), lambda m, t: sent.append((m.hex(), t)),
...               now=lambda: clock[0])
>>> out.queue(Pattern((Note(0, 60, 100, 1), Note(8, 64, 90, 1)), steps_per_bar=16, bars=1))
>>> for t in (0.0, 0.1, 1.0, 1.2):
...     clock[0] = t
...     _ = out.step()
>>> sent
[('903c64', 0.0), ('803c00', 0.125), ('90405a', 1.0), ('804000', 1.125)]
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Callable, Optional

from earengine.clock.grid import Timeline
from earengine.midi.wire import NOTE_OFF, NOTE_ON
from earengine.pattern import Pattern
from earengine.service import ThreadService

__all__ = ["NoteOut"]

log = logging.getLogger("earengine.note_out")


class NoteOut(ThreadService):
    """Plays the playing loop's notes on a MIDI output; a context manager.

    Parameters
    ----------
    grid : callable() -> Timeline or None
        The grid as heard (the player's clock timeline).
    send : callable(bytes, due_s)
        Sends one MIDI message due at monotonic ``due_s``; must not block for long.
    origin_bar : callable() -> int or None
        The bar where the player's sequence of dreamed loops began (loops keep their place in the
        cycle counted from it); None: bar 0.
    enabled : callable() -> bool
        Whether notes go out now (``/grid/midi``); notes held when it turns off are let go.
    lead_s : float >= 0
        How early messages are handed to ``send`` (an output that places messages on frames
        wants them a little ahead).
    """

    thread_name = "earengine-note-out"

    def __init__(self, grid: Callable[[], Optional[Timeline]], send: Callable[[bytes, float], None], *,
                 origin_bar: Callable[[], Optional[int]] = lambda: None,
                 beats_per_bar: Callable[[], int] = lambda: 4,
                 enabled: Callable[[], bool] = lambda: True, lead_s: float = 0.0,
                 now: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.grid, self.send = grid, send
        self.origin_bar, self.beats_per_bar, self.enabled = origin_bar, beats_per_bar, enabled
        self.lead_s = float(lead_s)
        self._now, self._sleep = now, sleep
        self._lock = threading.Lock()
        self._pending: Optional[Pattern] = None
        self.current: Optional[Pattern] = None
        self._next: Optional[int] = None  # next step line, counted in steps of the current pattern from beat 0
        self._held: list = []  # (off beat, channel, note)
        self.sent = {"on": 0, "off": 0}
        self._init_thread()

    def queue(self, pattern: Optional[Pattern]) -> None:
        """The next loop's notes, from the next bar line on (None: no notes from then on). Any thread."""
        with self._lock:
            self._pending = pattern if pattern is not None else Pattern((), 1, 1)

    def close(self) -> None:
        self._stop_thread()
        self._release(None, None)

    # -- the sender's thread ----------------------------------------------------------------------
    def _emit(self, message: bytes, due_s: float, what: str) -> None:
        try:
            self.send(message, due_s)
            self.sent[what] += 1
        except Exception:
            log.debug("cannot send a MIDI note", exc_info=True)

    def _release(self, grid: Optional[Timeline], before_beat: Optional[float]) -> None:
        """Note-offs of held notes ending at or before ``before_beat`` (None: all, now)."""
        keep = []
        for off_beat, channel, note in sorted(self._held):
            if before_beat is None or off_beat <= before_beat:
                due = self._now() if grid is None or before_beat is None else grid.time_at(off_beat)
                self._emit(bytes([NOTE_OFF | (channel - 1), note, 0]), due, "off")
            else:
                keep.append((off_beat, channel, note))
        self._held = keep

    def step(self) -> float:
        """Send what is due now; returns how long to wait before the next call (seconds)."""
        grid = self.grid()
        if grid is None or not grid.playing or grid.bpm <= 0 or not self.enabled():
            if self._held:
                self._release(None, None)
            self._next = None
            return 0.005
        now = self._now() + self.lead_s
        beat_now = grid.beat_at(now)
        bpb = max(1, int(self.beats_per_bar()))
        while True:
            pattern = self.current
            sb = pattern.step_beats if pattern is not None else bpb  # without notes: look at bar lines
            if self._next is None or not (beat_now - 1.0 <= self._next * sb <= beat_now + 2 * sb):
                self._next = math.ceil((beat_now - 1e-9) / sb)  # (re)join the grid at the coming line
                if self._next * sb > beat_now:
                    break
            beat = self._next * sb
            if beat > beat_now:
                break
            self._release(grid, beat)  # offs first: a note repeated on the next step restarts
            bar, within = divmod(beat, bpb)
            if abs(within) < 1e-6 or abs(within - bpb) < 1e-6:
                with self._lock:
                    pending, self._pending = self._pending, None
                if pending is not None:
                    self.current = pending if pending.notes else None
                    if self.current is not None and self.current.step_beats != sb:
                        self._next = int(round(beat / self.current.step_beats))
                        continue
            if self.current is not None:
                self._play(grid, beat)
            self._next += 1
        self._release(grid, beat_now)
        upcoming = [off for off, _, _ in self._held]
        if self.current is not None and self._next is not None:
            upcoming.append(self._next * self.current.step_beats)
        if not upcoming:
            return 0.005
        return max(0.0, min(0.005, grid.time_at(min(upcoming)) - now))

    def _play(self, grid: Timeline, beat: float) -> None:
        p = self.current
        bpb = p.beats_per_bar
        bar = int(math.floor(beat / bpb + 1e-9))
        origin = self.origin_bar() or 0
        step = ((bar - origin) % p.bars) * p.steps_per_bar + int(round((beat - bar * bpb) / p.step_beats))
        due = grid.time_at(beat)
        for n in p.notes:
            if n.step == step:
                self._emit(bytes([NOTE_ON | (n.channel - 1), n.note, n.velocity]), due, "on")
                self._held.append((beat + n.length_steps * p.step_beats, n.channel, n.note))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.step()
            except Exception:
                log.exception("MIDI notes out failed")
                wait = 0.05
            if wait > 0:
                self._sleep(wait)
