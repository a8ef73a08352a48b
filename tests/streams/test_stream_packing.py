"""Frames and datagrams: which step sounds, the reductions, and arrays cut under the size limit."""

import numpy as np
import pytest

from earengine.osc.wire import decode_packet, encode_array
from earengine.streams.destinations import parse_dest
from earengine.streams.hub import parse_layers
from earengine.streams.packing import BundlePacker
from earengine.streams.position import Position
from earengine.errors import ParameterError
from earengine.optvis.params import TAPS
from earengine.streams.frames import frame_steps, reduce_frame, reduce_mask


def test_frame_steps_cover_the_frame_and_wrap():
    # a step lasts 1/8 of the loop; frames shorter than a step hold exactly the step at p0
    assert frame_steps(0.30, 0.31, 8).tolist() == [2]
    assert frame_steps(0.24, 0.26, 8).tolist() == [1, 2]
    assert frame_steps(0.95, 0.05, 8).tolist() == [7, 0]
    assert frame_steps(0.0, 0.0, 8).tolist() == [0]
    # over a whole loop of frames, every step is visited and none is skipped
    edges = np.linspace(0, 1, 31)
    seen = np.concatenate([frame_steps(a, b, 12) for a, b in zip(edges[:-1], edges[1:])])
    assert set(seen.tolist()) == set(range(12))


def test_reductions_are_the_activation_and_its_means():
    rng = np.random.default_rng(0)
    acts = rng.standard_normal((3, 5, 10)).astype(np.float32)
    # raw: the column of the step sounding at p0, channel-major
    assert np.array_equal(reduce_frame(acts, 0.42, 0.43, "raw"), acts[:, :, 4].reshape(-1))
    # channel_freq and channel: means over the steps the frame spans (here steps 4 and 5)
    window = acts[:, :, [4, 5]].mean(-1)
    assert np.allclose(reduce_frame(acts, 0.45, 0.55, "channel_freq"), window.reshape(-1))
    assert np.allclose(reduce_frame(acts, 0.45, 0.55, "channel"), window.mean(1))
    # an autoregressive tap (channels, time) has one row
    ar = rng.standard_normal((4, 6)).astype(np.float32)
    assert np.array_equal(reduce_frame(ar, 0.5, 0.51, "raw"), ar[:, 3])
    mask = np.zeros((3, 5), bool)
    mask[1, 2] = True
    assert reduce_mask(mask, "raw").tolist() == mask.reshape(-1).astype(float).tolist()
    assert reduce_mask(mask, "channel").tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(ParameterError):
        reduce_frame(acts, 0.1, 0.2, "median")


@pytest.mark.parametrize("max_bytes", [128, 200, 1400, 9000])
def test_arrays_are_cut_under_the_limit_and_reassemble_exactly(max_bytes):
    rng = np.random.default_rng(max_bytes)
    arrays = {"scaleogram": rng.standard_normal(216), "enc.3": rng.standard_normal(944), "ar.8": rng.standard_normal(3)}
    packer = BundlePacker(max_bytes, 1000.5)
    packer.add(encode_array("/stream/phase", (7,), 0, np.array([0.25])))
    for tap, values in arrays.items():
        packer.add_array(f"/stream/act/{tap}", 7, values)
    bundles = packer.finish()
    assert all(len(b) <= max_bytes for b in bundles)
    got = {tap: {} for tap in arrays}
    for b in bundles:
        for when, address, args in decode_packet(b):
            assert abs(when - 1000.5) < 1e-6  # every bundle carries the frame's time
            if address.startswith("/stream/act/"):
                frame, start, count, *values = args
                assert frame == 7 and count == len(values)
                got[address.split("/")[-1]][start] = values
    for tap, values in arrays.items():
        joined = np.array([v for s in sorted(got[tap]) for v in got[tap][s]], np.float32)
        assert np.array_equal(joined, values.astype(np.float32))
    # tight packing: at most one datagram more than the bytes strictly need
    need = sum(len(b) - 16 for b in bundles)
    assert len(bundles) <= need // (max_bytes - 16) + 2


def test_array_chunks_are_the_bytes_receivers_read():
    # the streams and the sonifier share one chunk encoder; these bytes are what patches parse
    from earengine.sonify.sinks import encode_frame

    assert encode_array("/a", (3,), 10, np.array([0.5, 2.0])) == (
        b"/a\x00\x00,iiiff\x00\x00" + bytes.fromhex("00000003 0000000a 00000002 3f000000 40000000"))
    part = encode_frame("r", 9, [1.0] * 300, max_datagram=200)[1]
    assert part[:52] == b"/son/part\x00\x00\x00,siii" + b"f" * 32 + b"\x00\x00\x00"
    assert part[52:72] == b"r\x00\x00\x00" + bytes.fromhex("00000009 00000020 00000020 3f800000")


def test_a_limit_too_small_for_one_message_is_refused():
    packer = BundlePacker(60, None)
    with pytest.raises(ParameterError):
        packer.add_array("/stream/act/scaleogram", 0, np.zeros(10))


def test_positions_extrapolate_along_the_loop_and_round_trip():
    pos = Position(time_s=100.0, phase=0.9, duration_s=2.0, key=3)
    assert pos.at(100.0) == pytest.approx(0.9)
    assert pos.at(100.5) == pytest.approx(0.15)  # wrapped past the loop end
    assert Position.from_dict(pos.to_dict()) == pos


def test_destinations_and_layers_are_checked():
    assert parse_dest(" localhost:9001 ") == ("localhost", 9001)
    for bad in ("localhost", "host:0", "host:70000", ":9000", "a b:9", "127.0.0.1:x"):
        with pytest.raises(ParameterError):
            parse_dest(bad)
    assert parse_layers("all", TAPS) == TAPS
    assert parse_layers("ar.8 scaleogram", TAPS) == ("scaleogram", "ar.8")
    with pytest.raises(ParameterError, match="enc.42"):
        parse_layers("enc.42", TAPS)


@pytest.mark.parametrize("name", ["earengine.streams.hub", "earengine.streams.packing", "earengine.streams.destinations",
                                  "earengine.streams.frames", "earengine.viz.layout"])
def test_docstring_examples(name):
    import doctest
    import importlib

    assert doctest.testmod(importlib.import_module(name)).failed == 0


def test_the_engine_process_side_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, earengine.streams.hub, earengine.streams.websocket, earengine.control.oscquery, "
            "earengine.streams.activations, earengine.viz.frames, earengine.viz.layout; print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == ["False"]
