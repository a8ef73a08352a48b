"""An independent OSCQuery client (the python-oscquery package) finds a running engine through
zeroconf and browses it; a WebSocket LISTEN client receives value changes; OSC sent over the
WebSocket is handled like UDP; a stalled listener slows no one."""

import json
import os
import time
import uuid

import pytest

from earengine.osc.wire import decode_packet, encode_message
from earengine.engine import Engine, EngineConfig
from tests.helpers.osc import Peer

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(tmp_path):
    with Engine(EngineConfig(audio="offline", osc_port=0, oscquery_port=0, preset_dir=tmp_path),
                out=open(os.devnull, "w")) as e:
        yield e


def test_python_oscquery_discovers_and_browses_the_engine(tmp_path):
    from pythonoscquery.osc_query_browser import OSCQueryBrowser
    from pythonoscquery.osc_query_client import OSCQueryClient

    name = f"earengine-test-{uuid.uuid4().hex[:6]}"
    from earengine.control.oscquery import OscQueryServer

    with Engine(EngineConfig(audio="offline", osc_port=0, oscquery_port=0, zeroconf=True, preset_dir=tmp_path),
                out=open(os.devnull, "w")) as engine:
        assert engine.oscquery is not None  # the engine serves it; again under a name of its own, so
        engine.oscquery.close()             # parallel runs cannot find each other
        engine.oscquery = OscQueryServer(engine.registry, port=0, osc_port=engine.osc.address[1],
                                         handle=engine.router.handle, name=name, zeroconf=True)
        browser = OSCQueryBrowser()
        try:
            service = None
            end = time.monotonic() + 15
            while service is None and time.monotonic() < end:
                time.sleep(0.2)
                service = browser.find_service_by_name(name)
            assert service is not None, "not advertised as _oscjson._tcp"
            client = OSCQueryClient(service)
            info = client.get_host_info()
            assert info.name == name and info.osc_port == engine.osc.address[1] and info.osc_transport == "UDP"
            root = client.query_node("/")
            browsed = {n.full_path: n for n in root}
            # every parameter, with its value and doc, as the independent client reads it
            for spec in engine.registry:
                n = browsed[spec.address]
                value = engine.registry.get(spec.address)
                assert n.value == [int(value) if spec.type == "bool" else value]
                assert n.description == spec.doc and int(n.access) == (3 if spec.writable else 1)
            for cmd in engine.registry.commands:
                assert cmd in browsed
            # and it can drive the engine through what it found: OSC to the advertised port
            peer = Peer((info.osc_ip, info.osc_port))
            peer.send("/clock/bpm", 133.0)
            peer.ask("/sync", 1, reply="/synced")
            peer.close()
            assert client.query_node("/clock/bpm").value == [133.0]
        finally:
            browser.zc.close()
            engine.oscquery.close()


def commands_done(ws):
    """Wait until the commands sent on ``ws`` so far are in effect: a client's commands are handled
    in order, so once one the server does not know is answered ``/fail``, those before it are."""
    ws.send(json.dumps({"COMMAND": "DONE?"}))
    end = time.monotonic() + 10
    while time.monotonic() < end:
        for _, address, args in decode_packet(ws.recv(timeout=10)):
            if address == "/fail" and args[0] == "DONE?":
                return
    raise AssertionError("the server did not answer a command within 10 s")


def test_listen_pushes_changes_and_osc_over_websocket_sets_values(engine):
    from websockets.sync.client import connect

    host, port = engine.oscquery.address
    with connect(f"ws://{host}:{port}", close_timeout=0.5) as ws, \
            connect(f"ws://{host}:{port}", close_timeout=0.5) as stalled:
        ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/loop/gain"}))
        ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/opt/run"}))
        stalled.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/loop/gain"}))
        commands_done(ws)
        commands_done(stalled)  # and from now on it never reads
        peer = Peer(engine.osc.address)
        try:
            for i in range(300):
                peer.send("/loop/gain", -float(i % 60))
            peer.send("/opt/run", 0)
            # the stalled listener held nothing up: 300 changes went through
            assert peer.ask("/sync", 2, reply="/synced", wait_s=10.0) == ("/synced", (2,))
            got = []
            end = time.monotonic() + 5
            while time.monotonic() < end and ("/opt/run", (0,)) not in got:
                for _, address, args in decode_packet(ws.recv(timeout=5)):
                    got.append((address, args))
            assert ("/opt/run", (0,)) in got  # a bool arrives as the 0/1 the engine speaks
            # a reader that falls behind gets the newest value of each parameter, not a backlog
            while ("/loop/gain", (-59.0,)) not in got:
                for _, address, args in decode_packet(ws.recv(timeout=2)):
                    got.append((address, args))
            # IGNORE stops the pushes
            ws.send(json.dumps({"COMMAND": "IGNORE", "DATA": "/loop/gain"}))
            commands_done(ws)
            peer.send("/loop/gain", -3.0)
            peer.send("/opt/run", 1)
            peer.ask("/sync", 3, reply="/synced")
            after = [decode_packet(ws.recv(timeout=2))[0][1]]
            assert after == ["/opt/run"]
            # OSC over the WebSocket: sets a value, and a bad one is answered /fail on the socket
            ws.send(encode_message("/clock/bpm", (99.0,)))
            ws.send(encode_message("/clock/bpm", (9999.0,)))
            reply = decode_packet(ws.recv(timeout=2))[0]
            assert reply[1] == "/fail" and reply[2][0] == "/clock/bpm"
            assert engine.registry.get("/clock/bpm") == 99.0
        finally:
            peer.close()
