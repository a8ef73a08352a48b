"""Real parts for integration tests: a JACK server with its dummy driver, and its frame clock.

The server gets a name of its own, so tests never touch a JACK server someone else is running;
clients find it through ``JACK_DEFAULT_SERVER`` in :attr:`JackServer.env`, and
``JACK_NO_START_SERVER=1`` keeps libjack from starting a default one behind our back.

The server runs in synchronous mode (``-S``) with a long client timeout. The dummy driver has no
hardware deadline, so on a busy machine a client that is late should delay the cycle, not lose
it: then every recorded sample is where the engine put it, and positions measured in a recording
(bar lines, loop starts) mean something. In the default asynchronous mode a late engine cycle
is simply missing from the recording and shifts everything after it by one period.

For the same reason tests wait for audio time (a bar, a crossfade, a recording's length) on
``jack_clock``, the server's frame counter, not on the wall clock: on a busy machine the two part.
The server and the clock themselves are in :mod:`tests.helpers.jack`.
"""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

from tests.helpers.jack import INSTALL, JackClock, launch, stop


@pytest.fixture(scope="session")
def jack_server(tmp_path_factory: pytest.TempPathFactory):
    """A uniquely named, synchronous ``jackd -d dummy`` at 44.1 kHz with 256-sample periods,
    killed at the end."""
    for tool in ("jackd", "jack_lsp", "jack_rec"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found, and the JACK integration tests need it: {INSTALL}")
    name = f"earengine-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        server, proc = launch(name, tmp_path_factory.mktemp("jack") / "jackd.log")
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def jack_clock(jack_server):
    """The test server's frame clock (:class:`tests.helpers.jack.JackClock`): ``jack_clock.sleep_s(s)``
    returns once ``s`` seconds of audio have run on the server."""
    pytest.importorskip("jack", reason="the JACK-Client package is needed: pip install JACK-Client")
    clock = JackClock(jack_server)
    yield clock
    clock.close()
