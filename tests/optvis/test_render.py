"""``earengine render``: what it says about each loop's notes is what its MIDI files hold, and its
scaleogram pictures are in seconds, notes and dB."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from earengine.ear.scaleogram import Scaleogram, ScaleogramConfig, bin_frequencies_hz
from earengine.midi.file import read_pattern
from earengine.optvis.commands import octave_ticks, scaleogram_db


def test_octave_ticks_sit_on_the_bins_of_the_cs():
    config = ScaleogramConfig()
    bins, names = octave_ticks(config)
    freqs = bin_frequencies_hz(config)
    assert names[0] == "C2" and names[-1] == "C10"  # 40 Hz to about 20 kHz (C10: 16.7 kHz)
    for k, name in zip(bins, names):
        midi = 12 * (int(name[1:]) + 1)
        hz = 440.0 * 2 ** ((midi - 69) / 12)
        assert freqs[int(round(k))] == pytest.approx(hz, rel=0.015)  # within a quarter tone


def test_the_colour_scale_reads_a_half_scale_sine_at_minus_6_db():
    config = ScaleogramConfig(n_bins=96, fmin_hz=110.0, hop_length=512)
    t = torch.arange(config.sr) / config.sr
    spec = Scaleogram(config)((0.5 * torch.sin(2 * torch.pi * 440.0 * t))[None])[0, 0].numpy()
    db = scaleogram_db(spec, config)
    k = int(np.argmax(spec[:, 40]))
    assert bin_frequencies_hz(config)[k] == pytest.approx(440.0, rel=0.02)
    assert np.median(db[k, 10:-10]) == pytest.approx(-6.02, abs=0.5)


def render(tiny_ear_dir, out, *extra):
    done = subprocess.run(
        [sys.executable, "-m", "earengine", "render", "--model", str(tiny_ear_dir), "--bars", "1", "--bpm", "240",
         "--loops", "2", "--steps-per-loop", "1", "--target", "enc.2:0", "--out", str(out), *extra],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("threshold", [0.01, 0.99])
def test_render_says_how_many_notes_each_midi_file_holds(tiny_ear_dir, tmp_path, threshold):
    out = tmp_path / "render"
    printed = render(tiny_ear_dir, out, "--set", f"/grid/threshold={threshold}")
    counts = [len(read_pattern(out / f"loop-{i:03d}.mid", steps_per_bar=16).notes) for i in range(2)]
    assert json.loads((out / "render.json").read_text())["notes"] == counts
    for i, n in enumerate(counts):
        if n:
            assert f"loop {i}: {n} note{'s' if n != 1 else ''} in loop-{i:03d}.mid" in printed
    empty = counts.count(0)
    # the threshold is a share of the loop's strongest note: that one always passes, the others
    # only at a low threshold (the start's shimmering chord is every note of the scale, soft)
    assert empty == 0 and (min(counts) > 8 if threshold == 0.01 else max(counts) <= 8), counts
    summary = printed.strip().splitlines()[-1]
    assert re.search(rf"{2 - empty} MIDI files with notes" + (rf" and {empty} empty ones" if empty else ""), summary)


@pytest.mark.integration
def test_the_readmes_render_example_writes_notes_worth_hearing(tmp_path):
    """The README's command on the shipped ear, two loops instead of eight (the default steps per loop)."""
    out = tmp_path / "render"
    done = subprocess.run(
        [sys.executable, "-m", "earengine", "render", "--bars", "2", "--bpm", "120", "--loops", "2",
         "--target", "enc.5:0-31", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    counts = [len(read_pattern(out / f"loop-{i:03d}.mid", steps_per_bar=16).notes) for i in range(2)]
    assert min(counts) > 0, done.stdout
    record = json.loads((out / "render.json").read_text())
    # every loop written is one the dream kept: the target never falls from one to the next
    # (how far it rises over more steps: tests/optvis/test_dream.py, on every seed of a set)
    assert record["target_scores"][-1] >= record["target_scores"][0]
