"""The engine as a performer hears it: a real JACK server, real UDP, an independent recorder.

Each test starts ``earengine run --audio jack`` as its own process against a JACK dummy server,
drives it over OSC from a socket of its own, and records ``earengine:output_1/2`` with
``jack_rec`` — a JACK client that shares no code with the engine. Everything is judged from the
recording alone: which loop plays (normalised cross-correlation with the file), where loops start
(their phase against the bar grid), levels (RMS against the aligned file) and peaks.

Loops are generated: 120 BPM, 4/4, 44.1 kHz, so one bar is exactly 88,200 samples and the player
reads every table one sample per sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.helpers.engines import engine_process
from tests.helpers.jack import Recorder
from tests.helpers.recordings import CEILING, PERIOD, SR, aligned, circular_distance, level_db, loop_phase, seconds

pytestmark = pytest.mark.integration

BPM = 120.0
BAR = int(round(4 * 60.0 / BPM * SR))  # 88200 samples


# ---------------------------------------------------------------------------------------------
# Generated loops
# ---------------------------------------------------------------------------------------------
def _plucks(rng: np.random.Generator, *, bars: int, peak: float) -> np.ndarray:
    """One pluck per beat, each on a different pitch, wrapped around so the loop is seamless.

    A short noise "pick" on every attack keeps the cross-correlation peak one sample wide.
    """
    n = bars * BAR
    beat = BAR // 4
    x = np.zeros(n)
    t = np.arange(n) / SR
    semitones = rng.permutation(12)[: 4 * bars]  # distinct pitches: no lag but the true one fits
    for k, semi in enumerate(semitones):
        f0 = 220.0 * 2.0 ** (semi / 12.0)
        tone = sum(np.sin(2 * np.pi * h * f0 * t) * np.exp(-t * (3.0 + 2.0 * h)) / h for h in range(1, 5))
        pick = rng.standard_normal(n) * np.exp(-t * 400.0) * 0.3
        x += np.roll(tone + pick, k * beat)
    return (x * (peak / np.abs(x).max())).astype(np.float32)


def _bursts(rng: np.random.Generator, *, bars: int, peak: float) -> np.ndarray:
    """Noise bursts on every eighth note: nothing like the plucks."""
    n = bars * BAR
    step = BAR // 8
    env = np.exp(-np.arange(step) / SR * 25.0)
    x = np.concatenate([rng.standard_normal(step) * env for _ in range(n // step)])
    return (x * (peak / np.abs(x).max())).astype(np.float32)


@dataclass(frozen=True)
class Loops:
    plucks: Path
    bursts: Path
    loud: Path
    text: Path

    def samples(self, which: str) -> np.ndarray:
        data, sr = soundfile.read(str(getattr(self, which)), dtype="float64")
        assert sr == SR
        return data


@pytest.fixture(scope="module")
def loops(tmp_path_factory: pytest.TempPathFactory) -> Loops:
    folder = tmp_path_factory.mktemp("loops")
    rng = np.random.default_rng(20191208)
    plucks = _plucks(rng, bars=2, peak=0.5)
    out = Loops(folder / "plucks.wav", folder / "bursts.wav", folder / "loud.wav", folder / "notes.wav")
    soundfile.write(str(out.plucks), plucks, SR, subtype="FLOAT")
    soundfile.write(str(out.bursts), _bursts(rng, bars=1, peak=0.5), SR, subtype="FLOAT")
    soundfile.write(str(out.loud), plucks / np.abs(plucks).max(), SR, subtype="FLOAT")  # 0 dBFS peak
    out.text.write_text("this is a text file with an audio file's name\n")
    return out


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------
def engine(jack, *, loop: Path, sets: tuple[str, ...] = ()):
    """The engine playing ``loop`` with no worker, with ``--set`` overrides."""
    args = ["--no-dream", "--loop", str(loop)]
    for item in sets:
        args += ["--set", item]
    return engine_process(jack, args)


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------
def test_loaded_loop_is_heard(jack_server, loops, tmp_path):
    with engine(jack_server, loop=loops.plucks) as eng:
        eng.osc.wait_loops(1)
        rec = Recorder(jack_server, tmp_path / "rec.wav", 5).finish()
        assert eng.proc.poll() is None, eng.output()
    plucks = loops.samples("plucks")
    left, right = rec[:, 0], rec[:, 1]
    assert np.array_equal(left, right), "both outputs carry the same mono loop"
    # 5 s of recording spans more than one whole 4 s loop, so every part of it must fit
    phase, r = loop_phase(left, plucks)
    assert r > 0.9, f"normalised cross-correlation with the loaded file is {r:.3f}"
    # the default -3 dB is what reaches the output (the loop peaks at -6 dBFS, under the limiter)
    assert level_db(left, aligned(plucks, phase, left.size), 0, left.size) == pytest.approx(-3.0, abs=0.5)


def test_second_loop_starts_on_a_bar_line(jack_server, jack_clock, loops, tmp_path):
    with engine(jack_server, loop=loops.plucks, sets=("/loop/xfade=0",)) as eng:
        eng.osc.wait_loops(1)
        recorder = Recorder(jack_server, tmp_path / "rec.wav", 7, clock=jack_clock)
        recorder.sleep_until(2.0)
        eng.osc.send("/loop/load", str(loops.bursts))
        done = eng.osc.wait_for("/done", 5.0)
        assert done == ("/loop/load",), f"no /done for /loop/load: {eng.osc.inbox}"
        rec = recorder.finish()[:, 0]
        assert eng.osc.loops_started() == 2
    plucks, bursts = loops.samples("plucks"), loops.samples("bursts")
    # two bars after the load's /done only loop 2 can sound: where it sits modulo its one bar
    phase2, r2 = loop_phase(rec, bursts, start=rec.size - seconds(2.0))
    assert r2 > 0.9, f"loop 2 is not what plays after /loop/load (r={r2:.3f})"
    # its start is the first of those positions from which loop 2 is heard
    quarter = seconds(0.25)
    start2 = next((s for s in range(phase2 % BAR, rec.size - quarter, BAR)
                   if s >= seconds(1.0) and loop_phase(rec, bursts, start=s, stop=s + quarter)[1] > 0.9), None)
    assert start2 is not None, "no bar line where loop 2 starts"
    # the second just before it holds loop 1, on the grid loop 1 started on; measured right there,
    # so only these two seconds of the recording need to be free of dropouts
    phase1, r1 = loop_phase(rec, plucks, start=start2 - seconds(1.0), stop=start2 - PERIOD)
    assert r1 > 0.9, f"loop 1 should play right up to the bar line where loop 2 starts (r={r1:.3f})"
    # both loops last whole bars, so each one's phase modulo a bar is where it entered the grid
    offset = (start2 - phase1) % BAR
    offset = offset - BAR if offset > BAR // 2 else offset
    print(f"loop 2 starts {offset:+d} samples from the bar grid of loop 1")
    assert abs(offset) <= PERIOD, f"loop 2 starts {offset:+d} samples off the bar line (allowed ±{PERIOD})"


def test_gain_change_is_heard(jack_server, jack_clock, loops, tmp_path):
    with engine(jack_server, loop=loops.plucks) as eng:
        eng.osc.wait_loops(1)
        recorder = Recorder(jack_server, tmp_path / "rec.wav", 5, clock=jack_clock)
        recorder.sleep_until(2.0)
        eng.osc.send("/loop/gain", -20.0)
        rec = recorder.finish()[:, 0]
        eng.osc.send("/get", "/loop/gain")
        assert eng.osc.wait_for("/loop/gain", 2.0) == (-20.0,)
    plucks = loops.samples("plucks")
    phase, r = loop_phase(rec, plucks, stop=seconds(1.5))
    assert r > 0.9, f"the loop is not what plays (r={r:.3f})"
    ref = aligned(plucks, phase, rec.size)
    before = level_db(rec, ref, seconds(0.1), seconds(1.5))
    after = level_db(rec, ref, seconds(3.2), rec.size)
    print(f"level {before:.2f} dB -> {after:.2f} dB (change {after - before:+.2f} dB)")
    assert after - before == pytest.approx(-17.0, abs=2.0)


def test_limiter_holds_a_full_scale_loop_at_plus_6_db(jack_server, jack_clock, loops, tmp_path):
    with engine(jack_server, loop=loops.loud) as eng:
        eng.osc.wait_loops(1)
        eng.osc.send("/loop/gain", 6.0)
        eng.osc.send("/get", "/loop/gain")
        assert eng.osc.wait_for("/loop/gain", 2.0) == (6.0,)
        jack_clock.sleep_s(0.2)  # past the 50 ms gain ramp
        rec = Recorder(jack_server, tmp_path / "rec.wav", 4).finish()
    assert np.all(np.isfinite(rec))
    peak_dbfs = 20.0 * math.log10(np.abs(rec).max())
    print(f"peak {peak_dbfs:.3f} dBFS with the loop at +6 dB")
    assert np.abs(rec).max() <= CEILING + 1e-6, f"peak {peak_dbfs:.3f} dBFS exceeds the -0.3 dBFS ceiling"
    # the limiter is working, not the sound missing: peaks sit just under the ceiling
    assert peak_dbfs > -1.0
    _, r = loop_phase(rec[:, 0], loops.samples("loud"))
    assert r > 0.9, f"the limited output no longer resembles the loop (r={r:.3f})"


def test_bad_input_is_refused_and_the_sound_goes_on(jack_server, jack_clock, loops, tmp_path):
    with engine(jack_server, loop=loops.plucks) as eng:
        eng.osc.wait_loops(1)
        recorder = Recorder(jack_server, tmp_path / "rec.wav", 5, clock=jack_clock)
        recorder.sleep_until(2.0)
        eng.osc.send("/loop/load", str(tmp_path / "missing.wav"))
        eng.osc.send("/loop/load", str(loops.text))
        eng.osc.send("/loop/gain", float("nan"))
        eng.osc.send("/no/such/address", 1)
        fails = [eng.osc.wait_for("/fail", 3.0) for _ in range(4)]
        rec = recorder.finish()[:, 0]
        assert eng.proc.poll() is None, eng.output()
        assert eng.osc.loops_started() == 1, "a bad /loop/load must not replace the loop"
        eng.osc.send("/get", "/loop/gain")
        assert eng.osc.wait_for("/loop/gain", 2.0) == (-3.0,)
    assert None not in fails, f"expected four /fail replies, got {fails}"
    failed = sorted(f[0] for f in fails)
    assert failed == ["/loop/gain", "/loop/load", "/loop/load", "/no/such/address"], fails
    assert all(isinstance(f[1], str) and f[1] for f in fails), fails
    plucks = loops.samples("plucks")
    phase, r = loop_phase(rec, plucks, stop=seconds(1.8))
    assert r > 0.9, f"the loop is not what plays (r={r:.3f})"
    ref = aligned(plucks, phase, rec.size)
    # the second before the bad input, and the second after it (from 0.3 s on: the replies
    # have come back by then, and the event lands in the recording at 2.0 s or a little later)
    before = level_db(rec, ref, seconds(0.8), seconds(1.8))
    after = level_db(rec, ref, seconds(2.3), seconds(3.3))
    assert after == pytest.approx(before, abs=1.0)
    phase_after, r_after = loop_phase(rec, plucks, start=seconds(2.3))
    assert r_after > 0.9, f"after the bad input the same loop should play on (r={r_after:.3f})"
    assert circular_distance(phase_after, phase, plucks.size) <= PERIOD, "the loop lost its place"
