"""The engine's side of a worker on another machine: :class:`RemoteSupervisor`
(``earengine run --worker HOST:PORT``, on the laptop), what the engine uses instead of
:class:`~earengine.worker.supervisor.DreamSupervisor`, with the same ``deliver(samples, stats)``
callback and commands. The server it talks to, the link's sockets and what crosses it:
:mod:`earengine.worker.remote`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Optional

import numpy as np

from earengine.worker.messages import (
    Reference,
    Reset,
    Settings,
    ToWorker,
    WorkerError,
)
from earengine.worker.supervisor import DreamSupervisor, followed_addresses
from earengine.worker.wire import (
    FROM_WORKER,
    StreamView,
    WireError,
    decode,
    encode,
    floats_to_bytes,
    read_secret,
    refuse_open_listen,
)
from earengine.worker.remote import (  # the link's pieces, shared by both ends
    _PING_S,
    _NO_STEP,
    _curve,
    _monitor_events,
    _socket,
    _watch,
    _tcp,
    _poller,
    _pump,
    _close_sockets,
    _Seldom,
)

__all__ = ["RemoteSupervisor"]

log = logging.getLogger("earengine.worker")


class RemoteSupervisor(DreamSupervisor):
    """The engine's supervisor of a worker on another machine: the same callback and commands as
    :class:`~earengine.worker.supervisor.DreamSupervisor`, over the wire; a context manager.

    Parameters
    ----------
    registry : Registry
    host, port : str, int
        Where ``earengine worker --listen`` serves.
    deliver : callable(samples, stats)
        As :class:`DreamSupervisor`'s; never called on a thread that plays audio.
    secret : path, optional
        The secret file both hosts hold; required beyond loopback.
    say : callable(str)
    bar_clock : callable() -> float, optional
        The player's bar position (bars since the clock started, fractional): the newest loop is
        asked for shortly before each bar line. Default: the wall clock at the registry's tempo.
    page : callable() -> bool, optional
        True while a page draws the loop's scaleogram (a WebSocket receiver is connected): the
        scaleogram then crosses whole, whatever ``/stream/reduce`` says.
    """

    def __init__(self, registry, host: str, port: int, *, deliver: Callable[[np.ndarray, dict], None],
                 secret: Optional[str] = None, say: Callable[[str], None] = print,
                 bar_clock: Optional[Callable[[], float]] = None, hang_s: float = 120.0,
                 page: Optional[Callable[[], bool]] = None) -> None:
        refuse_open_listen(host, secret, "--worker")
        self.secret = read_secret(secret) if secret is not None else None
        self.registry = registry
        self.host, self.port = host, int(port)
        self.remote = f"{host}:{port}"
        self.model = self.remote
        self.device = "remote"
        self.deliver = deliver
        self.say = say
        self.hang_s = hang_s
        self.followed = followed_addresses(registry)
        self.bar_clock = bar_clock
        self.page = page or (lambda: False)
        self.state = "connecting"
        self.restarts = 0
        self.last: dict = dict(_NO_STEP)
        self.loops = 0
        self.info: dict = {}
        self.rtt_s: Optional[float] = None
        self.counts_here = {"worker_reconnects": 0, "worker_frames_refused_size": 0,
                            "worker_frames_refused_type": 0, "worker_bytes_received": 0}
        self.remote_counts: dict = {}
        self.acts = None
        self._want_acts = False
        self._acts_dirty = False
        self._view: Optional[StreamView] = None  # what the worker was last told the streams show
        self._view_at = 0.0
        self._reference: Optional[np.ndarray] = None
        self._last_loop: Optional[np.ndarray] = None
        self._patterns: dict = {}
        self._session: Optional[str] = None
        self._synced = False
        self._connected = False
        self._ever_connected = False
        self._hello_at = 0.0
        self._ping_at = 0.0
        self._pong_at = 0.0
        self._seq = 0
        self._asked_bar: Optional[int] = None
        self._want_at: Optional[float] = None
        self._want_timed = False
        # how long a loop takes to arrive once asked for: the slowest of late (up at once, down
        # a tenth of the way at each loop), since one that comes after the bar line waits a bar;
        # from a guess on the slow side (a loop of 2 bars at 44.1 kHz takes 0.3 s at 20 Mbit/s)
        self._fetch_s = 0.5
        self._out: "queue.Queue[tuple[str, dict]]" = queue.Queue(maxsize=1000)
        self._closing = False
        self._sub = None
        self._thread: Optional[threading.Thread] = None
        self._ctx = self._sock = self._monitor = None
        self._say_refused = _Seldom(10.0)

    @property
    def pid(self) -> Optional[int]:
        return None

    def where(self) -> str:
        """``worker remote host:port, rtt N ms`` for status lines and ``/status``."""
        rtt = "rtt -" if self.rtt_s is None else f"rtt {self.rtt_s * 1000:.0f} ms"
        return f"worker remote {self.remote}, {rtt}"

    def counts(self) -> dict[str, int]:
        """``/counts``: reconnects, refused peers (counted by the server), frames refused here
        and there, for size and for type."""
        r = self.remote_counts
        return {**self.counts_here, "worker_refused_peers": int(r.get("refused_peers", 0)),
                "worker_remote_frames_refused_size": int(r.get("frames_refused_size", 0)),
                "worker_remote_frames_refused_type": int(r.get("frames_refused_type", 0))}

    def start(self) -> None:
        import zmq

        self._ctx = zmq.Context()
        sock = self._sock = _socket(self._ctx, zmq.DEALER)
        sock.immediate = True  # nothing queues for a link that is not up: the state is sent again on connect
        sock.reconnect_ivl = 100
        # ZeroMQ's backoff: 0.1 s doubling up to 0.5 s, so the dream is back within a second
        # of the link (a connection tried twice a second costs a venue's network nothing)
        sock.reconnect_ivl_max = 500
        sock.sndhwm = 50
        _curve(sock, self.secret, server=False)
        self._monitor = _watch(sock, zmq.EVENT_DISCONNECTED)
        sock.connect(f"{_tcp(self.host)}:{self.port}")
        self._follow(self._run, "earengine-dream-remote")
        self.say(f"worker: connecting to {self.remote} ({'CURVE keys' if self.secret else 'no keys: this machine only'})")

    def close(self) -> None:
        self._unfollow()
        _close_sockets(self._monitor, self._sock)
        if self._ctx is not None:
            self._ctx.term()
        self._ctx = self._sock = self._monitor = None

    # -- to the worker (any thread; never blocks) ------------------------------------------------
    def send(self, msg: ToWorker) -> None:
        if isinstance(msg, Settings):
            self._queue("settings", values=dict(msg.values))
        elif isinstance(msg, Reset):
            self._queue("reset", kind=msg.kind,
                        samples=None if msg.samples is None else floats_to_bytes(msg.samples))
        elif isinstance(msg, Reference):
            self._queue("reference", samples=None if msg.samples is None else floats_to_bytes(msg.samples))

    def _queue(self, type_: str, /, **fields: Any) -> None:
        try:
            self._out.put_nowait((type_, fields))
        except queue.Full:
            log.warning("worker link backed up; %s dropped", type_)

    def stream_activations(self, on: bool) -> None:
        self._want_acts = bool(on)  # told to the worker by the link's thread (_tell_view)

    def view(self) -> StreamView:
        """What the streams show now: whether they have receivers, and ``/stream/layers``,
        ``/stream/reduce``, ``/stream/fps``; the worker reduces each loop's activations to it."""
        from earengine.streams.hub import parse_layers

        g = self.registry.get
        taps = tuple(self.info.get("taps", ()))
        try:
            layers = parse_layers(g("/stream/layers"), taps)
        except Exception:  # refused at the row; the taps all the same
            layers = taps
        return StreamView(self._want_acts, tuple(layers), g("/stream/reduce"), float(g("/stream/fps")),
                          bool(self._want_acts and self.page()))

    def _tell_view(self, *, now: bool = False) -> None:
        """The ``streams`` frame, when what the streams show has changed (looked at ten times a
        second) or ``now``."""
        t = time.monotonic()
        if not now and t - self._view_at < 0.1:
            return
        self._view_at = t
        view = self.view()
        if (now or view != self._view) and self._send_frame("streams", **view.to_fields()):
            self._view = view

    def _forward(self, change) -> None:
        self._queue("settings", values={change.address: change.value})

    # -- the link's thread ----------------------------------------------------------------------
    def _run(self) -> None:
        poller = _poller(self._sock, self._monitor)
        while not self._closing:
            try:
                _pump(poller, self._sock, self._monitor, recv=self._sock.recv, frame=self._frame, events=self._events)
                self._tick()
            except Exception:
                if self._closing:
                    return
                log.exception("remote worker link")
                time.sleep(0.1)

    def _send_frame(self, type_: str, /, **fields: Any) -> bool:
        import zmq

        try:
            self._sock.send(encode(type_, **fields), zmq.NOBLOCK)
        except zmq.ZMQError:  # no link up (IMMEDIATE): what matters is sent again on connect
            return False
        return True

    def _events(self) -> None:
        import zmq

        for event in _monitor_events(self._monitor):
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._connected = True
                self._synced = False
                self._hello_at = 0.0
                if self._ever_connected:
                    self.counts_here["worker_reconnects"] += 1
                self._ever_connected = True
            elif event == zmq.EVENT_DISCONNECTED:
                if self._connected:
                    self.say(f"worker: link to {self.remote} dropped; the last loop keeps playing, reconnecting")
                self._connected = False
                self._synced = False
                self.state = "link down"
                self._want_at = None
            elif self._say_refused():
                self.say(f"worker: {self.remote} refused the keys (is --secret-file the same file on both hosts?)")

    def _sync(self) -> None:
        """Hello and every followed parameter (again on each new connection) until ready answers."""
        now = time.monotonic()
        if now - self._hello_at < 0.5:
            return
        self._hello_at = now
        # what was queued for the old link is stale: this state replaces it
        while True:
            try:
                self._out.get_nowait()
            except queue.Empty:
                break
        if self._send_frame("hello"):
            self._send_frame("settings", values=self.settings())
            if self._reference is not None:
                self._send_frame("reference", samples=floats_to_bytes(self._reference))
            self._tell_view(now=True)

    def _tick(self) -> None:
        if not self._connected:
            return
        if not self._synced:
            self._sync()
            return
        while True:
            try:
                type_, fields = self._out.get_nowait()
            except queue.Empty:
                break
            self._send_frame(type_, **fields)
        now = time.monotonic()
        if now - self._ping_at >= _PING_S:
            self._ping_at = now
            self._send_frame("ping", t0=now)
        if self._pong_at and now - self._pong_at > 3 * _PING_S + 1 and self.state in ("dreaming", "paused"):
            self.state = "link slow"
        self._tell_view()
        self._ask()

    def _bar_s(self) -> float:
        g = self.registry.get
        return 60.0 / g("/clock/bpm") * g("/clock/beats_per_bar")

    def _ask(self, *, now: bool = False) -> None:
        """Ask for the newest loop shortly before each bar line: once per bar, since the player
        swaps a loop in only at a bar line and a second one in the same bar would never sound.
        ``now``: at once, for the coming bar line (a link just up)."""
        t = time.monotonic()
        if not now and self._want_at is not None and t - self._want_at < max(5.0, 2 * self._bar_s()):
            return  # one loop asked for and not here yet (a step still running)
        bar_s = self._bar_s()
        position = self.bar_clock() if self.bar_clock is not None else time.time() / bar_s
        next_bar = int(np.floor(position)) + 1
        lead_s = min(0.9 * bar_s, 1.25 * self._fetch_s + 0.1)
        if not now and (next_bar == self._asked_bar or (next_bar - position) * bar_s > lead_s):
            return
        if self._send_frame("want", after=self._seq):
            self._asked_bar = next_bar
            self._want_at = t
            self._want_timed = not now  # the time a loop takes to come is measured on the bar's asks

    def _refused(self, exc: WireError) -> None:
        self.counts_here[f"worker_frames_refused_{exc.why}"] += 1
        if self._say_refused():
            self.say(f"worker: a frame from {self.remote} refused ({exc})")

    def _frame(self, body: bytes) -> None:
        self.counts_here["worker_bytes_received"] += len(body)
        try:
            kind, fields = decode(body, FROM_WORKER)
        except WireError as exc:
            self._refused(exc)
            return
        now = time.monotonic()
        if kind == "ready":
            self._ready_remote(fields)
        elif kind == "pong":
            rtt = now - fields["t0"]
            if 0 <= rtt < 60:
                self.rtt_s = rtt if self.rtt_s is None else 0.7 * self.rtt_s + 0.3 * rtt
            self._pong_at = now
            self.remote_counts = fields["counts"]
            self.last = {**self.last, **fields["stats"]}
            if fields["state"] == "failed":
                self.state = "failed"
            elif self._synced:
                self.state = "dreaming" if self.registry.get("/opt/run") else "paused"
        elif kind == "loop":
            try:
                self._check_neurons(fields)
            except WireError as exc:
                self._refused(exc)
                return
            if self._want_at is not None and self._want_timed:
                self._fetch_s = max(now - self._want_at, 0.9 * self._fetch_s + 0.1 * (now - self._want_at))
            self._want_at = None
            self._loop(fields)
        elif kind == "error":
            self._error(WorkerError(fields["text"], fields["fatal"]))

    def _check_neurons(self, fields: dict) -> None:
        """A loop's activations and masks must have the channels and frequency rows of the taps
        the worker said it has (``ready``); a loop of another shape is refused whole."""
        shapes = self.info.get("shapes", {})
        for name in ("acts", "mask"):
            for tap, a in (fields[name] or {}).items():
                shape = shapes.get(tap)
                if shape is None:
                    raise WireError(f"loop.{name} has tap {tap!r}, which the worker did not say it has", "size")
                neurons = (shape[0], shape[1] if len(shape) == 3 else 1)
                if tuple(a.shape[:2]) != tuple(neurons):
                    raise WireError(f"loop.{name}[{tap}] has {a.shape[0]}x{a.shape[1]} neurons; the tap has "
                                    f"{neurons[0]}x{neurons[1]}", "size")

    def _ready_remote(self, fields: dict) -> None:
        if self._synced:
            return
        self._synced = True
        self.info = {"taps": fields["taps"], "shapes": fields["shapes"]}
        restarted = self._session is not None and fields["session"] != self._session
        first = self._session is None
        self._session = fields["session"]
        self._seq = 0  # the server counts its loops from its start
        self._asked_bar = None
        self._want_at = None
        if restarted:
            self.restarts += 1
            if self._last_loop is not None:  # a new worker goes on from the loop that is playing
                self._send_frame("reset", kind="current", samples=floats_to_bytes(self._last_loop))
        self.state = "dreaming" if self.registry.get("/opt/run") else "paused"
        self._tell_view(now=True)  # with the taps known, the layers are
        # the newest loop at once, not at the next bar line's ask: after a drop or a restart the
        # dream is heard again from the first bar line it can make
        self._ask(now=True)
        if first:
            self.say(f"worker: ear loaded ({len(self.info['taps'])} taps), dreaming on {self.where()}")
        else:
            self.say(f"worker: {self.remote} {'restarted' if restarted else 'back'}; "
                     f"its parameters sent again, dreaming on")

    def _loop(self, fields: dict) -> None:
        samples = fields["samples"]
        if fields["seq"] <= self._seq:
            return
        self._seq = fields["seq"]
        stats = dict(fields["stats"])
        self.last = {**self.last, **{k: stats[k] for k in _NO_STEP}}
        stats["key"] = self.loops + 1  # the server's numbers start again when it does; these never
        if fields["notes"] is not None:
            from earengine.pattern import Pattern

            stats["pattern"] = Pattern.from_dict(fields["notes"])
        if fields["acts"] is not None and self._want_acts:
            from earengine.streams.activations import ActivationSet

            # each tap (c, f, t) as the streams cut frames from it: only what they show crossed
            # (see earengine.worker.wire.pack_acts)
            stats["acts"] = ActivationSet(key=stats["key"], step=stats["step"], loss=stats["loss"],
                                          acts=fields["acts"], mask=fields["mask"] or {})
        self.loops += 1
        self._last_loop = samples
        self.deliver(samples, stats)

    # DreamSupervisor's shared-memory machinery does not apply here
    def _apply_acts(self) -> None:
        pass

    def _poll(self) -> None:
        pass

    def _restart(self, why: str) -> None:
        pass
