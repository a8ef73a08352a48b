"""The grid in the engine: its notes reach the player with each dreamed loop, /loop/save_midi writes
them, earengine render writes them beside each WAV, and bad input fails while the dream goes on."""

import os
import time

import numpy as np
import pytest

from earengine.midi.file import read_pattern
from earengine.pattern import Note, Pattern

pytestmark = pytest.mark.integration
SR = 44100


def done_or_fail(peer):
    return peer.replies(5.0, until=lambda a, _: a in ("/done", "/fail"))[-1]


def render_until(engine, predicate, seconds=3.0):
    for _ in range(int(seconds / 0.05)):
        engine.audio.render(int(0.05 * SR))
        if predicate():
            return True
        time.sleep(0.005)
    return False


def test_save_midi_writes_the_playing_loops_notes(engine, peer, tmp_path):
    from earengine.synth.player import Loop

    p = Pattern((Note(0, 57, 100, 1), Note(4, 64, 80, 1, 2.0), Note(8, 36, 120, 10)), 16, 1)
    engine.player.queue(Loop(np.zeros(2 * SR, np.float32), SR, 1, "dream", meta={"pattern": p}), keep_phase=True)
    assert render_until(engine, lambda: engine.player.loops_started == 1)
    path = tmp_path / "loop.mid"
    peer.send("/loop/save_midi", str(path))
    assert done_or_fail(peer) == ("/done", ("/loop/save_midi",))
    assert read_pattern(path, steps_per_bar=16) == p
    peer.send("/loop/save_midi", str(tmp_path / "no" / "such" / "loop.mid"))
    address, args = done_or_fail(peer)
    assert address == "/fail" and args[0] == "/loop/save_midi" and "existing folder" in args[1]


def test_save_midi_without_notes_fails_with_a_reason(engine, peer, tmp_path):
    peer.send("/loop/save_midi", str(tmp_path / "x.mid"))
    address, args = done_or_fail(peer)
    assert address == "/fail" and "/opt/param grid" in args[1]
    engine.load_loop(str(_tone(tmp_path / "tone.wav")))
    assert render_until(engine, lambda: engine.player.loops_started == 1)
    peer.send("/loop/save_midi", str(tmp_path / "x.mid"))
    address, args = done_or_fail(peer)
    assert address == "/fail" and "/opt/param grid" in args[1] and not (tmp_path / "x.mid").exists()


def _tone(path):
    import soundfile as sf

    sf.write(str(path), (0.3 * np.sin(np.arange(SR) * 2 * np.pi * 330 / SR)).astype(np.float32), SR)
    return path


@pytest.mark.parametrize("address, value, reason", [
    ("/grid/key", "H", "must be one of"),
    ("/grid/scale", "lydian_augmented", "must be one of"),
])
def test_unknown_key_or_scale_fails(engine, peer, address, value, reason):
    before = engine.registry.get(address)
    address_, args = peer.ask(address, value, reply="/fail")
    assert address_ == "/fail" and args[0] == address and reason in args[1]
    assert engine.registry.get(address) == before


def test_a_division_that_does_not_divide_the_bar_fails(engine, peer):
    peer.send("/clock/beats_per_bar", 3)
    address, args = peer.ask("/grid/division", "1/2", reply="/fail")
    assert address == "/fail" and "must divide the bar" in args[1]
    assert engine.registry.get("/grid/division") == "1/16"
    _, status = peer.ask("/status", reply="/status.reply")
    assert status[5] == 120.0


@pytest.mark.slow
def test_dreamed_grid_loops_bring_their_notes_and_bad_input_leaves_the_dream_going(tiny_ear_dir, tmp_path):
    from earengine.engine import Engine, EngineConfig
    from tests.helpers.osc import Peer

    values = {"/loop/bars": 1, "/clock/bpm": 240.0, "/target/layer": "enc.2", "/target/channel_width": 1.0}
    with Engine(EngineConfig(audio="offline", osc_port=0, ear=tiny_ear_dir, overrides=values, preset_dir=tmp_path),
                out=open(os.devnull, "w")) as engine:
        peer = Peer(engine.osc.address)
        try:
            assert engine.registry.get("/opt/param") == "grid"  # music from the first bars
            assert render_until(engine, lambda: engine.player.current is not None
                                and engine.player.current.meta.get("pattern") is not None, 120)
            pattern = engine.player.current.meta["pattern"]
            assert pattern.steps_per_bar == 16 and pattern.bars == 1
            loops = engine.dream.loops
            for msg in (("/grid/key", "H"), ("/grid/division", "1/3"), ("/loop/save_midi", "/no/such/dir/x.mid")):
                peer.send(*msg)
                got = peer.replies(5.0, until=lambda a, _: a in ("/done", "/fail"))
                assert got and got[-1][0] == "/fail" and got[-1][1][0] == msg[0], (msg, got)
            peer.send("/grid/scale", "major")  # a good change: the next loops are in the new scale
            assert render_until(engine, lambda: engine.dream.loops > loops + 2, 120)
            path = tmp_path / "dream.mid"
            peer.send("/loop/save_midi", str(path))
            assert done_or_fail(peer) == ("/done", ("/loop/save_midi",))
            assert read_pattern(path, steps_per_bar=16).steps == 16
        finally:
            peer.close()


def test_render_writes_a_midi_file_beside_each_wav(tiny_ear_dir, tmp_path):
    from earengine.cli import main

    out = tmp_path / "render"
    rc = main(["render", "--model", str(tiny_ear_dir), "--bars", "1", "--bpm", "240", "--loops", "2",
               "--steps-per-loop", "1", "--target", "enc.2:0", "--out", str(out)])
    assert rc == 0
    for i in range(2):
        assert (out / f"loop-{i:03d}.wav").is_file()
        notes = read_pattern(out / f"loop-{i:03d}.mid", steps_per_bar=16)
        assert notes.bars == 1
    main(["render", "--model", str(tiny_ear_dir), "--bars", "1", "--bpm", "240", "--loops", "1",
          "--steps-per-loop", "1", "--set", "/opt/param=raw", "--out", str(tmp_path / "raw")])
    assert not list((tmp_path / "raw").glob("*.mid"))  # raw dreams have no notes
