"""Streams over real loopback UDP: frames equal the activations at the sounding step, arrive in
order at the rate asked, timetagged for when they sound, under the size limit; slow, vanished and
refusing receivers never hold anything up; bad input gets a reason."""

import math
import socket
import time

import numpy as np
import pytest

from earengine.osc.wire import decode_packet, encode_message
from earengine.control.osc import OscRouter
from earengine.streams.hub import StreamHub
from earengine.streams.position import Position
from earengine.streams.websocket import WebSocketStreams
from earengine.errors import EarEngineError
from earengine.params import default_registry
from earengine.streams.activations import ActivationSet
from earengine.viz.layout import NeuronLayout
from tests.helpers.streams import Receiver, arrays, frames

SHAPES = {"scaleogram": (1, 216, 172), "enc.3": (16, 59, 86), "ar.8": (64, 1, 11)}


def activation_set(key, seed=0):
    rng = np.random.default_rng(seed)
    acts = {tap: rng.standard_normal(shape).astype(np.float32) for tap, shape in SHAPES.items()}
    mask = {"enc.3": np.zeros((16, 59), bool)}
    mask["enc.3"][4:6, 10:20] = True
    return ActivationSet(key=key, step=42, loss=-1.5, acts=acts, mask=mask)


@pytest.fixture
def hub():
    made = []

    def make(position=None, **values):
        registry = default_registry()
        registry.update(values)
        demand = []
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

        def reply(dest, address, args):  # what the engine's OSC server does with notices
            out.sendto(encode_message(address, args), dest)

        h = StreamHub(registry, position=position, on_demand=demand.append, reply=reply)
        h.demand = demand
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


@pytest.fixture
def receivers():
    made = []

    def make(**kw):
        made.append(Receiver(**kw))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_streamed_frames_are_the_activations_sounding_at_their_timetag(hub, receivers):
    start = time.time()
    acts = activation_set(5)
    pos = Position(start, 0.0, 2.0, key=5, acts=acts)
    h = hub(lambda: pos, **{"/stream/fps": 30.0, "/stream/reduce": "raw", "/stream/lookahead_ms": 100.0,
                            "/stream/layers": "scaleogram enc.3 ar.8"})
    rx = receivers()
    h.add(rx.dest)
    assert rx.wait_for(lambda r: len(frames(r.items)) >= 40, 30.0)
    got = frames(rx.items)
    numbers = sorted(got)[1:-1]  # the last one may still be arriving
    assert len(numbers) >= 35
    # in order: the frame numbers appear in the order they were sent, none repeated
    order = [args[0] for _, _, a, args in rx.items if a == "/stream/phase"]
    assert order == sorted(order) and len(order) == len(set(order))
    # at the rate asked: timetags 1/30 s apart
    whens = np.array([got[n]["when"] for n in numbers])
    on_time = np.abs(np.diff(whens) - 1 / 30) < 0.001  # a frame the sender had to skip resets the grid
    assert on_time.mean() >= 0.9, np.diff(whens)
    # every datagram under the limit
    assert max(rx.sizes) <= 1400
    checked, early = 0, []
    for n in numbers:
        f = got[n]
        # timetagged for when the frame sounds: about the lookahead ahead of its arrival
        early.append(f["when"] - f["arrival"])
        # the phase is where the sound is at that moment
        expect = pos.at(f["when"])
        assert abs(f["phase"] - expect) < 1e-4 or abs(abs(f["phase"] - expect) - 1) < 1e-4
        assert f["step"] == (42, pytest.approx(-1.5))
        for tap, shape in SHAPES.items():
            a = acts.acts[tap].reshape(shape[0] * shape[1], shape[2])
            column = int(math.floor(expect * shape[2])) % shape[2]
            if abs(expect * shape[2] - round(expect * shape[2])) < 1e-3:
                continue  # on a step boundary the float32 phase may round either way
            assert np.array_equal(f["acts"][tap], a[:, column]), (n, tap, column)
            checked += 1
    assert checked > 90
    assert max(early) <= 0.101 and np.mean(np.array(early) > 0.03) >= 0.9, early


def test_a_new_destination_gets_shapes_mask_and_layout_first(hub, receivers):
    pos = Position(time.time(), 0.0, 4.0, key=1, acts=activation_set(1))
    h = hub(lambda: pos, **{"/stream/reduce": "channel", "/stream/layers": "enc.3 ar.8"})
    rng = np.random.default_rng(3)
    shapes = ((16, 59), (64, 1))
    layout = NeuronLayout(("enc.3", "ar.8"), shapes, rng.uniform(-1, 1, (16 * 59 + 64, 2)))
    h.set_layout(layout)
    rx = receivers()
    h.add(rx.dest)
    assert rx.wait_for(lambda r: len(arrays(r.items, "/stream/layout/")) == 2, 30.0)
    assert rx.wait_for(lambda r: "/stream/mask/enc.3" in r.addresses(), 30.0)
    shapes_got = {args[0]: args[1:] for _, _, a, args in rx.items if a == "/stream/shape"}
    assert shapes_got == {"enc.3": (16, 16, 59), "ar.8": (64, 64, 1)}  # values per frame, channels, freq
    masks = arrays(rx.items, "/stream/mask/")
    assert masks["enc.3"].tolist() == [1.0 if c in (4, 5) else 0.0 for c in range(16)]
    assert masks["ar.8"].sum() == 0
    lay = arrays(rx.items, "/stream/layout/")
    assert np.array_equal(lay["enc.3"], layout.tap_positions("enc.3").reshape(-1))
    assert np.array_equal(lay["ar.8"], layout.tap_positions("ar.8").reshape(-1))
    # channel reduction: frames carry one value per channel
    got = frames(rx.items)
    some = next(f for f in got.values() if "enc.3" in f["acts"])
    assert some["acts"]["enc.3"].size == 16 and some["acts"]["ar.8"].size == 64


def test_demand_follows_destinations_and_remove(hub, receivers):
    h = hub()
    a, b = receivers(), receivers()
    h.add(a.dest)
    h.add(b.dest)
    assert h.destinations() == [a.dest, b.dest] and h.demand == [True]
    h.remove(a.dest)
    assert h.demand == [True]
    with pytest.raises(EarEngineError, match="not a stream destination"):
        h.remove(a.dest)
    h.remove("all")
    assert h.destinations() == [] and h.demand == [True, False]


def test_slow_and_vanished_receivers_hold_nobody_up(hub, receivers):
    pos = Position(time.time(), 0.0, 2.0, key=2, acts=activation_set(2))
    h = hub(lambda: pos, **{"/stream/fps": 60.0, "/stream/reduce": "raw", "/stream/max_bytes": 9000})
    slow = receivers(read=False, rcvbuf=4096)  # never reads: its buffer is full at once
    good = receivers()
    gone = receivers()
    owner = receivers()
    h.add(slow.dest)
    h.add(gone.dest, owner=owner.sock.getsockname())
    h.add(good.dest)
    gone_dest = gone.dest
    gone.close()  # vanishes: the port refuses from now on
    # a sender held up by the one that never reads would stop at its first full buffer; the
    # deadline only bounds that failure
    assert good.wait_for(lambda r: len(frames(r.items)) >= 120, 30.0)
    # the good receiver gets every frame the hub makes (UDP on a busy machine may lose a few),
    # at the rate asked: the hub's own frames stay 1/60 s apart
    got = sorted(frames(good.items))
    assert len(got) >= 0.9 * (got[-1] - got[0] + 1), got
    intervals = np.diff(np.array(h.frame_times))
    assert np.median(intervals) == pytest.approx(1 / 60, rel=0.15)
    # the vanished one is dropped, and whoever added it is told why
    assert owner.wait_for(lambda r: "/stream/dropped" in r.addresses(), 30.0)
    note = next(args for _, _, a, args in owner.items if a == "/stream/dropped")
    assert note[0] == gone_dest and "refused" in note[1]
    assert gone_dest not in h.destinations() and slow.dest in h.destinations()


def test_refusing_and_unresolvable_destinations_are_refused_at_once(hub):
    h = hub()
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    with pytest.raises(EarEngineError, match="refuses"):
        h.add(f"127.0.0.1:{port}")
    with pytest.raises(EarEngineError, match="cannot be resolved"):
        h.add("no-such-host.invalid:9000")
    assert h.destinations() == []


def test_bad_stream_input_over_osc_answers_fail_and_changes_nothing(hub):
    h = hub()
    registry = h.registry
    sent = []
    router = OscRouter(registry, send=lambda dest, address, args: sent.append((address, args)))
    for address, handler in h.handlers(router.reply_dest).items():
        router.on(address, handler)
    sender = ("127.0.0.1", 5555)
    before = registry.snapshot()
    cases = [
        ("/stream/fps", (1000.0,), "within"),
        ("/stream/fps", (0.0,), "within"),
        ("/stream/max_bytes", (10,), "within"),
        ("/stream/max_bytes", (10 ** 6,), "within"),
        ("/stream/layers", ("enc.3 enc.99",), "enc.99"),
        ("/stream/reduce", ("median",), "one of"),
        ("/stream/remove", ("127.0.0.1:9",), "not a stream destination"),
        ("/stream/layout", (), "no neuron layout"),
    ]
    for address, args, why in cases:
        replies = router.handle_datagram(encode_message(address, args), sender)
        fails = [r for r in replies if r.address == "/fail"] + [type("R", (), {"args": a})() for n, a in sent if n == "/fail"]
        assert fails and address == fails[-1].args[0] and why in fails[-1].args[1], (address, replies, sent)
        sent.clear()
    for dest in ("nonsense", "host:99999", "no-such-host.invalid:9000"):
        router.handle_datagram(encode_message("/stream/add", (dest,)), sender)
        assert sent and sent[-1][0] == "/fail" and sent[-1][1][0] == "/stream/add", (dest, sent)
        sent.clear()
    assert registry.snapshot() == before and h.destinations() == []
    # good input: layers are kept in the ear's order
    router.handle_datagram(encode_message("/stream/layers", ("ar.8, enc.3",)), sender)
    assert registry.get("/stream/layers") == "enc.3 ar.8"
    router.close()


def test_websocket_receivers_get_whole_frames_and_a_stalled_one_is_skipped(hub):
    from websockets.sync.client import connect

    pos = Position(time.time(), 0.0, 2.0, key=9, acts=activation_set(9))
    h = hub(lambda: pos, **{"/stream/fps": 30.0, "/stream/reduce": "raw"})
    with WebSocketStreams(h, port=0) as ws:
        url = "ws://%s:%d" % ws.address
        with connect(url, close_timeout=0.2) as stalled, connect(url) as client:  # one never reads
            seen = {}
            end = time.monotonic() + 5
            while len(seen) < 20 and time.monotonic() < end:
                for _, address, args in decode_packet(client.recv(timeout=5)):
                    if address.startswith("/stream/act/"):
                        frame, start, count = args[:3]
                        assert start == 0  # whole arrays: no datagram limit over WebSocket
                        seen.setdefault(frame, {})[address] = count
            full = {f"/stream/act/{t}": s[0] * s[1] for t, s in SHAPES.items()}
            assert len(seen) >= 20 and all(v == full for v in seen.values())
            assert stalled is not None
