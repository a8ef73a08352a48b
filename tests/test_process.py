"""EngineProcess: a real `earengine run` child, found by its own first lines, always stopped."""

import socket

import pytest

from earengine.osc.wire import decode_packet, encode_message
from earengine.errors import EarEngineError
from earengine.process import EngineProcess

pytestmark = pytest.mark.integration


def test_the_child_listens_answers_and_stops_cleanly():
    with EngineProcess(["--audio", "null", "--no-dream", "--no-oscquery", "--no-zeroconf"], ready_s=60) as eng:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(5.0)
        try:
            sock.sendto(encode_message("/sync", (7,)), eng.address)
            (_, address, args), = decode_packet(sock.recv(65535))
        finally:
            sock.close()
        assert (address, args) == ("/synced", (7,))
        assert eng.running()
    assert not eng.running()
    assert eng.proc.returncode == 0, eng.output()  # SIGINT ends it as Ctrl-C does, not a kill
    assert eng.lines[-1] == "stopping"
    assert any(line.startswith("osc: listening on ") for line in eng.lines)


def test_a_child_that_cannot_start_says_why():
    with pytest.raises(EarEngineError, match=r"(?s)exited with code 2.*argument --audio: invalid choice"):
        with EngineProcess(["--audio", "nonsense"], ready_s=30):
            pass
    with pytest.raises(EarEngineError, match="--osc-port"):
        EngineProcess(["--osc-port", "9000"])
