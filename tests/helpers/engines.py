"""``earengine run --audio jack`` as a process of the test's, and the sockets that talk to it.

- :func:`engine_process` with :class:`OscPeer` (python-osc's encoding, not the engine's) and
  :class:`EngineRun`: the engine tests' runner, which hears the engine through a recording;
- :class:`Engine`: the same process with a socket speaking the engine's own wire format and a
  ``get`` to read a parameter back (the clock tests).
"""

from __future__ import annotations

import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import pytest
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from earengine.errors import EarEngineError
from earengine.osc.wire import decode_packet, encode_message
from earengine.process import EngineProcess

REPO = Path(__file__).resolve().parents[2]


class OscPeer:
    """A UDP socket of the test's own, speaking python-osc's encoding (not the engine's)."""

    def __init__(self, port: int) -> None:
        self.dest = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.inbox: list[tuple[str, tuple]] = []

    def close(self) -> None:
        self.sock.close()

    def send(self, address: str, *args: object) -> None:
        builder = OscMessageBuilder(address)
        for arg in args:
            builder.add_arg(arg)
        self.sock.sendto(builder.build().dgram, self.dest)

    def wait_for(self, address: str, timeout_s: float = 5.0) -> Optional[tuple]:
        """Arguments of the first unread message at ``address`` (None on timeout)."""
        deadline = time.monotonic() + timeout_s
        while True:
            for i, (addr, args) in enumerate(self.inbox):
                if addr == address:
                    del self.inbox[i]
                    return args
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return None
            msg = OscMessage(data)
            self.inbox.append((msg.address, tuple(msg.params)))

    def loops_started(self) -> int:
        self.send("/status")
        reply = self.wait_for("/status.reply", 2.0)
        assert reply is not None, "the engine does not answer /status"
        return int(reply[4])

    def wait_loops(self, n: int, timeout_s: float = 6.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.loops_started() < n:
            assert time.monotonic() < deadline, f"fewer than {n} loop(s) started within {timeout_s} s"
            time.sleep(0.05)


@dataclass
class EngineRun:
    proc: subprocess.Popen
    osc: OscPeer
    lines: list = field(default_factory=list)

    def output(self) -> str:
        return "\n".join(self.lines)


@contextmanager
def engine_process(jack, args: Sequence[str] = ("--no-dream",), *, duration_s: float = 60, ready_s: float = 30,
                   wrap=None) -> Iterator[EngineRun]:
    """``earengine run --audio jack <args>`` with OSC on a free port and an OSC peer; always stopped.

    ``wrap`` builds the yielded object from ``(proc, osc, lines)`` (default: EngineRun).
    """
    args = ["--audio", "jack", "--duration", str(duration_s), "--status-every", "1", *map(str, args)]
    eng = EngineProcess(args, env=jack.env, cwd=str(REPO), ready_s=ready_s)
    try:
        eng.start()
    except EarEngineError as exc:
        pytest.fail(str(exc))
    osc = None
    try:
        osc = OscPeer(eng.port)
        yield (wrap or EngineRun)(eng.proc, osc, eng.lines)
    finally:
        if osc is not None:
            osc.close()
        eng.close()


class Engine(EngineProcess):
    """``earengine run --audio jack --no-dream`` as a process, with a UDP socket to ask it things over OSC."""

    def __init__(self, env: dict, args: list[str]) -> None:
        super().__init__(["--audio", "jack", "--no-dream", "--status-every", "1000", *args], env=env,
                         cwd=str(REPO), ready_s=30.0)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        try:
            self.start()
        except BaseException:
            self.sock.close()
            raise

    def send(self, address: str, *args) -> None:
        self.sock.sendto(encode_message(address, args), self.address)

    def get(self, address: str, timeout_s: float = 2.0):
        self.send("/get", address)
        self.sock.settimeout(timeout_s)
        while True:
            for _, got, params in decode_packet(self.sock.recv(65536)):
                if got == address:
                    return params[0]

    def close(self) -> None:
        super().close()
        self.sock.close()
