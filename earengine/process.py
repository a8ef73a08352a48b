"""``earengine run`` in a child process: for scripts, notebooks, benchmarks and tests.

:class:`EngineProcess` starts the engine with OSC on a free port, learns the port from the
engine's own first lines (``osc: listening on host:port``), keeps every line it prints, and stops
it when the ``with`` block ends — politely first (SIGINT, as Ctrl-C would), then harder.

>>> with EngineProcess(["--audio", "null", "--no-dream", "--no-oscquery"]) as eng:  # doctest: +SKIP
...     eng.address
('127.0.0.1', 40123)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import Mapping, Optional, Sequence

from earengine.errors import EarEngineError

__all__ = ["EngineProcess"]

_READY = "osc: listening on "


class EngineProcess:
    """``earengine run <args> --osc-port 0`` as a child process; a context manager.

    Parameters
    ----------
    args : sequence of str
        Arguments of ``earengine run`` (``--audio``, ``--no-dream``, ``--set`` …); ``--osc-port``
        is chosen here.
    env : mapping, optional
        The child's environment (e.g. ``JACK_DEFAULT_SERVER``); default: this process's.
    cwd : path, optional
        The child's working directory.
    ready_s : float > 0
        How long to wait for the engine to listen before giving up.
    stop_s : float > 0
        How long each way of stopping it (SIGINT, then SIGTERM) may take before the next.

    Attributes
    ----------
    proc : subprocess.Popen
    address : (str, int)
        Where its OSC server listens.
    lines : list of str
        Everything it has printed so far (stdout and stderr together).
    """

    def __init__(self, args: Sequence[str] = (), *, env: Optional[Mapping[str, str]] = None,
                 cwd: Optional[str] = None, ready_s: float = 60.0, stop_s: float = 10.0) -> None:
        self.args = [str(a) for a in args]
        if "--osc-port" in self.args:
            raise EarEngineError("args must not hold --osc-port: EngineProcess picks a free port itself")
        self.env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
        self.cwd = cwd
        self.ready_s = float(ready_s)
        self.stop_s = float(stop_s)
        self.lines: list[str] = []
        self.address: Optional[tuple[str, int]] = None
        self.proc: Optional[subprocess.Popen] = None
        self._ready = threading.Event()
        self._reader: Optional[threading.Thread] = None

    def __enter__(self) -> "EngineProcess":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self.address is None:
            raise EarEngineError("the engine is not listening yet: call start() first")
        return self.address[1]

    def output(self) -> str:
        """Everything printed so far, one line each."""
        return "\n".join(self.lines)

    def start(self) -> None:
        """Start the engine and wait until it listens for OSC (raises with its last lines if not)."""
        cmd = [sys.executable, "-m", "earengine", "run", "--osc-port", "0", *self.args]
        self.proc = subprocess.Popen(cmd, env=self.env, cwd=self.cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
        self._reader = threading.Thread(target=self._read, name="earengine-process-output", daemon=True)
        self._reader.start()
        self._ready.wait(self.ready_s)
        if self.address is None:
            try:  # its output ended: it is exiting, or it hung
                code: Optional[int] = self.proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                code = None
            self.close()
            tail = "\n".join(self.lines[-20:]) or "(nothing printed)"
            why = f"exited with code {code}" if code is not None else f"did not listen within {self.ready_s:g} s"
            raise EarEngineError(f"earengine run {why}; its output:\n{tail}")

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if self.address is None and line.startswith(_READY):
                host, _, port = line[len(_READY):].split()[0].rpartition(":")
                self.address = (host, int(port))
                self._ready.set()
        self._ready.set()  # it ended: nobody should wait any longer

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        """Stop the engine: SIGINT, then SIGTERM, then SIGKILL, each after ``stop_s``."""
        if self.proc is None:
            return
        for stop in (lambda p: p.send_signal(signal.SIGINT), lambda p: p.terminate(), lambda p: p.kill()):
            if self.proc.poll() is not None:
                break
            stop(self.proc)
            try:
                self.proc.wait(timeout=self.stop_s)
            except subprocess.TimeoutExpired:
                continue
        if self._reader is not None:
            self._reader.join(timeout=5)
