"""Listening on the real JACK dummy server: another JACK client plays into earengine:input_*.

The engine runs as ``earengine run --audio jack --input``; a client of the test's own plays a
signal known frame by frame (its value at JACK frame F is ``signal(F)``) into both inputs, so what
the engine captured or heard can be compared with what was played, to the frame.
"""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from typing import Iterator, Optional

import numpy as np
import pytest
import soundfile

from tests.helpers.engines import engine_process
from tests.helpers.jack import JackProbe
from tests.helpers.streams import Receiver, frames
from tests.helpers.waits import wait_until

jack = pytest.importorskip("jack", reason="the JACK-Client package is needed: pip install JACK-Client")

EAR = "models/ear-default"


@pytest.fixture
def jack_env(jack_server, monkeypatch):
    """The test server, named in this process's environment so the test's own clients find it."""
    for key in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER"):
        monkeypatch.setenv(key, jack_server.env[key])
    return jack_server


def xruns_of(eng) -> int:
    """The engine's xrun count (the last field but one of /status.reply)."""
    eng.osc.send("/status")
    reply = eng.osc.wait_for("/status.reply", 5.0)
    assert reply is not None, "the engine does not answer /status"
    return int(reply[8])


class Player:
    """A JACK client playing ``signal(frames) -> samples`` (frames: JACK frame numbers) into the
    engine's inputs, once connected."""

    def __init__(self, signal, name: str = "earengine-test-player") -> None:
        self.signal = signal
        self.client = jack.Client(name, no_start_server=True)
        self.out = self.client.outports.register("out")
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, n: int) -> None:
        f0 = self.client.last_frame_time
        self.out.get_array()[:] = self.signal(f0 + np.arange(n, dtype=np.int64))

    def connect(self) -> None:
        for port in ("earengine:input_1", "earengine:input_2"):
            self.client.connect(self.out, port)

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()

    def __enter__(self):
        """Connected for the ``with`` block, closed after it."""
        try:
            self.connect()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def input_stream(eng, *, reduce: str) -> Iterator[Receiver]:
    """A receiver of the input's scaleogram (``/stream/reduce`` ``reduce``) while the engine
    listens, once its first frame is in; closed (its frames kept) after the block."""
    rx = Receiver()
    try:
        for address, value in (("/stream/layers", "scaleogram"), ("/stream/reduce", reduce),
                               ("/stream/source", "input"), ("/listen/run", 1)):
            eng.osc.send(address, value)
        eng.osc.send("/stream/add", rx.dest)
        assert rx.wait_for(lambda r: any(a == "/stream/act/scaleogram" for _, _, a, _ in r.items), 60.0)
        yield rx
    finally:
        rx.close()


def _get(osc, address: str, timeout_s: float = 2.0):
    osc.send("/get", address)
    reply = osc.wait_for(address, timeout_s)
    assert reply is not None, f"no answer to /get {address}"
    return reply[0]


def _wait_get(osc, address: str, ok, timeout_s: float = 10.0):
    seen = []
    assert wait_until(lambda: (seen.append(_get(osc, address)) or ok(seen[-1])), timeout_s), \
        f"{address} never satisfied the test; last {seen[-1:]}"
    return seen[-1]


def test_no_input_connected_is_a_status_then_level_and_clips_are_read(jack_env):
    jack_server = jack_env
    sine = lambda f: (0.5 * np.sin(2 * np.pi * 441.0 * f / jack_server.sr)).astype(np.float32)  # noqa: E731
    with engine_process(jack_server, ("--no-dream", "--input")) as eng:
        status = _wait_get(eng.osc, "/listen/status", lambda s: "no input connected" in s)
        assert "earengine:input_1" in status
        assert any(line.startswith("listen: no input connected") for line in eng.lines)
        player = Player(sine)
        try:
            player.connect()
            _wait_get(eng.osc, "/listen/status", lambda s: s.startswith("hearing"))
            level = _wait_get(eng.osc, "/listen/level_db", lambda v: v > -20.0)
            level = _wait_get(eng.osc, "/listen/level_db", lambda v: abs(v - 20 * np.log10(0.5)) < 0.5)
            assert _get(eng.osc, "/listen/clips") == 0
            player.signal = lambda f: (1.5 * np.sign(np.sin(2 * np.pi * 2.0 * f / jack_server.sr))).astype(np.float32)
            _wait_get(eng.osc, "/listen/clips", lambda v: v >= 2)
            eng.osc.send("/listen/level_db", -3.0)  # read-only: refused, value kept
            assert eng.osc.wait_for("/fail", 2.0) is not None
        finally:
            player.close()


def test_a_captured_loop_starts_on_a_bar_line_and_is_what_was_played(jack_env, tmp_path):
    jack_server = jack_env
    noise = np.random.default_rng(7).uniform(-0.5, 0.5, 1 << 20).astype(np.float32)
    signal = lambda f: noise[f % noise.size]  # noqa: E731
    with engine_process(jack_server, ("--no-dream", "--input", "--set", "/clock/bpm=120")) as eng:
        player, probe = Player(signal), JackProbe("earengine-test-out", midi=False, seconds=30)
        try:
            player.connect()
            probe.connect("earengine:output_1", probe.ins[0])
            eng.osc.send("/notify", 1)
            xruns = xruns_of(eng)
            eng.osc.send("/loop/capture", 1)
            assert eng.osc.wait_for("/loop/captured", 15.0) == (1,)
            eng.osc.wait_loops(1)  # it plays from the next bar line
            path = tmp_path / "captured.wav"
            eng.osc.send("/loop/save", str(path))
            assert wait_until(lambda: path.is_file(), 10.0)
            captured, sr = soundfile.read(str(path), dtype="float32")
            bar = int(round(2.0 * sr))
            assert sr == jack_server.sr and abs(captured.size - bar) <= 1
            # the capture is the bars that were played: the played noise at some frame F, to the sample
            start = int(np.flatnonzero(noise == captured[0])[0])
            assert np.allclose(captured[:1000], noise[start:start + 1000], atol=1e-6)
            # ... and F is a bar line: the loop, played from a bar line, lines up with it mod a bar
            assert wait_until(lambda: probe.filled > 14 * sr, 40.0)
            out = probe.audio[0, : probe.filled]
            loud = np.flatnonzero(np.abs(out) > 1e-3)
            g0 = int(loud[0])  # the loop's first sample enters on a bar line (after a crossfade)
            seg = out[g0 + sr // 2: g0 + sr // 2 + 4096]
            corr = np.correlate(captured, seg, mode="valid")  # where in the loop that stretch is
            into = int(np.argmax(corr))
            played_frame = probe.first_frame + g0 + sr // 2 - into  # JACK frame of the loop's sample 0
            # ``start`` is a frame modulo the noise's period (2**20 frames, 24 s), and a server up
            # for minutes has counted past it: the capture began a bar or two before it played, so
            # their distance is taken modulo that period before the bar (else 5 periods: 39080 off)
            off = ((played_frame - start) % noise.size) % bar
            if xruns_of(eng) > xruns:
                # A cycle the starved, non-real-time dummy server dropped moves the engine's map
                # from its clock to JACK's frames (seen in full-suite runs: 1.1 s off); the
                # capture's content was checked above, its place on the grid cannot be here.
                warnings.warn(f"xruns during the capture: its bar line not judged ({off} samples off)")
                return
            assert min(off, bar - off) <= 2, f"the capture began {off} samples off the bar line"
        finally:
            player.close()
            probe.close()


def test_a_sweep_heard_lights_the_scaleogram_rows_in_pitch_order_then_silence_is_silence(jack_env):
    jack_server = jack_env
    sr = jack_server.sr
    marks = {}

    def sweep(f):  # silence, 4 s from 110 Hz to 1760 Hz (four octaves), silence
        if "start" not in marks:
            marks["start"], marks["t0"] = int(f[0]) + sr, time.time() + 1.0
        t = (f - marks["start"]) / sr
        phase = 2 * np.pi * 110.0 * 4.0 / np.log(16.0) * (16.0 ** (t / 4.0) - 1.0)
        return np.where((t >= 0) & (t < 4.0), 0.5 * np.sin(phase), 0.0).astype(np.float32)

    with engine_process(jack_server, ("--input", "--ear", EAR, "--set", "/opt/run=0"), ready_s=60) as eng, \
            input_stream(eng, reduce="channel_freq") as rx, Player(sweep):
        assert wait_until(lambda: "t0" in marks, 10.0)
        t0 = marks["t0"]
        assert rx.wait_for(lambda r: any(w and w > t0 + 12.0 for _, w, _, _ in r.items[-50:]), 40.0)
    got = [f for f in frames(rx.items).values() if "scaleogram" in f["acts"] and f.get("when")]
    during = sorted((f["when"], int(np.argmax(f["acts"]["scaleogram"]))) for f in got if t0 + 0.5 < f["when"] < t0 + 3.5)
    assert len(during) > 30
    when, peak = np.array(during).T
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    assert np.corrcoef(rank(when), rank(peak))[0, 1] > 0.9, "the loudest row does not climb with the pitch"
    # three octaves, 72 rows, at most: the mark is on the wall clock, which a busy machine parts from JACK's
    assert peak[-1] - peak[0] > 36
    before = [f["acts"]["scaleogram"] for f in got if f["when"] < t0 - 0.3]
    after = [f["acts"]["scaleogram"] for f in got if f["when"] > t0 + 4.0 + 5.0]  # the window heard only silence
    assert before and after, "no frames of silence before or after the sweep"
    assert np.allclose(after[-1], before[-1], atol=1e-3), "silence after the sweep is not heard as silence"


class ClickPlayer(Player):
    """Clicks (a 2 ms burst of noise) every ``gap_s``, from a second after it starts, played into
    the engine's inputs; :attr:`played` holds each click's JACK frame and when it was played on
    the wall clock the engine's timetags use.

    When a frame was played comes from JACK's frame counter: each cycle's callback stamps its
    first frame with ``time.time()`` taken back to the cycle's start (JACK's own count of how far
    into the cycle it runs), and the click's frame is placed by its offset from the cycle's
    newest frame. That is the engine's convention too: the engine reads this cycle's input in the
    same cycle (it is connected downstream), and a cycle's newest sample counts as heard when the
    cycle runs; the frame at F is heard (newest - F) / sr before that.
    """

    def __init__(self, sr: int, *, gap_s: float = 0.6, count: int = 10) -> None:
        self.sr, self.gap, self.count = sr, int(gap_s * sr), count
        self.burst = np.random.default_rng(3).uniform(-0.9, 0.9, int(0.002 * sr)).astype(np.float32)
        self.start: Optional[int] = None
        self.played: list[tuple[int, float]] = []  # (JACK frame, wall time) of each click
        super().__init__(lambda f: np.zeros(f.size, np.float32), name="earengine-test-clicks")

    def _process(self, n: int) -> None:
        f0 = self.client.last_frame_time
        stamp = time.time() - self.client.frames_since_cycle_start / self.sr  # the cycle, on the wall clock
        out = self.out.get_array()
        out[:] = 0.0
        if self.start is None:
            self.start = f0 + self.sr
        for k in range(self.count):
            c = self.start + k * self.gap
            lo, hi = max(c, f0), min(c + self.burst.size, f0 + n)
            if lo < hi:
                out[lo - f0:hi - f0] = self.burst[lo - c:hi - c]
            if f0 <= c < f0 + n:
                self.played.append((c, stamp - (f0 + n - 1 - c) / self.sr))


def test_each_click_s_frame_leaves_one_ear_forward_after_it_timetagged_when_it_was_played(jack_env):
    """The stated latency: a sound's frame leaves within one audio buffer, one hop of the ear,
    two of its forwards (one under way when the sound comes, then its own) and a scheduler's
    slack of a busy machine (120 ms), of when the sound was played; and the frame that first shows
    it is timetagged for a span that holds that moment (a frame spans the input heard since the
    previous frame, so no sound falls between two frames while the ear is behind).

    The streams run at 4 frames/s here, so a frame that waited for their next tick would be late
    by up to a quarter of a second, more than the slack: the input's frames must leave as soon as
    the ear has heard them (StreamHub.frame_ready), not at a tick. The bound on the forward is the
    longest the listener measured itself during the test (``listen_forward_ms_max`` in
    ``/counts``), so a busy machine's slower ear moves the bound with it, while waiting does not.
    """
    jack_server = jack_env
    sr = jack_server.sr
    slack, hop = 0.12, 1024 / 44100
    with engine_process(jack_server, ("--input", "--ear", EAR, "--set", "/opt/run=0", "--set", "/stream/fps=4"),
                        ready_s=60) as eng, input_stream(eng, reduce="channel") as rx:
        with ClickPlayer(sr) as player:
            assert wait_until(lambda: len(player.played) == player.count, 30.0), "the clicks were not all played"
            last = player.played[-1][1]
            assert rx.wait_for(lambda r: any(w and w > last + 0.5 for _, w, _, _ in r.items[-20:]), 20.0)
        eng.osc.send("/counts")
        counts = eng.osc.wait_for("/counts.reply", 5.0)
        assert counts is not None
        counts = dict(zip(counts[::2], counts[1::2]))
    forward = counts["listen_forward_ms_max"] / 1000.0
    assert forward > 0, counts
    bound = jack_server.period / sr + hop + 2 * forward + slack
    got = sorted((f["arrival"], f["when"], float(f["acts"]["scaleogram"][0]))
                 for f in frames(rx.items).values() if "scaleogram" in f["acts"] and f.get("when"))
    arrival, when, level = np.array(got).T
    ends = np.unique(when)  # a frame spans the input heard from its timetag to the next frame's
    end = np.append(ends[1:], np.inf)[np.searchsorted(ends, when)]
    quiet = np.median(level[end < player.played[0][1]])
    loud = np.median([level[(when <= t) & (t < end)].max() for _, t in player.played])
    shows = level > quiet + 0.5 * (loud - quiet)  # the frame hears a click
    late = []
    for frame, t in player.played:
        first = np.flatnonzero(shows & (end > t - 0.05) & (arrival > t))
        assert first.size, f"no frame shows the click played at JACK frame {frame}"
        i = int(first[0])
        assert when[i] - 0.05 <= t <= end[i] + 0.05, \
            f"the click at {t:.3f} s is in a frame timetagged {when[i]:.3f} s, which spans to {end[i]:.3f} s"
        late.append(arrival[i] - t)
    assert max(late) <= bound, (f"a click's frame left {max(late) * 1000:.0f} ms after it was played; the "
                                f"stated bound is {bound * 1000:.0f} ms (ear forward up to {forward * 1000:.0f} ms); "
                                f"all: {np.round(np.array(late) * 1000)}")
