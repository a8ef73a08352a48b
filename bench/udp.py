"""What the benchmarks share to talk to a running engine over loopback UDP.

- :class:`Asker`: one socket that asks the engine and waits for its reply.
- :class:`Listener`: a socket with a 4 MiB receive buffer, read on a thread of its own; each
  datagram goes to its :meth:`~Listener.datagram`, which a benchmark's receiver defines.

The benchmarks run as scripts: they put ``bench/`` on ``sys.path`` and ``import udp``.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Optional

from earengine.osc.wire import decode_packet, encode_message

__all__ = ["Asker", "Listener"]


class Asker:
    """One UDP socket on loopback that asks the engine at ``address`` and waits for its reply."""

    def __init__(self, address) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)

    def send(self, address: str, *args) -> None:
        self.sock.sendto(encode_message(address, args), self.address)

    def ask(self, address: str, *args, reply: str, wait_s: float = 5.0) -> Optional[tuple]:
        """Send ``address args``; ``reply``'s arguments once it comes, None if it does not
        within ``wait_s``; a ``/fail`` ends the benchmark with the engine's reason."""
        self.send(address, *args)
        end = time.monotonic() + wait_s
        while time.monotonic() < end:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            for _, got, got_args in decode_packet(data):
                if got == reply:
                    return got_args
                if got == "/fail":
                    raise SystemExit(f"{address}: {got_args}")
        return None

    def need(self, address: str, *args, reply: str, wait_s: float = 5.0) -> tuple:
        """:meth:`ask`, ending the benchmark when no reply comes."""
        got = self.ask(address, *args, reply=reply, wait_s=wait_s)
        if got is None:
            raise SystemExit(f"no {reply} to {address} within {wait_s:g} s")
        return got

    def counts(self, *, wait_s: float = 5.0) -> dict:
        """The engine's ``/counts``."""
        args = self.need("/counts", reply="/counts.reply", wait_s=wait_s)
        return dict(zip(args[::2], args[1::2]))


class Listener:
    """A UDP socket on loopback read on a thread of its own: each datagram goes to
    :meth:`datagram` (on that thread) until :meth:`close`."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def dest(self) -> str:
        """``host:port`` for ``/stream/add``."""
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, OSError):
                continue
            self.datagram(data)

    def datagram(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=2)
        self.sock.close()
