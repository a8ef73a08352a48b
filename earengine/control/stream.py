"""Activation streams: every neuron lit at the moment its part of the loop sounds.

:class:`StreamHub` runs one sender thread. Each tick of ``/stream/fps`` it asks where the sound
will be ``/stream/lookahead_ms`` from now (:class:`Position`, kept current by
:class:`PlayerTracker` from the audio thread), cuts that frame out of the sounding loop's
activations (:class:`~earengine.viz.frames.ActivationSet`, published by the worker), and sends
it to every destination as OSC bundles timetagged for when the frame sounds, each datagram at
most ``/stream/max_bytes`` long (the message layout is in :mod:`earengine.control.stream_params`).

Nothing here waits for a receiver. UDP destinations have their own non-blocking sockets: a full
send buffer skips the rest of that frame for that destination, and a destination that keeps
refusing (nobody listens any more) is dropped with a ``/stream/dropped`` notice. WebSocket
receivers (:class:`WebSocketStreams`, for bulk receivers such as a browser) each get a short
queue of the newest frames; one that reads too slowly loses its oldest frames (counted, in
``/counts``), in bounded memory, and nobody else waits. A frame that comes due while
the previous one is still going out is skipped, never sent late in a burst.
"""

from __future__ import annotations

import logging
import re
import select
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from earengine.osc.wire import encode_message, osc_string, timetag
from earengine.control.stream_params import MAX_FPS
from earengine.control.wslog import websocket_log
from earengine.errors import EarEngineError, ParameterError

__all__ = [
    "Position",
    "PlayerTracker",
    "StreamHub",
    "WebSocketStreams",
    "BundlePacker",
    "encode_array",
    "parse_dest",
    "parse_layers",
]

log = logging.getLogger("earengine.stream")

#: Destinations one engine streams to at once.
MAX_DESTINATIONS = 16
#: Seconds between repeats of the shapes and the target mask (UDP may lose them).
ANNOUNCE_EVERY_S = 2.0
#: A destination refusing for this long is dropped.
DROP_AFTER_S = 2.0
#: Datagrams of the layout and the announcements sent per destination per frame, on top of the
#: frame itself, so a large layout does not overrun a receiver's socket buffer in one burst.
BACKLOG_PER_FRAME = 24
#: Frames waiting for one WebSocket receiver; a slower one loses its oldest (counted).
WS_FRAMES = 8
#: Announcements and layouts waiting for one WebSocket receiver (a few per tap).
WS_NOTICES = 256


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------
def _array_overhead(address_bytes: int, n: int) -> int:
    """Bytes of an ``<address> <frame> <start> <count> n floats`` message besides the floats."""
    tags = 4 + n + 1  # ",iii" + n "f" + NUL
    return address_bytes + tags + (-tags % 4) + 12


def encode_array(address: str, frame: int, start: int, values: np.ndarray) -> bytes:
    """``<address> <frame> <start> <count> values…`` as one OSC message, without a Python loop
    over the values.

    >>> from earengine.osc.wire import decode_packet
    >>> decode_packet(encode_array("/a", 3, 10, np.array([0.5, 2.0])))
    [(None, '/a', (3, 10, 2, 0.5, 2.0))]
    """
    values = np.asarray(values, dtype=">f4").reshape(-1)
    n = values.size
    return (osc_string(address.encode()) + osc_string(b",iii" + b"f" * n)
            + struct.pack(">iii", int(frame), int(start), n) + values.tobytes())


class BundlePacker:
    """Packs messages and chunked arrays into OSC bundles of at most ``max_bytes`` each.

    Arrays are cut to fill the room left in the bundle being packed, so a frame takes as few
    datagrams as it can. Every bundle carries the same timetag.

    Parameters
    ----------
    max_bytes : int >= 128
        Largest datagram.
    when_s : float or None
        Unix time the bundles are for; None means "immediately".
    """

    HEADER = 16  # "#bundle\\0" + timetag
    MIN_CHUNK = 8  # fewer floats than this in the room left: start a new bundle instead

    def __init__(self, max_bytes: int, when_s: Optional[float]) -> None:
        self.max_bytes = int(max_bytes)
        self.head = b"#bundle\x00" + timetag(when_s)
        self.bundles: list[bytes] = []
        self._parts: list[bytes] = []
        self._size = self.HEADER

    def _flush(self) -> None:
        if self._parts:
            self.bundles.append(self.head + b"".join(self._parts))
        self._parts, self._size = [], self.HEADER

    def _room(self) -> int:
        return self.max_bytes - self._size - 4

    def add(self, message: bytes) -> None:
        if len(message) + 4 + self.HEADER > self.max_bytes:
            raise ParameterError(f"/stream/max_bytes={self.max_bytes} is too small for {len(message)}-byte messages")
        if len(message) > self._room():
            self._flush()
        self._parts.append(struct.pack(">i", len(message)) + message)
        self._size += 4 + len(message)

    def add_array(self, address: str, frame: int, values: np.ndarray) -> None:
        """Add ``values`` as ``<address> <frame> <start> <count> …`` chunks."""
        values = np.asarray(values, dtype=np.float32).reshape(-1)
        abytes = len(osc_string(address.encode()))
        start, total = 0, values.size
        while True:
            left = total - start
            n = self._fit(abytes, left)
            if left > 0 and n < min(self.MIN_CHUNK, left):
                if not self._parts:
                    raise ParameterError(f"/stream/max_bytes={self.max_bytes} leaves no room for {address}")
                self._flush()
                continue
            self.add(encode_array(address, frame, start, values[start:start + n]))
            start += n
            if start >= total:
                return

    def _fit(self, abytes: int, left: int) -> int:
        """Most floats (<= left) whose message fits in the room of the current bundle."""
        room = self._room()
        n = max(0, (room - abytes - 20) // 5)
        n = min(n, left)
        while n > 0 and _array_overhead(abytes, n) + 4 * n > room:
            n -= 1
        while n < left and _array_overhead(abytes, n + 1) + 4 * (n + 1) <= room:
            n += 1
        return n

    def finish(self) -> list[bytes]:
        self._flush()
        return self.bundles


# ---------------------------------------------------------------------------------------------
# Where the sound is
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Position:
    """At wall-clock time ``time_s`` (``time.time()``) the loop ``key`` sounded at ``phase``.

    ``duration_s`` is the loop's length at the current tempo, so the phase at any nearby moment
    follows (:meth:`at`).
    """

    time_s: float
    phase: float
    duration_s: float
    key: Optional[int] = None

    def at(self, when_s: float) -> float:
        """Loop phase in [0, 1) at ``when_s``."""
        return (self.phase + (when_s - self.time_s) / max(1e-9, self.duration_s)) % 1.0

    def to_dict(self) -> dict:
        return {"time_s": self.time_s, "phase": self.phase, "duration_s": self.duration_s, "key": self.key}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Position":
        return cls(float(data["time_s"]), float(data["phase"]), float(data["duration_s"]), data.get("key"))


class PlayerTracker:
    """Where the loop player is, sampled on the audio thread once per buffer.

    A per-buffer callback of the audio server reads the sounding slot's phase (the value its
    phase generator reached at the end of the last buffer) and stamps it with the wall clock plus
    the output latency: the moment that phase is heard. Calling the tracker returns the newest
    :class:`Position` (or None while nothing plays). One attribute store per buffer; no locks.
    """

    def __init__(self, player, audio, *, latency_s: Optional[float] = None) -> None:
        self.player, self.audio = player, audio
        if latency_s is None:
            latency_s = audio.buffersize / audio.sr if getattr(audio, "mode", "") in ("jack", "portaudio") else 0.0
        self.latency_s = float(latency_s)
        self.current: Optional[Position] = None
        audio.add_callback(self._on_buffer)

    def _on_buffer(self) -> None:
        player = self.player
        slot = player.slots[player.active]
        loop = slot.loop
        if loop is None:
            self.current = None
            return
        self.current = Position(time.time() + self.latency_s, float(slot.phasor.get()),
                                loop.bars * player.clock.bar_s, (loop.meta or {}).get("key"))

    def __call__(self) -> Optional[Position]:
        return self.current

    def close(self) -> None:
        self.audio.remove_callback(self._on_buffer)


# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------
_DEST = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9._-]+)):(?P<port>[0-9]{1,5})$")


def parse_dest(text: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) → ``(host, port)``; raises ParameterError.

    >>> parse_dest("127.0.0.1:7000")
    ('127.0.0.1', 7000)
    >>> parse_dest("[::1]:7000")
    ('::1', 7000)
    """
    m = _DEST.match(text.strip())
    if not m:
        raise ParameterError(f"dest={text!r} must look like host:port, e.g. 127.0.0.1:7000")
    port = int(m.group("port"))
    if not 1 <= port <= 65535:
        raise ParameterError(f"dest={text!r}: port={port} must be within [1, 65535]")
    return (m.group("v6") or m.group("host")), port


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


# ---------------------------------------------------------------------------------------------
# Destinations
# ---------------------------------------------------------------------------------------------
class _Destination:
    """One UDP receiver: its own connected, non-blocking socket and a backlog of announcements."""

    def __init__(self, text: str, sockaddr: tuple, family: int, owner: Optional[tuple]) -> None:
        self.text = text
        self.sockaddr = sockaddr
        self.owner = owner  # reply address of the one who added it (told when it is dropped)
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.connect(sockaddr)  # connected: ICMP "port unreachable" comes back as an error
        self.backlog: deque[bytes] = deque()
        self.counts = {"frames": 0, "datagrams": 0, "skipped": 0, "refused": 0}
        self._refused_since: Optional[float] = None
        self._refused_last = 0.0
        self.dropped: Optional[str] = None

    def send(self, datagrams: Iterable[bytes], now: float) -> bool:
        """Send without waiting; False when the rest had to be skipped (buffer full or refused)."""
        for data in datagrams:
            try:
                self.sock.send(data)
                self.counts["datagrams"] += 1
            except BlockingIOError:
                self.counts["skipped"] += 1
                return False
            except OSError as exc:  # refused, unreachable: nobody listens (yet, or any more)
                self._refusal(now, exc)
                return False
        if self._refused_since is not None and now - self._refused_last > DROP_AFTER_S:
            self._refused_since = None
        return True

    def _refusal(self, now: float, exc: OSError) -> None:
        self.counts["refused"] += 1
        if self._refused_since is None:
            self._refused_since = now
        self._refused_last = now
        if now - self._refused_since >= DROP_AFTER_S and self.counts["refused"] >= 3:
            self.dropped = f"refused for {now - self._refused_since:.1f} s ({exc.strerror or exc})"

    def close(self) -> None:
        self.sock.close()


def resolve_dest(text: str) -> tuple[tuple, int]:
    """Resolve ``host:port`` to a socket address (may wait on DNS: call off the real-time path)."""
    host, port = parse_dest(text)
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    except socket.gaierror as exc:
        raise EarEngineError(f"dest={text} cannot be resolved ({exc.strerror}); give an IP address or a known host name") from None
    return info[4], info[0]


def probe_dest(sockaddr: tuple, family: int, *, wait_s: float = 0.15) -> Optional[str]:
    """Send an empty bundle and listen briefly for a refusal; the reason, or None if accepted.

    On a LAN or loopback a closed port answers at once (ICMP port unreachable); a host that
    stays silent is taken as listening, since UDP cannot tell more.
    """
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect(sockaddr)
        sock.send(b"#bundle\x00" + timetag(None))
        ready, _, _ = select.select([sock], [], [], wait_s)
        if ready:
            try:
                sock.recv(65536)
            except BlockingIOError:
                pass
            except OSError as exc:
                return exc.strerror or str(exc)
        return None
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        sock.close()


# ---------------------------------------------------------------------------------------------
# The hub
# ---------------------------------------------------------------------------------------------
class StreamHub:
    """Streams activation frames to UDP destinations and WebSocket receivers; a context manager.

    Parameters
    ----------
    registry : Registry
        Supplies ``/stream/*`` (read every frame, so changes apply at the next one).
    position : callable() -> Position or None
        Where the sound is (a :class:`PlayerTracker`); None: frames carry no phase.
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
        from earengine.optvis.params import TAPS

        self.registry = registry
        self.position = position or (lambda: None)
        self.taps = tuple(taps) or TAPS
        self.reply = reply or (lambda dest, address, args: None)
        self.on_demand = on_demand or (lambda on: None)
        self.clock = clock
        self.frame = 0
        self.counts = {"frames": 0, "late": 0, "dropped_destinations": 0}
        self.layout = None  # earengine.viz.layout.NeuronLayout, when the ear has one
        self._sets: dict[int, Any] = {}
        self._newest = None
        self._newest_shape: Optional[tuple] = None
        self._dests: dict[str, _Destination] = {}
        self._ws: Optional["WebSocketStreams"] = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._announced: Optional[tuple] = None
        self._announced_at = 0.0
        self._demand = False
        self.frame_times: deque[float] = deque(maxlen=600)  # when each frame left (monotonic), for benches
        registry.add_check("/stream/layers", lambda text: " ".join(parse_layers(text, self.taps)) if text.strip() != "all" else "all")
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
        with self._lock:
            for dest in self._dests.values():
                dest.close()
            self._dests.clear()

    # -- inputs --------------------------------------------------------------------------------
    def publish(self, acts) -> None:
        """A new loop's :class:`~earengine.viz.frames.ActivationSet` (kept for the last few loops,
        since the player swaps at the next bar line)."""
        self._sets[acts.key] = acts
        # what the announcement shows of it (the masks, the shapes), worked out once per loop,
        # not on every frame
        self._newest_shape = (hash(tuple((t, m.tobytes()) for t, m in acts.mask.items())),
                              tuple((t, a.shape[:2]) for t, a in acts.acts.items()))
        self._newest = acts
        for key in sorted(self._sets)[:-4]:
            self._sets.pop(key, None)

    def set_layout(self, layout) -> None:
        """The ear's neuron layout; every destination gets it."""
        self.layout = layout
        with self._lock:
            for dest in self._dests.values():
                self._queue_layout(dest)
        if self._ws is not None:
            self._ws.broadcast(self._layout_datagrams(self.frame, 1 << 30), frame=False)

    # -- destinations ----------------------------------------------------------------------------
    def add(self, text: str, *, owner: Optional[tuple] = None) -> str:
        """Start streaming to ``host:port``; resolves and probes it first (may take a moment:
        call from a job, not from a real-time thread). Returns the destination's name."""
        sockaddr, family = resolve_dest(text)
        why = probe_dest(sockaddr, family)
        if why is not None:
            raise EarEngineError(f"dest={text} refuses UDP ({why}); start the receiver first, then add it")
        host, port = parse_dest(text)
        name = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        with self._lock:
            if name in self._dests:
                return name
            if len(self._dests) >= MAX_DESTINATIONS:
                raise EarEngineError(f"already {MAX_DESTINATIONS} destinations; /stream/remove one first")
            dest = _Destination(name, sockaddr, family, owner)
            dest.backlog.extend(self._announce_datagrams(self.frame))
            self._queue_layout(dest)
            self._dests[name] = dest
        self._update_demand()
        return name

    def remove(self, text: str) -> list[str]:
        """Stop streaming to ``host:port`` (or ``all``); returns the names removed."""
        with self._lock:
            if text.strip() == "all":
                names = list(self._dests)
            else:
                host, port = parse_dest(text)
                name = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                if name not in self._dests:
                    raise EarEngineError(f"dest={text} is not a stream destination; see /stream/list")
                names = [name]
            for name in names:
                self._dests.pop(name).close()
        self._update_demand()
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
                host, port = parse_dest(text)
                name = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                if name not in self._dests:
                    raise EarEngineError(f"dest={text} is not a stream destination; /stream/add it first")
                targets = [self._dests[name]]
            else:
                targets = list(self._dests.values())
            for dest in targets:
                self._queue_layout(dest)

    def attach_websocket(self, ws: "WebSocketStreams") -> None:
        self._ws = ws

    def _update_demand(self) -> None:
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
    def _settings(self) -> tuple:
        get = self.registry.get
        layers = parse_layers(get("/stream/layers"), self.taps)
        return (layers, get("/stream/reduce"), float(get("/stream/fps")), int(get("/stream/max_bytes")),
                float(get("/stream/lookahead_ms")) / 1000.0, bool(get("/stream/run")))

    def _announce_datagrams(self, frame: int, max_bytes: Optional[int] = None) -> list[bytes]:
        """Shapes and target masks of the streamed taps."""
        from earengine.viz.frames import frame_size, reduce_mask

        layers, mode, _, limit, _, _ = self._settings()
        packer = BundlePacker(max_bytes or limit, None)
        acts = self._newest
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

    def _queue_layout(self, dest: _Destination) -> None:
        dest.backlog.extend(self._layout_datagrams(self.frame, int(self.registry.get("/stream/max_bytes"))))

    def frame_messages(self, frame: int, when_s: float, period_s: float, settings: tuple,
                       *packers: BundlePacker) -> None:
        """Pack one frame (the sound at ``when_s``, lasting ``period_s``) into each of ``packers``;
        every message is made once, whatever the number of packers."""
        from earengine.viz.frames import reduce_frame

        def add(message: bytes) -> None:
            for packer in packers:
                packer.add(message)

        layers, mode = settings[0], settings[1]
        pos = self.position()
        if pos is None:
            add(encode_message("/stream/phase", (frame, -1.0)))
            return
        p0 = pos.at(when_s)
        p1 = pos.at(when_s + period_s)
        acts = self._sets.get(pos.key) if pos.key is not None else None
        add(encode_message("/stream/phase", (frame, float(p0))))
        add(encode_message("/stream/step", (frame, acts.step if acts else -1, float(acts.loss) if acts else 0.0)))
        if acts is None:
            return
        for tap in layers:
            a = acts.acts.get(tap)
            if a is not None:
                values = reduce_frame(a, p0, p1, mode)
                for packer in packers:
                    packer.add_array(f"/stream/act/{tap}", frame, values)

    # -- the sender thread -----------------------------------------------------------------------
    def _run(self) -> None:
        next_t = time.monotonic()
        while not self._closed:
            try:
                fps = min(MAX_FPS, max(1.0, float(self.registry.get("/stream/fps"))))
            except Exception:
                fps = 30.0
            period = 1.0 / fps
            now = time.monotonic()
            if now < next_t:
                self._wake.wait(min(next_t - now, 0.1))
                self._wake.clear()
                continue
            due = next_t
            next_t += period
            if now - next_t > period:  # fell behind: skip frames rather than burst them out late
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
        self._update_demand()
        if not dests and ws is None:
            return
        settings = self._settings()
        if not settings[5]:
            return
        frame = self.frame
        self.frame += 1
        mono = time.monotonic()
        # the frame is for the moment it was due, not when this thread woke up: evenly spaced
        # timetags, and a late wake only eats into the lookahead
        when = self.clock() - (mono - due) + settings[4]
        self._maybe_announce(frame, settings, mono, dests, ws)
        udp = BundlePacker(settings[3], when) if dests else None
        web = BundlePacker(1 << 30, when) if ws is not None else None
        self.frame_messages(frame, when, period, settings, *(p for p in (udp, web) if p is not None))
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

    def _maybe_announce(self, frame: int, settings: tuple, mono: float, dests, ws) -> None:
        signature = (settings[0], settings[1], settings[3], self._newest_shape)
        if signature == self._announced and mono - self._announced_at < ANNOUNCE_EVERY_S:
            return
        self._announced, self._announced_at = signature, mono
        datagrams = self._announce_datagrams(frame)
        for dest in dests:
            dest.backlog.extend(datagrams)
        if ws is not None:
            ws.broadcast(self._announce_datagrams(frame, 1 << 30), frame=False)

    def all_counts(self) -> dict[str, int]:
        """What the streams did, for ``/counts``: frames sent and late, destinations dropped, and
        what WebSocket receivers that read too slowly lost."""
        out = {f"stream_{k}": v for k, v in self.counts.items()}
        if self._ws is not None:
            out.update(self._ws.counts())
        return out

    def _drop(self, dest: _Destination) -> None:
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
        self._update_demand()

    # -- OSC commands ----------------------------------------------------------------------------
    def handlers(self, reply_dest: Callable[[tuple], tuple]) -> dict:
        """Handlers of the ``/stream/*`` commands for :meth:`OscRouter.on`."""
        from earengine.osc.wire import Reply

        def add(args: tuple, sender: tuple) -> None:
            self.add(args[0], owner=reply_dest(sender))

        def remove(args: tuple, sender: tuple) -> None:
            self.remove(args[0])

        def listing(args: tuple, sender: tuple) -> list:
            return [Reply("/stream/list.reply", tuple(self.destinations()))]

        def layout(args: tuple, sender: tuple) -> None:
            self.send_layout(args[0] if args else None)

        return {"/stream/add": add, "/stream/remove": remove, "/stream/list": listing, "/stream/layout": layout}


# ---------------------------------------------------------------------------------------------
# WebSocket transport for bulk receivers
# ---------------------------------------------------------------------------------------------
class _WsClient:
    """One WebSocket receiver: what its own sending thread has still to send, in bounded memory.

    Notices (shapes, masks, the layout) go first; of the frames, only the newest
    :data:`WS_FRAMES` wait: a receiver that reads slower than frames come loses its oldest ones
    (counted in :attr:`dropped`), and nobody else waits for it.
    """

    def __init__(self, conn) -> None:
        self.conn = conn
        self.frames: deque[bytes] = deque(maxlen=WS_FRAMES)
        self.notices: deque[bytes] = deque(maxlen=WS_NOTICES)
        self.dropped = 0
        self.closed = False
        self._cv = threading.Condition()

    def offer(self, data: bytes, *, frame: bool = True) -> None:
        with self._cv:
            waiting = self.frames if frame else self.notices
            if len(waiting) == waiting.maxlen:
                self.dropped += 1  # the oldest falls out
            waiting.append(data)
            self._cv.notify()

    def take(self, timeout_s: float) -> Optional[bytes]:
        """The next message to send (notices first), or None after ``timeout_s`` or once closed."""
        with self._cv:
            if not (self.frames or self.notices or self.closed):
                self._cv.wait(timeout_s)
            if self.closed:
                return None
            if self.notices:
                return self.notices.popleft()
            return self.frames.popleft() if self.frames else None

    def stop(self) -> None:
        """Stop sending; a send blocked on a receiver that never reads is cut off too."""
        with self._cv:
            self.closed = True
            self._cv.notify()
        try:
            self.conn.socket.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass


class WebSocketStreams:
    """Streams over WebSocket: each frame as one binary message (an OSC bundle whose arrays are
    whole: no datagram limit applies), for receivers that want everything (a browser, a recorder).

    Every receiver has its own short queue and its own sending thread; a receiver that reads too
    slowly loses its oldest frames (:meth:`counts`), nobody else waits, and what it is owed never
    grows past :data:`WS_FRAMES` frames. A context manager.

    Parameters
    ----------
    hub : StreamHub
    host : str
    port : int >= 0
        0 picks a free port (see :attr:`address`).
    """

    def __init__(self, hub: StreamHub, *, host: str = "127.0.0.1", port: int = 0) -> None:
        from websockets.sync.server import serve

        self.hub = hub
        self._clients: list[_WsClient] = []
        self._lock = threading.Lock()
        self._dropped_gone = 0  # frames dropped for receivers that have left
        try:
            self.server = serve(self._handle, host, port, compression=None, max_size=2 ** 16, close_timeout=1,
                                logger=websocket_log())
        except OSError as exc:
            raise EarEngineError(f"cannot listen for stream WebSockets on {host}:{port}: {exc.strerror}; "
                                 "choose another --stream-ws-port") from None
        self._thread = threading.Thread(target=self.server.serve_forever, name="earengine-stream-ws", daemon=True)
        self._thread.start()
        hub.attach_websocket(self)

    @property
    def address(self) -> tuple:
        return self.server.socket.getsockname()[:2]

    def count(self) -> int:
        return len(self._clients)

    def counts(self) -> dict[str, int]:
        """``ws_receivers`` connected now, and ``ws_frames_dropped`` for slow ones (ever)."""
        clients = tuple(self._clients)
        return {"ws_receivers": len(clients),
                "ws_frames_dropped": self._dropped_gone + sum(c.dropped for c in clients)}

    def broadcast(self, datagrams: Sequence[bytes], *, frame: bool = True) -> None:
        """Offer messages to every receiver: a frame (dropped oldest-first for a slow receiver)
        or notices (shapes, masks, the layout)."""
        clients = tuple(self._clients)
        for data in datagrams:
            for client in clients:
                client.offer(data, frame=frame)

    def _handle(self, conn) -> None:
        client = _WsClient(conn)
        hub = self.hub
        for data in hub._announce_datagrams(hub.frame, 1 << 30) + hub._layout_datagrams(hub.frame, 1 << 30):
            client.offer(data, frame=False)
        with self._lock:
            self._clients.append(client)
        hub._update_demand()
        try:
            while not client.closed:
                data = client.take(0.5)
                if data is None:
                    if conn.close_code is not None:
                        break
                    continue
                conn.send(data)
        except Exception:  # the receiver went away
            pass
        finally:
            with self._lock:
                if client in self._clients:
                    self._clients.remove(client)
                    self._dropped_gone += client.dropped
            hub._update_demand()

    def close(self) -> None:
        with self._lock:
            clients = tuple(self._clients)
        for client in clients:
            client.stop()
        self.server.shutdown()
        self._thread.join(timeout=2)

    def __enter__(self) -> "WebSocketStreams":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
