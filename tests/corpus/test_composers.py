"""Composer renders: one piano for every score, pitched where the score says, split by work."""

import shutil

import numpy as np
import pytest

from earengine.corpus.composers import LEVEL_DB, split_works, work_of

pytestmark = pytest.mark.skipif(shutil.which("fluidsynth") is None,
                                reason="fluidsynth is missing (apt-get install fluidsynth fluid-soundfont-gm)")


def band_db(x: np.ndarray, f_hz: float, sr: int = 44100) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / sr)
    near = np.abs(np.log2(freqs[1:] / f_hz)) < 1 / 48  # a quarter tone either side
    return 10 * np.log10(spec[1:][near].sum() + 1e-20)


def test_a_short_score_renders_on_piano_at_its_pitch():
    pytest.importorskip("music21")
    from music21 import converter

    from earengine.corpus.composers import render_score

    score = converter.parse("tinyNotation: 4/4 a2 a2 e'2 e'2")  # A4 for a bar, then E5
    score.insert(0, __import__("music21").instrument.Violin())  # a violin part still plays piano
    x = render_score(score)
    assert x.dtype == np.float32 and np.all(np.isfinite(x))
    rms_db = 20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    assert rms_db == pytest.approx(LEVEL_DB, abs=0.1)
    sr = 44100
    first, second = x[int(0.2 * sr): int(1.8 * sr)], x[int(2.2 * sr): int(3.8 * sr)]  # 120 bpm: a bar is 2 s
    assert band_db(first, 440.0) > band_db(first, 415.3) + 20  # A4, not a semitone off
    assert band_db(second, 659.3) > band_db(second, 622.3) + 20  # E5
    assert band_db(second, 659.3) > band_db(second, 440.0) + 10  # the A has stopped


def test_works_are_split_whole():
    assert work_of("beethoven/opus59no1/movement3.mxl") == "beethoven/opus59no1"
    durations = {f"w{i}": 60.0 + i for i in range(12)}
    split = split_works(durations)
    held = sum(d for w, d in durations.items() if split[w] == "heldout")
    assert 0.25 <= held / sum(durations.values()) < 0.4
    assert split == split_works(dict(reversed(list(durations.items()))))  # order does not matter
    assert set(split_works({"only": 10.0}).values()) == {"train"}


def test_a_small_composer_corpus_is_labelled_and_split_by_work(tmp_path):
    import io

    import soundfile as sf

    pytest.importorskip("music21")
    from earengine.corpus.composers import build_composers

    lines = io.StringIO()
    manifest = build_composers(tmp_path, ["bach"], minutes=1.0, stream=lines)
    assert len(manifest.tracks) >= 2
    assert {t["label"] for t in manifest.tracks} == {"bach"}
    assert {t["split"] for t in manifest.tracks} == {"train", "heldout"}
    for t in manifest.tracks:
        info = sf.info(str(tmp_path / t["out"]))
        assert info.samplerate == 44100 and info.channels == 1 and t["work"].startswith("bach/")
        assert "public domain" in t["license"]
    assert "corpus: composers:" in lines.getvalue().splitlines()[-1]


def test_the_scores_chosen_do_not_depend_on_where_music21_is_installed(monkeypatch):
    from pathlib import Path

    pytest.importorskip("music21")
    from music21 import corpus

    from earengine.corpus import composers

    names = [f"bach/bwv{n}.mxl" for n in range(20, 40)]
    orders = []
    for root in ("/usr/lib/python3/dist-packages/music21/corpus", "/home/someone/venv/music21/corpus"):
        monkeypatch.setattr(corpus, "getComposer", lambda composer, root=root: [Path(root) / n for n in names])
        orders.append([name for _, name in composers._scores("bach")])
    assert orders[0] == orders[1] and sorted(orders[0]) == sorted(names)
