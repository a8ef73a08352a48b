"""``earengine worker --listen 127.0.0.1:PORT`` as a process, for the tests and bench/remote_worker.py."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """A remote worker server as a process of its own; its console lines kept in :attr:`lines`,
    the port it listens on in :attr:`port`, and :attr:`up_at` when it said so (monotonic)."""

    def __init__(self, ear, secret, port: int = 0, *, threads: int = 1, device: str = "cpu") -> None:
        self.lines: list[str] = []
        cmd = [sys.executable, "-m", "earengine", "worker", "--listen", f"127.0.0.1:{port}", "--ear", str(ear),
               "--secret-file", str(secret), "--threads", str(threads), "--device", device, "--status-every", "0"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=str(REPO),
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.port = None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                break
        self.up_at = time.monotonic()
        if self.port is None:
            raise RuntimeError("the worker server did not start:\n" + "\n".join(self.lines[-20:]))
        threading.Thread(target=lambda: self.lines.extend(x.rstrip() for x in self.proc.stdout), daemon=True).start()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
