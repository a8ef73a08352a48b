"""The clock control: the registry's ``/clock/*``, the bar grid and the active source kept in step.

:class:`ClockControl` picks what the player's :class:`~earengine.clock.grid.BarClock` follows
(``/clock/source``: the engine's own tempo, an Ableton Link session, MIDI clock), publishes the
source's tempo, peers and transport to the registry, and reacts to ``/clock/*`` changes. Each
choice of ``/clock/source`` is one entry of a table checked against the registry's row, and each
address it reacts to is bound by name, so a new choice or a mistyped address fails at start-up.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from earengine.clock.grid import BarClock
from earengine.clock.link import LinkClock
from earengine.clock.midi_in import MidiClockIn
from earengine.clock.midi_out import MidiClockOut
from earengine.params.registry import Change, Registry
from earengine.service import ThreadService

__all__ = ["ClockControl"]

log = logging.getLogger("earengine.clock")


def _nothing(*args: object) -> None:
    return None


@dataclass(frozen=True)
class _Source:
    """What the clock control does for one choice of ``/clock/source``.

    ``grid()`` is what the bar clock follows (None: its own tempo); ``enter()`` readies it before
    the clock follows it and raises when it cannot (the internal clock is kept then); ``after()``
    runs once the clock follows it (a held transport is applied then); ``play`` and
    ``tempo`` take a user's ``/clock/playing`` and ``/clock/bpm`` while it is followed; ``said`` is
    the status line on choosing it. ``master``: the engine keeps time, so it may send MIDI clock;
    ``grid_transport``: start and stop are read from the grid (MIDI's come by callback).
    """

    grid: Callable[[], Optional[object]]
    enter: Callable[[], None] = _nothing
    after: Callable[[], None] = _nothing
    play: Callable[[bool], None] = _nothing
    tempo: Callable[[float, Optional[str]], None] = _nothing
    said: str = ""
    master: bool = True
    grid_transport: bool = False


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

    Raises
    ------
    ConfigError
        A choice of ``/clock/source`` has no entry in the table of sources.
    """

    SOURCE = "clock"

    thread_name = "earengine-clock"

    def __init__(self, registry: Registry, clock: BarClock, *, midi_in: Optional[MidiClockIn] = None,
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
        self.sources: dict[str, _Source] = registry.choice_table("/clock/source", {
            "internal": _Source(grid=lambda: None, after=self._hold_if_stopped, play=self._play_internal),
            "link": _Source(grid=lambda: self.link, enter=self._join_link, play=self._play_link,
                            tempo=self._propose_tempo, said="clock: following the Ableton Link session",
                            grid_transport=True),
            # under MIDI clock the master decides transport; the poll puts /clock/playing back
            "midi": _Source(grid=lambda: self.midi_in, said="clock: following MIDI clock on the MIDI input",
                            master=False),
        })
        self._lock = threading.RLock()
        self._init_thread()
        self._sub = None
        self._last_publish_s = 0.0
        self._playing = bool(registry.get("/clock/playing"))

    def start(self) -> None:
        self.clock.offset_s = self.registry.get("/clock/offset_ms") / 1000.0
        self._sub = self.registry.bind({
            "/clock/source": lambda change: self._select(change.value),
            "/clock/offset_ms": self._on_offset,
            "/clock/bpm": self._on_bpm,
            "/clock/beats_per_bar": self._on_beats_per_bar,
            "/clock/link_start_stop": self._on_link_start_stop,
            "/clock/midi_out": lambda change: self._midi_out(change.value),
            "/clock/playing": self._on_playing,
        })
        self._select(self.registry.get("/clock/source"))
        self._midi_out(self.registry.get("/clock/midi_out"))
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
        """The source the clock follows now (None: the internal clock)."""
        return self.sources[self.source].grid()

    def _select(self, source: str) -> None:
        with self._lock:
            entry = self.sources[source]
            try:
                entry.enter()
            except Exception as exc:
                self.say(f"clock: {exc}; keeping the internal clock")
                log.warning("cannot follow %s: %s", source, exc)
                self.source = "internal"
                self.clock.follow(None)
                return
            self.source = source
            self.clock.follow(entry.grid())
            entry.after()
            if entry.said:
                self.say(entry.said)
            if self.clock_out is not None or self.registry.get("/clock/midi_out"):
                self._midi_out(self.registry.get("/clock/midi_out"))

    def _hold_if_stopped(self) -> None:
        # after follow(), which sets the clock playing: the clock holds from its next buffer
        if not self.registry.get("/clock/playing"):
            self.clock.stop()

    def _join_link(self) -> None:
        if self.link is None:
            link = self.link_factory(bpm=self.registry.get("/clock/bpm"),
                                     beats_per_bar=self.registry.get("/clock/beats_per_bar"),
                                     start_stop_sync=self.registry.get("/clock/link_start_stop"))
            link.start()
            self.link = link

    def _midi_out(self, on: bool) -> None:
        want = bool(on) and self.midi_send is not None and self.sources[self.source].master
        if want and self.clock_out is None:
            self.clock_out = MidiClockOut(lambda: self.clock.timeline, self.midi_send,
                                          beats_per_bar=lambda: self.clock.beats_per_bar,
                                          lead_s=0.01 if self.schedules else 0.0)
            self.clock_out.start()
        elif not want and self.clock_out is not None:
            self.clock_out.close()
            self.clock_out = None

    # -- registry → clock --------------------------------------------------------------------
    def _on_offset(self, change: Change) -> None:
        self.clock.offset_s = change.value / 1000.0

    def _on_bpm(self, change: Change) -> None:
        if change.source != self.SOURCE:
            self.sources[self.source].tempo(change.value, change.source)

    def _propose_tempo(self, bpm: float, by: Optional[str]) -> None:
        if self.link is not None:
            self.link.set_tempo(bpm)
            self.say(f"clock: {bpm:g} BPM proposed to the Link session (from {by or 'a user'})")

    def _on_beats_per_bar(self, change: Change) -> None:
        if self.link is not None:
            self.link.set_quantum(change.value)

    def _on_link_start_stop(self, change: Change) -> None:
        if self.link is not None:
            self.link.set_start_stop_sync(change.value)

    def _on_playing(self, change: Change) -> None:
        if change.source != self.SOURCE:
            self.sources[self.source].play(bool(change.value))

    def _play_internal(self, on: bool) -> None:
        self._set_playing(on, "start" if on else "stop", write=False)
        if on:
            self.clock.start()
        else:
            self.clock.stop()

    def _play_link(self, on: bool) -> None:
        if self.link is not None and self.link.start_stop_sync:
            self.link.set_playing(on)

    # -- transport ---------------------------------------------------------------------------
    def _midi_transport(self, what: str) -> None:
        if self.active() is self.midi_in:
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
        entry = self.sources[self.source]
        source = entry.grid()
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
        if entry.grid_transport and grid.playing != self._playing:
            self._set_playing(grid.playing, "start" if grid.playing else "stop")
