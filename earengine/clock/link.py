"""Ableton Link as a clock source, through the ``aalink`` package.

:class:`LinkClock` joins (or starts) a Link session on a thread of its own, which runs the
asyncio loop aalink needs, and publishes the session's beat grid as a
:class:`~earengine.clock.grid.Timeline` for the bar grid to follow. aalink is optional:
:meth:`LinkClock.available` says how to install it, and it is imported only when a session is
joined.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
import time
from typing import Any, Callable, Optional

from earengine.clock.grid import Timeline
from earengine.errors import DeviceError

__all__ = ["LinkClock"]

log = logging.getLogger("earengine.clock")


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
        """None when aalink is installed, else how to install it (looked up, not imported: the
        import waits until a session is joined)."""
        if importlib.util.find_spec("aalink") is None:
            return "Ableton Link needs the aalink package: pip install aalink"
        return None

    def start(self, timeout_s: float = 5.0) -> None:
        """Join (or start) the session; returns once the first grid is published."""
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
        try:
            asyncio.run(self._session())
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("Link session failed")
        finally:
            self._ready.set()

    async def _session(self) -> None:
        import aalink  # optional: only a session that is joined needs it

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
