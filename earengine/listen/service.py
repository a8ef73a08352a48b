"""The engine's side of listening: the input ring, the listener process, the meter, captures.

:class:`Listening` (no torch here) owns the :class:`~earengine.listen.ring.InputRing` that the
audio thread fills (:class:`~earengine.synth.input.AudioInput`), starts the listener process
(:func:`~earengine.listen.process.listener_main`: spawned, niced, one torch thread) the first
time ``/listen/run`` goes on, restarts it should it die, and keeps the newest set of input
activations for the streams (:meth:`Listening.position`, a live
:class:`~earengine.streams.position.Position`: the streams send its newest frame, timetagged
with when it was heard). A thread of its own, never the audio thread, writes the read-only rows
``/listen/level_db``, ``/listen/clips`` and ``/listen/status`` a few times a second, and records
captures (``/loop/capture <bars>``): the bars of input between two bar lines of the player's
clock, played as the loop from the next one.

How the machine's time is shared: the audio thread only copies samples; the listener is a
process of its own with one torch thread, niced as the worker is, beside the dreaming worker
(which leaves a core to the engine); each takes what the scheduler gives it, and the audio,
real-time where the system grants it, comes first.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import threading
import time
from collections import deque
from typing import Callable, Optional

import numpy as np

from earengine.errors import EarEngineError, ParameterError
from earengine.listen.params import MAX_CAPTURE_BARS
from earengine.listen.process import listener_main
from earengine.listen.ring import MARGIN, InputRing
from earengine.stops import start_child, stop_child
from earengine.streams.activations import ActivationBuffer, ActivationSet
from earengine.streams.position import Position
from earengine.synth.input import AudioInput
from earengine.synth.player import Loop
from earengine.units import SILENCE_DB

__all__ = ["Listening", "RING_S", "STALE_S"]

log = logging.getLogger("earengine.listen")

#: Seconds of input the ring holds: the longest capture and the listener's window fit.
RING_S = 80.0
#: A set of input activations older than this is not shown: the streams send no activations
#: rather than stale ones.
STALE_S = 0.5
#: Seconds between two readings of the level (and the clip count).
METER_S = 0.2
#: At or above this, a sample counts as clipped.
FULL_SCALE = 0.999


class Listening:
    """Input, listener, meter and captures, in the engine process; a context manager.

    Parameters
    ----------
    registry : Registry
    audio : AudioServer
        Started, with inputs.
    player : LoopPlayer
        Captures play on it; its clock's bar lines delimit them.
    model : str, optional
        The ear's folder; without one the engine meters and captures but does not listen.
    say : callable(str)
    on_captured : callable(samples), optional
        Told each capture (the engine lets the dream go on from it).
    notify : callable(address, args), optional
        Events for ``/notify`` subscribers (``/loop/captured <bars>``).
    """

    def __init__(self, registry, audio, player, *, model: Optional[str] = None, say: Callable[[str], None] = print,
                 on_captured: Optional[Callable[[np.ndarray], None]] = None,
                 notify: Optional[Callable[[str, tuple], None]] = None) -> None:
        self.registry = registry
        self.audio = audio
        self.player = player
        self.model = model
        self.say = say
        self.on_captured = on_captured or (lambda samples: None)
        self.notify = notify or (lambda address, args: None)
        self.ring = InputRing(int(RING_S * audio.sr) + MARGIN, sr=audio.sr)
        self.input = AudioInput(audio, ring=self.ring, clock=player.clock)
        self.last_capture: Optional[np.ndarray] = None
        self.taps: tuple[str, ...] = ()
        self.window_s = 0.0
        self.latest: Optional[tuple[ActivationSet, float]] = None  # (set, when its last sample was heard)
        self.sets = 0  # sets of input activations received
        #: Called (from this service's thread) when a new set of input activations has come and
        #: the streams show the input: the engine hands it the streams' ``frame_ready``, so the
        #: set leaves at once instead of at their next tick.
        self.on_heard: Callable[[], None] = lambda: None
        self.forward_ms: deque[float] = deque(maxlen=256)  # the listener's newest ear forwards
        self.restarts = 0
        self.acts: Optional[ActivationBuffer] = None
        self._process = None
        self._inbox = self._outbox = None
        self._seq = -1  # the newest set of input activations taken (the listener numbers them)
        self._clips = 0
        self._metered = 0  # ring position metered up to
        self._capturing = False
        self._closing = False
        self.ctx = mp.get_context("spawn")
        registry.add_check("/listen/run", self._check_run)
        self._sub = registry.bind({"/listen/run": self._run_changed})
        if registry.get("/listen/run"):  # set before listening began (--set /listen/run=1, a preset)
            try:
                self._check_run(True)
            except ParameterError as exc:
                registry.set("/listen/run", False, source="listen")
                say(f"listen: {exc}")
            else:
                self._spawn()
        self._status(force=True)
        self._thread = threading.Thread(target=self._watch, name="earengine-listen", daemon=True)
        self._thread.start()

    def __enter__(self) -> "Listening":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the listener process --------------------------------------------------------------------
    def _check_run(self, on: bool) -> bool:
        if on and self.model is None:
            raise ParameterError("/listen/run needs an ear to listen with (earengine run --input --ear PATH)")
        return on

    def _run_changed(self, change) -> None:
        if change.value and self._process is None:
            self._spawn()
        self._send(("run", bool(change.value)))

    def _spawn(self) -> None:
        self._seq = -1  # a new listener counts its sets from 0
        self._inbox, self._outbox = self.ctx.Queue(maxsize=100), self.ctx.Queue()
        self._process = self.ctx.Process(target=listener_main, name="earengine-listener",
                                         args=(self.model, self.ring.name, self._inbox, self._outbox, 1), daemon=True)
        start_child(self._process)
        if self.acts is not None:
            self._send(("acts", self.acts.name))
        self._send(("run", bool(self.registry.get("/listen/run"))))

    def _send(self, msg: tuple) -> None:
        if self._inbox is None:
            return
        try:
            self._inbox.put_nowait(msg)
        except (queue.Full, ValueError):
            log.warning("listener inbox full; %s dropped", msg[0])

    def _from_listener(self) -> None:
        while True:
            try:
                msg = self._outbox.get_nowait()
            except (queue.Empty, OSError, ValueError):
                return
            if msg[0] == "ready":
                _, self.taps, self.window_s, floats = msg
                if self.acts is None or self.acts.capacity < floats:
                    old, self.acts = self.acts, ActivationBuffer(int(floats * 1.25) + 1024)
                    if old is not None:
                        old.close()
                self._send(("acts", self.acts.name))
                self.say(f"listen: the ear hears the input hop by hop, each set its last {self.window_s:.2f} s "
                         "(a process of its own, niced, one thread)")
            elif msg[0] == "forwards":
                self.forward_ms.extend(msg[1])
            elif msg[0] == "error":
                self.say(msg[1])
                if msg[2]:
                    self.registry.set("/listen/run", False, source="listen")

    def _poll_acts(self) -> None:
        if self.acts is None or not self.taps:
            return
        # the newest slot's set number (the listener counts its sets): each slot has a sequence
        # of its own, so a set is known by its number, not by the slot's sequence
        got = self.acts.block.read(lambda v: v["head"].copy())
        if got is None or int(got[1][0]) <= self._seq:
            return
        found = self.acts.read(int(got[1][0]), taps=self.taps, key=int(got[1][0]))
        if found is None:
            return
        self._seq = found.step
        heard = found.loss  # the listener sends when the window's last sample was heard there
        self.latest = (ActivationSet(key=found.key, step=found.step, loss=0.0, acts=found.acts), heard)
        self.sets += 1
        if self.registry.get("/stream/source") == "input":
            self.on_heard()

    def position(self) -> Optional[Position]:
        """The newest input heard, as a live position for the streams; None when listening is
        off or its newest set is stale (older than :data:`STALE_S`)."""
        latest = self.latest
        if latest is None or not self.registry.get("/listen/run"):
            return None
        acts, heard = latest
        if time.time() - heard > STALE_S:
            return None
        return Position(heard, 0.0, self.window_s, acts.key, acts, live=True)

    # -- the meter and the status ----------------------------------------------------------------
    def _meter(self) -> None:
        head = self.ring.state().head
        n = min(head - self._metered, int(METER_S * self.audio.sr), self.ring.capacity - 2 * MARGIN)
        if n <= 0:
            return
        x = self.ring.span(head - n, head)
        self._metered = head
        if x is None:
            return
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        level = max(SILENCE_DB, min(0.0, 20.0 * np.log10(max(peak, 1e-12))))
        over = np.abs(x) >= FULL_SCALE
        clips = int(np.count_nonzero(over[1:] & ~over[:-1]) + bool(over[0])) if x.size else 0
        if round(level, 1) != round(self.registry.get("/listen/level_db"), 1):
            self.registry.set("/listen/level_db", round(level, 1), source="listen")
        if clips:
            self._clips += clips
            self.registry.set("/listen/clips", self._clips, source="listen")

    def _status(self, *, force: bool = False) -> None:
        sources = self.audio.input_sources()
        names = self.audio.input_names()
        if sources is None:
            line = f"listening to {' and '.join(names)}" if self.audio.mode != "jack" else "listening to " + ", ".join(names)
        else:
            heard = [f"{port.split(':')[-1]} <- {', '.join(src)}" for port, src in sources.items() if src]
            line = ("hearing " + "; ".join(heard)) if heard else (
                f"no input connected to {' or '.join(names)} (connect one: jack_connect <port> {names[0]})")
        if force or line != self.registry.get("/listen/status"):
            self.registry.set("/listen/status", line, source="listen")
            self.say(f"listen: {line}")

    def _watch(self) -> None:
        next_meter = next_status = 0.0
        while not self._closing:
            try:
                if self._outbox is not None:
                    self._from_listener()
                self._poll_acts()
                now = time.monotonic()
                if now >= next_meter:
                    next_meter = now + METER_S
                    self._meter()
                    self._supervise()
                if now >= next_status:
                    next_status = now + 1.0
                    self._status()
            except Exception:
                log.exception("listening")
            time.sleep(0.005)

    def _supervise(self) -> None:
        if self._process is None or self._process.is_alive() or not self.registry.get("/listen/run"):
            return
        self.restarts += 1
        self.say("listen: the listener stopped unexpectedly; starting it again")
        self._stop_process()
        self._spawn()

    # -- captures --------------------------------------------------------------------------------
    def capture(self, bars: int) -> None:
        """Record the next ``bars`` whole bars of input, from the next bar line of the player's
        clock, and play them as the loop; returns at once (the recording takes its bars)."""
        clock = self.player.clock
        if not 1 <= bars <= MAX_CAPTURE_BARS:
            raise ParameterError(f"bars={bars} must be 1 to {MAX_CAPTURE_BARS}")
        n = bars * clock.bar_s * self.audio.sr
        if n + 2 * MARGIN > self.ring.capacity:
            raise ParameterError(f"bars={bars} last {bars * clock.bar_s:.0f} s at this tempo: more than the "
                                 f"{RING_S:.0f} s the input keeps; capture fewer bars")
        if not clock.playing:
            raise EarEngineError("/loop/capture needs the clock running (it starts on a bar line)")
        if self._capturing:
            raise EarEngineError("/loop/capture: a capture is under way; wait for /loop/captured")
        self._capturing = True
        threading.Thread(target=self._record, args=(int(bars),), name="earengine-capture", daemon=True).start()

    def _record(self, bars: int) -> None:
        try:
            samples = self._bars(bars)
        finally:
            self._capturing = False
        if samples is None:
            return
        self.last_capture = samples
        self.player.queue(Loop(samples, self.audio.sr, bars, "input"))
        self.say(f"capture: {bars} bar(s) of input ({samples.size / self.audio.sr:.2f} s) play from the next bar line")
        self.notify("/loop/captured", (bars,))
        self.on_captured(samples)

    def _bars(self, bars: int) -> Optional[np.ndarray]:
        """The input from the next bar line to the bar line ``bars`` later, once heard."""
        deadline = time.monotonic() + 5.0 + 3.0 * (bars + 1) * self.player.clock.bar_s
        seen = self.input.bar_line
        first = seen[0] if seen is not None else None
        start = end = None
        while not self._closing and time.monotonic() < deadline:
            line = self.input.bar_line
            if line is not None and (first is None or line[0] > first):
                if start is None:
                    start = line
                elif line[0] >= start[0] + bars:
                    end = (start[0] + bars, line[1]) if line[0] == start[0] + bars else None
                    if end is None:
                        break  # bar lines went by unseen (a jump of the clock): give up
                    if self.ring.state().head >= end[1]:
                        got = self.ring.span(start[1], end[1])
                        if got is not None:
                            return got
                        break
            time.sleep(0.005)
        if not self._closing:
            self.say(f"capture: no {bars} whole bar(s) of input came (the clock stopped or jumped); nothing captured")
        return None

    # -- commands and closing ----------------------------------------------------------------
    def handlers(self) -> dict[str, Callable]:
        """``/loop/capture <bars>`` for the router."""

        def capture(args: tuple, sender: tuple) -> None:
            self.capture(int(args[0]))

        return {"/loop/capture": capture}

    def counts(self) -> dict[str, int]:
        """Sets heard, listener restarts, and the ear forward's time in the listener (ms, over its
        newest forwards: median, 95th percentile and longest; 0 before the first)."""
        out = {"listen_sets": self.sets, "listen_restarts": self.restarts}
        ms = np.array(self.forward_ms, dtype=np.float64)
        for name, value in (("p50", 50), ("p95", 95), ("max", 100)):
            out[f"listen_forward_ms_{name}"] = int(round(np.percentile(ms, value))) if ms.size else 0
        return out

    def _stop_process(self) -> None:
        if self._process is None:
            return
        stop_child(self._process, (self._inbox, self._outbox), lambda: self._send(("stop",)))
        self._process = None

    def close(self) -> None:
        self._closing = True
        self._sub.close()
        self._thread.join(timeout=2)
        self._stop_process()
        self.input.close()
        self.ring.close()
        if self.acts is not None:
            self.acts.close()
