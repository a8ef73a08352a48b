"""Ableton Link: the engine as one peer of a session, against a second peer in another process.

The peer (aalink, in its own process) starts a session at 97 BPM and prints its beat grid —
pairs of Link's clock (``CLOCK_MONOTONIC_RAW``) and its beat — and takes tempo changes on stdin.
``earengine run --clock link`` joins; a JACK client of the test's own records the engine's output
and stamps each JACK cycle with ``CLOCK_MONOTONIC_RAW`` as it starts, so each click heard can be
put on the peer's grid. Judged: joining leaves the session's tempo alone, a tempo the peer sets
reaches the engine within a bar, and loops start on the peer's bar lines (quantum 4, then 3). With
start/stop sync, the peer starts and stops the session: loops start on its first bar and stop
with it, the engine's MIDI clock out (read by the test's JACK client) follows, and the engine's
own tempo, start and stop reach the peer.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytestmark = pytest.mark.integration

pytest.importorskip("aalink", reason="Ableton Link needs the aalink package: pip install aalink")
jack = pytest.importorskip("jack", reason="the JACK-Client package is needed: pip install JACK-Client")

from tests.helpers.engines import Engine  # noqa: E402
from tests.helpers.jack import CycleClock, wait_until  # noqa: E402
from tests.helpers.link import LinkPeer  # noqa: E402
from tests.helpers.recordings import assert_on_the_bars, click_loop  # noqa: E402


@pytest.fixture
def jack_env(jack_server, monkeypatch):
    for key in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER"):
        monkeypatch.setenv(key, jack_server.env[key])
    return jack_server


def test_follows_a_link_peer_and_starts_loops_on_its_bars(jack_env, tmp_path):
    jack_server = jack_env
    peer = LinkPeer(97.0)
    # Link keeps the older of two sessions that meet, and breaks a tie (founded within half a
    # second of each other) by session id: let the peer's be the established one
    time.sleep(1.0)  # deliberately: a session's age is wall-clock time
    probe = CycleClock("earengine-test-link-probe", audio_ports=1, midi=False, seconds=40.0)
    engine = None
    try:
        before = len(peer.grid)
        engine = Engine(jack_server.env, ["--clock", "link", "--set", "/loop/xfade=0", "--set", "/loop/gain=0"])
        assert wait_until(lambda: "earengine:output_1" in jack_server.ports(), 10.0)
        probe.connect("earengine:output_1", probe.ins[0])
        assert wait_until(lambda: engine.get("/clock/peers") >= 1 and peer.grid[-1][3] >= 1, 10.0), engine.output()
        session_bpm = peer.grid[-1][2]  # 97, unless another Link session on this network is older
        assert wait_until(lambda: abs(engine.get("/clock/bpm") - session_bpm) < 0.01, 5.0), (engine.get("/clock/bpm"), peer.grid[-3:])
        # joining changed nothing in the session: the peer kept its tempo all along
        assert {round(g[2], 3) for g in peer.grid[before - 3:]} == {round(session_bpm, 3)}

        peer.set_tempo(121.0)  # the other peer moves: the engine follows within a bar (2 s at 121)
        t0 = time.monotonic()
        assert wait_until(lambda: abs(engine.get("/clock/bpm") - 121.0) < 0.01, 4.0, step_s=0.05)
        assert time.monotonic() - t0 < 4 * 60.0 / 121.0
        assert abs(peer.grid[-1][2] - 121.0) < 1e-3  # and the session tempo is the peer's

        engine.bpm = 121.0
        loop = click_loop(tmp_path / "click.wav", bpm=121.0, sr=jack_server.sr)
        loads = 5

        def start_beats(beats_per_bar: int) -> np.ndarray:
            """Load the loop ``loads`` times, 1.3 bars apart; the peer's beat at each loop start heard."""
            mark = probe.filled + (probe.first_frame or 0)
            xruns = probe.xruns
            bar_s = beats_per_bar * 60.0 / 121.0  # Link's bars run on the wall clock, and so do these waits
            for _ in range(loads):
                engine.send("/loop/load", str(loop))
                time.sleep(1.3 * bar_s)
            time.sleep(0.5 * bar_s)
            clicks = probe.clicks()
            clicks = clicks[clicks >= mark]
            assert loads - (probe.xruns - xruns) <= len(clicks) <= loads, engine.output()  # an xrun may drop a click
            return np.array([peer.beat_at(probe.frame_to_raw(frame)) for frame in clicks])

        def off_ms(beats: np.ndarray, quantum: int) -> np.ndarray:
            """Distance to the nearest bar line of ``quantum`` beats, in ms."""
            return ((beats + quantum / 2) % quantum - quantum / 2) * 60.0 / 121.0 * 1000.0

        # what is left is how well the engine's grid matches the peer's
        assert_on_the_bars(off_ms(start_beats(4), 4), tight_ms=1.0, what="loop starts off the peer's bars")

        # bars of three: the quantum is the bar, so loops start where a peer in 3 has its bar lines
        peer.set_quantum(3)
        engine.send("/clock/beats_per_bar", 3)
        assert wait_until(lambda: engine.get("/clock/beats_per_bar") == 3, 10.0)
        beats = start_beats(3)
        assert_on_the_bars(off_ms(beats, 3), tight_ms=1.0, what="loop starts off the peer's bars of three")
        # and the bar is not of four any more: some of those starts are off the peer's fours
        assert np.max(np.abs(off_ms(beats, 4))) > 0.5 * 60.0 / 121.0 * 1000.0, beats
    finally:
        if engine is not None:
            engine.close()
        probe.close()
        peer.close()


def pulse_bpm(probe: CycleClock, frames: np.ndarray) -> float:
    """Tempo of MIDI clock pulses, from their times on Link's clock: the mean interval, less
    the longest and shortest tenth (a synchronous JACK graph on a busy machine can stretch a
    cycle now and then, and the pulses around it with it)."""
    from scipy.stats import trim_mean

    t = np.array([probe.frame_to_raw(f) for f in frames])
    return 60.0 / (trim_mean(np.diff(t), 0.1) * 24)


def test_start_stop_and_midi_clock_out_follow_a_link_peer(jack_env, jack_clock, tmp_path):
    """Start/stop sync on: the peer starts and stops the session, the engine's loops start on
    the peer's first bar and stop with it; its MIDI clock out (read by a JACK client of the
    test's own) starts on that bar and runs at the session's tempo as the peer changes it. Then
    the engine sets the session's tempo, starts and stops it."""
    jack_server = jack_env
    bpm = 150.0  # a bar is 1.6 s
    peer = LinkPeer(bpm)
    time.sleep(1.0)  # the peer's session is the older one
    probe = CycleClock("earengine-test-link-sync", audio_ports=1, midi=True, seconds=40.0)
    engine = None
    try:
        engine = Engine(jack_server.env, ["--clock", "link", "--midi-out", "earengine-test-link-sync:midi_in",
                                          "--set", "/clock/link_start_stop=1", "--set", "/clock/midi_out=1",
                                          "--set", "/loop/xfade=0", "--set", "/loop/gain=0"])
        assert wait_until(lambda: "earengine:output_1" in jack_server.ports(), 10.0)
        probe.connect("earengine:output_1", probe.ins[0])
        assert wait_until(lambda: engine.get("/clock/peers") == 1, 10.0), engine.output()
        assert wait_until(lambda: engine.get("/clock/playing") == 0, 3.0)  # the session is stopped
        engine.send("/loop/load", str(click_loop(tmp_path / "click.wav", bpm=bpm, sr=jack_server.sr, bars=1)))
        jack_clock.sleep_s(0.6)
        assert probe.clicks().size == 0 and not any(d == b"\xfa" for _, d in list(probe.midi))

        # start on the session's first bar line more than a bar from now: the engine is playing
        # at once, and must wait for that bar line, not take the next one it has
        peer.play(1.7)
        assert wait_until(lambda: engine.get("/clock/playing") == 1, 3.0)
        assert wait_until(lambda: len(probe.clicks()) >= 3, 8.0), engine.output()
        clicks = probe.clicks()
        beats = np.array([peer.beat_at(probe.frame_to_raw(f)) for f in clicks])
        # the loop starts on the peer's bar 0 (its start), then plays on, a click every bar: a
        # busy machine may stretch a JACK cycle and leave it behind for a moment, but within
        # Link's 3 ms
        assert abs(beats[0]) * 400.0 <= 1.5, f"the first click is {beats[0] * 400.0:.2f} ms from the peer's start"
        assert np.all(np.abs(beats - 4.0 * np.round(beats / 4.0)) * 400.0 <= 3.0), np.round(beats, 4)
        midi = list(probe.midi)
        start = next(f for f, d in midi if d == b"\xfa")
        pulses = np.array([f for f, d in midi if d == b"\xf8" and f >= start], dtype=float)
        first = peer.beat_at(probe.frame_to_raw(pulses[0]))
        assert abs(first - 4.0 * round(first / 4.0)) * 400.0 <= 1.5, f"clock out starts {first:.4f} beats in"
        assert abs(pulse_bpm(probe, pulses) - bpm) < 0.2

        peer.set_tempo(120.0)  # the session's tempo moves: so do the engine and its clock out
        assert wait_until(lambda: abs(engine.get("/clock/bpm") - 120.0) < 0.01, 3.0)
        changed = probe.client.last_frame_time
        jack_clock.sleep_s(1.5)
        settled = changed + 0.1 * probe.sr
        pulses = np.array([f for f, d in list(probe.midi) if d == b"\xf8" and f >= settled], dtype=float)
        assert pulses.size >= 40 and abs(pulse_bpm(probe, pulses) - 120.0) < 0.2

        peer.stop()
        assert wait_until(lambda: engine.get("/clock/playing") == 0, 3.0)
        assert wait_until(lambda: list(probe.midi)[-1][1] == b"\xfc", 2.0)
        jack_clock.sleep_s(0.1)
        quiet_from = probe.filled
        jack_clock.sleep_s(1.0)
        assert np.max(np.abs(probe.audio[0, quiet_from: probe.filled])) < 1e-3

        # and the other way: the engine's tempo, start and stop go to the whole session
        engine.send("/clock/bpm", 133.0)
        assert wait_until(lambda: abs(peer.grid[-1][2] - 133.0) < 1e-3, 2.0)
        engine.send("/clock/playing", 1)
        assert wait_until(lambda: peer.grid[-1][4] == 1, 2.0)
        engine.send("/clock/playing", 0)
        assert wait_until(lambda: peer.grid[-1][4] == 0, 2.0)
    finally:
        if engine is not None:
            engine.close()
        probe.close()
        peer.close()
