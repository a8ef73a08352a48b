"""A real browser cannot drive the engine from a page of another origin: headless Chromium loads a
page from another local port whose script opens ws://127.0.0.1:<OSCQuery port>/ and sends the
binary OSC for /loop/gain -40; the browser sees the connection fail and the gain is unchanged.
The same page from a port the user allowed (--allow-origin) connects and sets the gain, so the
refusal is the origin check's, not the test's."""

import os

import pytest

from earengine.engine import Engine, EngineConfig
from earengine.osc.wire import encode_message
from tests.helpers.browser import browser, missing, serve_page
from tests.helpers.osc import Peer
from tests.helpers.waits import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.skipif(missing() is not None, reason=str(missing()))]

#: Opens the WebSocket named in ?ws= and sends the OSC packet in ?osc= (hex); says what happened
#: in window.events.
PAGE = """<!doctype html><title>page</title><script>
window.events = [];
const q = new URLSearchParams(location.search);
const osc = new Uint8Array(q.get("osc").match(/../g).map((h) => parseInt(h, 16)));
const ws = new WebSocket(q.get("ws"));
ws.binaryType = "arraybuffer";
ws.onopen = () => { ws.send(osc); window.events.push("open"); };
ws.onerror = () => window.events.push("error");
ws.onclose = (e) => window.events.push("close " + e.code);
</script>"""


def gain(peer):
    address, args = peer.ask("/get", "/loop/gain", reply="/loop/gain")
    assert address == "/loop/gain"
    return args[0]


def test_a_page_of_another_origin_cannot_set_the_gain_in_a_real_browser(tmp_path):
    with serve_page(PAGE) as allowed, serve_page(PAGE) as foreign, \
            Engine(EngineConfig(audio="offline", osc_port=0, oscquery_port=0, preset_dir=tmp_path,
                                allow_origin=[allowed]), out=open(os.devnull, "w")) as engine, \
            browser() as driver:
        peer = Peer(engine.osc.address)
        try:
            ws = "ws://127.0.0.1:%d/" % engine.oscquery.address[1]

            def visit(url, gain_db):
                driver.get(f"{url}?ws={ws}&osc={encode_message('/loop/gain', (gain_db,)).hex()}")
                assert wait_until(lambda: any(e.startswith("close") for e in driver.execute_script(
                    "return window.events")) or gain(peer) == gain_db, 15)
                return driver.execute_script("return window.events")

            # the page the user allowed: the browser connects, the engine takes the gain
            events = visit(allowed, -20.0)
            assert "open" in events, events
            assert gain(peer) == -20.0
            # a page of any other origin: the handshake fails in the browser, nothing changes
            events = visit(foreign, -40.0)
            assert "open" not in events and "error" in events, events
            assert gain(peer) == -20.0
            address, args = peer.ask("/counts", reply="/counts.reply")
            assert dict(zip(args[::2], args[1::2]))["oscquery_origin_refused"] == 1
        finally:
            peer.close()
