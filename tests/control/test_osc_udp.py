"""The OSC contract over real UDP sockets on loopback."""

import time

import pytest

from earengine.osc.wire import encode_bundle, encode_message
from earengine.control.jobs import JobQueue
from earengine.control.osc import OscRouter, OscServer
from earengine.params import default_registry
from tests.helpers.osc import Peer, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def server():
    reg = default_registry()
    with JobQueue() as jobs:
        router = OscRouter(reg, jobs=jobs)
        with OscServer(router, port=0, max_datagram=20000) as srv:
            yield srv
        router.close()


def test_set_get_status(server, peer):
    peer.send("/clock/bpm", 133.0)
    assert peer.ask("/get", "/clock/bpm", reply="/clock/bpm") == ("/clock/bpm", (133.0,))
    address, args = peer.ask("/status", reply="/status.reply")
    assert address == "/status.reply" and args[5] == 133.0


def test_notify_delivers_changed_from_other_senders(server, peer):
    other = Peer(server.address)
    try:
        assert peer.ask("/notify", 1, reply="/done") == ("/done", ("/notify",))  # a command answers /done
        other.send("/loop/bars", 8)
        got = peer.replies(2.0, until=lambda a, _: a == "/changed")
        assert got[-1] == ("/changed", ("/loop/bars", 8))
    finally:
        other.close()


def test_sync_answers_after_slow_commands(server, peer):
    order = []
    # a command that takes a while (the sleep is the point: it stands for a slow file write)
    server.router.on("/loop/save", lambda args, sender: (time.sleep(0.3), order.append("saved")) and None)
    peer.send("/loop/save", "/tmp/whatever.wav")
    peer.send("/sync", 7)
    got = peer.replies(3.0, until=lambda a, _: a == "/synced")
    assert [a for a, _ in got] == ["/done", "/synced"] and order == ["saved"]
    assert got[-1] == ("/synced", (7,))


def test_fail_replies_over_udp(server, peer):
    assert peer.ask("/clock/bpm", float("nan"), reply="/fail")[0] == "/fail"
    address, args = peer.ask("/clock/bmp", 1.0, reply="/fail")
    assert address == "/fail" and args[0] == "/clock/bmp" and "unknown address" in args[1]
    peer.send_raw(b"\x00\x01not osc")
    got = peer.replies(2.0, until=lambda a, _: a == "/fail")
    assert got and got[-1][0] == "/fail"
    assert server.router.registry.get("/clock/bpm") == 120.0


def test_large_datagrams_arrive_whole_and_oversized_ones_are_answered(server, peer):
    # ~19 kB: more than python-osc's stock 8 KiB buffer; every message in it must apply
    msgs = [encode_message("/loop/bars", (1 + i % 16,)) for i in range(800)] + [encode_message("/loop/bars", (13,))]
    bundle = encode_bundle(None, msgs)
    assert 8192 < len(bundle) < 20000
    peer.send_raw(bundle)
    assert peer.ask("/get", "/loop/bars", reply="/loop/bars") == ("/loop/bars", (13,))
    big = encode_message("/loop/load", ("x" * 30000,))
    peer.send_raw(big)
    address, args = peer.replies(2.0, until=lambda a, _: a == "/fail")[-1]
    assert (address, args[0]) == ("/fail", "/loop/load") and "30" in args[1] and "20000" in args[1]


def test_future_timetags_are_scheduled_without_blocking(server, peer):
    due = time.time() + 1.0
    peer.send_raw(encode_bundle(due, [encode_message("/clock/bpm", (101.0,))]))
    # the receive path is free meanwhile: a query is answered before the bundle is due, with the old value
    assert peer.ask("/get", "/clock/bpm", reply="/clock/bpm") == ("/clock/bpm", (120.0,))
    assert time.time() < due
    # then the bundle's time comes
    assert wait_for(lambda: server.router.registry.get("/clock/bpm") == 101.0, 10.0)
    assert peer.ask("/get", "/clock/bpm", reply="/clock/bpm") == ("/clock/bpm", (101.0,))


def test_reply_port_for_hosts_with_separate_sockets(server, peer):
    listener = Peer(server.address)
    try:
        peer.send("/reply/port", listener.port)
        peer.send("/get", "/loop/xfade")
        assert listener.replies(2.0, until=lambda a, _: a == "/loop/xfade")[-1] == ("/loop/xfade", (50.0,))
    finally:
        listener.close()


def test_allow_list_ignores_other_peers():
    reg = default_registry()
    router = OscRouter(reg)
    with OscServer(router, port=0, allow=["127.0.0.2"]) as srv:
        p = Peer(srv.address)
        try:
            p.send("/clock/bpm", 99.0)
            assert wait_for(lambda: srv.counts["refused"] >= 1, 10.0)
            assert reg.get("/clock/bpm") == 120.0
            assert p.replies(0.1) == []  # a refused datagram is never answered
        finally:
            p.close()
    router.close()


def test_port_in_use_is_a_clear_error(server):
    from earengine.errors import EarEngineError

    router = OscRouter(default_registry())
    with pytest.raises(EarEngineError, match="cannot listen for OSC"):
        OscServer(router, port=server.address[1]).start()
    router.close()
