"""Loop player physics on pyo's offline server: what is heard, when, and how loud."""

import numpy as np
import pytest
import soundfile as sf

from earengine.errors import ParameterError
from earengine.params import default_registry
from earengine.params.table import LIMITER_CEILING_DBFS
from earengine.synth.player import Loop, LoopPlayer, db_to_amp, fit_bars
from earengine.synth.server import AudioServer

SR = 44100


def plucks(seconds, *, f0, seed):
    """Decaying tones every quarter second: a loop with clear, identifiable structure."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    x = np.zeros(n, np.float32)
    step = SR // 4
    for k, start in enumerate(range(0, n, step)):
        seg = np.arange(min(step, n - start)) / SR
        f = f0 * 2 ** rng.uniform(0.0, 2.0)  # every pluck its own pitch: no repeated segments
        x[start:start + seg.size] = 0.5 * np.sin(2 * np.pi * f * seg) * np.exp(-seg * 12)
    return x


class Rig:
    """An offline engine: registry, server and player, rendering into a WAV we read back."""

    def __init__(self, tmp_path, **values):
        self.registry = default_registry()
        self.registry.update({"/loop/xfade": 0.0, **values})
        self.audio = AudioServer("offline", sr=SR)
        self.audio.start()
        self.player = LoopPlayer(self.audio, self.registry)
        self.path = tmp_path / "out.wav"
        self.audio.record(str(self.path))

    def render(self, seconds):
        self.audio.render(int(seconds * SR))

    def finish(self):
        self.audio.stop_recording()
        self.player.close()
        self.audio.close()
        x, sr = sf.read(str(self.path), dtype="float32")
        assert sr == SR
        return x


@pytest.fixture
def rig(tmp_path):
    made = []

    def make(**values):
        made.append(Rig(tmp_path, **values))
        return made[-1]

    yield make
    for r in made:
        if r.audio.server is not None:
            r.finish()


def best_lag(signal, template):
    """Lag of the best normalised cross-correlation of ``template`` inside ``signal``."""
    from scipy.signal import fftconvolve

    corr = fftconvolve(signal, template[::-1], mode="valid")
    energy = fftconvolve(signal ** 2, np.ones(template.size), mode="valid")
    score = corr / np.maximum(np.sqrt(np.maximum(energy, 0)) * np.linalg.norm(template), 1e-9)
    return int(np.argmax(score)), float(score.max())


def test_loaded_loop_is_heard_and_second_starts_on_a_bar_line(rig):
    r = rig()
    bar = 2 * SR  # 120 BPM, 4/4
    a, b = plucks(2.0, f0=220, seed=1), plucks(2.0, f0=330, seed=2)
    r.player.queue(r.player.make_loop(a, sr=SR, source="a"))
    r.render(1.3)
    r.player.queue(r.player.make_loop(b, sr=SR, source="b"))
    r.render(4.0)
    x = r.finish()[:, 0]
    assert r.player.loops_started == 2
    # templates from inside each loop (the server fades in over its first milliseconds)
    q = SR // 2
    lag_a, score_a = best_lag(x[: 2 * bar], a[q: 2 * q])
    lag_b, score_b = best_lag(x[bar // 2:], b[q: 2 * q])
    lag_a, lag_b = lag_a - q, lag_b + bar // 2 - q
    assert score_a > 0.95 and score_b > 0.95
    buffer = r.audio.buffersize

    def off_grid(lag):
        return min(lag % bar, bar - lag % bar)

    assert off_grid(lag_a) <= buffer // 2 + 1  # loop 1 starts on a bar line
    assert lag_b >= bar - buffer  # loop 2 not before the bar after it was queued
    assert off_grid(lag_b - lag_a) <= buffer  # ... and on a bar line
    # loop 1 no longer plays after loop 2 started
    _, score_old = best_lag(x[lag_b + 2 * q: lag_b + bar], a[q: 2 * q])
    assert score_old < 0.5


def test_loop_fits_whole_bars_and_follows_tempo(rig):
    r = rig(**{"/clock/bpm": 120.0})
    x = plucks(3.7, f0=220, seed=3)  # 3.7 s -> 2 bars (4 s) at 120 BPM
    loop = r.player.make_loop(x, sr=SR)
    assert loop.bars == 2 == fit_bars(x.size, sr=SR, bpm=120.0, beats_per_bar=4)
    r.player.queue(loop)
    r.render(0.5)
    assert r.player.heard().size == 4 * SR
    r.registry.set("/clock/bpm", 60.0)
    r.render(0.1)
    assert r.player.heard().size == 8 * SR  # same bars, twice as long
    assert r.player.clock.bar_s == pytest.approx(4.0)


def test_gain_change_is_heard_in_db(rig):
    r = rig(**{"/loop/gain": -6.0})
    tone = (0.3 * np.sin(2 * np.pi * 441 * np.arange(2 * SR) / SR)).astype(np.float32)
    r.player.queue(r.player.make_loop(tone, sr=SR))
    r.render(1.0)
    r.registry.set("/loop/gain", -26.0)
    r.render(1.0)
    x = r.finish()[:, 0]
    rms = lambda s: np.sqrt(np.mean(s ** 2))
    before, after = rms(x[int(0.5 * SR): SR]), rms(x[int(1.3 * SR): int(1.9 * SR)])
    assert 20 * np.log10(before / after) == pytest.approx(20.0, abs=0.5)
    assert before == pytest.approx(0.3 / np.sqrt(2) * db_to_amp(-6.0), rel=0.05)


def test_output_never_exceeds_the_ceiling(rig):
    r = rig(**{"/loop/gain": 6.0})
    rng = np.random.default_rng(0)
    hot = np.clip(rng.normal(0, 0.8, 2 * SR), -1, 1).astype(np.float32)
    hot[::1000] = 1.0
    r.player.queue(r.player.make_loop(hot, sr=SR))
    r.render(3.0)
    x = r.finish()
    ceiling = 10 ** (LIMITER_CEILING_DBFS / 20)
    assert np.all(np.isfinite(x))
    assert np.max(np.abs(x)) <= ceiling + 1e-6
    assert np.max(np.abs(x)) > 0.5  # and it is still loud


def test_mute_and_crossfade(rig):
    r = rig(**{"/loop/xfade": 500.0})
    a = np.full(2 * SR, 0.3, np.float32)  # constant loops: the fade of +a into -a is a straight line
    r.player.queue(r.player.make_loop(a, sr=SR))
    r.render(2.2)
    r.player.queue(r.player.make_loop(-a, sr=SR))  # phase-inverted: the fade shows as a dip
    r.render(2.8)  # it starts on bar 2 (4 s)
    r.registry.set("/loop/mute", True)
    r.render(0.5)
    x = r.finish()[:, 0]
    # halfway through the 500 ms crossfade the two cancel; before and after it they do not
    fade = x[4 * SR - 300: int(4.6 * SR)]
    assert fade[0] > 0.15 and fade[-1] < -0.15  # from +a to -a ...
    assert np.max(np.abs(np.diff(fade))) < 1e-4  # ... smoothly: no jump, no click
    zero = int(np.argmin(np.abs(fade))) - 300
    assert abs(zero - 0.25 * SR) < r.audio.buffersize  # crossing halfway through the 500 ms
    assert np.max(np.abs(x[int(4.6 * SR): int(4.9 * SR)])) > 0.15
    assert np.max(np.abs(x[-int(0.3 * SR):])) < 1e-4


def test_loops_must_be_finite():
    with pytest.raises(ParameterError, match="finite"):
        Loop(np.array([0.0, np.nan, 0.1], np.float32), SR, 1)
    with pytest.raises(ParameterError):
        Loop(np.zeros(1, np.float32), SR, 1)
    loop = Loop(np.zeros(10, np.float32), SR, 1)
    with pytest.raises(ValueError):
        loop.samples[0] = 1.0  # immutable
