"""The worker on another machine: a server that dreams, and the engine's supervisor of it.

- :class:`WorkerServer` (``earengine worker --listen HOST:PORT``, on a GPU host): loads the ear,
  runs the same dream as the local worker (:func:`earengine.worker.process.dream`) on a thread of
  its own, publishing through a :class:`WireOutlet`, and serves one engine over the wire
  (:mod:`earengine.worker.wire`).
- :class:`~earengine.worker.remote_supervisor.RemoteSupervisor` (``earengine run --worker
  HOST:PORT``, on the laptop, in its own module): what the engine uses instead of :class:`~earengine.worker.supervisor.DreamSupervisor`, with the same
  ``deliver(samples, stats)`` callback and commands.

Only what the engine uses crosses: settings and commands one way; the other way the newest
finished loop once per bar (the engine asks for it shortly before each bar line, since the player
swaps a loop in only there), with its notes and, while streams want them, its activations,
reduced to what the streams show (:func:`~earengine.worker.wire.pack_acts`) and computed only for
the loops that cross; the step statistics and the round-trip time ride on the pings (two a
second). When the link drops or
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
from typing import Callable, Optional

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
from earengine.worker.supervisor import followed_addresses
from earengine.worker.wire import (
    MAX_FRAME,
    TO_WORKER,
    StreamView,
    WireError,
    decode,
    encode,
    floats_to_bytes,
    pack_acts,
    read_secret,
    refuse_open_listen,
)

__all__ = ["WireOutlet", "WorkerServer"]

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
    """The dream's outlet on a worker server: keeps the newest loop (with its notes) for the
    server to send when the engine asks, and queues the worker's messages. Called from the
    dream's thread; read from the server's.

    Activations cost a forward pass of the ear, and the engine shows one loop's a bar: they are
    computed only when the engine waits for a loop that carries them (:attr:`acts_wanted`, set by
    the server's thread), or when streams have just asked while the loop is held, and are
    reduced to what the streams show (:func:`~earengine.worker.wire.pack_acts`) on the server's
    thread as the loop is sent. Samples are made into bytes there too, not on the dream's thread.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.newest: Optional[dict] = None  # the newest finished loop: seq, samples, stats, notes, acts
        self.newest_acts: Optional[dict] = None  # the newest of those that carry activations
        self.seq = 0
        self.ready: Optional[Ready] = None
        self.messages: "queue.Queue[FromWorker]" = queue.Queue()
        self.beat_at = time.time()
        self.last: dict = dict(_NO_STEP)
        self.view = StreamView()  # what the engine's streams show (set by the server's thread)
        self.acts_wanted = False  # the engine waits for a loop with activations (set by the server's thread)
        self.acts_computed = 0  # forward passes made for activations
        self._force = False  # streams have just asked: the next loop published carries them
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
        entry = {"samples": samples, "notes": self._notes.pop(step, None), "acts": self._acts.pop(step, None),
                 "stats": {k: stats[k] for k in ("step", "bars", "sr", "loss", "target", "steps_per_s", "settled")}}
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.newest = entry
            if entry["acts"] is not None:
                self.newest_acts = entry
            self.last = {k: stats[k] for k in ("step", "loss", "target", "steps_per_s", "settled")}
        self.beat_at = time.time()

    def beat(self) -> None:
        self.beat_at = time.time()

    def stream(self, msg: StreamActivations) -> bool:
        self._acts = {}
        self._force = msg.buffer is not None
        return msg.buffer is not None

    def activations(self, dreamer, stats) -> None:
        """The loop's activations (every tap's, float32) and the target's mask, kept for its
        frame; only when the engine waits for them (see the class notes)."""
        if not (self.view.on and (self.acts_wanted or self._force)):
            return
        # cleared before the forward: a want arriving meanwhile asks for the next loop's
        self.acts_wanted = self._force = False
        from earengine.viz.frames import loop_activations, target_mask

        try:
            context = max(1, int(dreamer.settings.get("/opt/context", 1)))
            heard = dreamer.heard_tensor()
            acts = loop_activations(dreamer.ear, heard, context=context)
            acts = {t: (a if a.ndim == 3 else a[:, None, :]) for t, a in acts.items()}
            shapes = {t: a.shape for t, a in acts.items()}
            key = (str(dreamer.objective), tuple(sorted(shapes.items())))
            if key != self._mask_for:  # the mask changes only with the target or the loop's length
                self._mask = target_mask(dreamer.objective, shapes, stats=dreamer.stats)
                self._mask_for = key
            loop_s = int(heard.shape[-1]) / float(dreamer.sr)
        except Exception as exc:  # streams are a view: never let them stop the dream
            self.say(WorkerError(f"activations not published: {exc}".splitlines()[0]))
            return
        self.acts_computed += 1
        self._acts = {stats.step: (acts, self._mask, loop_s)}

    def take(self, after: int) -> Optional[dict]:
        """The newest loop if it is newer than ``after``; while streams are on, the newest that
        carries activations."""
        with self.lock:
            loop = self.newest
            if self.view.on and (loop is None or loop["acts"] is None):
                loop = self.newest_acts
        return loop if loop is not None and loop["seq"] > after else None

    def frame(self, loop: dict) -> bytes:
        """A loop's ``loop`` frame, its activations reduced to what the streams show now."""
        acts = mask = None
        view = self.view
        if loop["acts"] is not None and view.on:
            full, full_mask, loop_s = loop["acts"]
            acts = pack_acts(full, view, loop_s=loop_s)
            mask = {t: [*map(int, np.shape(m)[:2]), np.asarray(m, np.uint8).reshape(np.shape(m)[:2]).tobytes()]
                    for t, m in full_mask.items() if t in acts}
        return encode("loop", seq=loop["seq"], samples=floats_to_bytes(loop["samples"]), stats=loop["stats"],
                      notes=loop["notes"], acts=acts, mask=mask)


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
        if kind == "hello":  # a new connection: what the last one wanted is void
            self._want = None
            self._send(encode("ready", session=self.session, taps=list(self.outlet.ready.taps),
                              shapes={k: list(map(int, v)) for k, v in self.outlet.ready.shapes.items()}))
        elif kind == "ping":
            state = "failed" if self._failed else "dreaming"
            counts = {k: int(v) for k, v in self.counts.items()}
            self._send(encode("pong", t0=fields["t0"], session=self.session, state=state,
                              stats=dict(self.outlet.last), counts=counts))
        elif kind == "want":
            self._want = fields["after"]
            if self.outlet.view.on and self.outlet.take(self._want) is None:
                self.outlet.acts_wanted = True  # the next loop made carries them
        elif kind == "settings":
            self.inbox.put(Settings(fields["values"]))
        elif kind == "reset":
            self.inbox.put(Reset(fields["kind"], fields["samples"]))
        elif kind == "reference":
            self.inbox.put(Reference(fields["samples"]))
        elif kind == "streams":
            view = self.outlet.view = StreamView.from_fields(fields)
            self.inbox.put(StreamActivations("wire" if view.on else None))

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
        if loop is not None and self._send(self.outlet.frame(loop)):
            self._want = None
            self.counts["loops_sent"] += 1
            if loop["acts"] is not None:  # a want met: the next loop need not carry them
                self.outlet.acts_wanted = False
