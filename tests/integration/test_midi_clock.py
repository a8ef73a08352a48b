"""MIDI clock from an independent source: Debian's ``jack_midi_clock``, driven by JACK transport.

Tempo: several ``jack_midi_clock`` processes at 100, 128 and 174 BPM, with and without their
jitter option, run at once; the engine's MIDI input and clock estimator follow each through a
real JACK MIDI port.

Bars: ``earengine run --clock midi`` plays a one-bar click loop; a JACK client of the test's own
(:class:`~tests.helpers.jack.JackProbe`) records the engine's output and the clock pulses in the
same JACK cycles, each with its frame number, so every click is measured against the pulse that
opens its bar without any clock of ours in between. Start, stop and continue come from JACK
transport; song position comes from a JACK timecode master (bars and beats, as a DAW on JACK
provides them). Waits for bars are on the JACK frame clock (``jack_clock``): they are the audio's.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterator, Optional

import numpy as np
import pytest

from tests.helpers.engines import Engine
from tests.helpers.jack import JackClock, JackProbe, MidiClockSource, wait_until
from tests.helpers.recordings import PPQ, assert_on_the_bars, bar_frames, click_loop

pytestmark = pytest.mark.integration

_INSTALL = "install Debian's jack-midi-clock (apt-get install jack-midi-clock)"


# ---------------------------------------------------------------------------------------------
# Real parts
# ---------------------------------------------------------------------------------------------
class TimecodeMaster:
    """A JACK timebase master in this process: bars, beats and ticks of a steady 4/4 tempo from
    the transport frame, as a DAW on JACK transport provides them."""

    TICKS_PER_BEAT = 1920

    def __init__(self, bpm: float) -> None:
        import jack

        self.bpm = bpm
        self.client = jack.Client("earengine-test-timecode", no_start_server=True)
        self.sr = self.client.samplerate
        self._bbt = jack.POSITION_BBT
        self.client.set_timebase_callback(self._position)
        self.client.activate()

    def beat_frames(self, beats: float) -> int:
        return int(round(beats * 60.0 / self.bpm * self.sr))

    def _position(self, state, blocksize, pos, new_pos) -> None:
        beats = pos.frame / self.sr * self.bpm / 60.0
        bar, in_bar = divmod(beats, 4.0)
        beat, fraction = divmod(in_bar, 1.0)
        pos.valid = pos.valid | self._bbt
        pos.bar, pos.beat, pos.tick = int(bar) + 1, int(beat) + 1, int(fraction * self.TICKS_PER_BEAT)
        pos.bar_start_tick = float(bar * 4 * self.TICKS_PER_BEAT)
        pos.beats_per_bar, pos.beat_type = 4.0, 4.0
        pos.ticks_per_beat, pos.beats_per_minute = float(self.TICKS_PER_BEAT), self.bpm

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


@pytest.fixture
def jack_env(jack_server, monkeypatch):
    if shutil.which("jack_midi_clock") is None:
        pytest.skip(f"jack_midi_clock not found: {_INSTALL}")
    pytest.importorskip("jack", reason="the JACK-Client package is needed: pip install JACK-Client")
    for key in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER"):
        monkeypatch.setenv(key, jack_server.env[key])
    import jack

    transport = jack.Client("earengine-test-transport", no_start_server=True)
    transport.activate()
    transport.transport_stop()
    transport.transport_frame = 0
    yield jack_server, transport
    transport.transport_stop()
    transport.deactivate()
    transport.close()


# ---------------------------------------------------------------------------------------------
# Tempo
# ---------------------------------------------------------------------------------------------
def test_tempo_estimates_within_half_a_bpm_at_100_128_174_with_and_without_jitter(jack_env, jack_clock):
    from earengine.clock.midi_in import MidiClockIn
    from earengine.midi.service import MidiService

    jack_server, transport = jack_env
    # jack_midi_clock's jitter changes every interval by up to ±J %: its beats wander like a
    # random walk, and only a long average finds the set tempo (see the report on J = 20)
    cases = [(bpm, jitter) for bpm in (100.0, 128.0, 174.0) for jitter in (0, 3)]
    sources, services, clocks = [], [], []
    try:
        for bpm, jitter in cases:
            source = MidiClockSource(jack_server, bpm, jitter_percent=jitter)
            sources.append(source)
            clock = MidiClockIn(bpm=120.0)
            service = MidiService.open([source.port], backend="jack", client=f"est{len(clocks)}",
                                       on_clock=clock.feed)
            service.start()
            services.append(service)
            clocks.append(clock)
        assert wait_until(lambda: all(s.inputs[0].connected for s in services))
        transport.transport_start()
        assert wait_until(lambda: all(c.counts["pulses"] > 2 * PPQ for c in clocks), 10.0)
        readings = {case: [] for case in cases}
        for step in range(50):  # ten seconds of the clock, from two beats after the start
            jack_clock.sleep_s(0.2)
            for case, clock in zip(cases, clocks):
                if case[1] == 0 or step >= 40:  # a jittery clock is judged once it could be averaged
                    readings[case].append(clock.bpm)
        for (bpm, jitter), values in readings.items():
            worst = max(abs(v - bpm) for v in values)
            assert worst <= 0.5, f"{bpm} BPM, jitter {jitter}%: estimates {values}"
        assert all(c.playing and c.timeline.playing for c in clocks)
    finally:
        transport.transport_stop()
        for service in services:
            service.close()
        for source in sources:
            source.close()


# ---------------------------------------------------------------------------------------------
# Bars, start, stop and continue, through the engine
# ---------------------------------------------------------------------------------------------
@contextmanager
def following(jack_env, bpm: float, probe_name: str, **source_options) -> Iterator[SimpleNamespace]:
    """A ``jack_midi_clock`` at ``bpm`` (:class:`MidiClockSource` options), a probe hearing it, and
    ``earengine run --clock midi`` on its port with its output into the probe (loops silent but
    for their clicks, no crossfade): ``.source``, ``.probe``, ``.engine``. Everything stops at the
    end, the transport too; a test that replaces ``.source`` has the new one closed."""
    jack_server, transport = jack_env
    rig = SimpleNamespace(source=MidiClockSource(jack_server, bpm, **source_options), probe=None, engine=None)
    try:
        rig.probe = JackProbe(probe_name, audio_ports=1, midi=True, seconds=40.0)
        rig.probe.connect(rig.source.port, rig.probe.midi_in)
        rig.engine = Engine(jack_server.env, ["--clock", "midi", "--midi-in", rig.source.port,
                                              "--set", "/loop/xfade=0", "--set", "/loop/gain=0"])
        rig.engine.bpm = bpm
        assert wait_until(lambda: "earengine:output_1" in jack_server.ports(), 10.0)
        rig.probe.connect("earengine:output_1", rig.probe.ins[0])
        settled = rig.probe.filled + int(0.3 * rig.probe.sr)  # 0.3 s of audio through the connections
        assert wait_until(lambda: rig.probe.filled >= settled, 10.0)
        yield rig
    finally:
        transport.transport_stop()
        for part in (rig.engine, rig.probe, rig.source):
            if part is not None:
                part.close()


def bar_frames_after_continue(midi: list[tuple[int, bytes]]) -> tuple[np.ndarray, int]:
    """Frames of the bar lines after the last continue, and the song position (sixteenths) it
    continued from: the first pulse after continue plays the song position pointer's position."""
    events = list(midi)
    at = max(i for i, (_, data) in enumerate(events) if data[:1] == b"\xfb")
    spp = [data for _, data in events[:at] if data[:1] == b"\xf2"][-1]
    sixteenths = (spp[1] & 0x7F) | (spp[2] & 0x7F) << 7
    pulses = np.array([f for f, data in events[at:] if data[:1] == b"\xf8"])
    position = 6 * sixteenths + np.arange(pulses.size)  # in pulses, 24 a beat
    return pulses[position % (4 * PPQ) == 0], sixteenths


def start_errors_ms(clock: JackClock, probe: JackProbe, engine: Engine, loop: Path, *, loads: int,
                    after_frame: int = 0, bars: Optional[Callable[[], np.ndarray]] = None) -> np.ndarray:
    """Load the loop ``loads`` times, each a bar and a quarter after the last, so every click is
    a loop starting on a bar line (a four-bar loop never gets round to its own start again);
    returns each click's distance to the nearest bar line of the clock, in ms. Bars are waited
    for on the JACK ``clock``: they are the audio's."""
    bar_s = 4 * 60.0 / engine.bpm
    mark = probe.filled + (probe.first_frame or 0)
    xruns = probe.xruns
    for _ in range(loads):
        engine.send("/loop/load", str(loop))
        clock.sleep_s(1.25 * bar_s)
    clock.sleep_s(0.5 * bar_s)
    bars = bar_frames(probe.midi, after_frame=after_frame) if bars is None else bars()
    clicks = probe.clicks()
    clicks = clicks[clicks >= mark]
    # a click is one sample: a cycle that an xrun dropped (a busy machine) takes it with it
    lost = probe.xruns - xruns
    assert len(clicks) == loads or loads - lost <= len(clicks) < loads, \
        f"{len(clicks)} loop starts heard for {loads} loads ({lost} xruns); {engine.output()}"
    return np.array([(c - bars[np.argmin(np.abs(bars - c))]) / probe.sr * 1000.0 for c in clicks])


def test_loops_start_on_the_clocks_bars_and_transport_is_honoured(jack_env, jack_clock, tmp_path):
    jack_server, transport = jack_env
    bpm = 174.0  # a bar is 237.6 JACK periods: bar lines fall anywhere in a period
    loop = click_loop(tmp_path / "click.wav", bpm=bpm, sr=jack_server.sr)
    with following(jack_env, bpm, "earengine-test-probe") as rig:
        probe, engine = rig.probe, rig.engine
        transport.transport_start()
        jack_clock.sleep_s(1.5)
        assert abs(engine.get("/clock/bpm") - bpm) <= 0.5  # from the 120 it started with
        assert engine.get("/clock/playing") == 1
        errors_ms = start_errors_ms(jack_clock, probe, engine, loop, loads=4)
        # measured in JACK frames with no other clock in between: what is left is the clock
        # estimate's error
        assert_on_the_bars(errors_ms, tight_ms=0.5, what="loop starts off the bars")

        transport.transport_stop()  # stop: the loop falls silent, the transport says stopped
        assert wait_until(lambda: engine.get("/clock/playing") == 0, 3.0)
        assert engine.get("/loop/mute") == 1
        jack_clock.sleep_s(0.3)
        quiet_from = probe.filled
        jack_clock.sleep_s(0.8)
        assert np.max(np.abs(probe.audio[0, quiet_from: probe.filled])) < 1e-3

        mark = probe.client.last_frame_time
        transport.transport_frame = 0
        assert wait_until(lambda: transport.transport_frame == 0, 2.0)  # a locate takes a cycle or two
        transport.transport_start()  # from the top: jack_midi_clock sends start, bars count from it
        assert wait_until(lambda: engine.get("/clock/playing") == 1, 3.0)
        assert engine.get("/loop/mute") == 0
        jack_clock.sleep_s(1.0)
        errors_ms = start_errors_ms(jack_clock, probe, engine, loop, loads=3, after_frame=mark)
        assert_on_the_bars(errors_ms, tight_ms=0.5, what="after a restart, loop starts off the bars")

        transport.transport_stop()  # stop, then roll on from where it stopped: continue
        assert wait_until(lambda: engine.get("/clock/playing") == 0, 3.0)
        jack_clock.sleep_s(0.5)
        transport.transport_start()
        assert wait_until(lambda: any(d == b"\xfb" for _, d in list(probe.midi)), 3.0)  # continue sent
        assert wait_until(lambda: engine.get("/clock/playing") == 1, 3.0)
        assert engine.get("/loop/mute") == 0
        jack_clock.sleep_s(1.0)
        # the pulses go on counting from the start before: its bar lines are still the bar lines
        errors_ms = start_errors_ms(jack_clock, probe, engine, loop, loads=3, after_frame=mark)
        assert_on_the_bars(errors_ms, tight_ms=0.5, what="after a continue, loop starts off the bars")


def test_a_clock_source_that_goes_and_comes_back(jack_env, jack_clock, tmp_path):
    """The clock source quits mid-song (its port disappears) and starts again: the engine keeps
    time on its grid meanwhile, says so, reconnects, and counts the pulses that come back from
    where its grid says they are, so loops keep the song's bar lines throughout."""
    jack_server, transport = jack_env
    bpm = 128.0
    period = jack_server.sr * 60.0 / (bpm * PPQ)  # frames per pulse
    loop = click_loop(tmp_path / "click.wav", bpm=bpm, sr=jack_server.sr)

    def song_bars() -> np.ndarray:
        """Bar lines of the song since its start, from every pulse either source sent: pulses
        numbered by where they fall on the first source's grid."""
        events = list(probe.midi)
        at = max(i for i, (_, d) in enumerate(events) if d == b"\xfa")
        pulses = np.array([f for f, d in events[at:] if d == b"\xf8"], dtype=float)
        first = pulses[:PPQ * 4]
        k = np.arange(first.size)
        slope, origin = np.polyfit(k, first, 1)
        number = np.round((pulses - origin) / slope).astype(int)
        return pulses[number % (4 * PPQ) == 0].astype(np.int64)

    with following(jack_env, bpm, "earengine-test-gone-probe") as rig:
        probe, engine = rig.probe, rig.engine
        transport.transport_start()
        assert wait_until(lambda: engine.get("/clock/playing") == 1, 3.0), engine.output()
        jack_clock.sleep_s(1.5)
        assert_on_the_bars(start_errors_ms(jack_clock, probe, engine, loop, loads=3, bars=song_bars),
                           tight_ms=0.5, what="loop starts off the bars")

        port = rig.source.port
        xruns = probe.xruns
        gone = jack_clock.mark()
        rig.source.close()  # gone, with no stop sent
        assert wait_until(lambda: "is gone" in engine.output(), 5.0), engine.output()
        assert engine.get("/clock/playing") == 1 and abs(engine.get("/clock/bpm") - bpm) <= 0.5
        # on its own grid meanwhile: the song's bar lines are where the pulses would have been
        bar = 4 * PPQ * period
        errors_ms = start_errors_ms(jack_clock, probe, engine, loop, loads=3,
                                    bars=lambda: song_bars()[-1] + bar * np.arange(12))
        # with no clock to go by, the engine keeps time by the wall clock, and the song (JACK
        # transport) by JACK's frames: the two part only where JACK lost time (an xrun of the
        # dummy driver, or cycles it ran late, on a busy machine), and then by what it lost
        lost_ms = 1000.0 * jack_clock.lost_s(gone)
        if probe.xruns == xruns and abs(lost_ms) < 1.0:
            assert_on_the_bars(errors_ms, tight_ms=3.0, what="with the source gone, loop starts off the song's bars")
        else:
            assert np.all(np.abs(errors_ms) <= abs(lost_ms) + 10.0), (errors_ms, lost_ms)

        rig.source = MidiClockSource(jack_server, bpm)  # back, under the same name
        assert rig.source.port == port
        probe.connect(port, probe.midi_in)
        assert wait_until(lambda: engine.output().count(f"connected to {port}") >= 2, 5.0), engine.output()
        lost_ms = 1000.0 * jack_clock.lost_s(gone)  # while the engine had no pulses to go by
        jack_clock.sleep_s(1.0)
        errors_ms = start_errors_ms(jack_clock, probe, engine, loop, loads=3, bars=song_bars)
        pulse_ms = period / jack_server.sr * 1000.0
        if probe.xruns == xruns and abs(lost_ms) < 0.5 * pulse_ms:
            assert_on_the_bars(errors_ms, tight_ms=0.5, what="after the source came back, loop starts off the bars")
        else:  # pulses that come back are numbered by where the grid says they are: by the wall
            # clock, which JACK's lost time put that much ahead of the song's count. The loops
            # still start on the clock's pulses, a whole number of them from the bars, and no
            # further from them than the time JACK lost
            assert_on_the_bars(errors_ms - pulse_ms * np.round(errors_ms / pulse_ms), tight_ms=0.5,
                               what="after the source came back, loop starts off the pulses")
            assert np.all(np.abs(errors_ms) <= abs(lost_ms) + 2.5 * pulse_ms), (errors_ms, lost_ms)
        assert abs(engine.get("/clock/bpm") - bpm) <= 0.5


def test_song_position_from_a_timecode_master_places_the_bars(jack_env, jack_clock, tmp_path):
    """A DAW on JACK transport, located mid-bar and started: ``jack_midi_clock`` (following its
    bars and beats) sends a song position pointer, clock, and a second later continue. The loops
    then start on the bars that song position counts, not on bars counted from the continue."""
    jack_server, transport = jack_env
    bpm = 128.0
    loop = click_loop(tmp_path / "click.wav", bpm=bpm, sr=jack_server.sr)
    master = TimecodeMaster(bpm)
    try:
        with following(jack_env, bpm, "earengine-test-spp-probe", follow_master=True, resync_s=1) as rig:
            probe, engine = rig.probe, rig.engine
            transport.transport_frame = master.beat_frames(5.0)  # the second bar's second beat
            assert wait_until(lambda: transport.transport_frame == master.beat_frames(5.0), 2.0)
            transport.transport_start()
            assert wait_until(lambda: any(d == b"\xfb" for _, d in list(probe.midi)), 5.0), "no continue sent"
            assert wait_until(lambda: engine.get("/clock/playing") == 1, 3.0), engine.output()
            bars, sixteenths = bar_frames_after_continue(probe.midi)
            # where the song continues is not a bar line: bars counted from the continue would be wrong
            assert sixteenths % 16 != 0, f"jack_midi_clock continued from {sixteenths} sixteenths, a bar line"
            jack_clock.sleep_s(1.0)
            errors_ms = start_errors_ms(jack_clock, probe, engine, loop, loads=3,
                                        bars=lambda: bar_frames_after_continue(probe.midi)[0])
            assert_on_the_bars(errors_ms, tight_ms=0.5, what="after a song position, loop starts off its bars")
            assert abs(engine.get("/clock/bpm") - bpm) <= 0.5
    finally:
        master.close()


def test_clock_out_keeps_the_engines_bars_and_tempo(jack_env, jack_clock, tmp_path):
    """The engine as the master: its MIDI clock starts on a bar line, runs at its tempo, and its
    bar lines (every 96th pulse after start) are where its loops start."""
    jack_server, _ = jack_env
    bpm = 150.0
    loop = click_loop(tmp_path / "click.wav", bpm=bpm, sr=jack_server.sr)
    probe = JackProbe("earengine-test-clock-out", audio_ports=1, midi=True, seconds=30.0)
    engine = None
    try:
        engine = Engine(jack_server.env, ["--midi-out", "earengine-test-clock-out:midi_in",
                                          "--set", f"/clock/bpm={bpm}", "--set", "/loop/xfade=0",
                                          "--set", "/loop/gain=0"])
        engine.bpm = bpm
        assert wait_until(lambda: "earengine:output_1" in jack_server.ports(), 10.0)
        probe.connect("earengine:output_1", probe.ins[0])
        assert wait_until(lambda: probe.midi_in.number_of_connections > 0, 5.0), engine.output()
        engine.send("/clock/midi_out", 1)
        assert wait_until(lambda: any(d == b"\xfa" for _, d in list(probe.midi)), 5.0), engine.output()
        jack_clock.sleep_s(1.0)
        errors_ms = start_errors_ms(jack_clock, probe, engine, loop, loads=3)
        assert_on_the_bars(errors_ms, tight_ms=0.5, what="loop starts off the clock sent")
        pulses = np.array([f for f, d in probe.midi if d == b"\xf8"], dtype=float)
        k = np.arange(pulses.size)
        slope = np.polyfit(k, pulses, 1)[0]
        assert abs(60.0 * probe.sr / (slope * PPQ) - bpm) < 0.05
        # on the line: most pulses within 1 ms, the median well within. Some are late where the
        # whole suite's processes on two cores held the clock-out thread past its 10 ms lead (seen
        # up to 43 ms once in a full run, and 13 % of the pulses in a fresh clone's run, the last
        # release's code too: the dummy server has no real-time priority); their share is bounded
        off_ms = np.abs(pulses - np.polyval(np.polyfit(k, pulses, 1), k)) / probe.sr * 1000.0
        assert np.median(off_ms) < 0.5 and np.mean(off_ms < 1.0) >= 0.75, np.round(np.sort(off_ms)[-5:], 2)
        engine.send("/clock/midi_out", 0)
        assert wait_until(lambda: list(probe.midi)[-1][1] == b"\xfc", 3.0)
    finally:
        if engine is not None:
            engine.close()
        probe.close()
