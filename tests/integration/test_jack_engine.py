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
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import pytest
import soundfile
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from scipy.signal import fftconvolve

from earengine.errors import EarEngineError
from earengine.process import EngineProcess

pytestmark = pytest.mark.integration

SR = 44100
BPM = 120.0
BAR = int(round(4 * 60.0 / BPM * SR))  # 88200 samples
PERIOD = 256  # the JACK period the conftest server runs with
CEILING = 10.0 ** (-0.3 / 20.0)  # the engine's limiter ceiling, -0.3 dBFS, as amplitude
REPO = Path(__file__).resolve().parents[2]


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
# Measuring a recording against a loop
# ---------------------------------------------------------------------------------------------
def loop_phase(rec: np.ndarray, loop: np.ndarray, *, start: int = 0, stop: Optional[int] = None) -> tuple[int, float]:
    """Where ``loop`` (repeating) sits in ``rec[start:stop]``.

    Returns ``(phase, r)``: the loop's first sample falls on recording indices ``phase + k·len(loop)``,
    and ``r`` is the normalised cross-correlation between that stretch and the tiled loop at the
    best lag (1 for a scaled copy).
    """
    x = rec[start:stop]
    p, m = loop.size, x.size
    tiled = np.tile(loop, -(-(m + p) // p))[: m + p]
    num = fftconvolve(tiled, x[::-1], mode="valid")[:p]  # num[lag] = sum_n x[n] * tiled[n + lag]
    energy = np.concatenate(([0.0], np.cumsum(tiled * tiled)))
    den = math.sqrt(float(x @ x)) * np.sqrt(np.maximum(energy[m : m + p] - energy[:p], 1e-30))
    r = num / den
    lag = int(np.argmax(r))
    return (start - lag) % p, float(r[lag])


def aligned(loop: np.ndarray, phase: int, n: int) -> np.ndarray:
    """The loop as it would sound in an ``n``-sample recording where it starts at ``phase``."""
    return loop[(np.arange(n) - phase) % loop.size]


def level_db(rec: np.ndarray, ref: np.ndarray, a: int, b: int) -> float:
    """Level of ``rec[a:b]`` relative to the aligned file over the same samples, in dB."""
    return 20.0 * math.log10(math.sqrt(np.mean(rec[a:b] ** 2)) / math.sqrt(np.mean(ref[a:b] ** 2)))


def circular_distance(a: int, b: int, period: int) -> int:
    d = (a - b) % period
    return min(d, period - d)


def seconds(t_s: float) -> int:
    return int(round(t_s * SR))


# ---------------------------------------------------------------------------------------------
# The engine process, an OSC peer and the recorder
# ---------------------------------------------------------------------------------------------
class OscPeer:
    """A UDP socket of the test's own, speaking python-osc's encoding (not the engine's)."""

    def __init__(self, port: int) -> None:
        self.dest = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.inbox: list[tuple[str, tuple]] = []

    def close(self) -> None:
        self.sock.close()

    def send(self, address: str, *args: object) -> None:
        builder = OscMessageBuilder(address)
        for arg in args:
            builder.add_arg(arg)
        self.sock.sendto(builder.build().dgram, self.dest)

    def wait_for(self, address: str, timeout_s: float = 5.0) -> Optional[tuple]:
        """Arguments of the first unread message at ``address`` (None on timeout)."""
        deadline = time.monotonic() + timeout_s
        while True:
            for i, (addr, args) in enumerate(self.inbox):
                if addr == address:
                    del self.inbox[i]
                    return args
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return None
            msg = OscMessage(data)
            self.inbox.append((msg.address, tuple(msg.params)))

    def loops_started(self) -> int:
        self.send("/status")
        reply = self.wait_for("/status.reply", 2.0)
        assert reply is not None, "the engine does not answer /status"
        return int(reply[4])

    def wait_loops(self, n: int, timeout_s: float = 6.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.loops_started() < n:
            assert time.monotonic() < deadline, f"fewer than {n} loop(s) started within {timeout_s} s"
            time.sleep(0.05)


@dataclass
class EngineRun:
    proc: subprocess.Popen
    osc: OscPeer
    lines: list = field(default_factory=list)

    def output(self) -> str:
        return "\n".join(self.lines)


@contextmanager
def engine_process(jack, args: Sequence[str] = ("--no-dream",), *, duration_s: float = 60, ready_s: float = 30,
                   wrap=None) -> Iterator[EngineRun]:
    """``earengine run --audio jack <args>`` with OSC on a free port and an OSC peer; always stopped.

    ``wrap`` builds the yielded object from ``(proc, osc, lines)`` (default: EngineRun).
    """
    args = ["--audio", "jack", "--duration", str(duration_s), "--status-every", "1", *map(str, args)]
    eng = EngineProcess(args, env=jack.env, cwd=str(REPO), ready_s=ready_s)
    try:
        eng.start()
    except EarEngineError as exc:
        pytest.fail(str(exc))
    osc = None
    try:
        osc = OscPeer(eng.port)
        yield (wrap or EngineRun)(eng.proc, osc, eng.lines)
    finally:
        if osc is not None:
            osc.close()
        eng.close()


def engine(jack, *, loop: Path, sets: tuple[str, ...] = ()):
    """The engine playing ``loop`` with no worker, with ``--set`` overrides."""
    args = ["--no-dream", "--loop", str(loop)]
    for item in sets:
        args += ["--set", item]
    return engine_process(jack, args)


class Recorder:
    """``jack_rec`` on both engine outputs for whole seconds, 32-bit PCM.

    32-bit integers rather than 16: libsndfile does not clip when it converts floats to integers.
    In 16-bit PCM a sample over full scale wraps round to an arbitrary value that could hide under
    the ceiling; in 32-bit PCM it lands on full scale (-1.0), which the ceiling check cannot miss.
    """

    def __init__(self, jack, path: Path, duration_s: int) -> None:
        self.path = path
        self.duration_s = duration_s
        self.proc = subprocess.Popen(
            ["jack_rec", "-f", str(path), "-d", str(duration_s), "-b", "32", "-B", "262144",
             "earengine:output_1", "earengine:output_2"],
            env=jack.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        # Time runs from when jack_rec is connected to both outputs, which is at or after its
        # first recorded sample: what happens t seconds later lands at t seconds or later in
        # the recording, never earlier, so windows before an event stay clean.
        deadline = time.monotonic() + 15.0
        while "jackrec:" not in jack.run("jack_lsp", "-c", "earengine:output_2").stdout:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                out, _ = self.proc.communicate()
                pytest.fail(f"jack_rec did not connect to the engine's outputs: {out}")
            time.sleep(0.02)
        self.started_s = time.monotonic()

    def sleep_until(self, t_s: float) -> None:
        """Sleep until ``t_s`` seconds after the recorder was connected."""
        time.sleep(max(0.0, self.started_s + t_s - time.monotonic()))

    def finish(self) -> np.ndarray:
        try:
            out, _ = self.proc.communicate(timeout=self.duration_s + 15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            pytest.fail("jack_rec did not finish")
        assert self.proc.returncode == 0, f"jack_rec failed: {out}"
        assert "overrun" not in out, f"jack_rec lost frames, so sample positions are unreliable: {out}"
        data, sr = soundfile.read(str(self.path), dtype="float64", always_2d=True)
        assert sr == SR and data.shape == (self.duration_s * SR, 2), (sr, data.shape)
        return data


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


def test_second_loop_starts_on_a_bar_line(jack_server, loops, tmp_path):
    with engine(jack_server, loop=loops.plucks, sets=("/loop/xfade=0",)) as eng:
        eng.osc.wait_loops(1)
        recorder = Recorder(jack_server, tmp_path / "rec.wav", 7)
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


def test_gain_change_is_heard(jack_server, loops, tmp_path):
    with engine(jack_server, loop=loops.plucks) as eng:
        eng.osc.wait_loops(1)
        recorder = Recorder(jack_server, tmp_path / "rec.wav", 5)
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


def test_limiter_holds_a_full_scale_loop_at_plus_6_db(jack_server, loops, tmp_path):
    with engine(jack_server, loop=loops.loud) as eng:
        eng.osc.wait_loops(1)
        eng.osc.send("/loop/gain", 6.0)
        eng.osc.send("/get", "/loop/gain")
        assert eng.osc.wait_for("/loop/gain", 2.0) == (6.0,)
        time.sleep(0.2)  # past the 50 ms gain ramp
        rec = Recorder(jack_server, tmp_path / "rec.wav", 4).finish()
    assert np.all(np.isfinite(rec))
    peak_dbfs = 20.0 * math.log10(np.abs(rec).max())
    print(f"peak {peak_dbfs:.3f} dBFS with the loop at +6 dB")
    assert np.abs(rec).max() <= CEILING + 1e-6, f"peak {peak_dbfs:.3f} dBFS exceeds the -0.3 dBFS ceiling"
    # the limiter is working, not the sound missing: peaks sit just under the ceiling
    assert peak_dbfs > -1.0
    _, r = loop_phase(rec[:, 0], loops.samples("loud"))
    assert r > 0.9, f"the limited output no longer resembles the loop (r={r:.3f})"


def test_bad_input_is_refused_and_the_sound_goes_on(jack_server, loops, tmp_path):
    with engine(jack_server, loop=loops.plucks) as eng:
        eng.osc.wait_loops(1)
        recorder = Recorder(jack_server, tmp_path / "rec.wav", 5)
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
