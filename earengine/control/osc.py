"""The OSC contract: routing (no sockets) and a UDP transport that never blocks, in bounded memory.

Routing and transport are separate. :class:`OscRouter` turns one message — address, arguments,
sender — into registry changes and replies, and is tested with raw datagrams alone.
:class:`OscServer` owns the socket: one thread only drains the socket into a queue (so a flood
does not overflow the kernel buffer; beyond :data:`INBOX_BYTES` waiting, datagrams are dropped
and counted), one thread parses and dispatches, and bundles whose timetag lies in the future
wait in a scheduler thread (:mod:`earengine.control.bundles`) — nobody sleeps in the receive
path. The scheduler is bounded as scsynth's is (``/osc/sched_max`` bundles, ``/osc/horizon_s``
ahead, see :mod:`earengine.control.params`); a refused bundle is answered ``/fail #bundle
<reason>``. Commands declared ``later`` (file I/O) run on a :class:`~earengine.control.jobs.JobQueue`.

The router answers the server's own commands itself: ``/get``, ``/status``, ``/notify``,
``/sync``, ``/reply/port`` and ``/counts`` (rows in :mod:`earengine.control.params`); every
other command's handler is attached with :meth:`OscRouter.on` by its subsystem.

Replies go to the sender's address and port, or to the port it named with ``/reply/port``.
They follow one rule, scsynth's, derived from the rows in one place (:meth:`OscRouter.answer`):
setting a parameter is silent; a command answers ``/done <address>`` once it has done its work
(a ``later`` one when its job ends); a query answers with its reply instead; data rows
(``silent``, ``/son/frame``) answer nothing. Every rejected message is answered ``/fail <address>
<reason>`` and changes nothing; a read-only row (``access="r"``) is rejected as ``/fail <address>
read-only …``.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import socket
import threading
import time
from typing import Callable, Iterable, Mapping, Optional, Sequence

from earengine.control.bundles import FutureBundles
from earengine.control.jobs import JobQueue
from earengine.errors import EarEngineError, ParameterError, UnknownAddressError
from earengine.osc.wire import (
    MAX_UDP_PAYLOAD,
    Address,
    OscDecodeError,
    Reply,
    bundle_time,
    decode_packet,
    encode_message,
    peek_address,
)
from earengine.params.registry import Change, Registry
from earengine.params.spec import CommandSpec

__all__ = ["OscRouter", "OscServer", "udp_drops"]

log = logging.getLogger("earengine.osc")

#: Most bytes of datagrams (with their bookkeeping) waiting between the receive and the
#: dispatch thread; beyond it a flood is dropped, counted, instead of growing the engine.
INBOX_BYTES = 4 * 1024 * 1024
_INBOX_OVERHEAD = 256  # bytes a queued datagram costs beyond its payload (objects, sender tuple)
_NOW_S = 0.0005  # a bundle due within this is run at once, not scheduled


# ---------------------------------------------------------------------------------------------
# Routing
# ---------------------------------------------------------------------------------------------


Handler = Callable[[tuple, Address], Optional[Sequence[Reply]]]


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
        self.status = status or (lambda: ("none", 0, 0.0, 0.0, 0, registry.get("/clock/bpm"), 1, 1.0, 0, 0.0))
        self.jobs = jobs
        self.default_reply_port = reply_port
        self.reply_ports: dict[str, int] = {}
        self.listeners: set[Address] = set()
        #: Command handlers by address: the router's own, then those attached with :meth:`on`.
        self.handlers: dict[str, Handler] = {
            "/get": self._get,
            "/status": self._status,
            "/notify": self._notify,
            "/sync": self._sync,
            "/reply/port": self._reply_port,
            "/counts": self._counts,
        }
        self.counts = {"handled": 0, "failed": 0}
        #: Callables whose ``{name: int}`` answers make up ``/counts.reply`` (the transport, the
        #: streams, the worker supervisor add theirs).
        self.count_sources: list[Callable[[], Mapping[str, int]]] = [lambda: self.counts]
        self._lock = threading.Lock()
        self._sub = registry.subscribe(self._on_change)  # /notify listeners hear every change

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
        spec = self.registry.specs.get(address)
        if spec is not None:
            spec.check_writable()  # a reading is the engine's to set: /fail <address> read-only …
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
                    for reply in self.answer(command, handler(checked, sender)):
                        self.send(reply.dest or dest, reply.address, reply.args)
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
        return self.answer(command, handler(checked, sender))

    @staticmethod
    def answer(command: CommandSpec, replies: Optional[Sequence[Reply]]) -> list[Reply]:
        """What a command that has done its work answers: its handler's replies, then ``/done
        <address>`` where its row says so (:attr:`CommandSpec.answers
        <earengine.params.spec.CommandSpec.answers>`) — the one place the rule is applied.

        >>> OscRouter.answer(CommandSpec("/stream/remove"), None)
        [Reply(address='/done', args=('/stream/remove',), dest=None)]
        """
        out = list(replies or ())
        if command.answers == "/done":
            out.append(Reply("/done", (command.address,)))
        return out

    # -- built-in commands -------------------------------------------------------------------
    def _get(self, args: tuple, sender: Address) -> list[Reply]:
        (address,) = args
        return [Reply(address, (self.registry.get(address),))]

    def _status(self, args: tuple, sender: Address) -> list[Reply]:
        return [Reply("/status.reply", tuple(self.status()))]

    def all_counts(self) -> dict[str, int]:
        """Every count of every source, by name (a later source wins a clash)."""
        out: dict[str, int] = {}
        for source in self.count_sources:
            try:
                out.update({str(k): int(v) for k, v in source().items()})
            except Exception:  # a view must not fail the command
                log.exception("count source failed")
        return out

    def _counts(self, args: tuple, sender: Address) -> list[Reply]:
        flat: list = []
        for name, value in self.all_counts().items():
            flat += [name, value]
        return [Reply("/counts.reply", tuple(flat))]

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
    inbox_bytes : int > 0
        Bytes of datagrams (with their bookkeeping) held there before new ones are dropped (and
        counted): what bounds the engine's memory under a flood.

    Attributes
    ----------
    counts : dict of str to int
        ``received``, ``dropped`` (by the inbox bounds), ``oversized``, ``refused`` (by the
        allow-list), ``late`` (bundles run after their time), ``scheduled`` (future bundles held),
        ``refused_far`` and ``refused_full`` (future bundles refused beyond ``/osc/horizon_s`` or
        ``/osc/sched_max``), ``fail_unsent`` (refusals counted but not answered, by the rate limit).
        :meth:`all_counts` adds ``pending`` and ``kernel_dropped``.
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
        inbox_bytes: int = INBOX_BYTES,
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
        self.inbox_bytes = int(inbox_bytes)
        self.counts = {"received": 0, "dropped": 0, "oversized": 0, "refused": 0, "late": 0, "scheduled": 0,
                       "refused_far": 0, "refused_full": 0, "fail_unsent": 0}
        # bytes into and out of the inbox, each written by one thread only: no lock, no lost update
        self._in_bytes = 0
        self._out_bytes = 0
        self._in_dropped = 0  # dropped by the receive thread (it alone writes this)
        self._refused_logged: set[str] = set()
        self._inbox: "queue.SimpleQueue[Optional[tuple[bytes, Address, int]]]" = queue.SimpleQueue()
        self._sock: Optional[socket.socket] = None
        self._threads: list[threading.Thread] = []
        self._future: Optional[FutureBundles] = None
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
        self.router.count_sources.append(self.all_counts)
        self._future = FutureBundles(self.router.registry, send=self._send, counts=self.counts)
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
        if self._future is not None:
            self._future.close()
        self._sock.close()

    def all_counts(self) -> dict[str, int]:
        """:attr:`counts`, with the datagrams the receive thread dropped, the scheduler's load
        (``pending``) and the datagrams the kernel dropped before this server could read them
        (``kernel_dropped``: a flood faster than the machine lets it read)."""
        out = dict(self.counts)
        out["dropped"] += self._in_dropped
        out["pending"] = len(self._future) if self._future is not None else 0
        out["kernel_dropped"] = self.kernel_dropped()
        return out

    def kernel_dropped(self) -> int:
        """Datagrams the kernel dropped for this socket, its receive buffer full (Linux: the
        ``drops`` column of ``/proc/net/udp``; 0 where there is none). Read on request only."""
        if self._sock is None:
            return 0
        try:
            inode = str(os.fstat(self._sock.fileno()).st_ino)
        except OSError:
            return 0
        return sum(int(f[-1]) for f in _udp_sockets() if f[9] == inode)

    # -- threads -----------------------------------------------------------------------------
    def _receive(self) -> None:
        """Only drains the socket: copy, enqueue, repeat. Nothing here can block on work; beyond
        the inbox's bounds a datagram is dropped and counted (the kernel would drop it anyway)."""
        assert self._sock is not None
        buf = bytearray(MAX_UDP_PAYLOAD + 1)
        view = memoryview(buf)
        flags = getattr(socket, "MSG_TRUNC", 0)
        recv = self._sock.recvfrom_into
        put = self._inbox.put
        qsize = self._inbox.qsize
        budget, limit = self.inbox_bytes, self.queue_size
        while not self._closing:
            try:
                nbytes, sender = recv(buf, len(buf), flags)
            except OSError:
                if self._closing:
                    break
                continue
            if self._closing:
                break
            kept = min(nbytes, len(buf))
            if self._in_bytes - self._out_bytes > budget or (limit and qsize() > limit):
                self._in_dropped += 1
                continue
            self._in_bytes += kept + _INBOX_OVERHEAD
            put((bytes(view[:kept]), sender, nbytes))
        self._inbox.put(None)

    def _dispatch(self) -> None:
        inbox = self._inbox
        while True:
            item = inbox.get()
            if item is None:
                return
            data, sender, nbytes = item
            self._out_bytes += len(data) + _INBOX_OVERHEAD
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
        future = self._future
        assert future is not None, "server not started"
        now = time.time()
        when = bundle_time(data)
        if when is not None and when > now + _NOW_S:
            # refused before decoding: a flood of far-future bundles costs a few microseconds each
            # (a nested bundle may not come before its parent, so the outer time decides)
            why = future.refusal(when - now)
            if why is not None:
                future.refuse(dest, why)
                return
        try:
            items = decode_packet(data)
        except OscDecodeError as exc:
            self.router.counts["failed"] += 1
            self._send(dest, "/fail", (peek_address(data), str(exc)))
            return
        later: dict[float, list[tuple[str, tuple]]] = {}
        late: set[float] = set()
        for when, address, args in items:
            if when is not None and when > now + _NOW_S:
                later.setdefault(when, []).append((address, args))
            else:
                if when is not None and when not in late:  # as scsynth does: run at once, count it
                    late.add(when)
                    self.counts["late"] += 1
                self._run(address, args, sender)
        for when, messages in later.items():
            why = future.hold(when, functools.partial(self._run_all, messages, sender), now_s=now,
                              size=len(data) // len(later) + _INBOX_OVERHEAD)
            if why is not None:
                future.refuse(dest, why)

    def _run_all(self, messages: list, sender: Address) -> None:
        for address, args in messages:
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


def _udp_sockets():
    """The fields of every row of Linux's ``/proc/net/udp`` and ``udp6`` (none elsewhere)."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f, None)
                rows = [line.split() for line in f]
        except OSError:
            continue
        yield from (fields for fields in rows if len(fields) > 12)


def udp_drops(port: int) -> int:
    """Datagrams the kernel dropped, their receive buffer full, for the UDP sockets bound to
    ``port`` on this machine (0 where the kernel does not say). For benchmarks that watch an
    engine in another process; the engine itself counts by its socket (``kernel_dropped``)."""
    return sum(int(f[-1]) for f in _udp_sockets() if int(f[1].rsplit(":", 1)[1], 16) == int(port))

