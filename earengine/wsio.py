"""What every WebSocket server of the engine shares (the activation streams, OSCQuery).

:func:`websocket_log` is where their own messages go: to debug, on ``earengine.websocket``. The
websockets library logs a client that vanishes in the middle of a frame (a closed browser tab, a
killed visualizer) as an internal error, with a traceback; for the engine that is a receiver
leaving, which it handles: the console stays plain, and debug logging still shows it.
:func:`cut_off` frees a sending thread blocked on a peer that never reads.

:class:`Gate` keeps web pages out. A browser lets any page it shows open a WebSocket to
``ws://127.0.0.1:9001`` and says which page did it in the ``Origin`` header; a page that points a
DNS name of its own at 127.0.0.1 (DNS rebinding) shows as a foreign ``Host``. Native clients
(the OSCQuery libraries, TouchDesigner, Max, Pure Data) send no ``Origin`` and are let in.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from typing import Iterable, Optional
from urllib.parse import urlsplit

from earengine.errors import ParameterError

__all__ = ["websocket_log", "cut_off", "parse_origin", "Gate"]

#: How a loopback-bound server may be named by a client on the same machine.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
#: Origins and hosts remembered for logging once; past that, refusals are only counted.
LOGGED_MAX = 64
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Quiet(logging.LoggerAdapter):
    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:
        self.logger.log(logging.DEBUG, msg, *args, **kwargs)  # type: ignore[arg-type]


def websocket_log() -> logging.LoggerAdapter:
    """The logger to give ``websockets.sync.server.serve(logger=...)``."""
    return _Quiet(logging.getLogger("earengine.websocket"), {})


def cut_off(conn) -> None:
    """Shut a WebSocket connection's socket, so that a send blocked on a peer that never reads
    returns at once (with an error its sending thread expects); harmless on a closed one."""
    try:
        conn.socket.shutdown(socket.SHUT_RDWR)
    except (OSError, AttributeError):
        pass


def _host_text(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def parse_origin(text: str) -> str:
    """An origin (``scheme://host[:port]``) in the one form the browser sends, the port written out.

    Parameters
    ----------
    text : str
        ``http://`` or ``https://``, a host, an optional port; no path, query or user.

    >>> parse_origin("HTTP://Studio.local:8080/")
    'http://studio.local:8080'
    >>> parse_origin("http://[::1]")
    'http://[::1]:80'
    >>> parse_origin("studio.local:8080")
    Traceback (most recent call last):
    ...
    earengine.errors.ParameterError: --allow-origin 'studio.local:8080' must be an origin like http://192.168.1.20:8080 (http or https, a host, a port; no path)
    """
    why = ParameterError(f"--allow-origin {text!r} must be an origin like http://192.168.1.20:8080 "
                         "(http or https, a host, a port; no path)")
    try:
        url = urlsplit(str(text).strip())
        port = url.port
    except ValueError:
        raise why from None
    scheme = url.scheme.lower()
    if (scheme not in _DEFAULT_PORTS or not url.hostname or url.path not in ("", "/") or url.query
            or url.fragment or url.username is not None):
        raise why
    return f"{scheme}://{_host_text(url.hostname)}:{port or _DEFAULT_PORTS[scheme]}"


def _split_host(text: str) -> Optional[tuple[str, int]]:
    """A ``Host`` header as (name, port), 80 when it names none; None when it is not one."""
    try:
        url = urlsplit("//" + text.strip())
        port = url.port
    except ValueError:
        return None
    if not url.hostname or url.path or url.query or url.fragment or url.username is not None:
        return None
    return url.hostname, port or 80


def _ip(name: str) -> Optional[ipaddress._BaseAddress]:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _local_ips() -> set[str]:
    """Every address of this machine's interfaces (ifaddr comes with zeroconf)."""
    import ifaddr

    return {str(ip.ip if isinstance(ip.ip, str) else ip.ip[0]).split("%")[0].lower()
            for adapter in ifaddr.get_adapters() for ip in adapter.ips}


class Gate:
    """Who may use one of the engine's HTTP/WebSocket servers: its ``process_request`` check.

    - ``Host`` must name this server: the address it is bound to (on loopback also
      ``localhost``, ``127.0.0.1`` and ``[::1]``; bound to every interface, any address of this
      machine and its host name), or a name given in ``names`` or in an allowed origin, with the
      server's port. Any other name is a DNS name rebound to this machine by another site: the
      request is refused with 403, HTTP and WebSocket alike. A request without ``Host`` comes from
      no browser and passes.
    - A WebSocket handshake with an ``Origin`` header is refused with 403, before any message is
      read, unless the origin is this engine's own page (``http://`` + one of the names above +
      one of :attr:`page_ports`) or one of ``allow_origins``. Without ``Origin`` (a native
      client) it passes.

    Each refusal is counted (:meth:`counts`) and logged once per origin or host, as one warning.

    Parameters
    ----------
    host : str
        The interface the server is bound to.
    port : int in [1, 65535]
        The server's own port.
    allow_origins : iterable of str
        Origins of other pages allowed to open WebSockets (``--allow-origin``), as
        :func:`parse_origin` takes them.
    names : iterable of str
        Other names of this machine that clients use (the ``.local`` name zeroconf advertises).
    log : logging.Logger
        Where the refusals are said.

    >>> gate = Gate("127.0.0.1", 9001, allow_origins=["http://studio.local:8080"])
    >>> gate.origin_allowed("http://localhost:9001"), gate.origin_allowed("http://evil.example")
    (True, False)
    >>> gate.host_allowed("[::1]:9001"), gate.host_allowed("rebound.example:9001"), gate.host_allowed("localhost:80")
    (True, False, False)
    """

    def __init__(self, host: str, port: int, *, allow_origins: Iterable[str] = (), names: Iterable[str] = (),
                 log: Optional[logging.Logger] = None) -> None:
        self.port = int(port)
        self.allow_origins = frozenset(parse_origin(o) for o in allow_origins)
        self.page_ports = {self.port}  # where this engine serves its own pages
        self.log = log or logging.getLogger("earengine.websocket")
        bound = (host or "0.0.0.0").strip("[]").lower()
        ip = _ip(bound)
        self._any = ip is not None and ip.is_unspecified
        own = {bound, *(n.lower().rstrip(".") for n in names)}
        own |= {urlsplit(o).hostname for o in self.allow_origins}
        if self._any or bound == "localhost" or (ip is not None and ip.is_loopback):
            own |= set(LOOPBACK_NAMES)
        if self._any:
            name = socket.gethostname().lower()
            own |= {name, name + ".local"}
        self._names = own
        self._local: set[str] = set()  # this machine's addresses, read when first needed
        self._lock = threading.Lock()
        self._refused = {"origin": 0, "host": 0}
        self._logged: set[tuple[str, str]] = set()

    def trust_page_port(self, port: int) -> None:
        """Pages this engine serves on another of its ports (OSCQuery's, for the streams) count
        as its own."""
        self.page_ports.add(int(port))

    def counts(self) -> dict[str, int]:
        """Handshakes refused for their ``Origin``, requests refused for their ``Host`` (ever)."""
        return {"origin_refused": self._refused["origin"], "host_refused": self._refused["host"]}

    def _own_name(self, name: str) -> bool:
        name = name.lower()
        if name in self._names:
            return True
        if not self._any or _ip(name) is None:
            return False
        if name not in self._local:  # an address this machine has taken since it was last read
            self._local = _local_ips()
        return name in self._local

    def host_allowed(self, host: Optional[str]) -> bool:
        """Whether a ``Host`` header names this server (None, no header: no browser sent it)."""
        if host is None:
            return True
        split = _split_host(host)
        return split is not None and split[1] == self.port and self._own_name(split[0])

    def origin_allowed(self, origin: Optional[str]) -> bool:
        """Whether a page of this ``Origin`` may open a WebSocket (None, no header: a native client)."""
        if origin is None:
            return True
        try:
            canonical = parse_origin(origin)
        except ParameterError:  # "null" (a file, a sandboxed frame) or garbage
            return False
        if canonical in self.allow_origins:
            return True
        url = urlsplit(canonical)
        return url.scheme == "http" and url.port in self.page_ports and self._own_name(url.hostname)

    def check(self, conn, request) -> Optional[object]:
        """``process_request``: a 403 response for a request to refuse, else None (go on)."""
        host = request.headers.get("Host")
        if not self.host_allowed(host):
            return self._refuse("host", host, f"Host {host!r} is not this engine's address")
        origin = request.headers.get("Origin")
        upgrade = (request.headers.get("Upgrade") or "").lower() == "websocket"
        if upgrade and not self.origin_allowed(origin):
            return self._refuse("origin", origin, f"a page at {origin} may not open this engine's WebSockets; "
                                                  f"earengine run --allow-origin {origin} lets it in")
        return None

    def _refuse(self, kind: str, value: str, why: str):
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        value = value if len(value) <= 120 else value[:120] + "..."  # a header may be 8 KiB
        with self._lock:
            self._refused[kind] += 1
            first = (kind, value) not in self._logged and len(self._logged) <= LOGGED_MAX
            if first:
                self._logged.add((kind, value))
            full = first and len(self._logged) > LOGGED_MAX  # said once too, then nothing more
        if full:
            self.log.warning("refused more origins and hosts than it says; the rest are only counted")
        elif first:
            if kind == "host":
                self.log.warning("refused a request for Host %s: not this engine's address "
                                 "(a DNS name that another site pointed here?)", value)
            else:
                self.log.warning("refused a WebSocket from a page at %s: only this engine's own page may "
                                 "drive it (earengine run --allow-origin %s lets it in)", value, value)
        body = (why + "\n").encode()
        headers = Headers([("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                           ("Connection", "close")])
        return Response(403, "Forbidden", headers, body)
