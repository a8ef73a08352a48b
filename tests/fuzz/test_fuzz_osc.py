"""Fuzzing OSC at the boundary: packets and bundles (nested, truncated, wrong sizes, garbage) through
the decoder, the router and the UDP server's scheduler. Nothing escapes, every value stays valid,
every refusal has a reason."""

import socket
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from earengine.osc.wire import OscDecodeError, bundle_time, decode_packet, encode_message, peek_address
from earengine.control.osc import OscRouter, OscServer
from earengine.params import default_registry
from tests.helpers.fuzz import fuzz, osc_bundle, osc_message, osc_packets, registry_is_valid

SENDER = ("127.0.0.1", 5555)


@fuzz(250)
@given(osc_packets)
def test_the_decoder_returns_messages_or_refuses_with_a_reason(data):
    try:
        items = decode_packet(data)
    except OscDecodeError as exc:
        assert str(exc)
        return
    for when, address, args in items:
        assert when is None or isinstance(when, float)
        assert isinstance(address, str) and isinstance(args, tuple)
    assert isinstance(peek_address(data), str)
    t = bundle_time(data)
    assert t is None or isinstance(t, float)


@pytest.fixture(scope="module")
def router():
    sent = []
    r = OscRouter(default_registry(), send=lambda dest, a, args: sent.append((dest, a, args)))
    yield r
    r.close()


@fuzz(250)
@given(data=osc_packets)
def test_the_router_never_raises_keeps_every_value_valid_and_answers_every_refusal(router, data):
    before = router.registry.snapshot()
    failed = router.counts["failed"]
    replies = router.handle_datagram(data, SENDER)
    assert registry_is_valid(router.registry) == []
    fails = [r for r in replies if r.address == "/fail"]
    for r in fails:
        assert len(r.args) == 2 and isinstance(r.args[0], str) and r.args[1], r
    assert router.counts["failed"] - failed == len(fails)  # every refusal counted and answered
    try:
        items = decode_packet(data)
    except OscDecodeError:
        assert router.registry.snapshot() == before and len(fails) == 1
        return
    if len(items) == 1 and fails:  # a refused message changes nothing
        assert router.registry.snapshot() == before


@fuzz(100)
@given(address=st.sampled_from([p.address for p in default_registry()]), data=st.data())
def test_every_parameter_refuses_what_does_not_fit_and_keeps_its_value(router, address, data):
    from tests.helpers.fuzz import osc_args

    args = data.draw(osc_args)
    before = router.registry.get(address)
    replies = router.handle_datagram(encode_message(address, args), SENDER)
    if replies:
        assert [r.address for r in replies] == ["/fail"] and replies[0].args[0] == address
        assert router.registry.get(address) == before
    assert registry_is_valid(router.registry) == []


@pytest.fixture(scope="module")
def server():
    """A real server: datagrams go through its bounded scheduler; replies come back to `peer`."""
    reg = default_registry()
    r = OscRouter(reg)
    with OscServer(r, port=0) as srv:
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        srv.peer = peer
        yield srv
        peer.close()
    r.close()


@fuzz(150)
@given(data=st.one_of(osc_bundle(), osc_packets, osc_message()))
def test_the_server_schedules_within_its_bounds_and_accounts_for_every_bundle(server, data):
    sender = server.peer.getsockname()
    before = dict(server.all_counts())
    server._handle(data, sender, len(data))  # the dispatch thread's own call, on this thread
    after = server.all_counts()
    assert after["pending"] <= server.router.registry.get("/osc/sched_max")
    assert registry_is_valid(server.router.registry) == []
    for key, value in after.items():
        if key != "pending":
            assert value >= before.get(key, 0), key
    # a refused future bundle is counted, and answered or counted as unanswered (rate limit)
    refused = (after["refused_far"] - before["refused_far"]) + (after["refused_full"] - before["refused_full"])
    sent = refused - (after["fail_unsent"] - before["fail_unsent"])
    assert 0 <= sent <= refused
    answered, deadline = 0, time.monotonic() + (0.02 if sent else 0.0)
    while answered < sent and time.monotonic() < deadline:
        try:
            got, _ = server.peer.recvfrom(65536)
        except BlockingIOError:
            time.sleep(0.001)
            continue
        for _, address, args in decode_packet(got):
            if address == "/fail" and args[0] == "#bundle":
                assert args[1]  # with its reason
                answered += 1
