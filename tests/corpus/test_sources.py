"""The ear's sources: folders of audio files, and opening a source from a spec or a description."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from earengine.corpus.audio_folder import AudioFolder
from earengine.corpus.clips import ClipSource, n_samples
from earengine.corpus.sources import from_description, open_source
from earengine.corpus.synthetic import SyntheticCorpus
from earengine.errors import AudioFileError, ConfigError, EarEngineError

SR = 44100


@pytest.fixture(scope="module")
def corpus() -> SyntheticCorpus:
    return SyntheticCorpus(n_tracks=6, seed=0, track_duration_s=8.0)


def _one_line(exc: BaseException) -> bool:
    text = str(exc)
    return bool(text) and "\n" not in text


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
    with caplog.at_level(logging.WARNING, logger="earengine.corpus.audio_folder"):
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
