"""The remote worker sends only what the engine's streams show: each loop's activations reduced to
``/stream/layers``, ``/stream/reduce`` and ``/stream/fps`` (earengine.worker.wire.pack_acts), which
the engine's side gives back as a set the streams cut the same frames from; and it computes them
for the loops that cross, not at every step."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from earengine.streams.frames import frame_size, reduce_frame, reduce_mask
from earengine.worker.wire import (
    FROM_WORKER,
    MAX_ACT_VALUES,
    TO_WORKER,
    StreamView,
    WireError,
    decode,
    encode,
    floats_to_bytes,
    pack_acts,
)
from tests.helpers.waits import wait_until

_STATS = {"step": 5, "bars": 1, "sr": 16000, "loss": -1.0, "target": 1.0, "steps_per_s": 4.0, "settled": 0.5}


def _acts(seed=0):
    """Taps shaped like the shipped ear's: a scaleogram, encoder taps, an autoregressive one."""
    rng = np.random.default_rng(seed)
    shapes = {"scaleogram": (1, 40, 172), "enc.0": (2, 9, 86), "enc.5": (16, 5, 43), "ar.1": (8, 1, 21)}
    return {tap: rng.normal(size=shape).astype(np.float32) * 3 for tap, shape in shapes.items()}


def _crossed(acts, view, loop_s=4.0):
    """``acts`` through the wire as a loop's activations, as the engine decodes them."""
    frame = encode("loop", seq=1, samples=floats_to_bytes(np.zeros(8, np.float32)), stats=_STATS, notes=None,
                   acts=pack_acts(acts, view, loop_s=loop_s), mask=None)
    return decode(frame, FROM_WORKER)[1]["acts"], len(frame)


def _frames(n, offset=0.37):
    """Phases ``(p0, p1)`` of ``n`` frames per loop, not aligned with the loop's start."""
    return [((offset + k / n) % 1.0, (offset + (k + 1) / n) % 1.0) for k in range(n)]


def test_a_channel_stream_gets_each_taps_channel_means_and_the_same_frames():
    acts, view = _acts(), StreamView(True, ("scaleogram", "enc.0", "enc.5", "ar.1"), "channel", 30.0)
    got, size = _crossed(acts, view)
    _, full_size = _crossed(acts, StreamView(True, view.layers, "raw", 30.0))
    assert size < full_size / 4  # one value per channel and frame, not one per neuron and step
    for tap, a in acts.items():
        back = got[tap]
        # the streams see every tap's shape, and cut frames of its size from it
        assert back.shape[:2] == a.shape[:2] and frame_size(back.shape, "channel") == frame_size(a.shape, "channel")
        steps = a.shape[-1]
        if steps <= 120:  # at most a step per frame (30 fps over 4 s): every step crossed
            assert back.shape == a.shape
            for p0, p1 in _frames(120):
                np.testing.assert_allclose(reduce_frame(back, p0, p1, "channel"), reduce_frame(a, p0, p1, "channel"),
                                           rtol=2e-3, atol=2e-3)
        else:  # more steps than frames: each value the mean of the steps of a frame's time
            assert back.shape[-1] == 120
            per_step = a.mean(axis=1)  # (channels, steps)
            for p0, p1 in _frames(120):
                lo, hi = int(np.floor(p0 * steps)) - 2, int(np.ceil((p0 + 1 / 120) * steps)) + 2
                near = per_step[:, np.arange(lo, hi) % steps]  # the steps around the frame
                value = reduce_frame(back, p0, p1, "channel")
                assert np.all(value >= near.min(axis=1) - 2e-3) and np.all(value <= near.max(axis=1) + 2e-3)


def test_raw_sends_every_neuron_at_every_step_and_channel_freq_every_neuron_at_the_frame_rate():
    acts = _acts(1)
    raw, _ = _crossed(acts, StreamView(True, ("scaleogram", "enc.0"), "raw", 30.0))
    assert set(raw) == {"scaleogram", "enc.0"}
    for tap in raw:
        assert raw[tap].shape == acts[tap].shape
        np.testing.assert_allclose(raw[tap], acts[tap], rtol=1e-3, atol=1e-2)
    per_neuron, _ = _crossed(acts, StreamView(True, ("scaleogram", "enc.0"), "channel_freq", 30.0))
    assert per_neuron["enc.0"].shape == acts["enc.0"].shape  # 86 steps: under 120 frames
    assert per_neuron["scaleogram"].shape == (1, 40, 120)  # 172 steps: one per frame
    np.testing.assert_allclose(reduce_frame(per_neuron["enc.0"], 0.1, 0.11, "channel_freq"),
                               reduce_frame(acts["enc.0"], 0.1, 0.11, "channel_freq"), rtol=2e-3, atol=1e-2)


def test_only_the_streamed_layers_cross_and_a_page_gets_the_scaleogram_whole():
    acts = _acts(2)
    got, _ = _crossed(acts, StreamView(True, ("enc.5",), "channel", 30.0))
    assert set(got) == {"enc.5"}
    got, _ = _crossed(acts, StreamView(True, ("enc.5",), "channel", 30.0, page=True))
    assert set(got) == {"enc.5", "scaleogram"}
    # every frequency row, for the page to draw; the stream still sees its channel means
    assert got["scaleogram"].shape == (1, 40, 172) and got["scaleogram"].strides[1] != 0
    np.testing.assert_allclose(got["scaleogram"], acts["scaleogram"], rtol=1e-3, atol=1e-2)


def test_a_mask_crosses_for_the_streamed_taps_and_reduces_as_before():
    mask = np.zeros((16, 5), bool)
    mask[3, 2] = True
    frame = encode("loop", seq=1, samples=floats_to_bytes(np.zeros(8, np.float32)), stats=_STATS, notes=None,
                   acts=pack_acts(_acts(), StreamView(True, ("enc.5",), "channel", 30.0), loop_s=4.0),
                   mask={"enc.5": [16, 5, mask.astype(np.uint8).tobytes()]})
    got = decode(frame, FROM_WORKER)[1]
    assert reduce_mask(got["mask"]["enc.5"], "channel").tolist() == [float(c == 3) for c in range(16)]


@pytest.mark.parametrize("entry, why", [
    ([2, 3, 2, 4, b"\0" * 32], "type"),  # rows neither 1 nor f
    ([2, 3, 1, 4, b"\0" * 15], "size"),  # bytes that are not c x rows x t float16
    ([2, 3, 1, 4, np.full(8, np.inf, "<f2").tobytes()], "type"),
    ([2, 3, 1, 4], "type"),
    ([0, 3, 1, 4, b""], "type"),
    ([MAX_ACT_VALUES, 1, 1, 2, b"\0" * 8], "size"),
    ([2, 3, 1, 4, "text"], "type"),
])
def test_bad_activations_are_refused_for_size_or_type(entry, why):
    frame = encode("loop", seq=1, samples=floats_to_bytes(np.zeros(8, np.float32)), stats=_STATS, notes=None,
                   acts={"enc.0": entry}, mask=None)
    with pytest.raises(WireError) as caught:
        decode(frame, FROM_WORKER)
    assert caught.value.why == why, str(caught.value)


@pytest.mark.parametrize("fields", [
    {"reduce": "every"}, {"fps": 0.0}, {"fps": 61.0}, {"layers": "enc.0"}, {"page": 1}, {"layers": ["x" * 65]},
])
def test_a_view_out_of_its_rows_is_refused(fields):
    view = {**StreamView(True, ("enc.0",), "channel", 30.0).to_fields(), **fields}
    with pytest.raises(WireError):
        decode(encode("streams", **view), TO_WORKER)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(-2, 1 << 40), st.binary(max_size=64), st.none(), st.text(max_size=3),
                          st.floats()), max_size=6))
def test_any_activation_entry_is_decoded_or_refused_never_a_crash(entry):
    frame = encode("loop", seq=1, samples=floats_to_bytes(np.zeros(8, np.float32)), stats=_STATS, notes=None,
                   acts={"enc.0": entry}, mask=None)
    try:
        got = decode(frame, FROM_WORKER)[1]["acts"]["enc.0"]
    except WireError:
        return
    assert got.ndim == 3 and got.dtype == np.float32 and np.all(np.isfinite(got))


def test_the_engine_refuses_a_loop_whose_neurons_are_not_its_workers_taps():
    from earengine.params import default_registry
    from earengine.worker.remote_supervisor import RemoteSupervisor

    got = []
    sup = RemoteSupervisor(default_registry(), "127.0.0.1", 1, say=lambda line: None,
                           deliver=lambda samples, stats: got.append(stats))
    sup.info, sup._want_acts = {"taps": ["enc.0", "ar.0"], "shapes": {"enc.0": [2, 3, 4], "ar.0": [5, 4]}}, True
    view = StreamView(True, ("enc.0", "ar.0", "enc.9"), "channel", 30.0)
    acts = {"enc.0": np.ones((2, 3, 4), np.float32), "ar.0": np.ones((5, 1, 4), np.float32)}

    def loop(seq, acts, mask=None):
        return encode("loop", seq=seq, samples=floats_to_bytes(np.zeros(8, np.float32)), stats=_STATS, notes=None,
                      acts=pack_acts(acts, view, loop_s=1.0), mask=mask)

    sup._frame(loop(1, acts))
    assert got[-1]["acts"].acts["enc.0"].shape == (2, 3, 4) and got[-1]["acts"].acts["ar.0"].shape == (5, 1, 4)
    for seq, bad in ((2, {"enc.0": np.ones((4, 3, 4), np.float32)}), (3, {"enc.9": np.ones((2, 3, 4), np.float32)})):
        sup._frame(loop(seq, bad))
    sup._frame(loop(4, acts, mask={"enc.0": [2, 2, b"\1" * 4]}))
    assert len(got) == 1 and sup.counts()["worker_frames_refused_size"] == 3


# -- a server and the engine's supervisor, in this process, over loopback ---------------------------
@pytest.mark.integration
@pytest.mark.slow
def test_activations_are_computed_for_the_loops_sent_and_reach_the_engine_as_the_streams_show_them(tiny_ear_dir):
    from earengine.params import default_registry
    from earengine.worker.remote import WorkerServer
    from earengine.worker.remote_supervisor import RemoteSupervisor

    registry = default_registry()
    for address, value in {"/loop/bars": 1, "/clock/bpm": 240.0, "/stream/layers": "enc.1 enc.2",
                           "/stream/reduce": "channel", "/stream/fps": 20.0}.items():
        registry.set(address, value)
    delivered = []
    server = WorkerServer("127.0.0.1", 0, tiny_ear_dir, threads=1, say=lambda line: None)
    server.start()
    serving = threading.Thread(target=server.serve, daemon=True)
    serving.start()
    page = [False]
    sup = RemoteSupervisor(registry, "127.0.0.1", server.address[1], say=lambda line: None, page=lambda: page[0],
                           deliver=lambda samples, stats: delivered.append(stats))
    try:
        sup.start()
        sup.stream_activations(True)
        with_acts = lambda: [s for s in delivered if s.get("acts") is not None]  # noqa: E731
        assert wait_until(lambda: len(with_acts()) >= 3, 60), delivered[-1:]
        got = with_acts()[-1]["acts"]
        shapes = server.outlet.ready.shapes
        assert set(got.acts) == {"enc.1", "enc.2"}
        for tap, a in got.acts.items():
            assert a.shape[:2] == tuple(shapes[tap][:2]) and a.strides[1] == 0  # channel means, shown per row
        # one forward pass for activations per loop sent (and one when streams asked), not per step
        assert server.outlet.acts_computed <= server.counts["loops_sent"] + 1

        page[0] = True  # a page opens: its scaleogram crosses whole
        n = len(delivered)
        assert wait_until(lambda: any(s.get("acts") is not None and "scaleogram" in s["acts"].acts
                                      for s in delivered[n:]), 30)
        sup.stream_activations(False)  # nobody looks any more: loops cross without them
        assert wait_until(lambda: len(delivered) > n + 2 and delivered[-1].get("acts") is None, 30)
    finally:
        sup.close()
        server.close()
