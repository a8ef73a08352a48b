"""No web page but the engine's own receives the streams: the streams' WebSocket refuses a
handshake from another page (403, before anything is sent to it) and a rebound DNS name (a
foreign Host); each refusal is counted in /counts and said once. Receivers without an Origin
(a recorder, TouchDesigner) and the page the engine serves on its OSCQuery port are let in."""

import logging
import os

import pytest

from earengine.engine import Engine, EngineConfig
from tests.helpers.osc import Peer
from tests.helpers.waits import wait_until
from tests.helpers.websocket import request_head, status_of

pytestmark = pytest.mark.integration

ALLOWED = "http://studio.example:8080"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    with Engine(EngineConfig(audio="offline", osc_port=0, oscquery_port=0, stream_ws_port=0, allow_origin=[ALLOWED],
                             preset_dir=tmp_path_factory.mktemp("presets")), out=open(os.devnull, "w")) as e:
        yield e


def counts(engine):
    peer = Peer(engine.osc.address)
    try:
        address, args = peer.ask("/counts", reply="/counts.reply")
    finally:
        peer.close()
    assert address == "/counts.reply"
    return dict(zip(args[::2], args[1::2]))


def test_another_page_and_a_rebound_host_are_refused_counted_and_said_once(engine, caplog):
    caplog.set_level(logging.WARNING)
    address = engine.stream_ws.address
    before = counts(engine)
    for _ in range(2):
        assert status_of(request_head(address, origin="http://evil.example")) == 403
    oscquery_port = engine.oscquery.address[1]
    assert status_of(request_head(address, origin=f"http://localhost:{oscquery_port + 1}")) == 403
    assert status_of(request_head(address, host=f"rebound.example:{address[1]}")) == 403
    after = counts(engine)
    assert after["ws_origin_refused"] - before["ws_origin_refused"] == 3
    assert after["ws_host_refused"] - before["ws_host_refused"] == 1
    assert after["ws_receivers"] == 0
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("http://evil.example" in line for line in said) == 1
    assert sum("rebound.example" in line for line in said) == 1


@pytest.mark.parametrize("origin", [None, "http://127.0.0.1:{streams}", "http://localhost:{oscquery}", ALLOWED])
def test_a_native_receiver_the_engines_own_pages_and_an_allowed_one_are_let_in(engine, origin):
    from websockets.sync.client import connect

    host, port = engine.stream_ws.address
    if origin is not None:
        origin = origin.format(streams=port, oscquery=engine.oscquery.address[1])
    before = counts(engine)
    with connect(f"ws://{host}:{port}", origin=origin, open_timeout=2, close_timeout=0.5):
        assert wait_until(lambda: engine.stream_ws.count() == 1)
        assert counts(engine)["ws_receivers"] == 1
    assert wait_until(lambda: engine.stream_ws.count() == 0)
    after = counts(engine)
    assert after["ws_origin_refused"] == before["ws_origin_refused"]
    assert after["ws_host_refused"] == before["ws_host_refused"]
