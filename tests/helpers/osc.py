"""Test helpers: a real UDP peer that sends datagrams and collects decoded replies."""

import socket
import time

from earengine.osc.wire import decode_packet, encode_message
from tests.helpers.waits import wait_until as wait_for

__all__ = ["Peer", "wait_for"]


class Peer:
    def __init__(self, server_address, *, bind_port=0):
        self.server = server_address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", bind_port))
        self.sock.settimeout(0.05)

    @property
    def port(self):
        return self.sock.getsockname()[1]

    def send(self, address, *args):
        self.sock.sendto(encode_message(address, args), self.server)

    def send_raw(self, data):
        self.sock.sendto(data, self.server)

    def replies(self, wait_s=1.0, until=None):
        """Collect (address, args) replies until ``until`` matches one or time runs out."""
        out = []
        end = time.monotonic() + wait_s
        while time.monotonic() < end:
            try:
                data, _ = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            for _, address, args in decode_packet(data):
                out.append((address, args))
                if until and until(address, args):
                    return out
        return out

    def ask(self, address, *args, reply=None, wait_s=10.0):
        """Send, then wait for the reply ``reply`` (the address by default) or ``/fail``; None when
        neither comes within ``wait_s``, which only bounds a failure on a busy machine."""
        self.send(address, *args)
        want = reply or address
        got = self.replies(wait_s, until=lambda a, _: a in (want, "/fail"))
        return got[-1] if got else None

    def close(self):
        self.sock.close()
