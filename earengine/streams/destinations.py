"""UDP stream destinations: ``host:port`` parsed, resolved, probed, and sent to without waiting.

A :class:`Destination` has its own connected, non-blocking socket: a full send buffer skips the
rest of a frame for that destination only, and one that keeps refusing (nobody listens any more)
marks itself :attr:`~Destination.dropped` for the hub to remove.

>>> dest_name("[::1]:7000"), dest_name(" localhost:9001 ")
('[::1]:7000', 'localhost:9001')
"""

from __future__ import annotations

import re
import select
import socket
from collections import deque
from typing import Iterable, Optional

from earengine.errors import EarEngineError, ParameterError
from earengine.osc.wire import timetag

__all__ = ["Destination", "parse_dest", "dest_name", "resolve_dest", "probe_dest", "DROP_AFTER_S"]

#: A destination refusing for this long is dropped.
DROP_AFTER_S = 2.0

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


def dest_name(text: str) -> str:
    """The name a destination is listed under: ``host:port``, or ``[v6]:port``."""
    host, port = parse_dest(text)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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


class Destination:
    """One UDP receiver: its own connected, non-blocking socket and a backlog of announcements.

    Parameters
    ----------
    text : str
        Its name (:func:`dest_name`).
    sockaddr, family
        Where it is (:func:`resolve_dest`).
    owner : tuple or None
        Reply address of the one who added it, told when it is dropped.
    """

    def __init__(self, text: str, sockaddr: tuple, family: int, owner: Optional[tuple]) -> None:
        self.text = text
        self.owner = owner
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.connect(sockaddr)  # connected: ICMP "port unreachable" comes back as an error
        self.backlog: deque[bytes] = deque()
        self.counts = {"frames": 0, "datagrams": 0, "skipped": 0, "refused": 0}
        self._refused_since: Optional[float] = None
        self._refused_last = 0.0
        self.dropped: Optional[str] = None  # why it should go, once it should

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
