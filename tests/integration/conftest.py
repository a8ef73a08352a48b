"""Real parts for integration tests: a JACK server with its dummy driver.

The server gets a name of its own, so tests never touch a JACK server someone else is running;
clients find it through ``JACK_DEFAULT_SERVER`` in :attr:`JackServer.env`, and
``JACK_NO_START_SERVER=1`` keeps libjack from starting a default one behind our back.

The server runs in synchronous mode (``-S``) with a long client timeout. The dummy driver has no
hardware deadline, so on a busy machine a client that is late should delay the cycle, not lose
it: then every recorded sample is where the engine put it, and positions measured in a recording
(bar lines, loop starts) mean something. In the default asynchronous mode a late engine cycle
is simply missing from the recording and shifts everything after it by one period.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass

import pytest

JACK_SR = 44100
JACK_PERIOD = 256
_INSTALL = ("install the Debian package jackd2 (apt-get install jackd2); releases that package the "
            "JACK tools apart also need jack-example-tools for jack_lsp and jack_rec")


@dataclass(frozen=True)
class JackServer:
    """A running JACK dummy server: its name, rate, period and the environment that selects it."""

    name: str
    sr: int
    period: int
    env: dict

    def run(self, *args: str, timeout_s: float = 10.0) -> subprocess.CompletedProcess:
        """Run a JACK tool (``jack_lsp``, ``jack_connect`` …) against this server."""
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout_s)

    def ports(self) -> list[str]:
        """The server's ports; none when it does not answer in time (a synchronous server waits
        for a client that registers as it is asked), so a caller's poll simply asks again."""
        try:
            done = self.run("jack_lsp", timeout_s=20.0)
        except subprocess.TimeoutExpired:
            return []
        return done.stdout.split() if done.returncode == 0 else []


def _answers(env: dict) -> bool:
    try:
        return subprocess.run(["jack_lsp"], env=env, capture_output=True, timeout=5).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture(scope="session")
def jack_server(tmp_path_factory: pytest.TempPathFactory):
    """A uniquely named, synchronous ``jackd -d dummy`` at 44.1 kHz with 256-sample periods,
    killed at the end."""
    for tool in ("jackd", "jack_lsp", "jack_rec"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found, and the JACK integration tests need it: {_INSTALL}")
    name = f"earengine-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    env = dict(os.environ, JACK_DEFAULT_SERVER=name, JACK_NO_START_SERVER="1", PYO_GUI_WX="0")
    log_path = tmp_path_factory.mktemp("jack") / "jackd.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            ["jackd", "--no-realtime", "-S", "-t", "5000", "-n", name, "-d", "dummy", "-r", str(JACK_SR), "-p", str(JACK_PERIOD)],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 20.0
        while not _answers(env):
            if proc.poll() is not None or time.monotonic() > deadline:
                why = "exited" if proc.poll() is not None else "did not answer jack_lsp within 20 s"
                tail = log_path.read_text(errors="replace")[-2000:]
                pytest.fail(f"jackd -d dummy {why}; its output:\n{tail}")
            time.sleep(0.1)
        yield JackServer(name=name, sr=JACK_SR, period=JACK_PERIOD, env=env)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
