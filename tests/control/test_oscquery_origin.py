"""No web page can drive the engine through OSCQuery: a WebSocket handshake from a page that is
not the engine's own (nor allowed with --allow-origin) is refused with 403 before a message is
read, a rebound DNS name (a foreign Host) is refused on HTTP and WebSocket alike, each refusal is
counted in /counts and said once; native clients (no Origin) and the engine's own page still drive it.

Every check reads the engine back over real UDP OSC, the way any other client would."""

import json
import logging
import os
import urllib.request

import pytest

from earengine.engine import Engine, EngineConfig
from earengine.errors import ParameterError
from earengine.osc.wire import decode_packet, encode_message
from tests.helpers.errors import one_line
from tests.helpers.websocket import masked_frame, request_head, status_of

pytestmark = pytest.mark.integration

ALLOWED = "http://studio.example:8080"
SET_GAIN = encode_message("/loop/gain", (-40.0,))


@pytest.fixture
def engine(tmp_path):
    with Engine(EngineConfig(audio="offline", osc_port=0, oscquery_port=0, preset_dir=tmp_path,
                             allow_origin=[ALLOWED]), out=open(os.devnull, "w")) as e:
        yield e


def gain(peer):
    """/loop/gain as the engine answers it over UDP."""
    address, args = peer.ask("/get", "/loop/gain", reply="/loop/gain")
    assert address == "/loop/gain"
    return args[0]


def counts(peer):
    address, args = peer.ask("/counts", reply="/counts.reply")
    assert address == "/counts.reply"
    return dict(zip(args[::2], args[1::2]))


def pushed_after_setting(ws, gain_db):
    """LISTEN to /loop/gain, set it over the WebSocket, and return the value pushed back."""
    ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/loop/gain"}))
    ws.send(encode_message("/loop/gain", (gain_db,)))
    while True:
        for _, address, args in decode_packet(ws.recv(timeout=3)):
            if address == "/loop/gain":
                return args


def refusals(caplog, text):
    return [r for r in caplog.records if r.levelno >= logging.WARNING and text in r.getMessage()]


def test_a_foreign_page_is_refused_at_the_handshake_and_nothing_changes(engine, peer, caplog):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    caplog.set_level(logging.WARNING)
    before = gain(peer)
    address = engine.oscquery.address
    # the page's script sends its OSC right after the handshake, without waiting for the answer
    head = request_head(address, origin="http://evil.example", then=masked_frame(SET_GAIN))
    assert status_of(head) == 403, head
    with pytest.raises(InvalidStatus) as refused:
        connect("ws://%s:%d" % address, origin="http://evil.example", open_timeout=2)
    assert refused.value.response.status_code == 403
    # another local port is another page, even on the engine's own host
    for origin in ("http://127.0.0.1:8000", f"https://127.0.0.1:{address[1]}", "null",
                   f"http://localhost.evil.example:{address[1]}"):
        assert status_of(request_head(address, origin=origin, then=masked_frame(SET_GAIN))) == 403, origin
    assert gain(peer) == before
    assert counts(peer)["oscquery_origin_refused"] == 6
    # said once for the page that tried twice
    assert len(refusals(caplog, "http://evil.example")) == 1
    assert "--allow-origin http://evil.example" in refusals(caplog, "http://evil.example")[0].getMessage()


def test_a_native_client_without_origin_still_listens_and_sets(engine, peer):
    from websockets.sync.client import connect

    with connect("ws://%s:%d" % engine.oscquery.address, open_timeout=2, close_timeout=0.5) as ws:
        assert pushed_after_setting(ws, -20.0) == (-20.0,)
    assert gain(peer) == -20.0
    assert counts(peer)["oscquery_origin_refused"] == 0


@pytest.mark.parametrize("origin", ["http://127.0.0.1:{port}", "http://localhost:{port}", "http://[::1]:{port}",
                                    "HTTP://LocalHost:{port}/", ALLOWED])
def test_the_engines_own_page_and_an_allowed_origin_may_drive_it(engine, peer, origin):
    from websockets.sync.client import connect

    host, port = engine.oscquery.address
    origin = origin.format(port=port)
    with connect(f"ws://{host}:{port}", origin=origin, open_timeout=2, close_timeout=0.5) as ws:
        assert pushed_after_setting(ws, -12.0) == (-12.0,)
    assert gain(peer) == -12.0
    # and it may read the namespace over HTTP, which a page of any other origin may not
    request = urllib.request.Request(f"http://{host}:{port}/loop/gain", headers={"Origin": origin})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["Access-Control-Allow-Origin"] == origin
        assert json.loads(response.read())["VALUE"] == [-12.0]
    request = urllib.request.Request(f"http://{host}:{port}/loop/gain", headers={"Origin": "http://evil.example"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["Access-Control-Allow-Origin"] is None


def test_a_rebound_host_is_refused_on_http_and_websocket(engine, peer, caplog):
    caplog.set_level(logging.WARNING)
    before = gain(peer)
    address = engine.oscquery.address
    rebound = f"rebound.example:{address[1]}"
    assert status_of(request_head(address, host=rebound, upgrade=False, path="/loop/gain")) == 403
    assert status_of(request_head(address, host=rebound, upgrade=False, path="/?HOST_INFO")) == 403
    # the rebound page's own origin is the rebound name: the Host check stops it first
    assert status_of(request_head(address, host=rebound, origin=f"http://{rebound}",
                                  then=masked_frame(SET_GAIN))) == 403
    assert status_of(request_head(address, host=f"127.0.0.1:{address[1] + 1}", upgrade=False)) == 403
    assert gain(peer) == before
    c = counts(peer)
    assert c["oscquery_host_refused"] == 4 and c["oscquery_origin_refused"] == 0
    assert len(refusals(caplog, rebound)) == 1
    # the engine's own names pass
    for host in (f"127.0.0.1:{address[1]}", f"localhost:{address[1]}", f"[::1]:{address[1]}"):
        assert status_of(request_head(address, host=host, upgrade=False, path="/loop/gain")) == 200, host


def test_allow_origin_is_checked_where_it_enters(tmp_path, capsys):
    from earengine.cli import main

    for bad in ("studio.local:8080", "ftp://studio.local", "http://studio.local/page", "http://", "*"):
        with pytest.raises(ParameterError) as err:
            EngineConfig(allow_origin=[bad])
        assert one_line(err.value) and "--allow-origin" in str(err.value)
    assert EngineConfig(allow_origin=["HTTP://Studio.local:8080/"]).allow_origin == ("http://studio.local:8080",)
    assert main(["run", "--audio", "null", "--osc-port", "0", "--allow-origin", "studio.local:8080"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "must be an origin like http://" in err


def test_http_serves_only_get_so_no_request_of_a_page_changes_anything(engine, peer):
    import socket

    before = gain(peer)
    host, port = engine.oscquery.address
    for method in ("POST", "PUT", "DELETE"):
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(f"{method} /loop/gain HTTP/1.1\r\nHost: {host}:{port}\r\nOrigin: http://evil.example\r\n"
                         "Content-Type: text/plain\r\nContent-Length: 3\r\n\r\n-40".encode())
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        assert not answer.startswith(b"HTTP/1.1 2"), (method, answer)
    assert gain(peer) == before
