"""Fuzzing OSCQuery and both WebSocket servers at the boundary: HTTP paths and queries, JSON
commands, binary OSC and broken frames. Every request is answered with a status and a reason,
nothing escapes, and the servers go on serving the clients that behave."""

import json
import socket
import time
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from earengine.control.oscquery import OscQueryServer, _Listener
from earengine.osc.wire import decode_packet, encode_message
from earengine.control.osc import OscRouter
from earengine.streams.hub import StreamHub
from earengine.streams.position import Position
from earengine.streams.websocket import WebSocketStreams
from earengine.params import default_registry
from tests.helpers.fuzz import ADDRESSES, fuzz, osc_packets, registry_is_valid

ATTRS = ["FULL_PATH", "CONTENTS", "TYPE", "ACCESS", "VALUE", "RANGE", "DESCRIPTION", "UNIT", "CLIPMODE",
         "HOST_INFO", "value", "NOPE", ""]

path = st.one_of(st.sampled_from(ADDRESSES), st.sampled_from(["/", "", "//", "/loop/", "/loop", "/..", "/%00"]),
                 st.text(max_size=30).map(lambda t: "/" + quote(t, safe="/?=&%")))
query = st.one_of(st.just(""), st.sampled_from(ATTRS).map(lambda a: "?" + a),
                  st.text(max_size=20).map(lambda t: "?" + quote(t, safe="=&?")))


@pytest.fixture(scope="module")
def oscquery():
    registry = default_registry()
    router = OscRouter(registry)
    server = OscQueryServer(registry, port=0, osc_port=9000, handle=router.handle, zeroconf=False)
    yield server
    server.close()
    router.close()


def request(address, raw: bytes, wait_s=2.0) -> bytes:
    with socket.create_connection(address, timeout=wait_s) as sock:
        sock.sendall(raw)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except socket.timeout:
            pass
    return b"".join(chunks)


@fuzz(120)
@given(path=path, query=query)
def test_every_http_path_and_query_gets_a_status_and_json_or_a_reason(oscquery, path, query):
    from websockets.datastructures import Headers
    from websockets.http11 import Request

    response = oscquery._http(None, Request(path + query, Headers([("Host", "x")])))
    assert response.status_code in (200, 204, 400, 404)
    if response.status_code == 200:
        json.loads(response.body)
    elif response.status_code in (400, 404):
        assert response.body  # the reason


@fuzz(15)
@given(raw=st.one_of(
    st.tuples(path, query).map(lambda pq: f"GET {pq[0]}{pq[1]} HTTP/1.1\r\nHost: x\r\n\r\n".encode()),
    st.binary(max_size=200),
    st.text(max_size=100).map(lambda t: (t + "\r\n\r\n").encode()),
))
def test_raw_requests_over_tcp_never_stop_the_server(oscquery, raw):
    host = "Host: %s:%d\r\n" % oscquery.address  # its own name: any other is refused (a rebound DNS name)
    request(oscquery.address, raw.replace(b"Host: x\r\n", host.encode()), wait_s=0.2)
    ok = request(oscquery.address, b"GET /clock/bpm?TYPE HTTP/1.1\r\n" + host.encode() + b"\r\n")
    assert ok.startswith(b"HTTP/1.1 200") and b'"TYPE": "f"' in ok


class FakeConn:
    remote_address = ("127.0.0.1", 1)
    socket = None


json_value = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
                          lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                  st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                          max_leaves=8)
command = st.one_of(
    st.builds(lambda c, d: json.dumps({"COMMAND": c, "DATA": d}),
              st.sampled_from(["LISTEN", "IGNORE", "listen", "PATH_CHANGED", ""]),
              st.one_of(st.sampled_from(ADDRESSES), json_value)),
    json_value.map(json.dumps), st.text(max_size=40), st.just("[" * 5000))


@fuzz(200)
@given(text=command)
def test_every_websocket_command_is_taken_or_answered_with_a_reason(oscquery, text):
    listener = _Listener(FakeConn())
    oscquery._command(listener, text)
    replies = [decode_packet(r) for r in listener._replies]
    try:
        msg = json.loads(text)
        taken = (isinstance(msg, dict) and (str(msg.get("COMMAND", "")).upper() == "IGNORE" or
                 (str(msg.get("COMMAND", "")).upper() == "LISTEN" and str(msg.get("DATA", "")) in oscquery.registry.specs)))
    except (ValueError, RecursionError):
        taken = False
    if taken:
        assert replies == []
    else:
        ((_, address, args),) = replies[0]
        assert address == "/fail" and args[1]
    assert listener.paths <= set(oscquery.registry.specs)


@fuzz(200)
@given(data=osc_packets)
def test_binary_osc_over_the_websocket_is_handled_like_udp(oscquery, data):
    listener = _Listener(FakeConn())
    oscquery._osc(listener, data, ("127.0.0.1", 1))
    for reply in listener._replies:
        for _, address, args in decode_packet(reply):
            if address == "/fail":
                assert args[1]
    assert registry_is_valid(oscquery.registry) == []


frames = st.lists(st.one_of(st.text(max_size=50), st.binary(max_size=50), osc_packets), min_size=1, max_size=4)


@fuzz(20)
@given(messages=frames, junk=st.binary(max_size=40))
def test_both_websocket_servers_survive_what_clients_send_and_keep_serving(oscquery, messages, junk):
    """Well-formed messages of any content, then a broken frame; a well-behaved client still gets
    its answers (OSCQuery) and its frames (streams)."""
    from websockets.sync.client import connect

    for url in ("ws://%s:%d" % oscquery.address, "ws://%s:%d" % STREAMS["ws"].address):
        try:
            with connect(url, close_timeout=0.2, open_timeout=2) as ws:
                for m in messages:
                    ws.send(m)
                ws.socket.sendall(junk)  # not a frame: the server may close this connection
        except Exception:  # the server closed it on the junk: that is its answer
            pass
    with connect("ws://%s:%d" % oscquery.address, open_timeout=2) as ws:
        ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/loop/gain"}))
        ws.send(encode_message("/loop/gain", (-7.0,)))
        got = None
        end = time.monotonic() + 3
        while got is None and time.monotonic() < end:
            for _, address, args in decode_packet(ws.recv(timeout=3)):
                if address == "/loop/gain":
                    got = args
        oscquery.registry.set("/loop/gain", -3.0)
        assert got is not None
    with connect("ws://%s:%d" % STREAMS["ws"].address, open_timeout=2) as ws:
        assert ws.recv(timeout=3)  # shapes, then frames


STREAMS = {}


@pytest.fixture(scope="module", autouse=True)
def streams():
    from earengine.streams.activations import ActivationSet
    import numpy as np

    registry = default_registry()
    registry.update({"/stream/fps": 30.0})
    acts = {"enc.3": np.ones((4, 3, 5), np.float32)}
    pos = Position(time.time(), 0.0, 2.0, key=1, acts=ActivationSet(key=1, step=1, loss=0.0, acts=acts, mask={}))
    with StreamHub(registry, position=lambda: pos) as hub, WebSocketStreams(hub, port=0) as ws:
        STREAMS["ws"] = ws
        yield
        STREAMS.clear()
