"""The frame protocol as the engine sees it: raw OSC datagrams through the router, fake voices.

Good frames reach the voices as targets; bad ones are answered ``/fail`` and change nothing.
"""

import math

import numpy as np
import pytest

from earengine.osc.wire import Reply, encode_message
from earengine.control.osc import OscRouter
from earengine.params import default_registry
from earengine.sonify.params import MAX_RUNS
from earengine.sonify.receiver import SonReceiver
from earengine.sonify.sinks import encode_frame

SENDER = ("127.0.0.1", 50000)


class FakeVoices:
    """Records what the receiver asks of the synth."""

    def __init__(self, max_voices=16):
        self.max_voices = max_voices
        self.calls = []
        self.submitted = {}
        self.audible = {}
        self.cues = 0

    def open_run(self, slot, n_voices, wave):
        self.calls.append(("open", slot, n_voices, wave))

    def close_run(self, slot):
        self.calls.append(("close", slot))

    def submit(self, slot, targets):
        self.submitted.setdefault(slot, []).append(targets)

    def cue(self, slot):
        self.cues += 1

    def set_audible(self, slot, on):
        self.audible[slot] = on


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


@pytest.fixture
def rig():
    registry = default_registry()
    voices = FakeVoices()
    events = []
    clock = Clock()
    receiver = SonReceiver(registry, voices, notify=lambda a, g: events.append((a, g)), now=clock)
    router = OscRouter(registry)
    for address, handler in receiver.handlers().items():
        router.on(address, handler)
    yield router, receiver, voices, events, clock, registry
    receiver.close()
    router.close()


def send(router, address, *args):
    return router.handle_datagram(encode_message(address, args), SENDER)


def submitted(voices):
    return sum(len(v) for v in voices.submitted.values())


def test_a_good_frame_reaches_the_voices(rig):
    router, receiver, voices, events, _, registry = rig
    (pace,) = send(router, "/son/begin", "mnist", 4)
    assert (pace.address, pace.args) == ("/son/pace", ("mnist", 80.0))  # the default step, in ms
    assert voices.calls == [("open", 0, 4, "sine")]
    assert send(router, "/son/frame", "mnist", 0, 0.1, 1.0, 10.0, 100.0) == []
    (t,) = voices.submitted[0]
    assert len(t) == 4 and t.nan == () and sorted(t.freq_hz) == list(t.freq_hz)
    assert events == []
    reply = send(router, "/son/runs")
    assert [(r.address, r.args) for r in reply] == [("/son/runs.reply", ("mnist",))]


@pytest.mark.parametrize("address, args, reason", [
    ("/son/frame", ("mnist", 1, 0.5, 0.5), "has 2 norms; the run has 4 layers"),
    ("/son/frame", ("mnist", 1, 0.5, 0.5, 0.5, 0.5, 0.5), "has 5 norms"),
    ("/son/frame", ("mnist", 1, 0.5, "loud", 0.5, 0.5), "must be a number"),
    ("/son/frame", ("mnist", 1, 0.5, -1.0, 0.5, 0.5), "must be >= 0"),
    ("/son/frame", ("mnist", "one", 0.5, 0.5, 0.5, 0.5), "step"),
    ("/son/frame", ("mnist", 1), "takes <run> <step> <norms…>"),
    ("/son/frame", ("cifar", 1, 0.5, 0.5, 0.5, 0.5), "run='cifar' is not open"),
    ("/son/part", ("mnist", 1, 0, 3, 0.5, 0.5), "count=3 but 2 norms follow"),
    ("/son/part", ("mnist", 1, 3, 2, 0.5, 0.5), "must lie within the run's 4 layers"),
    ("/son/part", ("mnist", 1, -1, 1, 0.5), "must lie within"),
    ("/son/nan", ("mnist", 1, 9), "layer=9 must be within [0, 3]"),
    ("/son/begin", ("big", 100000), "layers=100000 must be within"),
    ("/son/begin", ("zero", 0), "layers=0 must be within"),
    ("/son/mute", ("ghost", 1), "not open"),
])
def test_bad_frames_fail_and_change_nothing(rig, address, args, reason):
    router, receiver, voices, events, _, registry = rig
    send(router, "/son/begin", "mnist", 4)
    send(router, "/son/frame", "mnist", 0, 1.0, 1.0, 1.0, 1.0)
    before = (submitted(voices), list(voices.calls), dict(receiver.runs), voices.cues, list(events))
    replies = send(router, address, *args)
    assert len(replies) == 1 and replies[0].address == "/fail"
    assert replies[0].args[0] == address and reason in replies[0].args[1], replies[0].args
    assert (submitted(voices), list(voices.calls), dict(receiver.runs), voices.cues, list(events)) == before


def test_too_many_runs_fail_and_an_ended_run_frees_its_slot(rig):
    router, receiver, voices, *_ = rig
    for k in range(MAX_RUNS):
        assert send(router, "/son/begin", f"run{k}", 2) [0].address == "/son/pace"
    (reply,) = send(router, "/son/begin", "one-more", 2)
    assert reply.address == "/fail" and "too many runs" in reply.args[1]
    assert "one-more" not in receiver.runs
    send(router, "/son/end", "run1")
    assert send(router, "/son/begin", "one-more", 2) [0].address == "/son/pace"
    assert receiver.runs["one-more"].slot == 1
    # each slot has its own timbre
    waves = [c[3] for c in voices.calls if c[0] == "open"]
    assert len(set(waves[:MAX_RUNS])) == MAX_RUNS


def test_a_big_frame_arrives_in_parts_and_is_heard_in_bands(rig):
    router, receiver, voices, _, _, registry = rig
    n = 1000
    norms = np.geomspace(1e-3, 1e3, n)
    norms[777] = 5e3  # the loudest layer of its band decides the band
    send(router, "/son/begin", "big", n)
    datagrams = encode_frame("big", 5, norms)
    assert len(datagrams) > 2 and all(len(d) <= 1400 for d in datagrams)
    for d in datagrams[:-1]:
        assert router.handle_datagram(d, SENDER) == []
        assert submitted(voices) == 0  # incomplete: nothing yet
    router.handle_datagram(datagrams[-1], SENDER)
    (t,) = voices.submitted[0]
    assert len(t) == 16
    starts = np.arange(16) * n // 16
    band_max = np.maximum.reduceat(norms.astype(np.float32).astype(np.float64), starts)
    assert receiver.runs["big"].starts.tolist() == starts.tolist()
    lo, hi = registry.get("/son/norm_min"), registry.get("/son/norm_max")
    assert t.position == pytest.approx(tuple(np.clip(np.log(band_max / lo) / np.log(hi / lo), 0, 1)), abs=1e-6)


def test_an_old_part_fails_and_a_newer_one_replaces_an_incomplete_frame(rig):
    router, receiver, voices, *_ = rig
    send(router, "/son/begin", "r", 4)
    assert send(router, "/son/part", "r", 10, 0, 2, 1.0, 1.0) == []
    (reply,) = send(router, "/son/part", "r", 9, 2, 2, 1.0, 1.0)
    assert reply.address == "/fail" and "older" in reply.args[1]
    assert send(router, "/son/part", "r", 11, 0, 2, 2.0, 2.0) == []
    assert send(router, "/son/part", "r", 11, 2, 2, 2.0, 2.0) == []
    assert submitted(voices) == 1 and receiver.runs["r"].stats["parts_dropped"] == 1


def test_nan_in_a_frame_sounds_the_cue_and_tells_listeners(rig):
    router, receiver, voices, events, clock, _ = rig
    send(router, "/son/begin", "r", 3)
    assert send(router, "/son/frame", "r", 7, 1.0, math.nan, math.inf) == []
    (t,) = voices.submitted[0]
    assert t.nan == (1, 2) and t.amp[1] == 0.0 and all(map(math.isfinite, t.freq_hz))
    assert voices.cues == 1 and events == [("/son/nan", ("r", 7, 1))]
    clock.t += 0.1  # a flood of NaN frames: one cue per quarter second, not a buzz
    send(router, "/son/frame", "r", 8, math.nan, 1.0, 1.0)
    assert voices.cues == 1
    clock.t += 0.2
    send(router, "/son/frame", "r", 9, math.nan, 1.0, 1.0)
    assert voices.cues == 2 and events[-1] == ("/son/nan", ("r", 9, 0))
    clock.t += 1.0
    assert send(router, "/son/nan", "r", 10, 2) == [Reply("/done", ("/son/nan",))]  # a sender that detects NaN itself
    assert voices.cues == 3


def test_mute_and_solo(rig):
    router, receiver, voices, *_ = rig
    for name in ("a", "b", "c"):
        send(router, "/son/begin", name, 2)
    send(router, "/son/mute", "a", 1)
    assert voices.audible == {0: False, 1: True, 2: True}
    send(router, "/son/solo", "c", 1)
    assert voices.audible == {0: False, 1: False, 2: True}
    send(router, "/son/solo", "c", 0)
    send(router, "/son/mute", "a", 0)
    assert voices.audible == {0: True, 1: True, 2: True}


def test_live_parameter_changes_reach_the_next_frame(rig):
    router, receiver, voices, _, _, registry = rig
    send(router, "/son/begin", "r", 2)
    send(router, "/son/frame", "r", 0, 1.0, 1.0)
    assert send(router, "/son/scale", "off") == []
    assert send(router, "/son/curve", "seed") == []
    assert send(router, "/son/register_spread", 0.0) == []
    send(router, "/son/frame", "r", 1, 1.0, 1.0)
    assert voices.submitted[0][-1].freq_hz == (300.0, 300.0)
    (reply,) = send(router, "/son/curve", "cubic")
    assert reply.address == "/fail" and registry.get("/son/curve") == "seed"


def test_the_frame_handler_is_cheap(rig):
    """Thousands of frames a second on one core: the dispatch thread never falls behind a
    training loop (the engine test floods the real socket)."""
    import time

    router, receiver, voices, *_ = rig
    send(router, "/son/begin", "r", 64)
    datagram = encode_frame("r", 0, np.ones(64))[0]
    t0 = time.perf_counter()
    for _ in range(500):
        router.handle_datagram(datagram, SENDER)
    per_frame = (time.perf_counter() - t0) / 500
    print(f"{per_frame * 1e6:.0f} µs per 64-layer frame")
    assert per_frame < 0.005 and submitted(voices) == 500
