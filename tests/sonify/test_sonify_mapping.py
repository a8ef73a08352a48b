"""The mapping instrument: norms to pitch, loudness, stereo and time, as a pure function."""

import math

import numpy as np
import pytest

from earengine.errors import ParameterError
from earengine.sonify.mapping import SEED_PRESET, Mapper, RunningWindow, Settings, map_norms, seed_frequency
from earengine.music import NOTE_NAMES, SCALES
from earengine.sonify.params import AUDIBLE_HZ, SON_PARAMS

SEED = Settings.from_values(SEED_PRESET)


def plain(**changes):
    """Continuous pitch, no register or stereo spread, flat loudness: one stage at a time."""
    base = dict(scale="off", register_spread=0.0, pan_spread=0.0, loudness="flat")
    return Settings(**{**base, **changes})


def test_seed_preset_reproduces_perones_frequencies():
    rng = np.random.default_rng(5)
    norms = np.concatenate([rng.uniform(0, 2, 50), rng.uniform(2, 150, 50), [0.0, 1.0]])
    got = np.array(map_norms(norms, SEED).freq_hz)
    # his code, verbatim in numbers: f = 200.0; tone = f + norm * 100.0, as float32
    theirs = (200.0 + norms.astype(np.float32) * 100.0).astype(np.float32)
    assert np.allclose(got, theirs, rtol=1e-6, atol=0)
    assert got[-2:].tolist() == [200.0, 300.0]
    assert seed_frequency(2.5) == 450.0


def test_seed_preset_timing_is_ten_ms_per_layer_then_a_twenty_ms_rest():
    t = map_norms([1.0] * 4, SEED)
    assert t.step_s == pytest.approx(0.060)
    windows_ms = np.array(t.gate) * 60.0
    assert windows_ms == pytest.approx(np.array([(0, 10), (10, 20), (20, 30), (30, 40)]))  # 40-60 ms silent
    assert t.amp == pytest.approx((0.1,) * 4)  # the seed's 0.1 amplitude


def _random_settings(rng):
    values = {}
    for spec in SON_PARAMS:
        if spec.type == "enum":
            values[spec.address] = spec.choices[rng.integers(len(spec.choices))]
        elif spec.type == "bool":
            values[spec.address] = bool(rng.integers(2))
        else:
            values[spec.address] = spec.from_unit(rng.uniform())
    return Settings.from_values(values)


def test_every_frequency_stays_audible_and_every_number_finite_whatever_the_norm():
    rng = np.random.default_rng(11)
    wild = [0.0, 1e-300, 1e-12, 1.0, 1e6, 1e30, 1e300, float("inf"), float("nan"), 3.4e38]
    for _ in range(300):
        s = _random_settings(rng)
        norms = rng.choice(wild, size=rng.integers(1, 40))
        t = map_norms(norms, s, previous=rng.choice(wild, size=norms.size))
        f = np.array(t.freq_hz)
        assert np.all(np.isfinite(f)) and f.min() >= AUDIBLE_HZ[0] and f.max() <= AUDIBLE_HZ[1]
        lo, hi = s.limits_hz()
        assert f.min() >= lo - 1e-9 and f.max() <= hi + 1e-9
        for seq in (t.amp, t.pan, t.position):
            assert np.all(np.isfinite(seq))
        assert all(0.0 <= p <= 1.0 for p in t.pan)


def test_nan_and_inf_layers_are_silent_and_listed_the_others_untouched():
    clean = map_norms([0.5, 2.0, 3.0], Settings())
    t = map_norms([0.5, float("nan"), float("inf")], Settings())
    assert t.nan == (1, 2)
    assert t.amp[1] == 0.0 and t.amp[2] == 0.0
    assert t.freq_hz[0] == clean.freq_hz[0] and t.amp[0] == clean.amp[0]


def test_log_curve_gives_every_decade_the_same_interval():
    s = plain(curve="log", base=100.0, octaves=4.0, norm_min=1e-2, norm_max=1e2)
    f = np.array(map_norms([1e-2, 1e-1, 1.0, 10.0, 100.0], s).freq_hz)
    assert np.log2(f[1:] / f[:-1]) == pytest.approx([1.0] * 4)
    assert f[0] == pytest.approx(100.0) and f[-1] == pytest.approx(1600.0)
    # beyond the range the pitch stays at the edges
    assert map_norms([1e9], s).freq_hz[0] == pytest.approx(1600.0)


def test_linear_curve_is_linear_in_hz():
    s = plain(curve="linear", base=200.0, octaves=2.0, norm_min=0.0 + 1e-12, norm_max=10.0)
    f = np.array(map_norms([1e-12, 2.5, 5.0, 10.0], s).freq_hz)
    assert np.diff(f) == pytest.approx([150.0, 150.0, 300.0])
    assert f[-1] == pytest.approx(800.0)


@pytest.mark.parametrize("scale", ["major", "minor", "pentatonic", "blues", "whole_tone"])
@pytest.mark.parametrize("root", ["C", "F#", "A"])
def test_pitches_snap_to_the_scale_and_to_the_nearest_note(scale, root):
    s = plain(scale=scale, root=root, octaves=3.0)
    norms = np.geomspace(1e-3, 1e3, 200)
    f = np.array(map_norms(norms, s).freq_hz)
    midi = 69 + 12 * np.log2(f / 440.0)
    assert np.allclose(midi, np.round(midi), atol=1e-9)
    classes = {(c + NOTE_NAMES.index(root)) % 12 for c in SCALES[scale]}
    assert {int(round(m)) % 12 for m in midi} <= classes
    raw = 69 + 12 * np.log2(np.array(map_norms(norms, plain(octaves=3.0)).freq_hz) / 440.0)
    gaps = np.diff(sorted(classes | {min(classes) + 12}))
    assert np.abs(midi - raw).max() <= gaps.max() / 2 + 1e-9  # never further than half the widest gap


def test_each_layer_gets_its_register_and_stereo_position():
    s = Settings(scale="off", register_spread=2.0, pan_spread=1.0, loudness="flat")
    t = map_norms([1.0] * 5, s)
    ratios = np.log2(np.array(t.freq_hz) / t.freq_hz[0])
    assert ratios == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])
    assert t.pan == pytest.approx((0.0, 0.25, 0.5, 0.75, 1.0))
    assert map_norms([1.0], s).pan == (0.5,)


def test_voicing_sets_the_windows_and_keeps_a_run_under_its_gain():
    seq = map_norms([1.0, 2.0, 3.0], Settings(voicing="sequential", rest=0.25, loudness="flat", gain=-6.0))
    assert np.array(seq.gate) == pytest.approx(np.array([(0.0, 0.25), (0.25, 0.5), (0.5, 0.75)]))
    assert max(seq.amp) == pytest.approx(10 ** (-6 / 20))
    chord = map_norms([1.0, 2.0, 3.0, 4.0], Settings(voicing="simultaneous", rest=0.1, gain=-6.0))
    assert np.array(chord.gate) == pytest.approx(np.array([(0.0, 0.9)] * 4))
    assert sum(chord.amp) <= 10 ** (-6 / 20) + 1e-12


def test_loudness_follows_the_norm_or_its_change():
    s = plain(loudness="norm", norm_min=1e-3, norm_max=1e3)
    quiet, middle, loud = map_norms([1e-3, 1.0, 1e3], s).amp
    assert quiet < middle < loud and loud == pytest.approx(quiet / 0.3)
    c = plain(loudness="change")
    same = map_norms([1.0], c, previous=[1.0]).amp[0]
    doubled = map_norms([2.0], c, previous=[1.0]).amp[0]
    halved = map_norms([0.5], c, previous=[1.0]).amp[0]
    assert doubled == pytest.approx(halved) and doubled > 3 * same


def test_step_length_in_ms_or_as_a_note_value_at_the_tempo():
    assert Settings(step_ms=125.0).step_s() == pytest.approx(0.125)
    assert Settings(division="1/16").step_s(bpm=120.0) == pytest.approx(0.125)
    assert Settings(division="1/4").step_s(bpm=90.0) == pytest.approx(60 / 90)
    assert map_norms([1.0], Settings(division="1/8"), bpm=150.0).step_s == pytest.approx(0.2)


def test_running_window_spreads_each_layers_own_range_over_the_pitch_range():
    s = plain(window=50, base=110.0, octaves=2.0)
    mapper = Mapper(s)
    rng = np.random.default_rng(3)
    for _ in range(60):  # layer 0 lives around 1e-3, layer 1 around 1e3
        t = mapper(np.array([1e-3, 1e3]) * rng.uniform(0.5, 2.0, 2))
    low = mapper([1e-3 * 0.5, 1e3 * 0.5])
    high = mapper([1e-3 * 2.0, 1e3 * 2.0])
    # both layers use (nearly) the whole range, whatever their absolute size
    assert min(low.freq_hz) < 110.0 * 2 ** 0.3 and max(high.freq_hz) > 110.0 * 2 ** 1.7
    assert t.nan == ()


def test_running_window_forgets_what_is_older_than_the_window():
    w = RunningWindow(1, steps=10)
    w.push([100.0])
    for _ in range(20):
        w.push([1.0])
    lo, hi = w.bounds()
    assert float(lo[0]) == 1.0 and float(hi[0]) == 1.0


def test_settings_are_the_registry_rows():
    from dataclasses import fields

    assert {f"/son/{f.name}" for f in fields(Settings)} == {spec.address for spec in SON_PARAMS}
    assert Settings().to_values() == {spec.address: spec.default for spec in SON_PARAMS}
    s = Settings(curve="linear", window=20)
    assert Settings.from_dict(s.to_dict()) == s
    with pytest.raises(ParameterError, match="/son/octaves"):
        Settings(octaves=100.0)
    with pytest.raises(ParameterError, match="not a sonification parameter"):
        Settings.from_values({"/son/nope": 1})


def test_settings_follow_the_registry():
    from earengine.params import default_registry

    reg = default_registry()
    reg.set("/son/scale", "major")
    reg.set("/son/base", 330.0)
    s = Settings.from_registry(reg)
    assert (s.scale, s.base) == ("major", 330.0)
    assert math.isclose(s.step_s(), reg.get("/son/step_ms") / 1000.0)
