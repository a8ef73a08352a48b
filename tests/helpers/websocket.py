"""Test helpers: raw HTTP requests and WebSocket handshakes with the headers a browser would send.

The websockets client always writes ``Host`` from its URL; an attacker's browser writes the name
it looked up (a rebound DNS name) and the page's ``Origin``. These speak the bytes themselves.

>>> masked_frame(b"hi", mask=b"\\x00\\x00\\x00\\x00")
b'\\x82\\x82\\x00\\x00\\x00\\x00hi'
"""

from __future__ import annotations

import base64
import os
import socket
from typing import Optional

__all__ = ["request_head", "masked_frame", "status_of"]


def masked_frame(payload: bytes, *, mask: Optional[bytes] = None) -> bytes:
    """One binary WebSocket frame from a client (masked, as clients must), payload < 126 bytes."""
    assert len(payload) < 126
    mask = os.urandom(4) if mask is None else mask
    return bytes([0x82, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def request_head(address: tuple, *, host: Optional[str] = None, origin: Optional[str] = None,
                 upgrade: bool = True, path: str = "/", then: bytes = b"", timeout_s: float = 5.0) -> bytes:
    """Send a GET (a WebSocket handshake when ``upgrade``), then ``then`` at once without waiting
    for the answer, as a page's script may; return the response up to the end of its headers.

    ``host`` defaults to the address itself; ``origin`` None sends no ``Origin`` header.
    """
    host = f"{address[0]}:{address[1]}" if host is None else host
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}"]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    if upgrade:
        key = base64.b64encode(os.urandom(16)).decode()
        lines += ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                  "Sec-WebSocket-Version: 13"]
    with socket.create_connection(address, timeout=timeout_s) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + then)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    return head.split(b"\r\n\r\n")[0]


def status_of(head: bytes) -> int:
    """The status code of a response head (0 when there was no answer).

    >>> status_of(b"HTTP/1.1 403 Forbidden\\r\\nServer: x"), status_of(b"")
    (403, 0)
    """
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
