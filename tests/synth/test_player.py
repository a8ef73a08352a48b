"""Loop player physics on pyo's offline server: what is heard, when, and how loud."""

import numpy as np
import pytest

from earengine.errors import ParameterError
from earengine.synth.params import LIMITER_CEILING_DBFS
from earengine.synth.player import Loop, LoopPlayer, fit_bars
from earengine.units import db_to_amp
from tests.helpers.offline import OfflineRig, rig_maker

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


class Rig(OfflineRig):
    """An offline engine: registry, server and player, rendering into a WAV we read back."""

    defaults = {"/loop/xfade": 0.0}
    read = {"dtype": "float32"}

    def build(self):
        self.player = LoopPlayer(self.audio, self.registry)

    def parts(self):
        return [self.player]


@pytest.fixture
def rig(tmp_path):
    yield from rig_maker(Rig, tmp_path)


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


# -- on the grid to the sample ------------------------------------------------------------------
class Source:
    """A clock source: whatever beat grid the test publishes."""

    def __init__(self, timeline):
        self.timeline = timeline


def click(samples, *, at=(0,), level=0.5):
    x = np.zeros(int(round(samples)), np.float32)
    for i in at:
        x[int(i)] = level
    return x


def clicks(x, threshold=0.08, min_gap=2000):
    """Sample index of every click (its peak; the interpolating reader spreads it a little)."""
    above = np.flatnonzero(np.abs(x) > threshold)
    out, last = [], -min_gap
    for i in above:
        if i - last >= min_gap:
            out.append(int(i) + int(np.argmax(np.abs(x[i: i + 8]))))
        last = i
    return np.array(out)


def test_loops_start_on_the_bar_line_itself_not_on_a_buffer_edge(rig):
    # 133 BPM: a bar is 79,578.9 samples, so bar lines fall anywhere inside the 256-sample buffers
    r = rig(**{"/clock/bpm": 133.0, "/loop/gain": 0.0})
    bar = 4 * 60.0 / 133.0 * SR
    r.render(0.1)
    for _ in range(4):  # a new loop every bar and a bit: each starts on the next bar line
        r.player.queue(r.player.make_loop(click(bar, level=0.9), sr=SR))
        r.render(1.3 * bar / SR)
    # dreamed loops (keep_phase) of two bars, one click on each bar (loud on the first): they
    # replace each other and keep the place in the two-bar cycle the first one set
    two = click(2 * bar, level=0.9)
    two[int(round(bar))] = 0.3
    for _ in range(3):
        r.player.queue(r.player.make_loop(two, sr=SR), keep_phase=True)
        r.render(1.1 * bar / SR)
    x = r.finish()[:, 0]
    found = clicks(x)
    assert r.player.loops_started == 7 and found.size >= 8
    bars = found / bar
    off = (bars - np.round(bars)) * bar  # samples
    assert np.all(np.abs(off) <= 1.0), f"clicks off the bar lines by {np.round(off, 1)} samples"
    assert np.array_equal(np.round(bars).astype(int), np.arange(1, 1 + found.size))  # one per bar, none lost
    loud = np.abs(x[found]) > 0.4  # a click between two samples peaks at half its level
    origin = r.player.loop_starts[3][0]  # the last plain loop began the sequence the dreams join
    dreams = np.round(bars).astype(int) >= r.player.loop_starts[4][0]
    assert np.array_equal(loud[dreams], (np.round(bars[dreams]).astype(int) - origin) % 2 == 0)
    assert loud[dreams].any() and not loud[dreams].all()


def follow(r, timeline, *, t0=100.0, drift=0.0):
    """Make the player's clock follow ``timeline``; the audio device's sample clock runs
    ``drift`` (relative) fast against the source's time. Returns sample → source time."""
    clock = r.player.clock
    clock._now = lambda: t0 + clock.samples / SR * (1.0 - drift)
    source = Source(timeline)
    clock.follow(source)
    return source, lambda s: t0 + np.asarray(s) / SR * (1.0 - drift)


def test_a_followed_tempo_change_keeps_the_loop_on_the_sources_bars(rig):
    from earengine.clock.grid import Timeline

    r = rig(**{"/loop/gain": 0.0})  # /clock/bpm stays 120: the tempo comes from the source alone
    source, time_of = follow(r, Timeline(time_s=100.05, beat=0.0, bpm=120.0))
    r.player.queue(r.player.make_loop(click(2 * SR, at=(0, SR)), sr=SR))  # one bar, a click every half
    r.render(4.6)
    # the source moves to 150 BPM half a buffer before the clock next reads it (as a source
    # publishes a change a little after it happens): the loop is behind by what that half
    # buffer ran at the old rate, and the lock pulls it in
    change_s = float(time_of(r.player.clock.samples)) - 128 / SR
    grid = source.timeline
    source.timeline = Timeline(time_s=change_s, beat=grid.beat_at(change_s), bpm=150.0)
    r.render(6.0)
    x = r.finish()[:, 0]
    assert r.player.registry.get("/clock/bpm") == 120.0 and r.player.clock.bpm == 150.0
    found = clicks(x)
    t = time_of(found)
    beats = np.where(t >= change_s, source.timeline.beat_at(t), grid.beat_at(t))
    off_ms = (beats - 2.0 * np.round(beats / 2.0)) * np.where(t >= change_s, 400.0, 500.0)
    after = t >= change_s
    assert after.sum() >= 7 and (~after).sum() >= 5  # a click every half bar at either tempo
    assert np.all(np.abs(off_ms[~after]) < 0.05) and abs(off_ms[after][0]) < 1.0
    assert np.all(np.abs(off_ms[after][1:]) < 0.05), f"clicks off the source's half bars by {np.round(off_ms, 3)} ms"


def test_the_loop_stays_locked_to_a_source_whose_clock_drifts_from_the_sound_cards(rig):
    from earengine.clock.grid import Timeline

    r = rig(**{"/loop/gain": 0.0})
    drift = 5e-4  # the sound card runs 500 ppm fast against the source: 10 ms in 20 s, unlocked
    source, time_of = follow(r, Timeline(time_s=100.0, beat=0.0, bpm=120.0), drift=drift)
    r.player.queue(r.player.make_loop(click(2 * SR), sr=SR))
    r.render(20.0)
    x = r.finish()[:, 0]
    found = clicks(x)
    beats = source.timeline.beat_at(time_of(found))
    off_ms = (beats - 4.0 * np.round(beats / 4.0)) * 500.0
    assert found.size >= 9
    assert np.all(np.abs(off_ms) < 0.3), f"clicks off the source's bars by {np.round(off_ms, 2)} ms"
    # pulled in by a rate trim well under what is heard as a pitch change
    assert r.player.slots[r.player.active].freq == pytest.approx(0.5 * (1 - drift), rel=r.player.LOCK_MAX_TRIM)


def test_stop_silences_and_start_comes_back_on_the_sources_first_bar(rig):
    from earengine.clock.grid import Timeline

    r = rig(**{"/loop/gain": 0.0})
    source, time_of = follow(r, Timeline(time_s=100.0, beat=0.0, bpm=120.0))
    r.player.queue(r.player.make_loop(click(4 * SR, at=(0, SR, 2 * SR, 3 * SR)), sr=SR))  # two bars
    r.render(3.1)
    source.timeline = Timeline(time_s=103.1, beat=6.2, bpm=120.0, playing=False)  # stop
    r.render(1.0)
    # start: the source's bar 0 is 0.2 s ahead (a Link start scheduled on the next bar)
    source.timeline = Timeline(time_s=104.1, beat=-0.4, bpm=120.0, playing=True)
    r.render(2.2)
    x = r.finish()[:, 0]
    t = time_of(clicks(x))
    stopped = (t > 103.1) & (t < 104.3)
    assert not stopped.any(), f"clicks while stopped or before the first bar: {t[stopped]}"
    assert np.max(np.abs(x[int(3.12 * SR): int(4.29 * SR)])) < 1e-3
    restart = t[t > 104.0]
    # from its first sample on bar 0, then its own clicks every half bar
    assert restart[0] == pytest.approx(104.3, abs=1.0 / SR)
    assert np.allclose(np.diff(restart), 1.0, atol=1.0 / SR) and restart.size >= 3


def test_the_wrap_of_a_loop_is_seamless_between_samples(rig):
    # at 133 BPM a loop is read a little off one sample per sample, so the wrap falls between
    # two samples and the reader interpolates from the last sample into the first
    r = rig(**{"/clock/bpm": 133.0, "/loop/gain": 0.0})
    flat = np.full(int(round(4 * 60.0 / 133.0 * SR)) - 7, 0.3, np.float32)
    r.player.queue(r.player.make_loop(flat, sr=SR))
    r.render(7.5)  # four wraps
    x = r.finish()[int(0.5 * SR):, 0]
    assert np.min(x) > 0.299 and np.max(x) < 0.301


def test_a_jump_of_the_source_is_made_good_at_the_next_bar_line(rig):
    from earengine.clock.grid import Timeline

    r = rig(**{"/loop/gain": 0.0})
    source, time_of = follow(r, Timeline(time_s=100.0, beat=0.0, bpm=120.0))
    r.player.queue(r.player.make_loop(click(4 * SR, at=(0, 2 * SR)), sr=SR))  # two bars, a click each
    r.render(2.5)
    # the session's grid moves 0.3 beat (150 ms) at once: too far to pull in by trimming the rate
    source.timeline = Timeline(time_s=102.5, beat=source.timeline.beat_at(102.5) + 0.3, bpm=120.0)
    r.render(6.0)
    x = r.finish()[:, 0]
    t = time_of(clicks(x))
    beats = source.timeline.beat_at(t[t > 102.5])
    # the loop re-enters in place on the new grid's next bar line (beat 8, 1.35 s on), before
    # its own next click (at 104.0 s, which would now fall 150 ms after a bar line)
    assert beats.size == 3 and np.all(np.abs(beats - 4.0 * np.round(beats / 4.0)) * 500.0 < 0.05), beats
    assert beats[0] == pytest.approx(8.0, abs=1e-3) and r.player.loops_started == 2
