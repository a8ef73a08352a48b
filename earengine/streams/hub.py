"""The stream hub: every neuron lit at the moment its part of the loop sounds.

:class:`StreamHub` runs one sender thread. Each tick of ``/stream/fps`` it asks where the sound
will be ``/stream/lookahead_ms`` from now (a :class:`~earengine.streams.position.Position`, kept
current by :class:`~earengine.streams.position.PlayerTracker` from the audio thread), cuts that
frame out of the activations of the loop playing there
(:class:`~earengine.streams.activations.ActivationSet`, which the position carries: they entered
with their loop at its bar line, whatever the worker dreamed since), and sends it to every
destination as OSC bundles timetagged for when the frame sounds, each datagram at most
``/stream/max_bytes`` long (packed by :class:`~earengine.streams.packing.BundlePacker`; the
message layout is in :mod:`earengine.streams.params`).

Nothing here waits for a receiver. UDP destinations
(:class:`~earengine.streams.destinations.Destination`) have their own non-blocking sockets: a
full send buffer skips the rest of that frame for that destination, and a destination that keeps
refusing (nobody listens any more) is dropped with a ``/stream/dropped`` notice. WebSocket
receivers (:class:`~earengine.streams.websocket.WebSocketStreams`, for bulk receivers such as a
browser) each get a short queue of the newest frames; one that reads too slowly loses its oldest
frames (counted, in ``/counts``), in bounded memory, and nobody else waits. A frame that comes
due while the previous one is still going out is skipped, never sent late in a burst.

The ``/stream/*`` parameters are read into one :class:`StreamSettings` value, again after each
change of one of them (bound with :meth:`Registry.bind <earengine.params.registry.Registry.bind>`),
so a change applies at the next frame.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import numpy as np

from earengine.errors import EarEngineError, ParameterError
from earengine.optvis.params import TAPS
from earengine.osc.wire import Reply, encode_message
from earengine.params.registry import Change
from earengine.streams.destinations import Destination, dest_name, probe_dest, resolve_dest
from earengine.streams.frames import frame_size, reduce_frame, reduce_mask
from earengine.streams.packing import BundlePacker
from earengine.streams.params import MAX_FPS, STREAM_PARAMS
from earengine.streams.position import Position

if TYPE_CHECKING:
    from earengine.streams.websocket import WebSocketStreams

__all__ = ["StreamHub", "StreamSettings", "parse_layers"]

log = logging.getLogger("earengine.stream")

#: Destinations one engine streams to at once.
MAX_DESTINATIONS = 16
#: Seconds between repeats of the shapes and the target mask (UDP may lose them).
ANNOUNCE_EVERY_S = 2.0
#: Datagrams of the layout and the announcements sent per destination per frame, on top of the
#: frame itself, so a large layout does not overrun a receiver's socket buffer in one burst.
BACKLOG_PER_FRAME = 24
#: Largest message over WebSocket: none (its frames are not datagrams).
UNLIMITED = 1 << 30
_ASK = object()  # frame_messages: ask where the sound is


def parse_layers(text: str, taps: Sequence[str]) -> tuple[str, ...]:
    """``'all'`` or tap names separated by spaces/commas → the taps, in the ear's order.

    >>> parse_layers("ar.3, enc.5", ("scaleogram", "enc.5", "ar.3"))
    ('enc.5', 'ar.3')
    """
    words = [w for w in re.split(r"[\s,]+", text.strip()) if w]
    if not words or words == ["all"]:
        return tuple(taps)
    unknown = [w for w in words if w not in taps]
    if unknown:
        raise ParameterError(f"/stream/layers={text!r}: {', '.join(unknown)} must be one of all, {', '.join(taps)}")
    return tuple(t for t in taps if t in words)


@dataclass(frozen=True)
class StreamSettings:
    """The ``/stream/*`` parameters, as the sender uses them.

    >>> from earengine.params import default_registry
    >>> StreamSettings.read(default_registry(), ("enc.0", "ar.1")).layers
    ('enc.0', 'ar.1')
    """

    layers: tuple[str, ...]
    reduce: str
    fps: float
    max_bytes: int
    lookahead_s: float
    run: bool

    @classmethod
    def read(cls, registry, taps: Sequence[str]) -> "StreamSettings":
        get = registry.get
        return cls(parse_layers(get("/stream/layers"), taps), get("/stream/reduce"), float(get("/stream/fps")),
                   int(get("/stream/max_bytes")), float(get("/stream/lookahead_ms")) / 1000.0,
                   bool(get("/stream/run")))


# ---------------------------------------------------------------------------------------------
# The hub
# ---------------------------------------------------------------------------------------------
class StreamHub:
    """Streams activation frames to UDP destinations and WebSocket receivers; a context manager.

    Parameters
    ----------
    registry : Registry
        Supplies ``/stream/*`` (read again after each change, so it applies at the next frame).
    position : callable() -> Position or None
        Where the sound is, and the playing loop's activations (a
        :class:`~earengine.streams.position.PlayerTracker`); None: frames carry no phase.
    taps : sequence of str
        Every tap name, in the ear's order (``/stream/layers`` is checked against them).
    reply : callable(dest, address, args), optional
        Sends a notice (``/stream/dropped``) to an OSC peer.
    on_demand : callable(bool), optional
        Told True when the first receiver arrives and False when the last one leaves, so the
        worker computes activations only while someone looks.
    clock : callable() -> float
        Wall clock (``time.time``), replaceable in tests.
    """

    def __init__(self, registry, *, position: Optional[Callable[[], Optional[Position]]] = None,
                 taps: Sequence[str] = (), reply: Optional[Callable[[tuple, str, tuple], None]] = None,
                 on_demand: Optional[Callable[[bool], None]] = None, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.position = position or (lambda: None)
        self.taps = tuple(taps) or TAPS
        self.reply = reply or (lambda dest, address, args: None)
        self.on_demand = on_demand or (lambda on: None)
        self.clock = clock
        self.frame = 0
        self.counts = {"frames": 0, "late": 0, "dropped_destinations": 0}
        self.layout = None  # earengine.viz.layout.NeuronLayout, when the ear has one
        self._shown = None  # the ActivationSet the announcements were last made from
        self._shown_shape: Optional[tuple] = None  # what they show of it
        self._dests: dict[str, Destination] = {}
        self._ws: Optional["WebSocketStreams"] = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._fresh = False  # frame_ready: a newer frame than the last one sent waits
        self._sent_at = float("-inf")  # when the last frame left (monotonic)
        self._live = (0.0, 0.0)  # the newest input frame sent: (when heard, seconds it spans)
        self._closed = False
        self._announced: Optional[tuple] = None
        self._announced_at = 0.0
        self._demand = False
        self.frame_times: deque[float] = deque(maxlen=600)  # when each frame left (monotonic), for benches
        registry.add_check("/stream/layers", lambda text: " ".join(parse_layers(text, self.taps)) if text.strip() != "all" else "all")
        self._settings: Optional[StreamSettings] = None  # None: read again at the next frame
        self._settings_lock = threading.Lock()
        self._bound = registry.bind({spec.address: self._settings_changed for spec in STREAM_PARAMS})
        self._thread = threading.Thread(target=self._run, name="earengine-stream", daemon=True)
        self._thread.start()

    def __enter__(self) -> "StreamHub":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=2)
        self._bound.close()
        with self._lock:
            for dest in self._dests.values():
                dest.close()
            self._dests.clear()

    # -- inputs --------------------------------------------------------------------------------
    def playing(self):
        """The :class:`~earengine.streams.activations.ActivationSet` of the loop playing now (None:
        nothing plays, or the loop has none)."""
        pos = self.position()
        return pos.acts if pos is not None else None

    def _shape_of(self, acts) -> Optional[tuple]:
        """What the announcements show of a set (its masks and shapes), worked out once per set,
        not on every frame."""
        if acts is None:
            return None
        if acts is not self._shown:
            self._shown_shape = (hash(tuple((t, m.tobytes()) for t, m in acts.mask.items())),
                                 tuple((t, a.shape[:2]) for t, a in acts.acts.items()))
            self._shown = acts
        return self._shown_shape

    def set_layout(self, layout) -> None:
        """The ear's neuron layout; every destination gets it."""
        self.layout = layout
        with self._lock:
            for dest in self._dests.values():
                self._queue_layout(dest)
        if self._ws is not None:
            self._ws.broadcast(self._layout_datagrams(self.frame, UNLIMITED), frame=False)

    # -- destinations ----------------------------------------------------------------------------
    def add(self, text: str, *, owner: Optional[tuple] = None) -> str:
        """Start streaming to ``host:port``; resolves and probes it first (may take a moment:
        call from a job, not from a real-time thread). Returns the destination's name."""
        sockaddr, family = resolve_dest(text)
        why = probe_dest(sockaddr, family)
        if why is not None:
            raise EarEngineError(f"dest={text} refuses UDP ({why}); start the receiver first, then add it")
        name = dest_name(text)
        with self._lock:
            if name in self._dests:
                return name
            if len(self._dests) >= MAX_DESTINATIONS:
                raise EarEngineError(f"already {MAX_DESTINATIONS} destinations; /stream/remove one first")
            dest = Destination(name, sockaddr, family, owner)
            dest.backlog.extend(self._announce_datagrams(self.frame))
            self._queue_layout(dest)
            self._dests[name] = dest
        self.update_demand()
        return name

    def remove(self, text: str) -> list[str]:
        """Stop streaming to ``host:port`` (or ``all``); returns the names removed."""
        with self._lock:
            if text.strip() == "all":
                names = list(self._dests)
            else:
                name = dest_name(text)
                if name not in self._dests:
                    raise EarEngineError(f"dest={text} is not a stream destination; see /stream/list")
                names = [name]
            for name in names:
                self._dests.pop(name).close()
        self.update_demand()
        return names

    def destinations(self) -> list[str]:
        with self._lock:
            return list(self._dests)

    def send_layout(self, text: Optional[str] = None) -> None:
        """Queue the layout for every destination, or for ``host:port`` only."""
        if self.layout is None:
            raise EarEngineError("no neuron layout yet: the engine needs an ear (earengine run --ear PATH); "
                                 "a new ear's layout is computed once, then sent to every destination")
        with self._lock:
            if text:
                name = dest_name(text)
                if name not in self._dests:
                    raise EarEngineError(f"dest={text} is not a stream destination; /stream/add it first")
                targets = [self._dests[name]]
            else:
                targets = list(self._dests.values())
            for dest in targets:
                self._queue_layout(dest)

    def attach_websocket(self, ws: "WebSocketStreams") -> None:
        """Stream to WebSocket receivers too (:class:`~earengine.streams.websocket.WebSocketStreams`
        attaches itself)."""
        self._ws = ws

    def update_demand(self) -> None:
        """Tell ``on_demand`` when the first receiver has come or the last one has gone (a
        WebSocket receiver calls it as it comes and goes)."""
        with self._lock:
            n = len(self._dests)
        on = n > 0 or (self._ws is not None and self._ws.count() > 0)
        if on != self._demand:
            self._demand = on
            try:
                self.on_demand(on)
            except Exception:
                log.exception("stream demand callback failed")

    # -- what is sent ----------------------------------------------------------------------------
    def _settings_changed(self, change: Change) -> None:
        with self._settings_lock:  # a change landing while settings() reads clears what it read
            self._settings = None

    def settings(self) -> StreamSettings:
        """The ``/stream/*`` parameters now (read again after each change of one of them)."""
        settings = self._settings
        if settings is None:
            with self._settings_lock:
                settings = self._settings
                if settings is None:
                    settings = self._settings = StreamSettings.read(self.registry, self.taps)
        return settings

    def greeting(self) -> list[bytes]:
        """What a new WebSocket receiver gets first: the shapes, the target masks and the layout,
        each array whole."""
        return self._announce_datagrams(self.frame, UNLIMITED) + self._layout_datagrams(self.frame, UNLIMITED)

    def _announce_datagrams(self, frame: int, max_bytes: Optional[int] = None) -> list[bytes]:
        """Shapes and target masks of the streamed taps, as the loop playing has them."""
        settings = self.settings()
        layers, mode = settings.layers, settings.reduce
        packer = BundlePacker(max_bytes or settings.max_bytes, None)
        acts = self.playing()
        if acts is None:
            return []
        for tap in layers:
            if tap not in acts.acts:
                continue
            c, f, _ = acts.shape(tap)
            packer.add(encode_message("/stream/shape", (tap, frame_size((c, f), mode), c, f)))
        for tap in layers:
            if tap not in acts.acts:
                continue
            c, f, _ = acts.shape(tap)
            mask = acts.mask.get(tap)
            values = reduce_mask(mask if mask is not None else np.zeros((c, f), bool), mode)
            packer.add_array(f"/stream/mask/{tap}", frame, values)
        return packer.finish()

    def _layout_datagrams(self, frame: int, max_bytes: int) -> list[bytes]:
        layout = self.layout
        if layout is None:
            return []
        packer = BundlePacker(max_bytes, None)
        for tap in layout.taps:
            packer.add_array(f"/stream/layout/{tap}", frame, layout.tap_positions(tap).reshape(-1))
        return packer.finish()

    def _queue_layout(self, dest: Destination) -> None:
        dest.backlog.extend(self._layout_datagrams(self.frame, self.settings().max_bytes))

    def frame_messages(self, frame: int, when_s: float, period_s: float, layers: Sequence[str], reduce: str,
                       *packers: BundlePacker, pos=_ASK) -> None:
        """Pack one frame (the sound at ``when_s``, lasting ``period_s``) of ``layers``, reduced by
        ``reduce`` (``/stream/reduce``), into each of ``packers``; every message is made once,
        whatever the number of packers. ``pos``: where the sound is (by default, asked now)."""

        def add(message: bytes) -> None:
            for packer in packers:
                packer.add(message)

        if pos is _ASK:
            pos = self.position()
        if pos is None:
            add(encode_message("/stream/phase", (frame, -1.0)))
            return
        p0 = pos.at(when_s)
        p1 = pos.at(when_s + period_s)
        acts = pos.acts  # the loop playing: a newer one's enter with it, at its bar line
        add(encode_message("/stream/phase", (frame, float(p0))))
        add(encode_message("/stream/step", (frame, acts.step if acts else -1, float(acts.loss) if acts else 0.0)))
        if acts is None:
            return
        for tap in layers:
            a = acts.acts.get(tap)
            if a is not None:
                values = reduce_frame(a, p0, p1, reduce)
                for packer in packers:
                    packer.add_array(f"/stream/act/{tap}", frame, values)

    # -- the sender thread -----------------------------------------------------------------------
    def frame_ready(self) -> None:
        """A frame newer than the last one sent is ready now (the input, just heard: see
        :mod:`earengine.listen`): send it at once rather than at the next tick of ``/stream/fps``,
        so it leaves one ear forward after the sound, not up to a frame period later. Frames
        still leave at most :data:`MAX_FPS` a second, and the ticks go on from this frame."""
        self._fresh = True
        self._wake.set()

    def _run(self) -> None:
        next_t = time.monotonic()
        while not self._closed:
            try:
                fps = min(MAX_FPS, max(1.0, self.settings().fps))
            except Exception:
                fps = 30.0
            period = 1.0 / fps
            now = time.monotonic()
            at = min(next_t, self._sent_at + 1.0 / MAX_FPS) if self._fresh else next_t
            if now < at:
                self._wake.wait(min(at - now, 0.1))
                self._wake.clear()
                continue
            due = next_t
            next_t += period
            if self._fresh:  # a new frame, sent now: the next tick is a period from it
                self._fresh = False
                due, next_t = now, now + period
            elif now - next_t > period:  # fell behind: skip frames rather than burst them out late
                self.counts["late"] += 1
                due, next_t = now, now + period
            try:
                self._tick(period, due)
            except Exception:
                log.exception("stream frame failed")

    def _tick(self, period: float, due: float) -> None:
        with self._lock:
            dests = tuple(self._dests.values())
        ws = self._ws if self._ws is not None and self._ws.count() > 0 else None
        self.update_demand()
        if not dests and ws is None:
            return
        settings = self.settings()
        if not settings.run:
            return
        frame = self.frame
        self.frame += 1
        mono = time.monotonic()
        # the frame is for the moment it was due, not when this thread woke up: evenly spaced
        # timetags, and a late wake only eats into the lookahead
        when = self.clock() - (mono - due) + settings.lookahead_s
        pos = self.position()
        span = period
        if pos is not None and pos.live:  # the input: what was heard since the last frame, timetagged when
            span = self._live_span(pos, period)
            when = pos.time_s - span
        self._maybe_announce(frame, settings, mono, dests, ws)
        udp = BundlePacker(settings.max_bytes, when) if dests else None
        web = BundlePacker(UNLIMITED, when) if ws is not None else None
        self.frame_messages(frame, when, span, settings.layers, settings.reduce,
                            *(p for p in (udp, web) if p is not None), pos=pos)
        if udp is not None:
            datagrams = udp.finish()
            for dest in dests:
                if dest.send(datagrams, mono):
                    dest.counts["frames"] += 1
                    backlog = [dest.backlog.popleft() for _ in range(min(BACKLOG_PER_FRAME, len(dest.backlog)))]
                    if backlog and not dest.send(backlog, mono):
                        pass  # skipped announcements come round again
                if dest.dropped:
                    self._drop(dest)
        if web is not None:
            ws.broadcast(web.finish())
        self.counts["frames"] += 1
        self.frame_times.append(mono)
        self._sent_at = mono

    def _live_span(self, pos: Position, period: float) -> float:
        """Seconds of input a live frame spans: all that was heard since the previous frame's
        (so a sound heard while the ear fell behind is in a frame, not between two), at most the
        window heard; the same again when the same set is sent again at a tick."""
        heard, span = self._live
        if pos.time_s != heard:
            gap = pos.time_s - heard
            span = gap if 0.0 < gap <= pos.duration_s else period
            self._live = (pos.time_s, span)
        return min(span, pos.duration_s)

    def _maybe_announce(self, frame: int, settings: StreamSettings, mono: float, dests, ws) -> None:
        signature = (settings.layers, settings.reduce, settings.max_bytes, self._shape_of(self.playing()))
        if signature == self._announced and mono - self._announced_at < ANNOUNCE_EVERY_S:
            return
        self._announced, self._announced_at = signature, mono
        datagrams = self._announce_datagrams(frame)
        for dest in dests:
            dest.backlog.extend(datagrams)
        if ws is not None:
            ws.broadcast(self._announce_datagrams(frame, UNLIMITED), frame=False)

    def all_counts(self) -> dict[str, int]:
        """What the streams did, for ``/counts``: frames sent and late, destinations dropped, and
        what WebSocket receivers that read too slowly lost."""
        out = {f"stream_{k}": v for k, v in self.counts.items()}
        if self._ws is not None:
            out.update(self._ws.counts())
        return out

    def _drop(self, dest: Destination) -> None:
        with self._lock:
            if self._dests.get(dest.text) is dest:
                del self._dests[dest.text]
        dest.close()
        self.counts["dropped_destinations"] += 1
        log.warning("stream to %s dropped: %s", dest.text, dest.dropped)
        if dest.owner is not None:
            try:
                self.reply(dest.owner, "/stream/dropped", (dest.text, dest.dropped))
            except Exception:
                log.exception("cannot tell %s", dest.owner)
        self.update_demand()

    # -- OSC commands ----------------------------------------------------------------------------
    def handlers(self, reply_dest: Callable[[tuple], tuple]) -> dict:
        """Handlers of the ``/stream/*`` commands for :meth:`OscRouter.on`."""

        def add(args: tuple, sender: tuple) -> None:
            self.add(args[0], owner=reply_dest(sender))

        def remove(args: tuple, sender: tuple) -> None:
            self.remove(args[0])

        def listing(args: tuple, sender: tuple) -> list:
            return [Reply("/stream/list.reply", tuple(self.destinations()))]

        def layout(args: tuple, sender: tuple) -> None:
            self.send_layout(args[0] if args else None)

        return {"/stream/add": add, "/stream/remove": remove, "/stream/list": listing, "/stream/layout": layout}
