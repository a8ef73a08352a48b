"""The OSC contract: routing (no sockets) and a UDP transport that never drops or blocks.

Routing and transport are separate. :class:`OscRouter` turns one message — address, arguments,
sender — into registry changes and replies, and is tested with raw datagrams alone.
:class:`OscServer` owns the socket: one thread only drains the socket into a queue (so a flood
never overflows the kernel buffer), one thread parses and dispatches, and a scheduler thread holds
messages whose bundle timetag lies in the future — nobody sleeps in the receive path.

Replies go to the sender's address and port, or to the port it named with ``/reply/port``.
Every rejected message is answered ``/fail <address> <reason>`` and changes nothing.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

from earengine.errors import EarEngineError, ParameterError, UnknownAddressError
from earengine.params.registry import Change, Registry

__all__ = [
    "Reply",
    "OscRouter",
    "OscServer",
    "JobQueue",
    "encode_message",
    "encode_bundle",
    "osc_string",
    "decode_packet",
    "OscDecodeError",
    "MAX_UDP_PAYLOAD",
]

log = logging.getLogger("earengine.osc")

#: Largest payload one IPv4 UDP datagram can carry.
MAX_UDP_PAYLOAD = 65507
_NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01


# ---------------------------------------------------------------------------------------------
# Encoding: small and exact, so replies carry only the tags every host reads (i, f, s, b).
# ---------------------------------------------------------------------------------------------
def osc_string(data: bytes) -> bytes:
    """An OSC string: the bytes, then 1 to 4 NULs to a multiple of 4.

    >>> osc_string(b"/son")
    b'/son\\x00\\x00\\x00\\x00'
    """
    return data + b"\x00" * (4 - len(data) % 4)


def _pad_blob(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def encode_message(address: str, args: Sequence[Any] = ()) -> bytes:
    """Encode one OSC message. ``bool`` goes as ``i`` (Pd and Max have no T/F), ``float`` as
    32-bit ``f``, ``int`` as ``i``, ``str`` as ``s``, ``bytes`` as ``b``.

    >>> encode_message("/x", (1,))
    b'/x\\x00\\x00,i\\x00\\x00\\x00\\x00\\x00\\x01'
    """
    tags = [","]
    payload = []
    for arg in args:
        if hasattr(arg, "item") and not isinstance(arg, (bytes, bytearray)):
            arg = arg.item()  # numpy scalars
        if isinstance(arg, bool):
            tags.append("i")
            payload.append(struct.pack(">i", int(arg)))
        elif isinstance(arg, int):
            tags.append("i")
            payload.append(struct.pack(">i", arg))
        elif isinstance(arg, float):
            tags.append("f")
            payload.append(struct.pack(">f", arg))
        elif isinstance(arg, str):
            tags.append("s")
            payload.append(osc_string(arg.encode("utf-8")))
        elif isinstance(arg, (bytes, bytearray)):
            tags.append("b")
            payload.append(struct.pack(">i", len(arg)) + _pad_blob(bytes(arg)))
        else:
            raise TypeError(f"cannot send {type(arg).__name__} over OSC")
    return osc_string(address.encode("utf-8")) + osc_string("".join(tags).encode()) + b"".join(payload)


def timetag(unix_s: Optional[float]) -> bytes:
    """An OSC/NTP timetag for a Unix time in seconds; ``None`` means immediately."""
    if unix_s is None:
        return struct.pack(">Q", 1)
    seconds = unix_s + _NTP_EPOCH_OFFSET
    whole = int(seconds)
    return struct.pack(">II", whole, int((seconds - whole) * (1 << 32)) & 0xFFFFFFFF)


def encode_bundle(unix_s: Optional[float], messages: Iterable[bytes]) -> bytes:
    """Encode already-encoded messages into one bundle with a timetag."""
    parts = [b"#bundle\x00", timetag(unix_s)]
    for msg in messages:
        parts.append(struct.pack(">i", len(msg)))
        parts.append(msg)
    return b"".join(parts)


class OscDecodeError(EarEngineError, ValueError):
    """A datagram that is not a well-formed OSC packet."""


def peek_address(data: bytes) -> str:
    """Best-effort OSC address at the start of a datagram, for answering bad packets."""
    if data.startswith(b"#bundle"):
        # the first element's address, if readable
        if len(data) > 20:
            return peek_address(data[20:])
        return "#bundle"
    end = data.find(b"\x00")
    head = data[: end if end >= 0 else 64][:200]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "?"
    return text if text.startswith("/") and text.isprintable() else "?"


def decode_packet(data: bytes) -> list[tuple[Optional[float], str, tuple]]:
    """Decode a datagram into ``(unix_time or None, address, args)`` triples.

    ``None`` means "now" (a plain message, an immediate or a past bundle time).

    Raises
    ------
    OscDecodeError
        The datagram is not valid OSC.
    """
    from pythonosc import osc_bundle, osc_message
    from pythonosc.parsing import osc_types

    out: list[tuple[Optional[float], str, tuple]] = []

    def walk(bundle: "osc_bundle.OscBundle") -> None:
        when = None if bundle.timestamp == osc_types.IMMEDIATELY else bundle.timestamp
        for content in bundle:
            if isinstance(content, osc_message.OscMessage):
                out.append((when, content.address, tuple(content.params)))
            else:
                walk(content)

    try:
        if data.startswith(b"#bundle\x00"):
            walk(osc_bundle.OscBundle(data))
        elif data.startswith(b"/"):
            msg = osc_message.OscMessage(data)
            out.append((None, msg.address, tuple(msg.params)))
        else:
            raise OscDecodeError("not an OSC message or bundle (must start with / or #bundle)")
    except OscDecodeError:
        raise
    except Exception as exc:  # python-osc raises several kinds on garbage
        raise OscDecodeError(f"malformed OSC packet: {exc}".splitlines()[0][:200]) from None
    return out


# ---------------------------------------------------------------------------------------------
# Routing
# ---------------------------------------------------------------------------------------------
Address = tuple  # (host, port)


@dataclass(frozen=True)
class Reply:
    """A message to send: to ``dest`` if given, else to the sender's reply address."""

    address: str
    args: tuple = ()
    dest: Optional[Address] = None


Handler = Callable[[tuple, Address], Optional[Sequence[Reply]]]


class JobQueue:
    """One worker thread that runs slow commands (file I/O) in order, off the receive path.

    ``/sync`` goes through the same queue, so ``/synced`` follows every earlier slow command.
    A context manager; :meth:`drain` waits until everything queued so far has run (for tests).
    """

    def __init__(self, name: str = "earengine-jobs") -> None:
        self._queue: "queue.Queue[Optional[Callable[[], None]]]" = queue.Queue(maxsize=1024)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], None]) -> None:
        try:
            self._queue.put_nowait(fn)
        except queue.Full:
            raise EarEngineError("busy: too many slow commands queued; try again") from None

    def _run(self) -> None:
        while True:
            fn = self._queue.get()
            try:
                if fn is None:
                    return
                fn()
            except Exception:
                log.exception("job failed")
            finally:
                self._queue.task_done()

    def drain(self) -> None:
        self._queue.join()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=5)

    def __enter__(self) -> "JobQueue":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OscRouter:
    """Turns OSC messages into registry changes, command calls and replies. No sockets.

    Parameters
    ----------
    registry : Registry
        Parameters are set through it (validated, recorded, notified).
    send : callable(dest, address, args), optional
        How replies that come later (``/done``, ``/changed``, ``/synced``) leave; the transport
        sets it. Immediate replies are also returned by :meth:`handle`.
    status : callable() -> tuple, optional
        Supplies the arguments of ``/status.reply``.
    jobs : JobQueue, optional
        Runs commands declared ``later``; without one they run inline.
    reply_port : int, optional
        Default reply port for senders that never sent ``/reply/port`` (``--reply-port``).
    """

    def __init__(
        self,
        registry: Registry,
        *,
        send: Optional[Callable[[Address, str, tuple], None]] = None,
        status: Optional[Callable[[], tuple]] = None,
        jobs: Optional[JobQueue] = None,
        reply_port: Optional[int] = None,
    ) -> None:
        self.registry = registry
        self.send = send or (lambda dest, address, args: None)
        self.status = status or (lambda: ("none", 0, 0.0, 0.0, 0, registry.get("/clock/bpm"), 0.0, 0))
        self.jobs = jobs
        self.default_reply_port = reply_port
        self.reply_ports: dict[str, int] = {}
        self.listeners: set[Address] = set()
        self.handlers: dict[str, Handler] = {}
        self.counts = {"handled": 0, "failed": 0}
        self._lock = threading.Lock()
        self._sub = registry.subscribe(self._on_change)
        for address, fn in (
            ("/get", self._get),
            ("/status", self._status),
            ("/notify", self._notify),
            ("/sync", self._sync),
            ("/reply/port", self._reply_port),
        ):
            self.handlers[address] = fn

    def close(self) -> None:
        self._sub.close()

    def on(self, address: str, handler: Handler) -> None:
        """Attach the handler of a command declared in the registry's command rows."""
        if address not in self.registry.commands:
            raise ValueError(f"{address} is not a declared command; add a CommandSpec row first")
        self.handlers[address] = handler

    # -- reply addressing --------------------------------------------------------------------
    def reply_dest(self, sender: Address) -> Address:
        host, port = sender[0], sender[1]
        port = self.reply_ports.get(host, self.default_reply_port or port) or port
        return (host, port)

    # -- entry points ------------------------------------------------------------------------
    def handle_datagram(self, data: bytes, sender: Address, *, now_s: Optional[float] = None) -> list[Reply]:
        """Decode and handle one datagram at once, ignoring future timetags (tests, tools)."""
        try:
            items = decode_packet(data)
        except OscDecodeError as exc:
            self.counts["failed"] += 1
            return [Reply("/fail", (peek_address(data), str(exc)))]
        replies: list[Reply] = []
        for _, address, args in items:
            replies.extend(self.handle(address, args, sender))
        return replies

    def handle(self, address: str, args: tuple, sender: Address) -> list[Reply]:
        """Handle one message; never raises. Returns the replies to send now."""
        try:
            replies = self._dispatch(address, tuple(args), sender)
            self.counts["handled"] += 1
            return list(replies or ())
        except EarEngineError as exc:
            self.counts["failed"] += 1
            return [Reply("/fail", (address, str(exc)))]
        except Exception as exc:  # a bug must not take the server down; say so and go on
            log.exception("error handling %s", address)
            self.counts["failed"] += 1
            return [Reply("/fail", (address, f"internal error: {type(exc).__name__}: {exc}"))]

    def _dispatch(self, address: str, args: tuple, sender: Address) -> Optional[Sequence[Reply]]:
        if address in self.registry.specs:
            self.registry.set_args(address, args, source=f"osc:{sender[0]}:{sender[1]}")
            return None
        command = self.registry.commands.get(address)
        if command is None:
            raise UnknownAddressError(f"unknown address {address}; send /get <address> or see 'earengine params'")
        checked = command.validate(args)
        handler = self.handlers.get(address)
        if handler is None:
            raise EarEngineError(f"{address} is not available in this engine")
        if command.later:
            dest = self.reply_dest(sender)

            def job() -> None:
                try:
                    for reply in handler(checked, sender) or ():
                        self.send(reply.dest or dest, reply.address, reply.args)
                    self.send(dest, "/done", (address,))
                except EarEngineError as exc:
                    self.send(dest, "/fail", (address, str(exc)))
                except Exception as exc:
                    log.exception("error in %s", address)
                    self.send(dest, "/fail", (address, f"internal error: {type(exc).__name__}: {exc}"))

            if self.jobs is None:
                job()
            else:
                self.jobs.submit(job)
            return None
        return handler(checked, sender)

    # -- built-in commands -------------------------------------------------------------------
    def _get(self, args: tuple, sender: Address) -> list[Reply]:
        (address,) = args
        return [Reply(address, (self.registry.get(address),))]

    def _status(self, args: tuple, sender: Address) -> list[Reply]:
        return [Reply("/status.reply", tuple(self.status()))]

    def _notify(self, args: tuple, sender: Address) -> None:
        dest = self.reply_dest(sender)
        with self._lock:
            if args[0]:
                self.listeners.add(dest)
            else:
                self.listeners.discard(dest)
        return None

    def _sync(self, args: tuple, sender: Address) -> Optional[list[Reply]]:
        if self.jobs is None:
            return [Reply("/synced", args)]
        dest = self.reply_dest(sender)
        self.jobs.submit(lambda: self.send(dest, "/synced", args))
        return None

    def _reply_port(self, args: tuple, sender: Address) -> None:
        (port,) = args
        if not 0 <= port <= 65535:
            raise ParameterError(f"/reply/port port={port} must be within [0, 65535]")
        old = self.reply_dest(sender)
        with self._lock:
            if port == 0:
                self.reply_ports.pop(sender[0], None)
            else:
                self.reply_ports[sender[0]] = port
            if old in self.listeners:  # a subscription follows its sender to the new port
                self.listeners.discard(old)
                self.listeners.add(self.reply_dest(sender))
        return None

    def _on_change(self, change: Change) -> None:
        for dest in tuple(self.listeners):
            self.send(dest, "/changed", (change.address, change.value))


# ---------------------------------------------------------------------------------------------
# Transport
# ---------------------------------------------------------------------------------------------
class _Scheduler:
    """Runs callables at Unix times on its own thread (bundles with future timetags)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cv = threading.Condition()
        self._seq = itertools.count()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="earengine-osc-sched", daemon=True)
        self._thread.start()

    def at(self, unix_s: float, fn: Callable[[], None]) -> None:
        with self._cv:
            heapq.heappush(self._heap, (unix_s, next(self._seq), fn))
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._closed and (not self._heap or self._heap[0][0] > time.time()):
                    timeout = None if not self._heap else max(0.0, self._heap[0][0] - time.time())
                    self._cv.wait(timeout)
                if self._closed:
                    return
                _, _, fn = heapq.heappop(self._heap)
            try:
                fn()
            except Exception:
                log.exception("scheduled OSC message failed")

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=2)


class OscServer:
    """OSC over UDP for an :class:`OscRouter`. A context manager.

    Parameters
    ----------
    router : OscRouter
    host : str
        Interface to bind; loopback unless the user asks for another.
    port : int >= 0
        UDP port (0 picks a free one; see :attr:`address`).
    allow : iterable of str, optional
        Peer IP addresses allowed to send; others are ignored (and logged once each).
    max_datagram : int > 0
        Largest datagram accepted (bytes); larger ones are answered ``/fail``. Up to 65507.
    queue_size : int > 0
        Datagrams held between the receive and the dispatch thread before new ones are
        dropped (and counted).
    """

    def __init__(
        self,
        router: OscRouter,
        *,
        host: str = "127.0.0.1",
        port: int = 9000,
        allow: Optional[Iterable[str]] = None,
        max_datagram: int = MAX_UDP_PAYLOAD,
        queue_size: int = 1_000_000,
    ) -> None:
        if not 0 < max_datagram <= MAX_UDP_PAYLOAD:
            raise ParameterError(f"max_datagram={max_datagram} must be within [1, {MAX_UDP_PAYLOAD}]")
        if not 0 <= port <= 65535:
            raise ParameterError(f"--osc-port={port} must be within [0, 65535]")
        self.router = router
        self.host, self.port = host, port
        self.allow = frozenset(allow) if allow else None
        self.max_datagram = max_datagram
        self.queue_size = queue_size
        self.counts = {"received": 0, "dropped": 0, "oversized": 0, "refused": 0}
        self._refused_logged: set[str] = set()
        self._inbox: "queue.SimpleQueue[Optional[tuple[bytes, Address, int]]]" = queue.SimpleQueue()
        self._sock: Optional[socket.socket] = None
        self._threads: list[threading.Thread] = []
        self._scheduler: Optional[_Scheduler] = None
        self._closing = False

    @property
    def address(self) -> Address:
        assert self._sock is not None, "server not started"
        return self._sock.getsockname()[:2]

    def __enter__(self) -> "OscServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        try:
            info = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0]
        except socket.gaierror as exc:
            raise EarEngineError(f"--osc-host={self.host} cannot be resolved: {exc.strerror}") from None
        sock = socket.socket(info[0], socket.SOCK_DGRAM)
        for opt in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if opt is None:
                continue
            try:  # a deep kernel buffer absorbs bursts while the dispatcher catches up
                sock.setsockopt(socket.SOL_SOCKET, opt, 8 * 1024 * 1024)
                break
            except OSError:
                continue
        try:
            sock.bind(info[4])
        except OSError as exc:
            sock.close()
            raise EarEngineError(
                f"cannot listen for OSC on {self.host}:{self.port}: {exc.strerror}; choose another --osc-port"
            ) from None
        self._sock = sock
        self.router.send = self._send
        self._scheduler = _Scheduler()
        for target, name in ((self._receive, "earengine-osc-recv"), (self._dispatch, "earengine-osc-dispatch")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        if self._sock is None or self._closing:
            return
        self._closing = True
        try:  # wake the receive thread
            wake = socket.socket(self._sock.family, socket.SOCK_DGRAM)
            wake.sendto(b"", self.address)
            wake.close()
        except OSError:
            pass
        for thread in self._threads:
            thread.join(timeout=2)
        if self._scheduler:
            self._scheduler.close()
        self._sock.close()

    # -- threads -----------------------------------------------------------------------------
    def _receive(self) -> None:
        """Only drains the socket: copy, enqueue, repeat. Nothing here can block on work."""
        assert self._sock is not None
        buf = bytearray(MAX_UDP_PAYLOAD + 1)
        view = memoryview(buf)
        flags = getattr(socket, "MSG_TRUNC", 0)
        recv = self._sock.recvfrom_into
        put = self._inbox.put
        while not self._closing:
            try:
                nbytes, sender = recv(buf, len(buf), flags)
            except OSError:
                if self._closing:
                    break
                continue
            if self._closing:
                break
            put((bytes(view[: min(nbytes, len(buf))]), sender, nbytes))
        self._inbox.put(None)

    def _dispatch(self) -> None:
        inbox = self._inbox
        while True:
            item = inbox.get()
            if item is None:
                return
            data, sender, nbytes = item
            self.counts["received"] += 1
            try:
                self._handle(data, sender, nbytes)
            except Exception:  # never let one datagram stop the server
                log.exception("error handling datagram from %s", sender)

    def _handle(self, data: bytes, sender: Address, nbytes: int) -> None:
        if self.allow is not None and sender[0] not in self.allow:
            self.counts["refused"] += 1
            if sender[0] not in self._refused_logged:
                self._refused_logged.add(sender[0])
                log.warning("ignoring OSC from %s: not in the allow-list", sender[0])
            return
        if not data and nbytes == 0:
            return
        dest = self.router.reply_dest(sender)
        if nbytes > self.max_datagram:
            self.counts["oversized"] += 1
            self._send(dest, "/fail", (peek_address(data), f"datagram of {nbytes} bytes exceeds the limit of {self.max_datagram}"))
            return
        if self.queue_size and self._inbox.qsize() > self.queue_size:
            self.counts["dropped"] += 1
            return
        try:
            items = decode_packet(data)
        except OscDecodeError as exc:
            self.router.counts["failed"] += 1
            self._send(dest, "/fail", (peek_address(data), str(exc)))
            return
        now = time.time()
        for when, address, args in items:
            if when is not None and when > now + 0.0005:
                assert self._scheduler is not None
                self._scheduler.at(when, lambda a=address, g=args: self._run(a, g, sender))
            else:
                self._run(address, args, sender)

    def _run(self, address: str, args: tuple, sender: Address) -> None:
        replies = self.router.handle(address, args, sender)
        if replies:
            dest = self.router.reply_dest(sender)
            for reply in replies:
                self._send(reply.dest or dest, reply.address, reply.args)

    def _send(self, dest: Address, address: str, args: tuple) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto(encode_message(address, args), dest)
        except OSError as exc:  # an unreachable listener must not disturb anyone else
            log.debug("cannot send %s to %s: %s", address, dest, exc)
