"""Activation streams over WebSocket, for bulk receivers (a browser, a recorder).

:class:`WebSocketStreams` serves every frame of a :class:`~earengine.streams.hub.StreamHub` as one
binary message (an OSC bundle whose arrays are whole), each receiver with its own short queue
and its own sending thread (the WebSocket plumbing it shares with OSCQuery is in
:mod:`earengine.wsio`). As on OSCQuery's port, a web page that is not the engine's own (nor
allowed with ``--allow-origin``) cannot open one, and a foreign ``Host`` is refused
(:class:`~earengine.wsio.Gate`).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import TYPE_CHECKING, Iterable, Optional, Sequence

import numpy as np

from earengine.errors import EarEngineError
from earengine.osc.wire import encode_message
from earengine.wsio import Gate, cut_off, parse_origin, websocket_log

if TYPE_CHECKING:
    from earengine.streams.hub import StreamHub

__all__ = ["WebSocketStreams", "WS_FRAMES", "WS_NOTICES", "SCALEOGRAM_COLUMNS"]

log = logging.getLogger("earengine.streams")

#: Frames waiting for one WebSocket receiver; a slower one loses its oldest (counted).
WS_FRAMES = 8
#: Announcements and layouts waiting for one WebSocket receiver (a few per tap).
WS_NOTICES = 256
#: Most time columns of the playing loop's scaleogram sent to a page (about 220 KB at 216 rows).
SCALEOGRAM_COLUMNS = 256


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
        cut_off(self.conn)


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
    allow_origins : iterable of str
        Origins of web pages, other than the engine's own, that may receive the streams
        (``--allow-origin``; see :class:`~earengine.wsio.Gate`). The engine's page on another of
        its ports counts as its own through :meth:`Gate.trust_page_port <earengine.wsio.Gate.trust_page_port>`.
    """

    def __init__(self, hub: "StreamHub", *, host: str = "127.0.0.1", port: int = 0,
                 allow_origins: Iterable[str] = ()) -> None:
        from websockets.sync.server import serve

        self.hub = hub
        self._clients: list[_WsClient] = []
        self._lock = threading.Lock()
        self._dropped_gone = 0  # frames dropped for receivers that have left
        self._scaleogram_of = None  # the ActivationSet whose scaleogram was sent last
        allow_origins = [parse_origin(o) for o in allow_origins]  # a bad one: before the port is taken
        try:
            self.server = serve(self._handle, host, port, compression=None, max_size=2 ** 16, close_timeout=1,
                                # every handshake passes _request: Host, and Origin against allow_origins
                                logger=websocket_log(), process_request=self._request)
        except OSError as exc:
            raise EarEngineError(f"cannot listen for stream WebSockets on {host}:{port}: {exc.strerror}; "
                                 "choose another --stream-ws-port") from None
        self.gate = Gate(host, self.address[1], allow_origins=allow_origins, log=log)
        self._thread = threading.Thread(target=self.server.serve_forever, name="earengine-stream-ws", daemon=True)
        self._thread.start()
        hub.attach_websocket(self)

    @property
    def address(self) -> tuple:
        return self.server.socket.getsockname()[:2]

    def count(self) -> int:
        return len(self._clients)

    def waiting(self) -> int:
        """Most frames waiting for any one receiver now (never more than :data:`WS_FRAMES`)."""
        clients = tuple(self._clients)
        return max((len(c.frames) for c in clients), default=0)

    def counts(self) -> dict[str, int]:
        """``ws_receivers`` connected now, ``ws_frames_dropped`` for slow ones, and
        ``ws_origin_refused`` and ``ws_host_refused`` for handshakes refused (ever)."""
        clients = tuple(self._clients)
        return {"ws_receivers": len(clients),
                "ws_frames_dropped": self._dropped_gone + sum(c.dropped for c in clients),
                **{f"ws_{k}": v for k, v in self.gate.counts().items()}}

    def _request(self, conn, request):
        """``process_request``: a foreign page or Host is refused before the handshake."""
        return self.gate.check(conn, request)

    def broadcast(self, datagrams: Sequence[bytes], *, frame: bool = True) -> None:
        """Offer messages to every receiver: a frame (dropped oldest-first for a slow receiver)
        or notices (shapes, masks, the layout). With a frame, the scaleogram of a loop that has
        just begun to play goes first (:meth:`loop_scaleogram`)."""
        clients = tuple(self._clients)
        if frame and clients:
            notice = self.loop_scaleogram()
            if notice is not None:
                for client in clients:
                    client.offer(notice, frame=False)
        for data in datagrams:
            for client in clients:
                client.offer(data, frame=frame)

    def loop_scaleogram(self, *, force: bool = False) -> Optional[bytes]:
        """``/stream/loop/scaleogram <step> <freq> <time> <blob>``: the scaleogram of the loop
        playing, once per loop (``force``: again), for a page to draw whole with a playhead; the
        blob holds ``freq × time`` big-endian float32, frequency-major, lowest row first, at most
        :data:`SCALEOGRAM_COLUMNS` time columns (averaged down). None when it is unchanged or
        nothing with activations plays."""
        acts = self.hub.playing()
        if acts is None or (acts is self._scaleogram_of and not force):
            return None
        self._scaleogram_of = acts
        a = acts.acts.get("scaleogram")
        if a is None:
            return None
        a = np.asarray(a, dtype=np.float32).reshape(-1, a.shape[-1])  # (freq, time)
        t = a.shape[1]
        if t > SCALEOGRAM_COLUMNS:  # average down to at most SCALEOGRAM_COLUMNS columns
            edges = np.linspace(0, t, SCALEOGRAM_COLUMNS + 1).astype(int)
            a = np.add.reduceat(a, edges[:-1], axis=1) / np.diff(edges)
        a = np.ascontiguousarray(a, dtype=">f4")
        return encode_message("/stream/loop/scaleogram", (int(acts.step), a.shape[0], a.shape[1], a.tobytes()))

    def _handle(self, conn) -> None:
        client = _WsClient(conn)
        hub = self.hub
        for data in hub.greeting():
            client.offer(data, frame=False)
        scaleogram = self.loop_scaleogram(force=True)
        if scaleogram is not None:
            client.offer(scaleogram, frame=False)
        with self._lock:
            self._clients.append(client)
        hub.update_demand()
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
            hub.update_demand()

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
