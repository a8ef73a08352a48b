"""OSCQuery, generated from the registry: hosts that browse it see every parameter and command.

One TCP port serves both halves of the protocol, as OSCQuery asks:

- **HTTP**: ``GET /`` is the whole namespace as JSON; ``GET /loop/gain`` one node;
  ``GET /loop/gain?VALUE`` one attribute; ``GET /?HOST_INFO`` the server's description. Nodes
  carry FULL_PATH, TYPE, ACCESS, VALUE, RANGE, DESCRIPTION, UNIT and CLIPMODE, all derived from
  the :class:`~earengine.params.spec.ParamSpec` and :class:`~earengine.params.spec.CommandSpec`
  rows — nothing is typed twice.
- **WebSocket**: a client sends ``{"COMMAND": "LISTEN", "DATA": "/loop/gain"}`` and from then on
  receives every change of that parameter as a binary OSC message (``IGNORE`` stops it); binary
  OSC messages it sends are handled like UDP ones (set a value, run a command).

- **The web page**: a browser asking for HTML at ``/`` (``Accept: text/html``) gets the control
  surface, whose files (``earengine/control/web/``) are served under ``/ui/``; it builds its
  controls from the JSON above and drives the engine over the WebSocket below, as any client
  could. A numeric row on a log scale says so with ``"SCALE": ["log"]``, and a command names its
  arguments in ``"ARGUMENTS"`` (neither is an OSCQuery attribute; clients ignore them).

Both halves are served by the ``websockets`` package: its ``process_request`` hook answers a
plain GET before any upgrade (:meth:`OscQueryServer._http`), and lets a WebSocket handshake
through to the listener's session. The service is advertised with zeroconf as
``_oscjson._tcp`` (and the OSC port as ``_osc._udp``).

Web pages cannot drive it (:class:`~earengine.wsio.Gate`): a WebSocket handshake whose ``Origin``
is neither this engine's own page nor one the user allowed (``--allow-origin``) is refused with
403 before a message is read, and so is any request whose ``Host`` is not this engine's address
(a rebound DNS name). Native clients send no ``Origin`` and are let in. Over HTTP only GET is
served, and it changes nothing.

Types are the ones the engine speaks: a ``bool`` travels as ``i`` (0/1, which Pure Data and Max
read), an ``enum`` as ``s`` with its choices in RANGE's VALS. A parameter's ACCESS comes from its
row: 3 (read and write), or 1 for a reading the engine sets itself (``access="r"``). A command
holds no value to read back, and hosts that browse treat a node with ACCESS 2 but no VALUE as
broken, so commands are ACCESS 0 with their argument types in TYPE.
Out-of-range values are refused, never clipped, so CLIPMODE says which ends are bounded.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from collections import deque
from http import HTTPStatus
from pathlib import Path
from typing import Any, Callable, Iterable, Optional
from urllib.parse import unquote, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.sync.server import ServerConnection, serve

from earengine.errors import EarEngineError
from earengine.osc.wire import decode_packet, encode_message
from earengine.params.registry import Change, Registry, check_table
from earengine.params.spec import ACCESS, CommandSpec, ParamSpec
from earengine.wsio import Gate, cut_off, parse_origin, websocket_log

__all__ = ["namespace", "node", "host_info", "web_file", "wants_html", "OscQueryServer", "ATTRIBUTES", "EXTENSIONS"]

log = logging.getLogger("earengine.oscquery")

#: Node attributes a query may ask for one by one.
ATTRIBUTES = ("FULL_PATH", "CONTENTS", "TYPE", "ACCESS", "VALUE", "RANGE", "DESCRIPTION", "UNIT", "CLIPMODE")
#: What this server implements, as HOST_INFO says it.
EXTENSIONS = {
    "ACCESS": True, "VALUE": True, "RANGE": True, "DESCRIPTION": True, "TYPE": True, "UNIT": True,
    "CLIPMODE": True, "LISTEN": True, "TAGS": False, "EXTENDED_TYPE": False, "CRITICAL": False,
    "OVERLOADS": False, "HTML": True, "ECHO": False, "PATH_CHANGED": False, "PATH_RENAMED": False,
    "PATH_ADDED": False, "PATH_REMOVED": False,
}


#: The web page's files, served under ``/ui/`` (``index.html`` also at ``/`` for a browser).
WEB = Path(__file__).resolve().parent / "web"
#: Content types of the files the page may consist of; no other file is served.
WEB_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
             ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
             ".txt": "text/plain; charset=utf-8"}
#: A file name of the page: one plain name in the folder, never a path out of it.
_WEB_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
#: The page loads nothing from elsewhere, runs no inline script and cannot be framed by another page.
_PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def web_file(name: str) -> Optional[tuple[bytes, str]]:
    """(contents, content type) of one file of the web page, or None when there is none such.

    >>> web_file("index.html")[1], web_file("../oscquery.py"), web_file("nope.exe")
    ('text/html; charset=utf-8', None, None)
    """
    kind = WEB_TYPES.get(Path(name).suffix)
    if kind is None or not _WEB_NAME.match(name) or ".." in name:
        return None
    try:
        return (WEB / name).read_bytes(), kind
    except OSError:
        return None


def wants_html(accept: Optional[str]) -> bool:
    """Whether a request's ``Accept`` header asks for a page (a browser) rather than JSON.

    >>> wants_html("text/html,application/xhtml+xml,*/*;q=0.8"), wants_html("application/json")
    (True, False)
    >>> wants_html(None), wants_html("*/*")
    (False, False)
    """
    types = [part.split(";")[0].strip().lower() for part in (accept or "").split(",")]
    return "text/html" in types and "application/json" not in types


def _json_value(spec: ParamSpec, value: Any) -> Any:
    return int(value) if spec.type == "bool" else value


#: OSCQuery's ACCESS of a parameter, by its row's ``access`` (1: read only, 3: read and write).
_ACCESS = check_table("parameter access", ACCESS, {"r": 1, "rw": 3})


def _param_node(spec: ParamSpec, value: Any) -> dict:
    out: dict = {"FULL_PATH": spec.address, "TYPE": spec.typetag, "ACCESS": _ACCESS[spec.access],
                 "VALUE": [_json_value(spec, value)], "DESCRIPTION": spec.doc}
    if spec.type == "enum":
        out["RANGE"] = [{"VALS": list(spec.choices)}]
    elif spec.type == "bool":
        out["RANGE"] = [{"MIN": 0, "MAX": 1}]
    elif spec.numeric and (spec.min is not None or spec.max is not None):
        rng = {}
        if spec.min is not None:
            rng["MIN"] = int(spec.min) if spec.type == "int" else float(spec.min)
        if spec.max is not None:
            rng["MAX"] = int(spec.max) if spec.type == "int" else float(spec.max)
        out["RANGE"] = [rng]
    if spec.unit:
        out["UNIT"] = [spec.unit]
    if spec.numeric and spec.scale != "lin":  # not an OSCQuery attribute: the web page's sliders read it
        out["SCALE"] = [spec.scale]
    low = spec.type == "bool" or (spec.numeric and spec.min is not None)
    high = spec.type == "bool" or (spec.numeric and spec.max is not None)
    out["CLIPMODE"] = ["both" if low and high else "low" if low else "high" if high else "none"]
    return out


def _command_node(cmd: CommandSpec) -> dict:
    out: dict = {"FULL_PATH": cmd.address, "ACCESS": 0, "DESCRIPTION": cmd.doc}
    if cmd.args:
        out["TYPE"] = cmd.typetags
        # not an OSCQuery attribute: the names a form on the web page labels its fields with
        out["ARGUMENTS"] = [{"NAME": a.name, **({"OPTIONAL": True} if a.optional else {})} for a in cmd.args]
        ranges = [{"VALS": list(a.choices)} if a.choices else {} for a in cmd.args]
        if any(ranges):
            out["RANGE"] = ranges
    return out


def namespace(registry: Registry) -> dict:
    """The whole address space as an OSCQuery JSON tree (the answer to ``GET /``)."""
    values = registry.snapshot()
    root: dict = {"FULL_PATH": "/", "ACCESS": 0, "DESCRIPTION": "earengine", "CONTENTS": {}}
    leaves = [(s.address, _param_node(s, values[s.address])) for s in registry]
    leaves += [(c.address, _command_node(c)) for c in registry.commands.values()]
    for address, leaf in leaves:
        parts = address.strip("/").split("/")
        here = root
        for depth, name in enumerate(parts[:-1]):
            here = here["CONTENTS"].setdefault(name, {
                "FULL_PATH": "/" + "/".join(parts[:depth + 1]), "ACCESS": 0, "CONTENTS": {},
                "DESCRIPTION": f"/{'/'.join(parts[:depth + 1])} parameters and commands"})
        here["CONTENTS"][parts[-1]] = leaf
    return root


def node(registry: Registry, path: str) -> Optional[dict]:
    """The node at ``path`` (``/`` for the root), or None."""
    path = "/" + path.strip("/")
    if path in registry.specs:  # one leaf: no need to build the tree
        spec = registry.specs[path]
        return _param_node(spec, registry.get(path))
    if path in registry.commands:
        return _command_node(registry.commands[path])
    here = namespace(registry)
    for name in [p for p in path.split("/") if p]:
        here = here.get("CONTENTS", {}).get(name)
        if here is None:
            return None
    return here


def host_info(*, name: str, osc_ip: str, osc_port: int) -> dict:
    """The answer to ``GET /?HOST_INFO``."""
    return {"NAME": name, "OSC_IP": osc_ip, "OSC_PORT": int(osc_port), "OSC_TRANSPORT": "UDP",
            "EXTENSIONS": dict(EXTENSIONS)}


class _Listener:
    """One WebSocket client: what it listens to, and what its own thread has still to send.

    Pushes are coalesced per address: a client that reads slowly gets the newest value of each
    parameter it listens to, never a backlog of stale ones, and never holds up the change.
    """

    def __init__(self, conn) -> None:
        self.conn = conn
        self.paths: set[str] = set()
        self.peer: Optional[tuple] = None  # the sender its OSC messages are handled as
        self._values: dict[str, bytes] = {}
        self._replies: deque[bytes] = deque(maxlen=64)
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.closed = False
        self.replaced = 0  # pushes replaced by a newer value before they left
        self.dropped = 0  # replies that fell out, the oldest first, for a client that reads too slowly

    def push(self, address: str, data: bytes) -> None:
        with self._lock:
            if self._values.pop(address, None) is not None:
                self.replaced += 1
            self._values[address] = data
        self._ready.set()

    def offer(self, data: bytes) -> None:
        with self._lock:
            if len(self._replies) == self._replies.maxlen:
                self.dropped += 1
            self._replies.append(data)
        self._ready.set()

    def stop(self) -> None:
        """Stop sending; a send blocked on a client that never reads is cut off too."""
        self.closed = True
        self._ready.set()
        cut_off(self.conn)

    def pump(self) -> None:
        while True:
            self._ready.wait()
            if self.closed:
                return
            with self._lock:
                self._ready.clear()
                batch = list(self._replies) + list(self._values.values())
                self._replies.clear()
                self._values.clear()
            try:
                for data in batch:
                    self.conn.send(data)
            except Exception:
                return


class OscQueryServer:
    """HTTP + WebSocket OSCQuery server for a registry, with a zeroconf advertisement.

    A context manager. Nothing here runs on the OSC or audio threads: value pushes are queued to
    each listener's own sending thread, and a listener that cannot keep up loses pushes instead
    of slowing the change that caused them.

    Parameters
    ----------
    registry : Registry
    host : str
        Interface for HTTP/WebSocket (the OSC interface, normally).
    port : int >= 0
        TCP port (0 picks a free one; see :attr:`address`).
    osc_port : int
        The engine's OSC UDP port, announced in HOST_INFO.
    osc_host : str, optional
        The OSC address announced (default: ``host``).
    handle : callable(address, args, sender) -> list of Reply, optional
        Where OSC messages arriving over the WebSocket go (the engine's router).
    name : str
        Service name.
    zeroconf : bool
        Advertise ``_oscjson._tcp`` and ``_osc._udp`` (in the background: it takes a second).
    allow_origins : iterable of str
        Origins of web pages, other than this server's own, that may open its WebSocket
        (``--allow-origin``; see :class:`~earengine.wsio.Gate`).
    """

    def __init__(self, registry: Registry, *, host: str = "127.0.0.1", port: int = 9001, osc_port: int = 9000,
                 osc_host: Optional[str] = None, handle: Optional[Callable[[str, tuple, tuple], list]] = None,
                 name: str = "earengine", zeroconf: bool = True, allow_origins: Iterable[str] = ()) -> None:
        self.registry = registry
        self.name = name
        self.osc_port = int(osc_port)
        self.osc_host = osc_host or host
        self.handle = handle
        self.info: dict[str, Any] = {}  # more of HOST_INFO: where the engine's streams are
        self._listeners: list[_Listener] = []
        self._lock = threading.Lock()
        self._gone = {"replaced": 0, "dropped": 0}  # of listeners that have left
        allow_origins = [parse_origin(o) for o in allow_origins]  # a bad one: before the port is taken
        try:
            self.server = serve(self._ws, host, port, process_request=self._request, compression=None,
                                # every handshake and request passes _request: Host, and Origin
                                # against the engine's own page and allow_origins
                                max_size=2 ** 16, close_timeout=1, server_header="earengine",
                                logger=websocket_log())
        except OSError as exc:
            raise EarEngineError(f"cannot serve OSCQuery on {host}:{port}: {exc.strerror}; "
                                 "choose another --oscquery-port") from None
        self.gate = Gate(host, self.address[1], allow_origins=allow_origins, log=log,
                         names=[f"{name}.local"] if zeroconf else ())
        self._thread = threading.Thread(target=self.server.serve_forever, name="earengine-oscquery", daemon=True)
        self._thread.start()
        self._sub = registry.subscribe(self._on_change)  # any parameter may be LISTENed to
        self._zeroconf = None
        self._zc_thread = None
        self._zc_lock = threading.Lock()
        self._closed = False
        if zeroconf:
            self._zc_thread = threading.Thread(target=self._advertise, name="earengine-zeroconf", daemon=True)
            self._zc_thread.start()

    @property
    def address(self) -> tuple:
        return self.server.socket.getsockname()[:2]

    def counts(self) -> dict[str, int]:
        """For ``/counts``: WebSocket listeners now, value pushes replaced by newer ones before
        they left, replies dropped for listeners that read too slowly, and requests refused for
        their ``Origin`` or ``Host`` (ever)."""
        listeners = tuple(self._listeners)
        return {"oscquery_listeners": len(listeners),
                "oscquery_replaced": self._gone["replaced"] + sum(x.replaced for x in listeners),
                "oscquery_dropped": self._gone["dropped"] + sum(x.dropped for x in listeners),
                **{f"oscquery_{k}": v for k, v in self.gate.counts().items()}}

    def __enter__(self) -> "OscQueryServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._sub.close()
        with self._lock:
            for listener in self._listeners:
                listener.stop()
        self.server.shutdown()
        self._thread.join(timeout=2)
        with self._zc_lock:  # a registration still under way closes it itself when done
            zc, self._zeroconf = self._zeroconf, None
        if zc is not None:
            _close_zeroconf(zc)

    # -- HTTP ------------------------------------------------------------------------------------
    def _respond(self, status: int, body: Any, origin: Optional[str] = None) -> Response:
        data = b"" if body is None else (json.dumps(body) if not isinstance(body, str) else body).encode()
        headers = Headers([("Content-Type", "application/json" if status == 200 else "text/plain"),
                           ("Content-Length", str(len(data))), ("Connection", "close")])
        # Not "Access-Control-Allow-Origin: *": the namespace holds every value (file names of
        # loops and presets among them), and a page the user did not choose has no need to read
        # it. A page that may open the WebSocket (this engine's own, or one allowed with
        # --allow-origin) may read it too; native clients ignore the header.
        if origin is not None and self.gate.origin_allowed(origin):
            headers["Access-Control-Allow-Origin"] = origin
            headers["Vary"] = "Origin"
        return Response(status, HTTPStatus(status).phrase, headers, data)

    def _page(self, name: str) -> Response:
        """One file of the web page (never cached stale, never framed), or 404."""
        found = web_file(name)
        if found is None:
            return self._respond(404, f"no file /ui/{name}")
        data, kind = found
        headers = Headers([("Content-Type", kind), ("Content-Length", str(len(data))), ("Connection", "close"),
                           ("Cache-Control", "no-cache"), ("X-Content-Type-Options", "nosniff"),
                           ("Content-Security-Policy", _PAGE_POLICY), ("Referrer-Policy", "no-referrer")])
        return Response(200, "OK", headers, data)

    def _request(self, conn: ServerConnection, request: Request) -> Optional[Response]:
        """``process_request``: refuse a foreign Host or a foreign page's handshake, answer an
        HTTP GET, or let a WebSocket handshake through."""
        return self.gate.check(conn, request) or self._http(conn, request)

    def _http(self, conn: Optional[ServerConnection], request: Request) -> Optional[Response]:
        """Answer an HTTP GET here, or let a WebSocket handshake through (None)."""
        if (request.headers.get("Upgrade") or "").lower() == "websocket":
            return None  # a WebSocket handshake: let it through
        origin = request.headers.get("Origin")
        url = urlsplit(request.path)
        path = unquote(url.path) or "/"
        query = url.query.split("&")[0].split("=")[0].upper() if url.query else ""
        if path.startswith("/ui/") or (path == "/" and not query and wants_html(request.headers.get("Accept"))):
            return self._page(path[len("/ui/"):] if path.startswith("/ui/") else "index.html")
        if query == "HOST_INFO":
            return self._respond(200, {**host_info(name=self.name, osc_ip=self.osc_host, osc_port=self.osc_port),
                                       **self.info}, origin)
        found = node(self.registry, path)
        if found is None:
            return self._respond(404, f"no node at {path}", origin)
        if not query:
            return self._respond(200, found, origin)
        if query not in ATTRIBUTES:
            return self._respond(400, f"attribute {query} is not one of {', '.join(ATTRIBUTES)}", origin)
        if query not in found:
            return self._respond(204, None, origin)
        return self._respond(200, {query: found[query]}, origin)

    # -- WebSocket -------------------------------------------------------------------------------
    def _ws(self, conn: ServerConnection) -> None:
        listener = _Listener(conn)
        sender = threading.Thread(target=listener.pump, name="earengine-oscquery-push", daemon=True)
        sender.start()
        with self._lock:
            self._listeners.append(listener)
        peer = conn.remote_address[:2] if conn.remote_address else ("websocket", 0)
        try:
            for message in conn:
                if isinstance(message, str):
                    self._command(listener, message)
                else:
                    self._osc(listener, bytes(message), peer)
        except Exception:  # the client went away or sent garbage: it only ends its own session
            log.debug("oscquery websocket ended", exc_info=True)
        finally:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)
                    self._gone["replaced"] += listener.replaced
                    self._gone["dropped"] += listener.dropped
            listener.stop()

    def _command(self, listener: _Listener, text: str) -> None:
        """A JSON command from a client; anything else is answered ``/fail <command> <why>``."""
        try:
            msg = json.loads(text)
        except (ValueError, RecursionError) as exc:
            why = str(exc).splitlines()[0] if str(exc) else "nested too deeply"
            listener.offer(encode_message("/fail", ("?", f"not a JSON command: {why}"[:200])))
            return
        if not isinstance(msg, dict):
            listener.offer(encode_message("/fail", ("?", 'a command must be a JSON object like {"COMMAND": "LISTEN", "DATA": "/loop/gain"}')))
            return
        command, path = str(msg.get("COMMAND", "")).upper()[:64], str(msg.get("DATA", ""))[:256]
        if command == "LISTEN":
            if path not in self.registry.specs:
                listener.offer(encode_message("/fail", ("LISTEN", f"DATA={path!r} is not a parameter; GET / lists them")))
                return
            listener.paths.add(path)
        elif command == "IGNORE":
            listener.paths.discard(path)
        else:
            listener.offer(encode_message("/fail", (command or "?", "COMMAND must be LISTEN or IGNORE")))

    def _osc(self, listener: _Listener, data: bytes, peer: tuple) -> None:
        if self.handle is None:
            return
        try:
            items = decode_packet(data)
        except Exception as exc:
            listener.offer(encode_message("/fail", ("?", str(exc))))
            return
        listener.peer = peer
        for _, address, args in items:
            for reply in self.handle(address, args, peer) or ():
                listener.offer(encode_message(reply.address, reply.args))

    def deliver(self, dest: tuple, address: str, args: tuple) -> bool:
        """Send a reply that comes later (``/done`` or ``/fail`` of a command that ran as a job,
        ``/changed`` after ``/notify``) to the WebSocket client whose messages came from ``dest``;
        False when no client here did (the reply is a UDP peer's)."""
        for listener in tuple(self._listeners):
            if listener.peer == tuple(dest[:2]):
                listener.offer(encode_message(address, args))
                return True
        return False

    def _on_change(self, change: Change) -> None:
        listeners = [x for x in tuple(self._listeners) if change.address in x.paths]
        if not listeners:
            return
        data = encode_message(change.address, (change.value,))
        for listener in listeners:
            listener.push(change.address, data)

    # -- zeroconf --------------------------------------------------------------------------------
    def _advertise(self) -> None:
        try:
            # imported here, on this background thread: zeroconf takes a quarter of a second to
            # import, which the engine's start need not wait for (and it serves without it)
            from zeroconf import IPVersion, ServiceInfo, Zeroconf

            host, port = self.address
            if host in ("0.0.0.0", ""):
                import ifaddr

                addresses = sorted({ip.ip for a in ifaddr.get_adapters() for ip in a.ips
                                    if isinstance(ip.ip, str) and not ip.ip.startswith("169.254.")})
                zc = Zeroconf(ip_version=IPVersion.V4Only)
            else:
                addresses = [host]
                zc = Zeroconf(interfaces=[host], ip_version=IPVersion.V4Only)
            packed = [socket.inet_aton(a) for a in addresses]
            server = f"{self.name}.local."
            for kind, p in (("_oscjson._tcp.local.", port), ("_osc._udp.local.", self.osc_port)):
                if self._closed:
                    break
                zc.register_service(ServiceInfo(kind, f"{self.name}.{kind}", port=p, addresses=packed,
                                                properties={"txtvers": "1"}, server=server),
                                    allow_name_change=True)  # a second engine on the host gets "name (2)"
        except Exception as exc:  # discovery is a convenience: the server works without it
            log.warning("zeroconf advertisement failed: %s", exc)
            return
        with self._zc_lock:
            if self._closed:
                _close_zeroconf(zc)
            else:
                self._zeroconf = zc


def _close_zeroconf(zc) -> None:
    try:
        zc.unregister_all_services()
        zc.close()
    except Exception:
        log.debug("zeroconf close", exc_info=True)
