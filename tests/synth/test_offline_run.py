"""``earengine run --audio offline --record``: the recording starts with the first loop there is to
hear, and a run with nothing to hear says so."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

pytestmark = pytest.mark.integration


def run_offline(tmp_path, *extra):
    rec = tmp_path / "rec.wav"
    done = subprocess.run(
        [sys.executable, "-m", "earengine", "run", "--audio", "offline", "--osc-port", "0", "--no-oscquery",
         "--duration", "2", "--record", str(rec), "--set", "/clock/bpm=240", *extra],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    x, sr = sf.read(str(rec))
    return done.stdout, x, sr


def test_an_offline_recording_of_a_dream_waits_for_its_first_loop(tmp_path, tiny_ear_dir):
    out, x, sr = run_offline(tmp_path, "--ear", str(tiny_ear_dir), "--set", "/loop/bars=1")
    assert "offline: waiting for the dream's first loop" in out
    assert x.shape[0] >= 1.9 * sr
    rms_db = 20 * np.log10(np.sqrt(np.mean(np.square(x))) + 1e-12)
    assert rms_db > -60.0, f"the recording is silent: {rms_db:.1f} dBFS"


def test_an_offline_run_with_nothing_to_play_says_so(tmp_path):
    out, x, _ = run_offline(tmp_path, "--no-dream")
    assert "offline: nothing to play (no --loop and no dream): the recording is silent" in out
    assert np.abs(x).max() == 0.0
