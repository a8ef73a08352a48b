"""The ear's data: the synthetic corpus, audio folders, the train/held-out split and batches."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from earengine.errors import AudioFileError, ConfigError, EarEngineError, ParameterError
from earengine.ear.data import (
    _MODES,
    ClipSource,
    AudioFolder,
    Split,
    SyntheticCorpus,
    TrackSpec,
    from_description,
    n_samples,
    open_source,
    sample_batch,
    split_grid,
)

SR = 44100


@pytest.fixture(scope="module")
def corpus() -> SyntheticCorpus:
    c = SyntheticCorpus(n_tracks=16, seed=0, track_duration_s=8.0)
    for t in range(c.n_tracks):
        c.track(t)
    return c


def _one_line(exc: BaseException) -> bool:
    text = str(exc)
    return bool(text) and "\n" not in text


# --------------------------------------------------------------------------------------------
# Synthetic corpus
# --------------------------------------------------------------------------------------------


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
    hits = [_key_of(corpus.track(t), _MODES[s.mode]) == s.key for t, s in enumerate(corpus.specs)]
    assert sum(hits) >= 12, hits


@pytest.mark.parametrize("variety", [1.0, 0.0])
def test_later_sections_change_key_unless_asked_not_to(variety):
    c = SyntheticCorpus(n_tracks=3, seed=0, track_duration_s=40.0, section_variety=variety)
    for t in (0, 2):
        spec = c.specs[t]
        section_s = spec.bars_per_section * 60.0 / spec.tempo_bpm * spec.steps_per_bar / 4.0
        keys = [
            _key_of(c.clip(t, k * section_s + 0.2, section_s - 0.4), _MODES[spec.mode])
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
def test_bad_clip_arguments_fail_with_one_line(corpus, args):
    with pytest.raises(ParameterError) as err:
        corpus.clip(*args)
    assert _one_line(err.value)


@pytest.mark.parametrize(
    "kwargs",
    [{"n_tracks": 0}, {"seed": -1}, {"track_duration_s": 0.1}, {"sr": 0}, {"sr": 44100.5}, {"sr": "fast"},
     {"section_variety": 1.5}, {"section_variety": "all"}],
)
def test_corpus_settings_that_make_no_sense_fail_with_one_line(kwargs):
    with pytest.raises(ConfigError) as err:
        SyntheticCorpus(**kwargs)
    assert _one_line(err.value)


# --------------------------------------------------------------------------------------------
# Split, batches, grids
# --------------------------------------------------------------------------------------------


class _Recorder:
    """A ClipSource wrapper that remembers which sample ranges were read."""

    def __init__(self, source: ClipSource) -> None:
        self.source, self.sr, self.n_tracks = source, source.sr, source.n_tracks
        self.track_names = source.track_names
        self.reads: list = []

    def clip(self, track, start_s, duration_s):
        self.reads.append((track, n_samples(start_s, self.sr), n_samples(duration_s, self.sr)))
        return self.source.clip(track, start_s, duration_s)

    def duration_s(self, track):
        return self.source.duration_s(track)

    def describe(self):
        return self.source.describe()


def test_sample_batch_shapes_dtypes_and_determinism(corpus):
    audio, tracks = sample_batch(corpus, batch_size=6, duration_s=0.5, split="train", rng=np.random.default_rng(3))
    assert audio.shape == (6, 22050) and audio.dtype == np.float32
    assert tracks.shape == (6,) and tracks.dtype == np.int64
    assert np.all((0 <= tracks) & (tracks < corpus.n_tracks))
    again, tracks_again = sample_batch(
        corpus, batch_size=6, duration_s=0.5, split="train", rng=np.random.default_rng(3)
    )
    np.testing.assert_array_equal(audio, again)
    np.testing.assert_array_equal(tracks, tracks_again)


@pytest.mark.parametrize("fraction", [0.2, 0.35])
def test_heldout_and_training_clips_never_overlap(corpus, fraction):
    spec = Split(fraction)
    rec = _Recorder(corpus)
    rng = np.random.default_rng(0)
    cut = spec.bounds(n_samples(8.0), "train")[1]
    assert cut == round(n_samples(8.0) * (1 - fraction))
    for split in ("train", "heldout"):
        rec.reads.clear()
        _, tracks = sample_batch(rec, batch_size=200, duration_s=1.0, split=split, rng=rng, split_spec=spec)
        assert [r[0] for r in rec.reads] == tracks.tolist()
        for _, first, count in rec.reads:
            if split == "train":
                assert 0 <= first and first + count <= cut
            else:
                assert cut <= first and first + count <= n_samples(8.0)
        starts = np.array([r[1] for r in rec.reads])
        assert starts.min() < starts.max()  # actually random
        assert len(set(tracks.tolist())) == corpus.n_tracks


def test_sample_batch_refuses_clips_longer_than_the_part():
    c = SyntheticCorpus(n_tracks=2, seed=0, track_duration_s=5.0)
    with pytest.raises(ConfigError) as err:
        sample_batch(c, batch_size=2, duration_s=2.0, split="heldout", rng=np.random.default_rng(0))
    assert _one_line(err.value) and "heldout" in str(err.value)


@pytest.mark.parametrize(
    "kwargs",
    [{"split": "test"}, {"batch_size": 0}, {"duration_s": -1.0}, {"rng": 0}],
)
def test_sample_batch_bad_arguments(corpus, kwargs):
    args = {"batch_size": 2, "duration_s": 0.5, "split": "train", "rng": np.random.default_rng(0)}
    args.update(kwargs)
    with pytest.raises(ConfigError) as err:
        sample_batch(corpus, **args)
    assert _one_line(err.value)


def test_split_round_trips_and_validates():
    assert Split.from_dict(Split(0.3).to_dict()) == Split(0.3)
    assert Split().to_dict() == {"heldout_fraction": 0.2}
    for bad in (0.0, 1.0, -0.1, "half", True):
        with pytest.raises(ConfigError):
            Split(bad)
    with pytest.raises(ConfigError):
        Split.from_dict({"heldout_fraction": 0.2, "extra": 1})


def test_split_grid_covers_the_heldout_part_without_leaving_it(corpus):
    grid = split_grid(corpus, duration_s=0.5, split="heldout", hop_s=0.25)
    lo, hi = Split().bounds(n_samples(8.0), "heldout")
    assert {t for t, _ in grid} == set(range(corpus.n_tracks))
    per_track = [s for t, s in grid if t == 0]
    assert len(per_track) == (hi - lo - 22050) // n_samples(0.25) + 1
    for _, start in grid:
        first = n_samples(start)
        assert lo <= first and first + 22050 <= hi


# --------------------------------------------------------------------------------------------
# Audio folders
# --------------------------------------------------------------------------------------------


def _tone(sr: int, seconds: float, freq_hz: float = 1000.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    left = 0.5 * np.sin(2 * np.pi * freq_hz * t)
    return np.stack([left, 0.5 * left], axis=1)  # mono mix: 0.375 * sine


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    sf.write(root / "a_tone.wav", _tone(22050, 1.5), 22050, subtype="PCM_16")
    sf.write(root / "b_tone.flac", _tone(48000, 2.0), 48000)
    (root / "sub").mkdir()
    sf.write(root / "sub" / "c_tone.ogg", _tone(48000, 1.0), 48000, format="OGG")
    (root / "d_fake.wav").write_text("this is text, not audio\n")
    (root / "notes.txt").write_text("not audio either\n")
    (root / ".hidden.wav").write_text("hidden files are ignored\n")
    return root


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum) * sr / x.size)


def test_folder_loads_good_files_as_mono_44k_and_skips_the_bad_one_with_one_warning(folder, caplog):
    with caplog.at_level(logging.WARNING, logger="earengine.ear.data"):
        source = AudioFolder(folder)
    assert isinstance(source, ClipSource)
    assert source.sr == SR and source.n_tracks == 3
    assert source.track_names == ["a_tone.wav", "b_tone.flac", "sub/c_tone.ogg"]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "d_fake.wav" in warnings[0].getMessage()
    assert "\n" not in warnings[0].getMessage()
    assert [name for name, _ in source.skipped] == ["d_fake.wav"]
    for track, seconds in zip(range(3), (1.5, 2.0, 1.0)):
        assert source.duration_s(track) == pytest.approx(seconds, abs=1.0 / SR)
        x = source.clip(track, 0.25, 0.5)
        assert x.shape == (22050,) and x.dtype == np.float32
        # A 1 kHz tone stays at 1 kHz (bin width 2 Hz) and the channels are averaged.
        assert _peak_hz(x, SR) == pytest.approx(1000.0, abs=2.0)
        assert np.sqrt(2.0) * np.sqrt(np.mean(x.astype(np.float64) ** 2)) == pytest.approx(0.375, rel=0.02)
    description = source.describe()
    assert description["kind"] == "folder" and description["skipped"] == ["d_fake.wav"]
    assert from_description(description).track_names == source.track_names


@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="libsndfile here cannot write MP3")
def test_folder_reads_mp3(tmp_path):
    sf.write(tmp_path / "tone.mp3", _tone(48000, 1.0), 48000, format="MP3")
    source = AudioFolder(tmp_path)
    assert source.duration_s(0) == pytest.approx(1.0, abs=0.1)
    assert _peak_hz(source.clip(0, 0.25, 0.5), SR) == pytest.approx(1000.0, abs=2.0)


def test_excerpts_decoded_on_demand_equal_the_whole_file_resampled(folder):
    on_demand = AudioFolder(folder, cache_mb=0)
    cached = AudioFolder(folder, cache_mb=64)
    for track, native_sr in ((0, 22050), (1, 48000)):
        data, _ = sf.read(folder / on_demand.track_names[track], dtype="float32")
        whole = signal.resample_poly(data.mean(axis=1), SR // np.gcd(SR, native_sr), native_sr // np.gcd(SR, native_sr))
        for start_s in (0.0, 0.3712, 0.9):
            a = on_demand.clip(track, start_s, 0.4)
            b = cached.clip(track, start_s, 0.4)
            first = n_samples(start_s)
            np.testing.assert_allclose(a, whole[first:first + a.size], atol=2e-6)
            np.testing.assert_allclose(a, b, atol=2e-6)
    assert on_demand._cache == {} and len(cached._cache) >= 2
    tail = on_demand.clip(0, 1.4, 0.5)  # reaches past the end: zeros there
    assert tail.shape == (22050,) and not tail[n_samples(0.1) + 50:].any()


def test_folder_errors_are_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.flac").write_bytes(b"\x00" * 100)
    a_file = tmp_path / "file.wav"
    sf.write(a_file, _tone(22050, 0.1), 22050)
    for path in (empty, only_bad, tmp_path / "missing", a_file):
        with pytest.raises(AudioFileError) as err:
            AudioFolder(path)
        assert _one_line(err.value) and isinstance(err.value, OSError)
    for sr in (0, -44100, 1e9, float("nan")):
        with pytest.raises(ConfigError) as err:
            AudioFolder(only_bad, sr=sr)
        assert _one_line(err.value)


# --------------------------------------------------------------------------------------------
# Opening sources
# --------------------------------------------------------------------------------------------


def test_open_source(folder, tmp_path):
    synthetic = open_source("synthetic", seed=3)
    assert isinstance(synthetic, SyntheticCorpus) and synthetic.n_tracks == 16 and synthetic.seed == 3
    assert open_source("synthetic:5").n_tracks == 5
    assert open_source("synthetic:5:0.25").section_variety == 0.25
    assert isinstance(open_source(str(folder)), AudioFolder)
    bad = (
        ("nonsense/path", AudioFileError), ("synthetic:x", ConfigError), ("synthetic:0", ConfigError),
        ("synthetic:4:2", ConfigError), ("synthetic:4:a", ConfigError), ("", ConfigError),
    )
    for spec, kind in bad:
        with pytest.raises(kind) as err:
            open_source(spec)
        assert _one_line(err.value) and isinstance(err.value, EarEngineError)
    with pytest.raises(AudioFileError) as err:
        open_source("nonsense/path")
    assert "synthetic" in str(err.value) and "nonsense/path" in str(err.value)


def test_synthetic_description_reopens_the_same_corpus(corpus):
    again = from_description(corpus.describe())
    assert again.describe() == corpus.describe()
    assert again.clip(4, 1.0, 0.25).tobytes() == corpus.clip(4, 1.0, 0.25).tobytes()
    import json

    assert json.loads(json.dumps(corpus.describe())) == corpus.describe()
    with pytest.raises(ConfigError):
        from_description({"kind": "tape"})
