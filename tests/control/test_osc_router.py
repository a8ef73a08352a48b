"""The OSC contract on raw datagrams, with no sockets: every message gets its change or its reason."""

import math
import struct

import pytest

from earengine.osc.wire import Reply, decode_packet, encode_bundle, encode_message, peek_address
from earengine.control.osc import OscRouter
from earengine.params import default_registry
from earengine.params.catalog import PARAMS

SENDER = ("127.0.0.1", 5555)


@pytest.fixture
def router():
    sent = []
    reg = default_registry()
    r = OscRouter(reg, send=lambda dest, a, args: sent.append((dest, a, args)))
    r.sent = sent
    yield r
    r.close()


def test_set_is_silent_and_applies(router):
    assert router.handle_datagram(encode_message("/clock/bpm", (128.0,)), SENDER) == []
    assert router.registry.get("/clock/bpm") == 128.0
    assert router.handle_datagram(encode_message("/loop/mute", (1,)), SENDER) == []
    assert router.registry.get("/loop/mute") is True


def test_a_read_only_row_is_refused_over_osc_and_changes_nothing(router):
    router.registry.set("/clock/peers", 2, source="link")  # the engine sets its readings
    (reply,) = router.handle_datagram(encode_message("/clock/peers", (5,)), SENDER)
    assert reply.address == "/fail" and reply.args[0] == "/clock/peers" and reply.args[1].startswith("read-only")
    assert router.registry.get("/clock/peers") == 2
    assert router.handle_datagram(encode_message("/get", ("/clock/peers",)), SENDER) == [Reply("/clock/peers", (2,))]


def test_get_answers_with_the_setting_message(router):
    router.registry.set("/loop/gain", -9)
    (reply,) = router.handle_datagram(encode_message("/get", ("/loop/gain",)), SENDER)
    assert reply == Reply("/loop/gain", (-9.0,))
    # sending the reply back sets the same value: a query's reply has the shape of the command
    router.registry.set("/loop/gain", 0)
    router.handle_datagram(encode_message(reply.address, reply.args), SENDER)
    assert router.registry.get("/loop/gain") == -9.0


def test_status_sync_and_notify(router):
    (status,) = router.handle_datagram(encode_message("/status"), SENDER)
    assert status.address == "/status.reply" and len(status.args) == 10
    assert status.args[6:8] == (1, 1.0)  # bar 1 beat 1: nothing has played
    assert router.handle_datagram(encode_message("/sync", (42,)), SENDER) == [Reply("/synced", (42,))]
    router.handle_datagram(encode_message("/notify", (1,)), SENDER)
    router.handle_datagram(encode_message("/clock/bpm", (90.0,)), SENDER)
    assert router.sent == [(SENDER, "/changed", ("/clock/bpm", 90.0))]
    router.handle_datagram(encode_message("/notify", (0,)), SENDER)
    router.handle_datagram(encode_message("/clock/bpm", (91.0,)), SENDER)
    assert len(router.sent) == 1


def test_reply_port_redirects_replies_and_subscriptions(router):
    router.handle_datagram(encode_message("/notify", (1,)), SENDER)
    router.handle_datagram(encode_message("/reply/port", (7000,)), SENDER)
    assert router.reply_dest(SENDER) == ("127.0.0.1", 7000)
    router.handle_datagram(encode_message("/loop/gain", (-2.0,)), SENDER)
    assert router.sent[-1][0] == ("127.0.0.1", 7000)
    router.handle_datagram(encode_message("/reply/port", (0,)), SENDER)
    assert router.reply_dest(SENDER) == SENDER


def fails(replies, address):
    assert len(replies) == 1, replies
    reply = replies[0]
    assert reply.address == "/fail" and reply.args[0] == address, reply
    assert isinstance(reply.args[1], str) and reply.args[1] and "\n" not in reply.args[1]
    return reply.args[1]


@pytest.mark.parametrize("spec", PARAMS, ids=lambda s: s.address)
def test_every_parameter_rejects_bad_datagrams_and_changes_nothing(router, spec):
    before = router.registry.snapshot()
    bad = [(), ("words",) if spec.type != "str" else (1,), (spec.default, spec.default)]
    if spec.numeric:
        bad += [(math.nan,), (math.inf,), (-math.inf,)]
        if spec.max is not None:
            bad.append((float(spec.max) * 2 + 1,))
    if spec.type == "enum":
        bad.append(("not-a-choice",))
    for args in bad:
        reason = fails(router.handle_datagram(encode_message(spec.address, args), SENDER), spec.address)
        assert spec.address in reason or "takes" in reason
    assert router.registry.snapshot() == before


def test_unknown_address_and_bad_command_arguments(router):
    assert "unknown address" in fails(router.handle_datagram(encode_message("/loop/gian", (1.0,)), SENDER), "/loop/gian")
    fails(router.handle_datagram(encode_message("/get", ("/no/such",)), SENDER), "/get")
    fails(router.handle_datagram(encode_message("/get", ()), SENDER), "/get")
    fails(router.handle_datagram(encode_message("/sync", ("x",)), SENDER), "/sync")
    fails(router.handle_datagram(encode_message("/reply/port", (70000,)), SENDER), "/reply/port")
    fails(router.handle_datagram(encode_message("/loop/load", ()), SENDER), "/loop/load")


@pytest.mark.parametrize("data", [
    b"garbage",
    b"/clock/bpm\x00\x00",  # no type tag string
    b"/clock/bpm\x00\x00,f\x00\x00\x00",  # tag promises a float that is not there
    b"#bundle\x00\x00\x00",  # truncated bundle
    b"\xff\xfe/",
])
def test_malformed_datagrams_get_a_reason(router, data):
    (reply,) = router.handle_datagram(data, SENDER)
    assert reply.address == "/fail" and reply.args[1]
    assert router.registry.snapshot() == default_registry().snapshot()


def test_bundles_apply_every_message(router):
    bundle = encode_bundle(None, [encode_message("/clock/bpm", (99.0,)), encode_message("/loop/bars", (4,))])
    assert router.handle_datagram(bundle, SENDER) == []
    assert router.registry.get("/clock/bpm") == 99.0 and router.registry.get("/loop/bars") == 4


def test_later_commands_answer_done_or_fail(router):
    calls = []
    router.on("/loop/save", lambda args, sender: calls.append(args))
    assert router.handle_datagram(encode_message("/loop/save", ("/tmp/x.wav",)), SENDER) == []
    assert calls == [("/tmp/x.wav",)] and router.sent[-1] == (SENDER, "/done", ("/loop/save",))

    def broken(args, sender):
        from earengine.errors import AudioFileError
        raise AudioFileError("path='nowhere.wav' is not a file")

    router.on("/loop/load", broken)
    router.handle_datagram(encode_message("/loop/load", ("nowhere.wav",)), SENDER)
    assert router.sent[-1] == (SENDER, "/fail", ("/loop/load", "path='nowhere.wav' is not a file"))


def test_a_handler_bug_is_answered_not_raised(router):
    router.on("/preset/list", lambda args, sender: 1 / 0)
    reason = fails(router.handle_datagram(encode_message("/preset/list"), SENDER), "/preset/list")
    assert "ZeroDivisionError" in reason


def test_encoding_round_trips_and_peeks():
    data = encode_message("/x/y", (1, 2.5, "s", True, b"\x01\x02\x03"))
    ((when, address, args),) = decode_packet(data)
    assert (when, address) == (None, "/x/y")
    assert args == (1, 2.5, "s", 1, b"\x01\x02\x03")
    assert peek_address(data) == "/x/y" and peek_address(b"\x00\xff") == "?"
    bundle = encode_bundle(1_900_000_000.25, [data])
    ((when, _, _),) = decode_packet(bundle)
    assert when == pytest.approx(1_900_000_000.25, abs=1e-6)
    assert struct.unpack(">Q", encode_bundle(None, [])[8:16])[0] == 1
