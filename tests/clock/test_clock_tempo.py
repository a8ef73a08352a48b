"""MIDI clock in, on synthetic pulse trains with the timing faults real ones have: jitter,
timestamps rounded to an audio period, tempo steps, transport, gaps and junk."""

from __future__ import annotations

import math

import numpy as np
import pytest

from earengine.clock.grid import Timeline
from earengine.clock.midi_in import PPQ, MidiClockIn, PulseTempo

PERIOD_S = 256 / 44100  # a JACK period: MIDI stamps are taken once per period


def pulse_times(bpm: float, n: int, *, t0: float = 100.0, jitter: float = 0.0, rng=None) -> np.ndarray:
    """True pulse times, then jittered by up to ``jitter`` of a pulse period and stamped at the
    start of the audio period that carries them (as JACK MIDI is)."""
    period = 60.0 / bpm / PPQ
    t = t0 + np.arange(n) * period
    if jitter:
        t = t + rng.uniform(-jitter, jitter, n) * period
    return np.floor(t / PERIOD_S) * PERIOD_S + rng.exponential(0.0002, n) if rng is not None else t


@pytest.mark.parametrize("bpm", [100.0, 128.0, 174.0])
@pytest.mark.parametrize("jitter", [0.0, 0.2])
def test_tempo_within_a_tenth_of_a_bpm_and_phase_within_a_millisecond(bpm, jitter):
    rng = np.random.default_rng(int(bpm) + int(jitter * 10))
    clock = MidiClockIn(bpm=90.0)  # a wrong prior: the pulses must win
    stamps = pulse_times(bpm, 8 * PPQ, jitter=jitter, rng=rng)
    estimates = []
    for k, t in enumerate(stamps):
        clock.feed((0xF8,), t)
        if k >= 2 * PPQ:
            estimates.append(clock.bpm)
    assert max(abs(np.array(estimates) - bpm)) < 0.5
    assert abs(clock.bpm - bpm) < 0.1
    # where the grid puts the last pulse: the stamps are early by half a period on average
    true_last = 100.0 + (len(stamps) - 1) * 60.0 / bpm / PPQ
    error_s = clock.timeline.time_at((len(stamps) - 1) / PPQ) - true_last
    assert abs(error_s + PERIOD_S / 2) < 0.0015


def test_follows_a_tempo_step_within_a_beat_and_ignores_jitter_meanwhile():
    rng = np.random.default_rng(3)
    first = pulse_times(120.0, 4 * PPQ, jitter=0.2, rng=rng)
    t_change = 100.0 + 4 * PPQ * 60.0 / 120.0 / PPQ
    second = pulse_times(140.0, 4 * PPQ, t0=t_change, jitter=0.2, rng=rng)
    clock = MidiClockIn()
    for t in first:
        clock.feed((0xF8,), t)
    assert clock.bpm == pytest.approx(120.0, abs=0.2)
    after = []
    for t in second:
        clock.feed((0xF8,), t)
        after.append(clock.bpm)
    assert abs(after[PPQ] - 140.0) < 0.5  # one beat after the step
    assert max(abs(np.array(after[2 * PPQ:]) - 140.0)) < 0.5
    assert clock.tempo.restarts >= 1


def test_tempo_is_a_least_squares_slope_and_the_grid_passes_through_the_newest_pulses():
    est = PulseTempo()
    rng = np.random.default_rng(0)
    k = np.arange(48)
    t = 5.0 + k * 0.02 + rng.normal(0, 0.001, 48)
    for ki, ti in zip(k, t):
        est.add(int(ki), float(ti))
    slope = np.polyfit(k, t, 1)[0]
    assert est.period_s == pytest.approx(slope, rel=1e-9)
    # the grid keeps the long slope and sits on the last 24 pulses (it follows where they are)
    assert est.time_of(47) == pytest.approx(np.mean(t[-24:] - slope * (k[-24:] - 47)), abs=1e-12)


def test_transport_start_stop_continue_and_song_position():
    events = []
    clock = MidiClockIn(bpm=120.0)
    clock.on_transport = lambda what: events.append((what, clock.timeline))
    period = 60.0 / 120.0 / PPQ
    t = 10.0
    for _ in range(48):  # clock before any transport: followed as it comes
        clock.feed((0xF8,), t)
        t += period
    assert clock.playing and clock.timeline.beat == pytest.approx(47 / PPQ)
    clock.feed((0xFA,), t)  # start: position 0 at the next pulse
    assert events[-1][0] == "start" and not events[-1][1].playing
    clock.feed((0xF8,), t)
    assert clock.playing and clock.timeline.beat == 0.0
    for _ in range(30):
        t += period
        clock.feed((0xF8,), t)
    clock.feed((0xFC,), t + 0.001)
    assert events[-1][0] == "stop" and not clock.timeline.playing
    assert clock.timeline.beat_at(t + 5.0) == pytest.approx(31 / PPQ)  # held while stopped
    for _ in range(10):  # clock while stopped: tempo, no motion
        t += period
        clock.feed((0xF8,), t)
    assert not clock.playing
    clock.feed((0xFB,), t)  # continue from where it stopped
    t += period
    clock.feed((0xF8,), t)
    assert events[-1][0] == "continue" and clock.timeline.beat == pytest.approx(31 / PPQ)
    clock.feed((0xFC,), t)
    clock.feed((0xF2, 32, 0), t)  # song position: 32 sixteenths = bar 3 in 4/4
    clock.feed((0xFB,), t)
    t += period
    clock.feed((0xF8,), t)
    assert clock.timeline.beat == pytest.approx(8.0)
    assert [e for e, _ in events] == ["continue", "start", "stop", "continue", "stop", "continue"]


def test_song_position_first_then_clock_waits_for_continue():
    """A sequencer located mid-bar and started (jack_midi_clock after a JACK locate): song
    position, clock while it resyncs, then continue. The song's bars count from the song
    position, not from the first pulse heard."""
    clock = MidiClockIn(bpm=128.0)
    period = 60.0 / 128.0 / PPQ
    t = 3.0
    clock.feed((0xF2, 28, 0), t)  # 28 sixteenths: beat 7, mid-bar
    for _ in range(50):  # clock while stopped: tempo, no motion
        t += period
        clock.feed((0xF8,), t)
    assert not clock.playing and clock.timeline.beat == pytest.approx(7.0)
    clock.feed((0xFB,), t)
    t += period
    clock.feed((0xF8,), t)
    assert clock.playing and clock.timeline.beat == pytest.approx(7.0)
    assert clock.timeline.beat_at(t + 60.0 / 128.0) == pytest.approx(8.0, abs=1e-3)  # a bar line a beat later


def test_a_silent_master_keeps_time_and_pulses_that_come_back_find_their_place():
    clock = MidiClockIn(bpm=128.0)
    period = 60.0 / 128.0 / PPQ
    for k in range(96):
        clock.feed((0xF8,), 50.0 + k * period)
    grid = clock.timeline
    # two seconds of nothing (a port gone), then the same master from where it is now
    k0 = 96 + int(round(2.0 / period))
    for k in range(k0, k0 + 48):
        clock.feed((0xF8,), 50.0 + k * period)
    assert clock.timeline.beat_at(50.0 + (k0 + 47) * period) == pytest.approx((k0 + 47) / PPQ, abs=1e-6)
    assert grid.beat_at(50.0 + k0 * period) == pytest.approx(k0 / PPQ, abs=1e-6)
    assert clock.counts["gaps"] == 1


def test_junk_duplicates_and_time_running_backwards_never_break_it():
    rng = np.random.default_rng(11)
    clock = MidiClockIn(bpm=128.0)
    period = 60.0 / 128.0 / PPQ
    t = 1.0
    for k in range(200):
        t += period
        clock.feed((0xF8,), t)
        if k % 37 == 0:
            clock.feed((0xF8,), t - 0.004)  # a stamp earlier than the last one
        if k % 53 == 0:
            clock.feed(tuple(rng.integers(0, 256, 3).tolist()), t)
        for bad in ((), (0xF2,), (0xF2, 1), ("x",), None, (0xFB,), (0xFB,)):
            clock.feed(bad, t)
    assert clock.playing
    assert math.isfinite(clock.bpm) and abs(clock.bpm - 128.0) < 2.0
    assert all(math.isfinite(v) for v in (clock.timeline.beat, clock.timeline.time_s))


def test_timeline_round_trips():
    grid = Timeline(1.5, 3.25, 128.0, False)
    assert Timeline.from_dict(grid.to_dict()) == grid
    assert grid.beat_at(100.0) == 3.25
