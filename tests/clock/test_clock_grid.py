"""The bar grid the player uses, following a source; MIDI clock out; the registry wiring
(Link stood in for by a fake session, so no network is needed)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from earengine.clock.control import ClockControl
from earengine.clock.grid import ArrivalClock, BarClock, Timeline
from earengine.clock.midi_in import PPQ, MidiClockIn
from earengine.clock.midi_out import MidiClockOut
from earengine.clock.params import CLOCK_PARAMS, CLOCK_SOURCES
from earengine.errors import ConfigError
from earengine.params import default_registry
from earengine.params.registry import Registry

SR, N = 44100, 256


class Source:
    def __init__(self, timeline=None):
        self.timeline = timeline


def run_clock(clock: BarClock, buffers: int, *, t0: float, rng, late_s: float = 0.0005):
    """Tick as an audio thread would: buffer k starts at t0 + k·N/SR and its callback comes a
    little late. Returns (true start time of the buffer, event) for each bar event."""
    events = []
    t_true = [0.0]

    def now() -> float:
        return t_true[0] + (rng.exponential(late_s) if late_s else 0.0)

    clock._now = now
    for k in range(buffers):
        t_true[0] = t0 + k * N / SR
        event = clock.tick(N)
        if event is not None:
            events.append((t_true[0], event))
    return events


@pytest.mark.parametrize("bpm", [100.0, 128.0, 174.0])
def test_bar_events_land_on_the_sources_bar_lines(bpm):
    rng = np.random.default_rng(int(bpm))
    grid = Timeline(time_s=50.0, beat=0.0, bpm=bpm)
    clock = BarClock(sr=SR, bpm=120.0, beats_per_bar=4)
    clock.follow(Source(grid))
    events = run_clock(clock, int(12 * SR / N), t0=49.0, rng=rng)
    assert [e.bar for _, e in events] == list(range(len(events))) and len(events) >= 4
    for t, e in events:
        bar_time = grid.time_at(e.bar * 4)
        # reported for the buffer the line falls in (give or take the callback's lateness)
        assert -N / SR - 0.0015 <= t - bar_time <= 0.0015
        assert e.error_samples == pytest.approx((t - bar_time) * SR, abs=0.0015 * SR)
    assert clock.bpm == bpm


def test_offset_plays_the_grid_early():
    rng = np.random.default_rng(1)
    grid = Timeline(time_s=20.0, beat=0.0, bpm=120.0)
    clock = BarClock(sr=SR, bpm=120.0, beats_per_bar=4)
    clock.offset_s = 0.1
    clock.follow(Source(grid))
    events = run_clock(clock, int(7 * SR / N), t0=19.0, rng=rng, late_s=0.0)
    for t, e in events:
        assert -N / SR - 1e-9 <= t + 0.1 - grid.time_at(e.bar * 4) <= 1e-9
        assert e.error_samples == pytest.approx((t + 0.1 - grid.time_at(e.bar * 4)) * SR, abs=1e-6)


def test_stop_start_and_jumps_of_the_source():
    rng = np.random.default_rng(2)
    source = Source(Timeline(time_s=10.0, beat=37.3, bpm=120.0))
    clock = BarClock(sr=SR, bpm=120.0, beats_per_bar=4)
    clock.follow(source)
    buffer_s = N / SR
    events = run_clock(clock, 300, t0=10.0, rng=rng)  # until 11.74 s
    assert [e.bar for _, e in events] == [10]  # beat 40 falls at 11.35 s
    source.timeline = Timeline(time_s=11.7, beat=39.0, bpm=120.0, playing=False)
    events = run_clock(clock, 200, t0=10.0 + 300 * buffer_s, rng=rng)  # until 12.90 s
    assert events == [] and not clock.playing and clock.timeline.playing is False
    t_start = 10.0 + 500 * buffer_s
    source.timeline = Timeline(time_s=t_start, beat=0.0, bpm=120.0)  # start: bar 0 at once
    events = run_clock(clock, 400, t0=t_start, rng=rng)
    assert [e.bar for _, e in events] == [0, 1]
    assert events[0][0] == pytest.approx(t_start, abs=buffer_s)
    # a start heard a little late still starts its bar (a start cannot arrive ahead of its beat)
    t_late = 10.0 + 900 * buffer_s
    source.timeline = Timeline(time_s=t_late - 0.02, beat=0.0, bpm=120.0)
    events = run_clock(clock, 50, t0=t_late, rng=rng)
    assert [e.bar for _, e in events] == [0] and events[0][1].error_samples > 0.015 * SR


def test_a_count_in_to_a_start_has_no_bar_lines_before_bar_0():
    # a Link peer starts the session on a coming bar: this peer's beat 0 is there, and the
    # beats before it count in
    rng = np.random.default_rng(4)
    source = Source(Timeline(time_s=10.0, beat=3.0, bpm=120.0, playing=False))
    clock = BarClock(sr=SR, bpm=120.0, beats_per_bar=4)
    clock.follow(source)
    assert run_clock(clock, 50, t0=10.0, rng=rng) == []
    t_start = 10.0 + 50 * N / SR
    source.timeline = Timeline(time_s=t_start, beat=-6.5, bpm=120.0)  # bar 0 is 3.25 s away
    events = run_clock(clock, 700, t0=t_start, rng=rng)  # 4.06 s
    assert [e.bar for _, e in events] == [0]
    assert -N / SR - 0.0015 <= events[0][0] - (t_start + 3.25) <= 0.0015
    # MIDI clock out waits for bar 0 too, rather than starting on the count-in's bar lines
    now = [t_start]
    sent = []
    out = MidiClockOut(lambda: source.timeline, lambda m, due: sent.append((due, bytes(m))), now=lambda: now[0])
    while now[0] < t_start + 3.5:
        now[0] += max(out.step(), 1e-4)
    assert sent[0][1] == b"\xfa" and sent[1] == (pytest.approx(t_start + 3.25, abs=1e-9), b"\xf8")


def test_internal_clock_keeps_its_contract_and_transport():
    clock = BarClock(sr=48000, bpm=120.0, beats_per_bar=4)
    bars = [e.bar for e in (clock.tick(1000) for _ in range(200)) if e]
    assert bars == [0, 1, 2]
    clock.stop()
    assert all(clock.tick(1000) is None for _ in range(300))
    clock.start()
    assert clock.tick(1000).bar == 0
    assert clock.timeline.bpm == 120.0 and clock.timeline.playing


def test_arrival_clock_follows_the_earliest_arrivals_and_moves_on_after_lost_time():
    rng = np.random.default_rng(5)
    arrivals = ArrivalClock(window_s=1.0)
    errors = []
    for k in range(2000):
        local = k * N / SR
        t = arrivals.update(local, 1000.0 + local + rng.exponential(0.002))
        errors.append(t - (1000.0 + local))
    assert 0.0 <= np.max(errors[200:]) < 0.0005
    # three periods lost in an xrun (the device skipped them): a second later it is known
    for k in range(2000, 2500):
        local = k * N / SR
        t = arrivals.update(local, 1000.0 + 3 * N / SR + local + rng.exponential(0.002))
    assert abs(t - (1000.0 + 3 * N / SR + local)) < 0.0005


@pytest.mark.parametrize("lead_s", [0.0, 0.01])
def test_midi_clock_out_starts_on_a_bar_line_and_keeps_exact_time(lead_s):
    now = [100.0]
    sent = []  # (handed over at, due at, message)
    grid = [Timeline(time_s=100.0, beat=0.3, bpm=120.0)]
    out = MidiClockOut(lambda: grid[0], lambda m, due: sent.append((now[0], due, bytes(m))),
                       beats_per_bar=lambda: 4, lead_s=lead_s, now=lambda: now[0])
    while now[0] < 106.0:
        now[0] += max(out.step(), 1e-4) + 0.0002  # every wake-up a little late
    kinds = [m for _, _, m in sent]
    assert kinds[0] == b"\xfa" and kinds[1] == b"\xf8"
    bar_line = grid[0].time_at(4.0)
    handed = np.array([h for h, _, m in sent if m == b"\xf8"])
    due = np.array([d for _, d, m in sent if m == b"\xf8"])
    expected = bar_line + np.arange(due.size) * 60.0 / 120.0 / PPQ
    if lead_s:
        assert np.max(np.abs(due - expected)) < 1e-9  # placed exactly; handed over ahead
        assert np.all(handed <= due) and np.all(handed >= due - lead_s - 0.006)
    else:
        assert np.max(np.abs(handed - expected)) < 0.001  # sent on time; nothing accumulates
    assert sent[0][1] <= due[0]
    grid[0] = Timeline(time_s=now[0], beat=20.0, bpm=120.0, playing=False)
    out.step()
    assert sent[-1][2] == b"\xfc" and not out.running


class FakeLink:
    """A Link session with one other peer at 133 BPM, recording what the engine asks of it."""

    def __init__(self, *, bpm, beats_per_bar, start_stop_sync):
        self.asked = []
        self.quantum = beats_per_bar
        self.start_stop_sync = start_stop_sync
        self.peers = 1
        self.timeline = Timeline(time.monotonic(), 9.0, 133.0, True)

    def start(self):
        pass

    def close(self):
        pass

    def set_tempo(self, bpm):
        self.asked.append(("tempo", bpm))
        self.timeline = Timeline(time.monotonic(), 10.0, bpm, True)

    def set_quantum(self, q):
        self.asked.append(("quantum", q))

    def set_start_stop_sync(self, on):
        self.asked.append(("sync", on))
        self.start_stop_sync = on

    def set_playing(self, on):
        self.asked.append(("playing", on))


def test_clock_control_follows_link_without_pushing_its_own_tempo():
    reg = default_registry()
    clock = BarClock(sr=SR, bpm=120.0, beats_per_bar=4)
    lines, transport = [], []
    links = []

    def factory(**kw):
        links.append(FakeLink(**kw))
        return links[-1]

    with ClockControl(reg, clock, link_factory=factory, say=lines.append, on_transport=transport.append) as ctl:
        reg.set("/clock/source", "link")
        link = links[0]
        ctl.poll()
        assert reg.get("/clock/bpm") == 133.0 and reg.get("/clock/peers") == 1
        assert link.asked == []  # joining changed nothing in the session
        assert clock.following
        reg.set("/clock/bpm", 140.0, source="osc")  # a user's tempo goes to the whole session
        assert link.asked == [("tempo", 140.0)]
        ctl.poll()
        reg.set("/clock/beats_per_bar", 3)
        reg.set("/clock/link_start_stop", True)
        assert link.asked[-2:] == [("quantum", 3), ("sync", True)]
        reg.set("/clock/playing", False, source="osc")
        assert link.asked[-1] == ("playing", False)
        link.timeline = Timeline(time.monotonic(), 11.0, 140.0, False)
        ctl.poll()
        assert transport == ["stop"] and reg.get("/clock/playing") is False
        reg.set("/clock/source", "internal")
        assert not clock.following
    assert any("Link" in line for line in lines)


def test_clock_control_publishes_midi_tempo_and_transport():
    reg = default_registry()
    clock = BarClock(sr=SR, bpm=120.0, beats_per_bar=4)
    midi = MidiClockIn()
    transport = []
    with ClockControl(reg, clock, midi_in=midi, on_transport=transport.append) as ctl:
        reg.set("/clock/source", "midi")
        t = time.monotonic()
        midi.feed((0xFA,), t)
        for k in range(96):
            midi.feed((0xF8,), t + k * 60.0 / 174.0 / PPQ)
        ctl.poll()
        assert reg.get("/clock/bpm") == pytest.approx(174.0, abs=0.01)
        midi.feed((0xFC,), t + 1.0)
        assert transport == ["start", "stop"] and reg.get("/clock/playing") is False
        reg.set("/clock/offset_ms", 12.5)
        assert clock.offset_s == 0.0125


def test_a_failing_link_keeps_the_internal_clock():
    reg = default_registry()
    lines = []

    def factory(**kw):
        raise OSError("no network")

    with ClockControl(reg, BarClock(sr=SR, bpm=120.0, beats_per_bar=4), link_factory=factory, say=lines.append) as ctl:
        reg.set("/clock/source", "link")
        assert ctl.source == "internal" and "no network" in lines[-1]


def test_internal_transport_through_the_registry():
    reg = default_registry()
    clock = BarClock(sr=48000, bpm=120.0, beats_per_bar=4)
    transport = []
    with ClockControl(reg, clock, on_transport=transport.append):
        assert clock.tick(1000).bar == 0
        reg.set("/clock/playing", False, source="osc")
        assert transport == ["stop"] and all(clock.tick(1000) is None for _ in range(200))
        reg.set("/clock/playing", True, source="osc")
        assert transport == ["stop", "start"]
        assert clock.tick(1000).bar == 0  # from the top, at once
        reg.set("/clock/midi_out", True)  # no MIDI output: nothing to send clock to, nothing breaks


def test_every_clock_source_has_an_entry():
    ctl = ClockControl(default_registry(), BarClock(sr=SR, bpm=120.0, beats_per_bar=4))
    assert sorted(ctl.sources) == sorted(CLOCK_SOURCES)
    # a choice added to the row without its entry fails when the control is made, not later
    rows = [dataclasses.replace(spec, choices=CLOCK_SOURCES + ("ptp",)) if spec.address == "/clock/source" else spec
            for spec in CLOCK_PARAMS]
    with pytest.raises(ConfigError, match="no entry for choice ptp"):
        ClockControl(Registry(rows), BarClock(sr=SR, bpm=120.0, beats_per_bar=4))
