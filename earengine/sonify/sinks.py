"""Sinks: where gradient frames go — the engine over OSC, a WAV file, memory (and, by name, a pyo synth).

A sink has ``send(frame)`` and, optionally, ``begin(run, layer_names)``, ``end(run)``,
``close()`` and ``sounded_step_s(run)`` — how long one frame sounds in real time, so that frames
closer together than that are never heard (None: every frame counts, as in a WAV render). :class:`~earengine.sonify.capture.GradientSonifier` calls ``begin`` when its ``with``
block starts, ``send`` once per step and ``end`` when the block ends.

The OSC wire format (see also ``docs/osc.md``)::

    /son/begin <run> <layers>
    /son/frame <run> <step> <norm_0> … <norm_n-1>                 # when it fits one datagram
    /son/part  <run> <step> <start> <count> <norm_start> …        # otherwise, in order
    /son/end   <run>
    /son/pace  <run> <step_ms>                                     # engine → sender: one step's length

Norms travel as 32-bit floats (NaN and inf as themselves; a norm beyond the float range as inf).
A frame is split into parts so that no datagram exceeds ``max_datagram`` bytes (1,400 by
default: it crosses any LAN unfragmented). Sending never blocks the training loop: datagrams are
queued for a sender thread (a bounded queue; the oldest go first if it ever fills), whose socket
is non-blocking, and a datagram the kernel cannot take at once is dropped and counted.
"""

from __future__ import annotations

import collections
import importlib
import logging
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence
from urllib.parse import urlparse

import numpy as np

from earengine.audiofile import write_wav
from earengine.osc.wire import ArrayChunks, OscDecodeError, decode_packet, encode_floats, encode_message
from earengine.errors import EarEngineError, ParameterError
from earengine.sonify.frame import GradientFrame, check_run_name
from earengine.sonify.mapping import Settings
from earengine.sonify.params import MAX_LAYERS
from earengine.sonify.render import Renderer
from earengine.sonify.timbre import run_wave

__all__ = [
    "OscSink",
    "WavSink",
    "MemorySink",
    "CallableSink",
    "MultiSink",
    "open_sink",
    "LOCAL_SINK",
    "encode_frame",
    "DEFAULT_MAX_DATAGRAM",
]

log = logging.getLogger("earengine.sonify")

#: Largest datagram a sink sends unless told otherwise (bytes).
DEFAULT_MAX_DATAGRAM = 1400


def encode_frame(run: str, step: int, norms: Sequence[float], *, max_datagram: int = DEFAULT_MAX_DATAGRAM) -> list[bytes]:
    """The datagrams that carry one frame: one ``/son/frame`` when it fits, else ``/son/part``s
    (chunks of :class:`~earengine.osc.wire.ArrayChunks`).

    >>> [len(d) for d in encode_frame("a", 0, [1.0, 2.0])]
    [36]
    >>> datagrams = encode_frame("a", 0, [1.0] * 1000)
    >>> len(datagrams) > 1 and all(len(d) <= 1400 for d in datagrams)
    True
    """
    with np.errstate(over="ignore"):  # beyond float32 is inf, as the norm effectively was
        values = np.asarray(norms, dtype=np.float64).astype(np.float32)
    head = (run, int(step))
    whole = encode_floats("/son/frame", head, values)
    if len(whole) <= max_datagram:
        return [whole]
    parts = ArrayChunks("/son/part", head)
    # each norm costs 4 bytes of data and 1 byte of type tag; 4 more bytes keep room for the tag
    # string's padding (a rule a little stricter than ArrayChunks.fit, kept so chunks stay as they are)
    per = (max_datagram - parts.size(0) - 4) // 5
    if per < 1:
        raise ParameterError(f"max_datagram={max_datagram} is too small for a frame of run {run!r}")
    return [parts.encode(start, values[start : start + per]) for start in range(0, values.size, per)]


class OscSink:
    """Frames to a running engine over OSC/UDP, without ever blocking the caller.

    Parameters
    ----------
    host : str
        The engine's address (``earengine run --osc-host``), loopback by default.
    port : int
        Its OSC port (``--osc-port``, 9000 by default).
    max_datagram : int > 0
        Largest datagram sent; bigger frames go in parts.
    background : bool
        Hand datagrams to a sender thread (the default): the training thread then makes no
        system call per frame, which matters because a send on a busy machine can cost tens of
        microseconds. ``False`` sends at once, from the caller.
    interval_s : float > 0
        The sender thread sends what has queued at most this often (far below a sounded step).
    answer_s : float > 0
        An engine answers a run's first ``/son/begin`` with ``/son/pace`` at once; when nothing at
        all has come back this long after the first frame, one warning says that no engine seems
        to be listening (nothing is heard), naming the address.

    Replies are read without waiting. ``/son/pace`` (the engine's step length, sent when a run
    opens and whenever it changes) sets :meth:`sounded_step_s`: the engine keeps only the newest
    frame of each step. Of
    ``/fail``, the first reason of each kind is logged as a warning, and :attr:`failures` keeps the
    last ones. When the engine answers that a run is not
    open (it was restarted, or the first ``/son/begin`` was lost), the run is opened again.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 9000, *, max_datagram: int = DEFAULT_MAX_DATAGRAM,
                 background: bool = True, interval_s: float = 0.005, answer_s: float = 2.0) -> None:
        if not 0 < port <= 65535:
            raise ParameterError(f"port={port} must be within [1, 65535]")
        if not 64 <= max_datagram <= 65507:
            raise ParameterError(f"max_datagram={max_datagram} must be within [64, 65507]")
        if not answer_s > 0:
            raise ParameterError(f"answer_s={answer_s} must be > 0")
        try:
            info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        except socket.gaierror as exc:
            raise EarEngineError(f"host={host!r} cannot be resolved: {exc.strerror}") from None
        self.dest = info[4]
        self.max_datagram = int(max_datagram)
        self.sock = socket.socket(info[0], socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.runs: dict[str, int] = {}
        self.pace_s: dict[str, float] = {}  # seconds per sounded step, from /son/pace
        self._pace_any_s: Optional[float] = None
        self.counts = {"datagrams": 0, "dropped": 0, "frames": 0}
        self.failures: list[tuple[str, str]] = []
        self._warned: set[str] = set()
        self.answer_s = float(answer_s)
        self._first_frame_at: Optional[float] = None  # monotonic time of the first frame sent
        self._answered = False  # anything at all came back from the engine
        self._heads: dict[tuple[str, int], bytes] = {}  # /son/frame address, tags and run, by frame size
        self._outbox: "collections.deque[bytes]" = collections.deque(maxlen=4096)
        self._closing = threading.Event()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()  # one sender and one reply reader at a time
        if background:
            if not interval_s > 0:
                raise ParameterError(f"interval_s={interval_s} must be > 0")
            self.interval_s = float(interval_s)
            self._thread = threading.Thread(target=self._run, name="earengine-sonify-send", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        # Woken by what is queued (then at most every interval_s) and otherwise four times a
        # second to read replies: every wake takes the GIL from the training loop for a moment,
        # so the thread never wakes for nothing. Replies are read after each send, when awake anyway.
        while not self._closing.is_set():
            self._wake.wait(0.25)
            self._wake.clear()
            self.flush()
            self.poll()
            self._closing.wait(self.interval_s)
        self.flush()

    def flush(self) -> None:
        """Send everything queued for the sender thread now."""
        with self._lock:
            while self._outbox:
                self._send_now(self._outbox.popleft())

    def _send(self, data: bytes) -> None:
        if self._thread is not None:
            if len(self._outbox) == self._outbox.maxlen:
                self.counts["dropped"] += 1  # the oldest falls out: the engine keeps the newest anyway
            self._outbox.append(data)
            self._wake.set()
        else:
            self._send_now(data)

    def _send_now(self, data: bytes) -> None:
        try:
            self.sock.sendto(data, self.dest)
            self.counts["datagrams"] += 1
        except (BlockingIOError, InterruptedError):
            self.counts["dropped"] += 1
        except OSError as exc:  # e.g. ECONNREFUSED left by an earlier datagram: nobody listens
            self.counts["dropped"] += 1
            if "send" not in self._warned:
                self._warned.add("send")
                log.warning("cannot send to the engine at %s:%s: %s", self.dest[0], self.dest[1], exc.strerror or exc)

    def begin(self, run: str, names: Sequence[str] = (), *, layers: Optional[int] = None) -> None:
        check_run_name(run)
        n = len(names) if layers is None else int(layers)
        if not 1 <= n <= MAX_LAYERS:
            raise ParameterError(f"a run has 1 to {MAX_LAYERS} layers, got {n}")
        self.runs[run] = n
        self._send(encode_message("/son/begin", (run, n)))

    def send(self, frame: GradientFrame) -> None:
        if frame.run not in self.runs:
            self.begin(frame.run, frame.names, layers=len(frame.norms))
        if self._thread is None and self.counts["frames"] % 8 == 0:  # replies are rare: read now and then
            self.poll()
        head = self._heads.get((frame.run, len(frame.norms)))
        if head is not None:  # the common case, kept short: one datagram, cached address and tags
            with np.errstate(over="ignore"):
                values = np.asarray(frame.norms, dtype=np.float64).astype(">f4")
            self._send(head + struct.pack(">i", frame.step) + values.tobytes())
        else:
            datagrams = encode_frame(frame.run, frame.step, frame.norms, max_datagram=self.max_datagram)
            if len(datagrams) == 1:
                self._heads[(frame.run, len(frame.norms))] = datagrams[0][: -4 * len(frame.norms) - 4]
            for data in datagrams:
                self._send(data)
        if self._first_frame_at is None:
            self._first_frame_at = time.monotonic()
        self.counts["frames"] += 1

    def end(self, run: str) -> None:
        if self.runs.pop(run, None) is not None:
            self._send(encode_message("/son/end", (run,)))

    def poll(self) -> list[tuple[str, tuple]]:
        """Read every reply waiting, without blocking; handle ``/fail``; return them."""
        got = []
        while self.sock.fileno() != -1:
            try:
                data = self.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # ICMP "port unreachable" surfaces here: no engine listening
                continue
            try:
                items = decode_packet(data)
            except OscDecodeError:
                continue
            for _, address, args in items:
                got.append((address, args))
                if address == "/fail" and len(args) >= 2:
                    self._on_fail(str(args[0]), str(args[1]))
                elif address == "/son/pace" and len(args) == 2 and isinstance(args[1], (int, float)):
                    if args[1] > 0:
                        self.pace_s[str(args[0])] = self._pace_any_s = float(args[1]) / 1000.0
        self._answered = self._answered or bool(got)
        if (not self._answered and self._first_frame_at is not None and "silent" not in self._warned
                and time.monotonic() - self._first_frame_at > self.answer_s):
            self._warned.add("silent")
            log.warning("no engine answered at %s:%s within %g s of the first frames (no /son/pace): "
                        "nothing is heard; start one with 'earengine run' (its --osc-port)",
                        self.dest[0], self.dest[1], self.answer_s)
        return got

    def sounded_step_s(self, run: str) -> Optional[float]:
        """The engine's step for ``run`` (None until the engine has told any step length).

        A run the engine has not answered yet (just opened, or reopened) takes the step it last
        told for any run: the step length is the engine's, the same for every run.
        """
        return self.pace_s.get(run, self._pace_any_s)

    def _on_fail(self, address: str, reason: str) -> None:
        self.failures = (self.failures + [(address, reason)])[-32:]
        for run, n in list(self.runs.items()):
            if f"run={run!r} is not open" in reason:
                self._send_now(encode_message("/son/begin", (run, n)))
        key = address + reason.split(":")[0][:40]
        if key not in self._warned:
            self._warned.add(key)
            log.warning("engine refused %s: %s", address, reason)

    def close(self) -> None:
        """End every run, send what is queued, stop the sender thread, close the socket."""
        for run in list(self.runs):
            self.end(run)
        if self._thread is not None:
            self._closing.set()
            self._wake.set()
            self._thread.join(timeout=2)
        self.flush()
        self.sock.close()


class MemorySink:
    """Keeps every frame in :attr:`frames` (tests, plots, renders after the fact)."""

    def __init__(self) -> None:
        self.frames: list[GradientFrame] = []
        self.runs: dict[str, tuple] = {}
        self.ended: list[str] = []

    def begin(self, run: str, names: Sequence[str] = ()) -> None:
        self.runs[run] = tuple(names)

    def send(self, frame: GradientFrame) -> None:
        self.frames.append(frame)

    def end(self, run: str) -> None:
        self.ended.append(run)


class CallableSink:
    """Any ``fn(frame)`` as a sink."""

    def __init__(self, fn: Callable[[GradientFrame], Any]) -> None:
        self.fn = fn

    def send(self, frame: GradientFrame) -> None:
        self.fn(frame)


class MultiSink:
    """Every frame to several sinks, in order; closes those it owns."""

    def __init__(self, sinks: Iterable[Any], *, owned: Optional[Sequence[bool]] = None) -> None:
        self.sinks = list(sinks)
        self.owned = list(owned) if owned is not None else [False] * len(self.sinks)

    def begin(self, run: str, names: Sequence[str] = ()) -> None:
        for s in self.sinks:
            if hasattr(s, "begin"):
                s.begin(run, names)

    def send(self, frame: GradientFrame) -> None:
        for s in self.sinks:
            s.send(frame)

    def sounded_step_s(self, run: str) -> Optional[float]:
        """The shortest of the sinks' steps; None when any sink wants every frame."""
        intervals = [getattr(s, "sounded_step_s", lambda r: None)(run) for s in self.sinks]
        return None if any(i is None for i in intervals) else min(intervals)

    def end(self, run: str) -> None:
        for s in self.sinks:
            if hasattr(s, "end"):
                s.end(run)

    def close(self) -> None:
        for s, own in zip(self.sinks, self.owned):
            if own and hasattr(s, "close"):
                s.close()


class WavSink:
    """Frames rendered offline to a stereo 32-bit float WAV when the run ends.

    Parameters
    ----------
    path : path-like
        ``.wav`` file to write (atomically).
    settings : Settings, optional
        The mapping (defaults: the registry defaults).
    sr : int > 0
        Sample rate in Hz.
    bpm : float > 0
        Tempo for step lengths given as a note value.

    Several runs sent to one WavSink are rendered each with its own timbre and mixed.
    """

    def __init__(self, path: Any, *, settings: Optional[Settings] = None, sr: int = 44100, bpm: float = 120.0) -> None:
        self.path = Path(path).expanduser()
        if self.path.suffix.lower() != ".wav":
            raise ParameterError(f"path={str(path)!r} must end in .wav")
        self.settings = settings or Settings()
        self.sr, self.bpm = int(sr), float(bpm)
        self.renderers: dict[str, Renderer] = {}
        self.written: Optional[Path] = None

    def begin(self, run: str, names: Sequence[str] = ()) -> None:
        if run not in self.renderers:
            wave = run_wave(self.settings.wave, len(self.renderers))
            self.renderers[run] = Renderer(self.settings, sr=self.sr, bpm=self.bpm, wave=wave)

    def send(self, frame: GradientFrame) -> None:
        self.begin(frame.run)
        self.renderers[frame.run].frame(frame.norms)

    def audio(self) -> np.ndarray:
        parts = [r.audio() for r in self.renderers.values()]
        if not parts:
            return np.zeros((0, 2), dtype=np.float32)
        out = np.zeros((max(p.shape[0] for p in parts), 2), dtype=np.float32)
        for p in parts:
            out[: p.shape[0]] += p
        return out

    def end(self, run: str) -> None:
        self.write()

    def write(self) -> Path:
        self.written = write_wav(self.path, self.audio(), sr=self.sr)
        return self.written

    def close(self) -> None:
        if self.written is None and self.renderers:
            self.write()


#: The sink ``local`` names: a pyo synth in this process. It lives in the synth layer above this one
#: (``module:class``), so it is imported by name when asked for, as mido loads its port backends:
#: sonification never imports pyo, nor the synth, unless a caller wants to hear it here.
LOCAL_SINK = "earengine.synth.local:LocalSynthSink"


def open_sink(spec: str) -> Any:
    """A sink from a shorthand: ``engine``, ``osc://host:port``, ``local`` (:data:`LOCAL_SINK`), or ``path.wav``.

    >>> sink = open_sink("osc://127.0.0.1:9100")
    >>> type(sink).__name__, sink.dest
    ('OscSink', ('127.0.0.1', 9100))
    >>> sink.close()
    """
    if spec == "engine":
        return OscSink()
    if spec.startswith("osc://"):
        url = urlparse(spec)
        return OscSink(url.hostname or "127.0.0.1", url.port or 9000)
    if spec == "local":
        module, name = LOCAL_SINK.split(":")
        return getattr(importlib.import_module(module), name)()
    if spec.lower().endswith(".wav"):
        return WavSink(spec)
    raise ParameterError(f"sink={spec!r} must be 'engine', 'osc://host:port', 'local' or a path ending in .wav")
