"""The worker on another machine: a server that dreams, and the engine's supervisor of it.

- :class:`WorkerServer` (``earengine worker --listen HOST:PORT``, on a GPU host): loads the ear,
  runs the same dream as the local worker (:func:`earengine.worker.process.dream`) on a thread of
  its own, publishing through a :class:`WireOutlet`, and serves one engine over the wire
  (:mod:`earengine.worker.wire`).
- :class:`RemoteSupervisor` (``earengine run --worker HOST:PORT``, on the laptop): what the engine
  uses instead of :class:`~earengine.worker.supervisor.DreamSupervisor`, with the same
  ``deliver(samples, stats)`` callback and commands.

Only what the engine uses crosses: settings and commands one way; the other way the newest
finished loop once per bar (the engine asks for it shortly before each bar line, since the player
swaps a loop in only there), with its notes and, while streams want them, its activations; the
step statistics and the round-trip time ride on the pings (two a second). When the link drops or
the server dies the engine keeps playing its last loop; ZeroMQ reconnects with backoff, and on
each new connection the engine sends every followed parameter again (and, to a server that
restarted, the loop playing, so the dream goes on from it).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from typing import Any, Callable, Optional

import numpy as np

from earengine.errors import ParameterError
from earengine.worker.messages import (
    ActivationsNeed,
    FromWorker,
    Notes,
    Ready,
    Reference,
    Reset,
    Settings,
    Stop,
    StreamActivations,
    ToWorker,
    WorkerError,
)
from earengine.worker.process import Outlet, dream, load_dreamer
from earengine.worker.supervisor import DreamSupervisor, followed_addresses
from earengine.worker.wire import (
    FROM_WORKER,
    MAX_FRAME,
    TO_WORKER,
    WireError,
    decode,
    encode,
    floats_to_bytes,
    read_secret,
    refuse_open_listen,
)

__all__ = ["WireOutlet", "WorkerServer", "RemoteSupervisor"]

log = logging.getLogger("earengine.worker")

_PING_S = 0.5
_HEARTBEAT_MS = 1000  # ZeroMQ's own heartbeats: a link silent 3 s is dropped and reconnected
_HEARTBEAT_TIMEOUT_MS = 3000
#: The step statistics that ride on the pings and the loops, as they are before the first step.
_NO_STEP = {"step": 0, "loss": 0.0, "target": 0.0, "steps_per_s": 0.0, "settled": 0.0}


def _curve(sock, secret, *, server: bool) -> None:
    if secret is None:
        return
    if server:
        sock.curve_secretkey = secret.server_secret
        sock.curve_publickey = secret.server_public
        sock.curve_server = True
    else:
        sock.curve_secretkey = secret.client_secret
        sock.curve_publickey = secret.client_public
        sock.curve_serverkey = secret.server_public


def _monitor_events(monitor) -> list[int]:
    import zmq
    from zmq.utils.monitor import recv_monitor_message

    out = []
    while True:
        try:
            out.append(recv_monitor_message(monitor, zmq.NOBLOCK)["event"])
        except zmq.Again:
            return out


def _socket(ctx, kind: int):
    """A socket of ``kind`` with what both ends of the link share: nothing kept at close, the
    frame limit, ZeroMQ's heartbeats."""
    sock = ctx.socket(kind)
    sock.linger = 0
    sock.maxmsgsize = MAX_FRAME
    sock.heartbeat_ivl = _HEARTBEAT_MS
    sock.heartbeat_timeout = _HEARTBEAT_TIMEOUT_MS
    return sock


def _watch(sock, *events: int):
    """``sock``'s monitor socket, told of each handshake's outcome and of ``events``."""
    import zmq

    mask = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
    for event in events:
        mask |= event
    return sock.get_monitor_socket(mask)


def _tcp(host: str) -> str:
    """``tcp://host``, an IPv6 host in brackets."""
    return f"tcp://[{host}]" if ":" in host else f"tcp://{host}"


def _poller(sock, monitor):
    import zmq

    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(monitor, zmq.POLLIN)
    return poller


def _pump(poller, sock, monitor, *, recv: Callable, frame: Callable, events: Callable[[], None]) -> None:
    """Wait up to 10 ms on the link, then handle the monitor's ``events()`` and up to 64
    frames waiting (``frame(recv(...))`` each)."""
    import zmq

    ready = dict(poller.poll(10))
    if monitor in ready:
        events()
    if sock in ready:
        for _ in range(64):
            try:
                got = recv(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                break
            frame(got)


def _close_sockets(*socks) -> None:
    for s in socks:
        if s is not None:
            s.close(linger=0)


class _Seldom:
    """True at most once every ``every_s`` seconds: a refusal is said once, not once per frame
    of a flood."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._at = 0.0

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self._at > self.every_s:
            self._at = now
            return True
        return False


# -- the worker's side --------------------------------------------------------------------------
class WireOutlet(Outlet):
    """The dream's outlet on a worker server: keeps the newest loop (with its notes and, while
    streamed, its activations) for the server to send when the engine asks, and queues the
    worker's messages. Called from the dream's thread; read from the server's."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.newest: Optional[dict] = None  # the newest finished loop, as its frame's fields
        self.seq = 0
        self.ready: Optional[Ready] = None
        self.messages: "queue.Queue[FromWorker]" = queue.Queue()
        self.beat_at = time.time()
        self.last: dict = dict(_NO_STEP)
        self._notes: dict = {}
        self._acts: dict = {}
        self._mask_for: Optional[tuple] = None
        self._mask: dict = {}

    def say(self, msg: FromWorker) -> None:
        if isinstance(msg, Ready):
            self.ready = msg
        elif isinstance(msg, Notes):
            self._notes = {msg.step: msg.notes}
        elif not isinstance(msg, ActivationsNeed):
            self.messages.put(msg)

    def loop(self, samples: np.ndarray, **stats) -> None:
        step = stats["step"]
        acts, mask = self._acts.pop(step, (None, None))
        fields = {"samples": floats_to_bytes(samples), "notes": self._notes.pop(step, None),
                  "stats": {k: stats[k] for k in ("step", "bars", "sr", "loss", "target", "steps_per_s", "settled")},
                  "acts": acts, "mask": mask}
        with self.lock:
            self.seq += 1
            self.newest = {"seq": self.seq, **fields}
            self.last = {k: stats[k] for k in ("step", "loss", "target", "steps_per_s", "settled")}
        self.beat_at = time.time()

    def beat(self) -> None:
        self.beat_at = time.time()

    def stream(self, msg: StreamActivations) -> bool:
        self._acts = {}
        return msg.buffer is not None

    def activations(self, dreamer, stats) -> None:
        """The loop's activations as float16 and the target's mask as bytes, for its frame."""
        from earengine.viz.frames import loop_activations, target_mask

        try:
            context = max(1, int(dreamer.settings.get("/opt/context", 1)))
            acts = loop_activations(dreamer.ear, dreamer.heard_tensor(), context=context)
            acts = {t: (a if a.ndim == 3 else a[:, None, :]) for t, a in acts.items()}
            shapes = {t: a.shape for t, a in acts.items()}
            key = (str(dreamer.objective), tuple(sorted(shapes.items())))
            if key != self._mask_for:  # the mask changes only with the target or the loop's length
                self._mask = target_mask(dreamer.objective, shapes, stats=dreamer.stats)
                self._mask_for = key
            wire_acts = {t: [*map(int, a.shape), np.asarray(a, "<f2").tobytes()] for t, a in acts.items()}
            wire_mask = {t: [*map(int, np.shape(m)[:2]), np.asarray(m, np.uint8).reshape(np.shape(m)[:2]).tobytes()]
                         for t, m in self._mask.items()}
        except Exception as exc:  # streams are a view: never let them stop the dream
            self.say(WorkerError(f"activations not published: {exc}".splitlines()[0]))
            return
        self._acts = {stats.step: (wire_acts, wire_mask)}

    def take(self, after: int) -> Optional[dict]:
        """The newest loop if it is newer than ``after``."""
        with self.lock:
            newest = self.newest
        return newest if newest is not None and newest["seq"] > after else None


class WorkerServer:
    """``earengine worker --listen HOST:PORT``: dreams with the ear here and serves one engine.

    Parameters
    ----------
    host : str
        Interface to listen on; beyond loopback only with ``secret``.
    port : int in [0, 65535]
        TCP port; 0 takes a free one (:attr:`address` says which).
    model : path
        Ear checkpoint folder.
    secret : path, optional
        The secret file both hosts hold (see :func:`~earengine.worker.wire.new_secret`).
    device : {'cpu', 'cuda'}
    threads : int >= 0
        Torch threads (0: every core but one).
    say : callable(str)
        Console lines.
    """

    def __init__(self, host: str, port: int, model: str, *, secret: Optional[str] = None, device: str = "cpu",
                 threads: int = 0, say: Callable[[str], None] = print) -> None:
        refuse_open_listen(host, secret, "--listen")
        self.secret = read_secret(secret) if secret is not None else None
        self.host, self.port = host, port
        self.model = str(model)
        self.device = device
        self.threads = threads
        self.say = say
        self.session = uuid.uuid4().hex[:16]
        self.outlet = WireOutlet()
        self.inbox: "queue.Queue[ToWorker]" = queue.Queue()
        self.counts = {"refused_peers": 0, "frames_refused_size": 0, "frames_refused_type": 0,
                       "engines_connected": 0, "loops_sent": 0}
        self.address: Optional[tuple[str, int]] = None
        self.bytes_sent = 0
        self._peer: Optional[bytes] = None
        self._want: Optional[int] = None  # the engine wants a loop newer than this
        self._sent_seq = 0
        self._stopping = threading.Event()
        self._dream_thread: Optional[threading.Thread] = None
        self._failed: Optional[str] = None
        self._ctx = self._sock = self._monitor = self._auth = None
        self._say_refused = _Seldom(5.0)

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> "WorkerServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Bind (so a taken port is said at once), then load the ear and start dreaming."""
        import zmq

        self._ctx = zmq.Context()
        self._sock = _socket(self._ctx, zmq.ROUTER)
        self._sock.router_mandatory = False
        if self.secret is not None:
            from zmq.auth.thread import ThreadAuthenticator

            self._auth = ThreadAuthenticator(self._ctx, log=logging.getLogger("earengine.worker.auth"))
            self._auth.start()
            self._auth.configure_curve_callback("earengine", credentials_provider=self)
            _curve(self._sock, self.secret, server=True)
            self._sock.zap_domain = b"earengine"
        self._monitor = _watch(self._sock)
        try:
            if self.port == 0:
                self._sock.bind_to_random_port(_tcp(self.host))
            else:
                self._sock.bind(f"{_tcp(self.host)}:{self.port}")
        except zmq.ZMQError as exc:
            raise ParameterError(f"--listen {self.host}:{self.port}: {exc}") from None
        endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.address = (self.host, int(endpoint.rsplit(":", 1)[1]))
        from earengine.params import default_registry

        registry = default_registry()
        values = registry.snapshot()
        # an engine's settings start it; until one connects, nothing is dreamed for nobody
        settings = {k: values[k] for k in followed_addresses(registry)} | {"/opt/run": False}
        self.say(f"worker: loading {self.model} on {self.device}")
        dreamer = load_dreamer(self.model, settings, self.outlet, device=self.device, threads=self.threads)
        if dreamer is None:
            msg = self.outlet.messages.get_nowait()
            raise ParameterError(msg.text)
        self._dream_thread = threading.Thread(target=self._dream, args=(dreamer,), name="earengine-dream", daemon=True)
        self._dream_thread.start()
        keys = "CURVE keys, one engine key allowed" if self.secret else "no keys: this machine only"
        self.say(f"worker: listening on {self.address[0]}:{self.address[1]} ({keys}); "
                 f"ear {self.model}, {len(self.outlet.ready.taps)} taps")

    def _dream(self, dreamer) -> None:
        try:
            dream(dreamer, self.inbox, self.outlet, alive=lambda: not self._stopping.is_set())
        except Exception as exc:  # said to the engine and here; the server stops serving loops
            self._failed = f"the dream stopped: {exc}".splitlines()[0]
            self.outlet.say(WorkerError(self._failed, fatal=True))
            self.say(f"worker: {self._failed}")

    def close(self) -> None:
        self._stopping.set()
        self.inbox.put(Stop())
        if self._dream_thread is not None:
            self._dream_thread.join(timeout=30)
        _close_sockets(self._monitor, self._sock)
        if self._auth is not None:
            self._auth.stop()
        if self._ctx is not None:
            self._ctx.term()
        self._ctx = self._sock = self._monitor = self._auth = None

    # -- ZAP: the one client key allowed --------------------------------------------------------
    def callback(self, domain: str, key: bytes) -> bool:
        """Called by the authenticator with each peer's public key (z85)."""
        return key == self.secret.client_public

    # -- serving -------------------------------------------------------------------------------
    def serve(self, *, duration_s: Optional[float] = None, status_every_s: float = 0.0) -> None:
        """Answer the engine until :meth:`close` or ``duration_s``; a status line now and then."""
        poller = _poller(self._sock, self._monitor)
        end = None if duration_s is None else time.monotonic() + duration_s
        next_line = time.monotonic() + status_every_s
        while not self._stopping.is_set() and (end is None or time.monotonic() < end):
            _pump(poller, self._sock, self._monitor, recv=self._sock.recv_multipart, frame=self._frame,
                  events=self._events)
            self._send_pending()
            if status_every_s and time.monotonic() >= next_line:
                next_line = time.monotonic() + status_every_s
                self.say(self.status_line())

    def status_line(self) -> str:
        d, c = self.outlet.last, self.counts
        engine = "engine connected" if self._peer is not None else "no engine yet"
        return (f"worker: step {d['step']}, {d['steps_per_s']:.2f} steps/s, loss {d['loss']:.4g}; {engine}, "
                f"loops sent {c['loops_sent']}, refused peers {c['refused_peers']}, frames refused "
                f"{c['frames_refused_size'] + c['frames_refused_type']}")

    def _events(self) -> None:
        import zmq

        for event in _monitor_events(self._monitor):
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.counts["engines_connected"] += 1
            else:
                self.counts["refused_peers"] += 1
                if self._say_refused():
                    self.say(f"worker: refused a peer ({'wrong key' if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH else 'bad handshake'}); "
                             f"{self.counts['refused_peers']} so far")

    def _refuse(self, why: str, text: str) -> None:
        self.counts[f"frames_refused_{why}"] += 1
        if self._say_refused():
            self.say(f"worker: frame refused ({text})")

    def _frame(self, frames: list) -> None:
        if len(frames) != 2:
            self._refuse("type", f"{len(frames) - 1} parts; one frame per message")
            return
        peer, body = frames
        try:
            kind, fields = decode(body, TO_WORKER)
        except WireError as exc:
            self._refuse(exc.why, str(exc))
            return
        self._peer = peer
        if kind == "hello":
            self._send(encode("ready", session=self.session, taps=list(self.outlet.ready.taps),
                              shapes={k: list(map(int, v)) for k, v in self.outlet.ready.shapes.items()}))
        elif kind == "ping":
            state = "failed" if self._failed else "dreaming"
            counts = {k: int(v) for k, v in self.counts.items()}
            self._send(encode("pong", t0=fields["t0"], session=self.session, state=state,
                              stats=dict(self.outlet.last), counts=counts))
        elif kind == "want":
            self._want = fields["after"]
        elif kind == "settings":
            self.inbox.put(Settings(fields["values"]))
        elif kind == "reset":
            self.inbox.put(Reset(fields["kind"], fields["samples"]))
        elif kind == "reference":
            self.inbox.put(Reference(fields["samples"]))
        elif kind == "streams":
            self.inbox.put(StreamActivations("wire" if fields["on"] else None))

    def _send(self, frame: bytes) -> bool:
        import zmq

        if self._peer is None:
            return False
        try:
            self._sock.send_multipart([self._peer, frame], zmq.NOBLOCK)
        except zmq.ZMQError:
            return False
        self.bytes_sent += len(frame)
        return True

    def _send_pending(self) -> None:
        while True:
            try:
                msg = self.outlet.messages.get_nowait()
            except queue.Empty:
                break
            if isinstance(msg, WorkerError):
                self.say(f"worker: {msg.text}")
                self._send(encode("error", text=msg.text[:1000], fatal=bool(msg.fatal)))
        if self._want is None:
            return
        loop = self.outlet.take(max(self._want, 0))
        if loop is not None and self._send(encode("loop", **loop)):
            self._want = None
            self.counts["loops_sent"] += 1


# -- the engine's side --------------------------------------------------------------------------
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
    """

    def __init__(self, registry, host: str, port: int, *, deliver: Callable[[np.ndarray, dict], None],
                 secret: Optional[str] = None, say: Callable[[str], None] = print,
                 bar_clock: Optional[Callable[[], float]] = None, hang_s: float = 120.0) -> None:
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
        self._fetch_s = 0.1  # how long a loop takes to arrive once asked for (measured)
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
        sock.reconnect_ivl_max = 2000  # ZeroMQ's backoff: 0.1 s doubling up to 2 s
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
        self._want_acts = bool(on)
        self._queue("streams", on=self._want_acts)

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
            self._send_frame("streams", on=self._want_acts)

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
        self._ask()

    def _bar_s(self) -> float:
        g = self.registry.get
        return 60.0 / g("/clock/bpm") * g("/clock/beats_per_bar")

    def _ask(self) -> None:
        """Ask for the newest loop shortly before each bar line: once per bar, since the player
        swaps a loop in only at a bar line and a second one in the same bar would never sound."""
        now = time.monotonic()
        if self._want_at is not None and now - self._want_at < max(5.0, 2 * self._bar_s()):
            return  # one loop asked for and not here yet (a step still running)
        bar_s = self._bar_s()
        position = self.bar_clock() if self.bar_clock is not None else time.time() / bar_s
        next_bar = int(np.floor(position)) + 1
        lead_s = min(0.9 * bar_s, self._fetch_s + 0.05)
        if next_bar == self._asked_bar or (next_bar - position) * bar_s > lead_s:
            return
        if self._send_frame("want", after=self._seq):
            self._asked_bar = next_bar
            self._want_at = now

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
            if self._want_at is not None:
                self._fetch_s = 0.7 * self._fetch_s + 0.3 * (now - self._want_at)
            self._want_at = None
            self._loop(fields)
        elif kind == "error":
            self._error(WorkerError(fields["text"], fields["fatal"]))

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
