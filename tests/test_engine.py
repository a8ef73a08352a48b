"""The whole engine process in offline audio mode, driven over real UDP like a host would."""

import dataclasses
import re

import numpy as np
import pytest
import soundfile as sf

from earengine.engine import EngineConfig
from earengine.errors import ParameterError
from earengine.params import default_registry

pytestmark = pytest.mark.integration
SR = 44100


def tone_file(path, seconds=2.0, f=440.0, sr=SR, subtype=None):
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), (0.4 * np.sin(2 * np.pi * f * t)).astype(np.float32), sr, subtype=subtype)
    return path


def render_until(engine, predicate, seconds=3.0):
    """Render audio 50 ms at a time until ``predicate()``, at most ``seconds`` of it. Offline, the
    clock and the loop player move with the audio rendered, not with the wall clock."""
    for _ in range(int(seconds / 0.05)):
        engine.audio.render(int(0.05 * SR))
        if predicate():
            return True
    return False


def test_load_play_save_round_trip(engine, peer, tmp_path):
    src = tone_file(tmp_path / "tone.flac", seconds=1.8, sr=48000)  # FLAC at another rate, 0.9 bar
    peer.send("/loop/load", str(src))
    assert peer.replies(30.0, until=lambda a, _: a in ("/done", "/fail"))[-1] == ("/done", ("/loop/load",))
    assert render_until(engine, lambda: engine.player.loops_started == 1)
    assert engine.player.current.bars == 1
    out = tmp_path / "saved.wav"
    peer.send("/loop/save", str(out))
    assert peer.replies(30.0, until=lambda a, _: a in ("/done", "/fail"))[-1] == ("/done", ("/loop/save",))
    saved, sr = sf.read(str(out))
    assert sr == SR and saved.size == 2 * SR  # one bar at 120 BPM: resampled to fit
    spectrum = np.abs(np.fft.rfft(saved))
    assert np.fft.rfftfreq(saved.size, 1 / SR)[np.argmax(spectrum)] == pytest.approx(440 * 1.8 / 2.0, abs=1.0)
    address, args = peer.ask("/status", reply="/status.reply")
    assert args[4] == 1 and args[5] == 120.0


def test_status_gives_the_bar_and_the_beat_within_it(engine, peer):
    engine.audio.render(int(5.5 * 0.5 * SR))  # 5.5 beats at 120 BPM in 4/4: bar 2, halfway through beat 2
    _, args = peer.ask("/status", reply="/status.reply")
    assert len(args) == 10 and args[6] == 2 and args[7] == pytest.approx(2.5, abs=0.05)
    assert args[8] == 0  # xruns, last as before


@pytest.mark.parametrize("make, reason", [
    (lambda d: d / "missing.wav", "not a file"),
    (lambda d: (d / "notes.wav").write_text("not audio") and d / "notes.wav", "not a readable audio file"),
    (lambda d: d, "not a file"),
])
def test_bad_loop_files_fail_and_the_loop_keeps_playing(engine, peer, tmp_path, make, reason):
    good = tone_file(tmp_path / "good.wav")
    engine.load_loop(str(good))
    assert render_until(engine, lambda: engine.player.loops_started == 1)
    peer.send("/loop/load", str(make(tmp_path)))
    address, args = peer.replies(30.0, until=lambda a, _: a in ("/done", "/fail"))[-1]
    assert address == "/fail" and args[0] == "/loop/load" and reason in args[1]
    render_until(engine, lambda: False, 0.5)
    assert engine.player.current.source == str(good) and not engine.player.pending


def test_save_without_loop_and_to_bad_places(engine, peer, tmp_path):
    peer.send("/loop/save", str(tmp_path / "x.wav"))
    address, args = peer.replies(30.0, until=lambda a, _: a in ("/done", "/fail"))[-1]
    assert address == "/fail" and "no loop is playing" in args[1]
    engine.load_loop(str(tone_file(tmp_path / "good.wav")))
    render_until(engine, lambda: engine.player.loops_started == 1)
    for bad in (str(tmp_path / "nowhere" / "x.wav"), str(tmp_path / "x.mp3")):
        peer.send("/loop/save", bad)
        address, args = peer.replies(30.0, until=lambda a, _: a in ("/done", "/fail"))[-1]
        assert address == "/fail", bad


def test_presets_over_osc(engine, peer):
    peer.send("/clock/bpm", 97.0)
    peer.send("/preset/save", "mine")
    assert peer.replies(30.0, until=lambda a, _: a == "/done")[-1] == ("/done", ("/preset/save",))
    peer.send("/clock/bpm", 140.0)
    peer.send("/preset/load", "mine")
    assert peer.replies(30.0, until=lambda a, _: a == "/done")[-1] == ("/done", ("/preset/load",))
    assert engine.registry.get("/clock/bpm") == 97.0
    address, names = peer.ask("/preset/list", reply="/preset/list.reply")
    assert "mine" in names and "default" in names  # user and shipped presets
    for bad in ("../mine", "a/b", "..", "x.json"):
        peer.send("/preset/load", bad)
        address, args = peer.replies(30.0, until=lambda a, _: a in ("/fail", "/done"))[-1]
        assert address == "/fail" and "preset name" in args[1]
    peer.send("/preset/load", "does-not-exist")
    assert "no preset named" in peer.replies(30.0, until=lambda a, _: a == "/fail")[-1][1][1]


def test_an_engine_without_a_dream_refuses_its_commands_and_targets_still_edit_the_spec(engine, peer, tmp_path):
    refused = (("/opt/reset", ("noise",)), ("/reg/reference", ()), ("/loop/save_midi", (str(tmp_path / "x.mid"),)))
    for address, args in refused:
        peer.send(address, *args)
        reply, why = peer.replies(30.0, until=lambda a, _: a in ("/fail", "/done"))[-1]
        assert reply == "/fail" and why[0] == address
        assert ("needs a dreaming engine (earengine run --ear PATH)" if address != "/loop/save_midi"
                else "needs a dreamed loop with notes") in why[1]
    peer.send("/target/set", "enc.5:12")
    peer.send("/target/add", "ar.3", 0.5)
    peer.ask("/status", reply="/status.reply")  # handled in order: the targets are in by now
    assert engine.registry.get("/target/spec") == "enc.5:12*1 + ar.3*0.5"
    peer.send("/target/clear")
    peer.ask("/status", reply="/status.reply")
    assert engine.registry.get("/target/spec") == ""


def test_every_declared_command_has_a_handler(engine):
    """A command declared in the registry but handled nowhere would answer /fail at run time."""
    missing = [address for address in default_registry().commands if address not in engine.router.handlers]
    assert not missing, f"declared commands with no handler in a started engine: {', '.join(missing)}"


def test_config_is_frozen_and_validated_once(tmp_path):
    config = EngineConfig(audio="offline", osc_port=0, allow=["127.0.0.1"], preset_dir=str(tmp_path),
                          overrides={"/clock/bpm": 97.0}, ear="")
    assert config.allow == ("127.0.0.1",) and config.preset_dir == tmp_path and config.ear is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.osc_port = 1
    with pytest.raises(TypeError):
        config.overrides["/clock/bpm"] = 1.0
    assert dataclasses.replace(config, osc_port=9000).osc_port == 9000
    for bad, reason in [({"audio": "loud"}, "audio='loud' (--audio) must be one of"),
                        ({"osc_port": 70000}, "osc_port=70000 (--osc-port) must be within [0, 65535]"),
                        ({"reply_port": 0}, "reply_port=0 (--reply-port) must be within [1, 65535]"),
                        ({"device": "tpu"}, "device='tpu' (--device) must be one of cpu, cuda"),
                        ({"midi_backend": "coreaudio"}, "midi_backend='coreaudio'"),
                        ({"max_datagram": 0}, "max_datagram=0 must be within"),
                        ({"midi_in": "BCF2000"}, "midi_in='BCF2000' must be a sequence")]:
        with pytest.raises(ParameterError, match=re.escape(reason)):
            EngineConfig(**bad)
