"""The synthetic corpus: bit-identical for a seed, tracks that differ in what they play, sane clips."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from earengine.corpus.clips import n_samples
from earengine.corpus.synthetic import SyntheticCorpus
from earengine.corpus.track_plan import MODES, TrackSpec
from earengine.errors import ConfigError, ParameterError

from tests.helpers.errors import one_line

SR = 44100


def test_same_seed_gives_bit_identical_audio_and_another_seed_does_not():
    a = SyntheticCorpus(n_tracks=4, seed=7, track_duration_s=3.0)
    b = SyntheticCorpus(n_tracks=4, seed=7, track_duration_s=3.0)
    c = SyntheticCorpus(n_tracks=4, seed=8, track_duration_s=3.0)
    for t in (0, 3):
        assert a.track(t).tobytes() == b.track(t).tobytes()
        assert not np.allclose(a.track(t), c.track(t), atol=1e-3)
    assert a.describe() == b.describe() != c.describe()


def test_a_track_depends_on_seed_and_index_only_not_on_corpus_size():
    small = SyntheticCorpus(n_tracks=3, seed=2, track_duration_s=2.0)
    large = SyntheticCorpus(n_tracks=20, seed=2, track_duration_s=2.0)
    assert small.specs[2] == large.specs[2]
    assert small.track(2).tobytes() == large.track(2).tobytes()


def test_default_corpus_has_16_tracks_that_differ_in_tempo_key_and_material():
    c = SyntheticCorpus()
    assert c.n_tracks >= 16 and c.sr == SR and c.duration_s(0) == pytest.approx(60.0)
    tempi = [s.tempo_bpm for s in c.specs]
    assert len(set(tempi)) == len(tempi)
    assert all(80.0 <= t <= 160.0 for t in tempi) and max(tempi) - min(tempi) > 60.0
    assert len({(s.key, s.mode) for s in c.specs}) == c.n_tracks
    assert len({s.key for s in c.specs}) >= 8 and len({s.mode for s in c.specs}) >= 5
    assert len({(s.progression_a, s.progression_b) for s in c.specs}) >= 12
    assert len({s.drums_a for s in c.specs}) >= 5
    assert len({s.timbres for s in c.specs}) >= 12
    assert len(set(c.track_names)) == c.n_tracks
    for s in c.specs:
        assert TrackSpec.from_dict(s.to_dict()) == s


def test_tracks_sound_different(corpus):
    audio = np.stack([corpus.track(t) for t in range(corpus.n_tracks)]).astype(np.float64)
    audio /= np.linalg.norm(audio, axis=1, keepdims=True)
    similarity = np.abs(audio @ audio.T)[np.triu_indices(corpus.n_tracks, 1)]
    assert similarity.max() < 0.3


def test_levels_are_sane(corpus):
    for t in range(corpus.n_tracks):
        x = corpus.track(t)
        assert x.dtype == np.float32 and x.shape == (n_samples(8.0),)
        assert np.all(np.isfinite(x))
        assert np.max(np.abs(x)) <= 0.9 + 1e-6
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
        assert 0.05 < rms < 0.2
        # Nothing is silent for long: every half second carries sound.
        halves = x[: x.size // 22050 * 22050].reshape(-1, 22050)
        assert np.sqrt(np.mean(halves**2, axis=1)).min() > 0.01


def test_the_audio_follows_the_planned_tempo(corpus):
    # The strongest periodicity of the onset envelope must be a whole number of eighth notes at the
    # track's tempo (a random period would rarely be, and never for all 16 tracks).
    hop = 441
    for t in range(corpus.n_tracks):
        _, _, z = signal.stft(corpus.track(t), SR, nperseg=1024, noverlap=1024 - hop)
        flux = np.maximum(np.diff(np.log(np.abs(z) + 1e-6), axis=1), 0.0).sum(axis=0)
        flux -= flux.mean()
        lags = np.arange(20, 120)  # 0.2 s … 1.2 s
        ac = [np.dot(flux[:-k], flux[k:]) / (flux.size - k) for k in lags]
        period_s = lags[int(np.argmax(ac))] * hop / SR
        eighths = period_s / (30.0 / corpus.specs[t].tempo_bpm)
        assert abs(eighths - round(eighths)) < 0.08, (t, corpus.specs[t].tempo_bpm, period_s)


def _key_of(x: np.ndarray, mode: tuple) -> int:
    """The tonic (0 = C) whose scale in ``mode`` best fits the pitch classes heard in ``x``."""
    f, _, z = signal.stft(x, SR, nperseg=8192)
    power = (np.abs(z) ** 2).mean(axis=1)
    band = (f > 200.0) & (f < 4000.0)
    pitch_class = (np.round(12 * np.log2(f[band] / 440.0)).astype(int) + 9) % 12
    chroma = np.log(np.bincount(pitch_class, weights=power[band], minlength=12) + 1e-12)
    scale = np.zeros(12)
    scale[list(mode)] = 1.0
    return int(np.argmax([(chroma - chroma.mean()) @ np.roll(scale, r) for r in range(12)]))


def test_the_first_section_is_in_the_planned_key(corpus):
    # 8 s lie within the first section, which is in the home key. A simple template match is right
    # for most tracks (its usual slip is to the key a fifth away); chance would be 1 in 12.
    hits = [_key_of(corpus.track(t), MODES[s.mode]) == s.key for t, s in enumerate(corpus.specs)]
    assert sum(hits) >= 12, hits


@pytest.mark.parametrize("variety", [1.0, 0.0])
def test_later_sections_change_key_unless_asked_not_to(variety):
    c = SyntheticCorpus(n_tracks=3, seed=0, track_duration_s=40.0, section_variety=variety)
    for t in (0, 2):
        spec = c.specs[t]
        section_s = spec.bars_per_section * 60.0 / spec.tempo_bpm * spec.steps_per_bar / 4.0
        keys = [
            _key_of(c.clip(t, k * section_s + 0.2, section_s - 0.4), MODES[spec.mode])
            for k in range(1, int(40.0 // section_s))
        ]
        assert len(keys) >= 2
        if variety == 1.0:  # a key alone must not name the track
            assert set(keys) - {spec.key}, (spec.key, keys)
        else:
            assert set(keys) == {spec.key}, (spec.key, keys)


def test_clip_has_the_asked_duration_and_is_zero_past_the_end(corpus):
    x = corpus.clip(2, 1.25, 0.5)
    assert x.shape == (22050,) and x.dtype == np.float32
    np.testing.assert_array_equal(x, corpus.track(2)[n_samples(1.25):n_samples(1.75)])
    tail = corpus.clip(2, 7.5, 1.0)
    assert tail.shape == (SR,)
    np.testing.assert_array_equal(tail[:22050], corpus.track(2)[-22050:])
    assert not tail[22050:].any()


@pytest.mark.parametrize(
    "args", [(16, 0.0, 1.0), (-1, 0.0, 1.0), (0, -1.0, 1.0), (0, 0.0, 0.0), (0, float("nan"), 1.0), (1.5, 0, 1)]
)
def test_bad_clip_arguments_fail_withone_line(corpus, args):
    with pytest.raises(ParameterError) as err:
        corpus.clip(*args)
    assert one_line(err.value)


@pytest.mark.parametrize(
    "kwargs",
    [{"n_tracks": 0}, {"seed": -1}, {"track_duration_s": 0.1}, {"sr": 0}, {"sr": 44100.5}, {"sr": "fast"},
     {"section_variety": 1.5}, {"section_variety": "all"}],
)
def test_corpus_settings_that_make_no_sense_fail_withone_line(kwargs):
    with pytest.raises(ConfigError) as err:
        SyntheticCorpus(**kwargs)
    assert one_line(err.value)
