"""The offline renderer: tones where the mapping puts them, no clicks, a bounded NaN cue."""

import math

import numpy as np
import pytest

from earengine.sonify.mapping import SEED_PRESET, Settings, map_norms
from earengine.units import db_to_amp
from earengine.sonify.render import Renderer, cue_sound, render_frames
from earengine.sonify.timbre import CUE_NOTE_S, CUE_NOTES_HZ

SR = 44100


def plain(**changes):
    base = dict(scale="off", register_spread=0.0, pan_spread=0.0, loudness="flat")
    return Settings(**{**base, **changes})


def peak_hz(x, sr=SR, pad=8):
    """Frequency of the strongest spectral peak, refined by parabolic interpolation."""
    x = np.asarray(x, dtype=np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size), n=pad * x.size))
    k = int(np.argmax(spec[1:-1])) + 1
    a, b, c = np.log(spec[k - 1 : k + 2] + 1e-30)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * sr / (pad * x.size)


def test_a_steady_norm_sounds_at_its_mapped_frequency():
    s = plain(voicing="simultaneous", rest=0.0, step_ms=50.0)
    norms = [[0.37]] * 40
    audio, targets = render_frames(norms, s, sr=SR)
    f = targets[0].freq_hz[0]
    assert peak_hz(audio[SR // 4 :, 0]) == pytest.approx(f, abs=0.5)


def test_sequential_voicing_plays_each_layer_in_its_window_then_rests():
    s = plain(voicing="sequential", rest=0.2, step_ms=400.0, octaves=4.0)
    norms = [0.01, 0.3, 7.0, 200.0]
    audio, (t,) = render_frames([norms], s, sr=SR)
    mono = audio.sum(axis=1)
    n = mono.size
    for i, (a, b) in enumerate(t.gate):
        lo, hi = int((a + 0.1 * (b - a)) * n), int((b - 0.1 * (b - a)) * n)
        assert peak_hz(mono[lo:hi]) == pytest.approx(t.freq_hz[i], rel=0.01)
    rest = mono[int(0.82 * n) :]
    assert np.sqrt(np.mean(rest**2)) < 1e-6
    assert len(set(np.round(t.freq_hz))) == 4


def worst_excess(audio, targets, settings, sr=SR):
    """Largest ratio, over the steps, of the biggest sample-to-sample jump to the biggest a
    click-free render can make there: every voice of this step and the one before moving at its
    highest frequency, plus its envelope moving along its ramp."""
    ramp = settings.ramp / 1000.0 * sr
    edges = np.round(np.cumsum([0.0] + [t.step_s * sr for t in targets])).astype(int)
    jumps = np.abs(np.diff(audio, axis=0)).max(axis=1)
    worst = 0.0
    for k, t in enumerate(targets):
        prev = targets[max(0, k - 1)]
        amp = np.maximum(t.amp, prev.amp)
        freq = np.maximum(t.freq_hz, prev.freq_hz)
        bound = float(np.sum(amp * (2 * math.pi * freq / sr + 1.0 / ramp)))
        seg = jumps[edges[k] : max(edges[k] + 1, edges[k + 1] - 1)]
        if seg.size:
            worst = max(worst, float(seg.max()) / bound)
    return worst


@pytest.mark.parametrize("changes", [
    dict(voicing="sequential"),
    dict(voicing="simultaneous", rest=0.0),
    dict(voicing="simultaneous", rest=0.3, loudness="change"),
    SEED_PRESET,
])
def test_no_clicks_the_largest_sample_step_stays_within_what_the_tones_themselves_make(changes):
    s = Settings.from_values(changes) if "/son/curve" in changes else Settings(**changes)
    rng = np.random.default_rng(8)
    frames = np.exp(rng.normal(0.0, 1.5, size=(120, 4)))  # norms jumping around by decades
    audio, targets = render_frames(frames, s, sr=SR)
    assert worst_excess(audio, targets, s) <= 1.0


def test_the_click_bound_catches_the_seeds_restarted_tones():
    """Perone's render (tones restarting at phase 0, hard edges) breaks the same bound."""
    s = Settings.from_values(SEED_PRESET)
    rng = np.random.default_rng(8)
    frames = rng.uniform(0.5, 3.0, size=(120, 4))
    _, targets = render_frames(frames, s, sr=SR)
    tone = np.arange(int(SR * 0.01)) / SR
    theirs = []
    for t in targets:
        for f in t.freq_hz:
            theirs.append(0.1 * np.sin(2 * np.pi * f * tone))
        theirs.append(np.zeros(2 * tone.size))
    theirs = np.concatenate(theirs)
    assert worst_excess(np.stack([theirs, theirs], axis=1), targets, s) > 2.0


def test_nan_frames_sound_the_cue_and_never_nan_audio():
    s = plain(voicing="sequential", step_ms=300.0, gain=-12.0)
    frames = [[1.0, 2.0]] * 3 + [[float("nan"), float("inf")]] + [[1.0, 2.0]] * 3
    audio, targets = render_frames(frames, s, sr=SR)
    assert np.all(np.isfinite(audio))
    assert targets[3].nan == (0, 1)
    assert np.abs(audio).max() <= 2 * db_to_amp(-12.0)
    start = int(3 * 0.3 * SR)
    first_note = audio[start + 200 : start + int(CUE_NOTE_S * SR) - 200].sum(axis=1)
    assert peak_hz(first_note) == pytest.approx(CUE_NOTES_HZ[0], rel=0.01)
    before = audio[int(2 * 0.3 * SR) : start].sum(axis=1)
    assert abs(peak_hz(before[: int(0.1 * SR)]) - CUE_NOTES_HZ[0]) > 50  # the cue is not there before
    # a run of NaN steps is an alarm that repeats, not a click per step
    many = render_frames([[float("nan")]] * 40, plain(step_ms=50.0), sr=SR)[0]
    assert np.all(np.isfinite(many)) and np.abs(many).max() > 0.01


def test_cue_is_bounded_and_distinct_from_a_layer_tone():
    x = cue_sound(sr=SR, amp=0.5)
    assert np.abs(x).max() <= 0.5 and np.all(np.isfinite(x))
    spectrum = np.abs(np.fft.rfft(x[: int(CUE_NOTE_S * SR)]))
    f = np.fft.rfftfreq(int(CUE_NOTE_S * SR), 1 / SR)
    third = spectrum[np.argmin(np.abs(f - 3 * CUE_NOTES_HZ[0]))]
    assert third > 0.1 * spectrum.max()  # odd harmonics: a buzz, unlike the sine layers


def test_step_clock_keeps_fractional_samples_and_does_not_drift():
    s = plain(step_ms=33.3)
    audio, _ = render_frames([[1.0]] * 300, s, sr=SR)
    assert abs(audio.shape[0] - 300 * 0.0333 * SR) <= 1


def test_stereo_position_follows_the_layer():
    s = Settings(scale="off", pan_spread=1.0, voicing="sequential", rest=0.0, step_ms=200.0)
    audio, (t,) = render_frames([[1.0, 1.0]], s, sr=SR)
    half = audio.shape[0] // 2
    first, second = audio[500 : half - 500], audio[half + 500 : -500]
    assert np.sum(first[:, 0] ** 2) > 1e4 * np.sum(first[:, 1] ** 2)
    assert np.sum(second[:, 1] ** 2) > 1e4 * np.sum(second[:, 0] ** 2)


@pytest.mark.parametrize("wave", ["sine", "triangle", "square", "saw", "organ"])
def test_a_chord_of_many_layers_never_exceeds_the_gain(wave):
    s = Settings(voicing="simultaneous", rest=0.0, wave=wave, gain=-6.0, step_ms=20.0)
    rng = np.random.default_rng(2)
    audio, _ = render_frames(np.exp(rng.normal(0, 3, size=(50, 30))), s, sr=SR)
    assert np.abs(audio).max() <= db_to_amp(-6.0) + 1e-6


def test_renderer_streams_the_same_as_a_whole_render():
    s = Settings()
    frames = np.exp(np.random.default_rng(4).normal(0, 1, size=(20, 3)))
    whole, _ = render_frames(frames, s, sr=8000)
    r = Renderer(s, sr=8000)
    for f in frames:
        r.add(map_norms(f, s))
    assert np.array_equal(r.audio(), whole)
