"""Engine + worker process: loops dreamed by a real ear reach the player; a killed worker comes back."""

import os
import signal
import time

import numpy as np
import pytest

from earengine.engine import Engine, EngineConfig
from tests.helpers.osc import Peer

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SR = 44100


def wait(predicate, seconds, engine=None):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if engine is not None:
            engine.audio.render(int(0.05 * SR))
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_dreamed_loops_play_and_survive_sigkill(tiny_ear_dir, tmp_path):
    values = {"/loop/bars": 1, "/clock/bpm": 240.0, "/target/layer": "enc.2", "/target/channel_width": 1.0,
              "/opt/lr": 0.01, "/opt/param": "raw"}  # raw: a waveform, which a reference clip can pull
    with Engine(EngineConfig(audio="offline", osc_port=0, ear=tiny_ear_dir, overrides=values, preset_dir=tmp_path),
                out=open(os.devnull, "w")) as engine:
        peer = Peer(engine.osc.address)
        try:
            assert wait(lambda: engine.dream.loops >= 2 and engine.player.loops_started >= 1, 120, engine)
            assert engine.player.current.source == "dream"
            heard = engine.player.heard()
            assert np.all(np.isfinite(heard)) and np.abs(heard).max() <= 1.0
            # parameters reach the worker and bad targets are refused at the boundary
            address, args = peer.ask("/target/set", "enc.9:3", reply="/fail")
            assert address == "/fail" and "enc.9" in args[1] and "scaleogram" in args[1]
            peer.send("/target/set", "enc.2:0-1")
            assert wait(lambda: engine.registry.get("/target/spec") == "enc.2:0-1*1", 5)
            _, status = peer.ask("/status", reply="/status.reply")
            assert status[0] in ("dreaming", "starting") and status[1] >= 1
            # reset and reference: good files are taken, bad ones fail cleanly and change nothing
            src = tmp_path / "ref.wav"
            import soundfile as sf

            sf.write(str(src), (0.3 * np.sin(np.arange(44100) * 2 * np.pi * 330 / SR)).astype(np.float32), SR)
            for msg, want in ((("/opt/reset", "file", str(src)), "/done"), (("/opt/reset", "noise"), "/done"),
                              (("/reg/reference", str(src)), "/done"), (("/reg/reference", str(tmp_path / "no.wav")), "/fail"),
                              (("/opt/reset", "file"), "/fail"), (("/opt/reset", "sideways"), "/fail")):
                peer.send(*msg)
                got = peer.replies(5.0, until=lambda a, _: a in ("/done", "/fail"))
                assert got and got[-1][0] == want and got[-1][1][0] == msg[0], (msg, got)
            # a tempo change: the playing loop is heard at the new tempo at once, and the next dream
            # is made at the new length (one bar at 300 BPM: 0.8 s)
            peer.send("/clock/bpm", 300.0)
            assert wait(lambda: engine.player.heard().size == int(0.8 * SR), 5, engine)
            assert wait(lambda: engine.player.current.samples.size == int(0.8 * SR)
                        and engine.player.current.source == "dream", 60, engine)
            # kill the worker: the loop keeps playing, the worker comes back with the same parameters
            old_pid = engine.dream.pid
            os.kill(old_pid, signal.SIGKILL)
            assert wait(lambda: engine.dream.restarts == 1, 10, engine)
            assert engine.player.current is not None  # still sounding
            steps_before = engine.dream.loops
            assert wait(lambda: engine.dream.loops > steps_before + 1, 120, engine)
            assert engine.dream.pid != old_pid and engine.registry.get("/target/spec") == "enc.2:0-1*1"
        finally:
            peer.close()


def test_render_writes_loops_pngs_and_settings(tiny_ear_dir, tmp_path, capsys):
    import json

    from earengine.cli import main

    out = tmp_path / "render"
    assert main(["render", "--model", str(tiny_ear_dir), "--bars", "1", "--bpm", "400", "--loops", "3",
                 "--steps-per-loop", "2", "--target", "enc.2", "--start", "noise", "--out", str(out),
                 "--set", "/opt/param=raw"]) == 0  # (grid renders and their MIDI files: tests/optvis/test_grid_engine.py)
    printed = capsys.readouterr().out
    assert "target activation: first loop" in printed
    names = sorted(p.name for p in out.iterdir())
    assert names == ["loop-000.png", "loop-000.wav", "loop-001.png", "loop-001.wav", "loop-002.png",
                     "loop-002.wav", "render.json"]
    record = json.loads((out / "render.json").read_text())
    assert record["settings"]["/target/spec"] == "enc.2*1" or record["settings"]["/target/spec"] == "enc.2"
    assert len(record["target_scores"]) == 3 and record["model_hash"]
    # every loop written is one the dream kept (taken back steps never reach a file): no loop
    # scores below the one before it, and over the six steps the first, from noise, rises
    assert all(b >= a for a, b in zip(record["target_scores"], record["target_scores"][1:]))


def test_mix_and_grid_refuse_each_other_over_osc(engine, peer):
    from earengine.optvis.params import MIX_ON_GRID

    assert engine.registry.get("/opt/param") == "grid"
    address, args = peer.ask("/reg/mix", 0.5, reply="/fail")
    assert args[0] == "/reg/mix" and MIX_ON_GRID in args[1]
    assert engine.registry.get("/reg/mix") == 0.0
    peer.send("/opt/param", "raw")
    peer.send("/reg/mix", 0.5)
    assert peer.ask("/sync", 2, reply="/synced") == ("/synced", (2,))
    assert engine.registry.get("/reg/mix") == 0.5
    address, args = peer.ask("/opt/param", "grid", reply="/fail")
    assert args[0] == "/opt/param" and "set /reg/mix 0 first" in args[1]
    assert engine.registry.get("/opt/param") == "raw"
