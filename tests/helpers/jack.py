"""JACK for the integration tests: the private dummy server, its frame clock, and test clients.

- :class:`JackServer` and :func:`launch`/:func:`stop`: a uniquely named ``jackd -d dummy``
  (the ``jack_server`` fixture in ``tests/integration/conftest.py`` runs one per session;
  benchmarks start their own the same way);
- :class:`JackClock`: the server's frame counter as a clock, so a test waits for audio time
  (a bar, a crossfade, a recording's length) rather than wall-clock time;
- :class:`JackProbe` and :class:`CycleClock`: JACK clients of the test's own that record audio
  and MIDI with their frames (and, for Link, each cycle's start on ``CLOCK_MONOTONIC_RAW``);
- :class:`MidiClockSource`: Debian's ``jack_midi_clock`` as an independent MIDI clock;
- :class:`Recorder`: ``jack_rec`` on the engine's outputs, paced by a :class:`JackClock`.

The ``jack`` module (JACK-Client) is imported where a client is made, so this module imports
where JACK-Client is missing (tests that need it skip).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import soundfile

from tests.helpers.waits import wait_until

JACK_SR = 44100
JACK_PERIOD = 256
INSTALL = ("install the Debian package jackd2 (apt-get install jackd2); releases that package the "
           "JACK tools apart also need jack-example-tools for jack_lsp and jack_rec")
_WRAP = 1 << 32  # JACK's frame counter is a 32-bit unsigned integer


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JackServer:
    """A running JACK dummy server: its name, rate, period and the environment that selects it."""

    name: str
    sr: int
    period: int
    env: dict

    def run(self, *args: str, timeout_s: float = 10.0) -> subprocess.CompletedProcess:
        """Run a JACK tool (``jack_lsp``, ``jack_connect`` …) against this server."""
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout_s)

    def ports(self) -> list[str]:
        """The server's ports; none when it does not answer in time (a synchronous server waits
        for a client that registers as it is asked), so a caller's poll simply asks again."""
        try:
            done = self.run("jack_lsp", timeout_s=20.0)
        except subprocess.TimeoutExpired:
            return []
        return done.stdout.split() if done.returncode == 0 else []


def _answers(env: dict) -> bool:
    try:
        return subprocess.run(["jack_lsp"], env=env, capture_output=True, timeout=5).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def launch(name: str, log_path: Path, *, sr: int = JACK_SR, period: int = JACK_PERIOD,
           ready_s: float = 20.0, realtime: bool = False) -> tuple[JackServer, subprocess.Popen]:
    """Start ``jackd -d dummy`` named ``name``, synchronous, logging to ``log_path``; return it
    once ``jack_lsp`` gets an answer. Raises RuntimeError (with the log's tail) when it does not.

    Synchronous (``-S``) with a long client timeout: the dummy driver has no hardware deadline,
    so on a busy machine a late client delays the cycle instead of losing it, and positions
    measured in a recording mean something. ``JACK_NO_START_SERVER=1`` in the environment keeps
    libjack from starting a default server behind our back. Stop it with :func:`stop`.
    ``realtime``: its clients' audio threads at real-time priority, as a performer's jackd runs.
    """
    env = dict(os.environ, JACK_DEFAULT_SERVER=name, JACK_NO_START_SERVER="1", PYO_GUI_WX="0")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            ["jackd", "--realtime" if realtime else "--no-realtime", "-S", "-t", "5000", "-n", name,
             "-d", "dummy", "-r", str(sr), "-p", str(period)],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + ready_s
    while not _answers(env):
        if proc.poll() is not None or time.monotonic() > deadline:
            why = "exited" if proc.poll() is not None else f"did not answer jack_lsp within {ready_s:g} s"
            stop(proc)
            tail = Path(log_path).read_text(errors="replace")[-2000:]
            raise RuntimeError(f"jackd -d dummy {why}; its output:\n{tail}")
        time.sleep(0.1)
    return JackServer(name=name, sr=sr, period=period, env=env), proc


def stop(proc: subprocess.Popen) -> None:
    """Stop a server from :func:`launch`: terminate, then kill if it lingers."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


# ---------------------------------------------------------------------------------------------
# The frame clock
# ---------------------------------------------------------------------------------------------
def frames_between(a: int, b: int) -> int:
    """Frames from JACK frame ``a`` to ``b`` (negative when ``b`` is earlier), across the counter's wrap.

    >>> frames_between(100, 356), frames_between(356, 100), frames_between(2**32 - 10, 6)
    (256, -256, 16)
    """
    return (b - a + (_WRAP >> 1)) % _WRAP - (_WRAP >> 1)


class JackClock:
    """The JACK server's frame counter as a clock: seconds as the audio has lived them.

    A JACK client of its own, opened and never activated (so it adds nothing to the synchronous
    graph and no cycle waits for it), reads the frame at which the server's current cycle began
    (``last_frame_time``). That counter moves only as cycles run: when a busy machine holds the
    dummy driver back from the wall clock, these seconds stretch with it, and a test that waits
    "a bar" here has a bar of audio to judge. (``frame_time`` would not do: between cycles it
    extrapolates the last one by the system clock, and goes on doing so while the server stalls.)

    Waits poll every ``poll_s`` (a few ms; a period is 5.8 ms at 256 frames) and give up, with a
    TimeoutError, after a wall-clock safety timeout.
    """

    def __init__(self, server: JackServer, name: str = "earengine-test-clock", *, poll_s: float = 0.003) -> None:
        import jack

        self.client = jack.Client(name, no_start_server=True, servername=server.name)
        self.sr = self.client.samplerate
        self.period = self.client.blocksize
        self.poll_s = poll_s

    def frame(self) -> int:
        """Where the audio is now, at the latest: the end of the cycle now running. What is sent to
        the server from now on is heard at this frame or after it."""
        return (self.client.last_frame_time + self.period) % _WRAP

    def seconds_since(self, frame: int) -> float:
        """Seconds of audio from ``frame`` to :meth:`frame` (now)."""
        return frames_between(frame, self.frame()) / self.sr

    def mark(self) -> tuple[int, float]:
        """Now on both clocks, the audio's and the wall's (``time.monotonic``): for :meth:`lost_s`."""
        return self.frame(), time.monotonic()

    def lost_s(self, mark: tuple[int, float]) -> float:
        """Seconds the audio fell behind the wall clock since ``mark`` (from :meth:`mark`): wall-clock
        time less audio time, within a period or two; about 0 while the server keeps pace, more
        where a busy machine held the dummy driver back. What a part that keeps time by the wall
        clock meanwhile is ahead of the audio by."""
        frame, t = mark
        return (time.monotonic() - t) - self.seconds_since(frame)

    def sleep_until(self, frame: int, *, timeout_s: Optional[float] = None) -> None:
        """Return once a cycle starting at ``frame`` or later has begun, so every frame before
        ``frame`` has been through the whole graph. ``timeout_s`` (wall clock) defaults to 10 s
        plus four times the audio time to wait."""
        left = frames_between(self.client.last_frame_time, frame)
        if timeout_s is None:
            timeout_s = 10.0 + 4.0 * max(0, left) / self.sr
        deadline = time.monotonic() + timeout_s
        while frames_between(self.client.last_frame_time, frame) > 0:
            if time.monotonic() > deadline:
                done = left - frames_between(self.client.last_frame_time, frame)
                raise TimeoutError(f"JACK's frames advanced {done} of {left} in {timeout_s:.1f} s: "
                                   "is the server stalled?")
            time.sleep(self.poll_s)

    def sleep_s(self, seconds: float, *, timeout_s: Optional[float] = None) -> None:
        """Wait until ``seconds`` of audio frames have passed on the server (from :meth:`frame`)."""
        self.sleep_until((self.frame() + round(seconds * self.sr)) % _WRAP, timeout_s=timeout_s)

    def close(self) -> None:
        self.client.close()


# ---------------------------------------------------------------------------------------------
# Clients of the test's own
# ---------------------------------------------------------------------------------------------
class JackProbe:
    """A JACK client that records audio inputs and MIDI events, each with its JACK frame.

    ``audio`` holds the samples from frame :attr:`first_frame` on; ``midi`` is a list of
    ``(frame, bytes)``. Connect with :meth:`connect`.
    """

    def __init__(self, name: str, *, audio_ports: int = 1, midi: bool = True, seconds: float = 40.0) -> None:
        import jack

        self.client = jack.Client(name, no_start_server=True)
        self.sr = self.client.samplerate
        self.ins = [self.client.inports.register(f"in_{i + 1}") for i in range(audio_ports)]
        self.midi_in = self.client.midi_inports.register("midi_in") if midi else None
        self.audio = np.zeros((audio_ports, int(seconds * self.sr)), dtype=np.float32)
        self.first_frame: Optional[int] = None
        self.filled = 0
        self.midi: list[tuple[int, bytes]] = []
        self.xruns = 0  # JACK's xruns while recording (a busy machine's dummy driver loses time)
        self.client.set_xrun_callback(self._xrun)
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _xrun(self, delay_usecs: float) -> None:
        self.xruns += 1

    def _process(self, frames: int) -> None:
        f0 = self.client.last_frame_time
        if self.first_frame is None:
            self.first_frame = f0
        i = f0 - self.first_frame
        if i + frames <= self.audio.shape[1]:
            for k, port in enumerate(self.ins):
                self.audio[k, i:i + frames] = port.get_array()
            self.filled = i + frames
        if self.midi_in is not None:
            for offset, data in self.midi_in.incoming_midi_events():
                self.midi.append((f0 + offset, bytes(data)))

    def connect(self, source: str, port) -> None:
        self.client.connect(source, port)

    def clicks(self, *, channel: int = 0, threshold: float = 0.1, min_gap: int = 4000) -> np.ndarray:
        """Frames of the clicks recorded so far (peak of each)."""
        x = np.abs(self.audio[channel, : self.filled])
        above = np.flatnonzero(x > threshold)
        peaks, last = [], -min_gap
        for i in above:
            if i - last >= min_gap:
                seg = x[i: i + 64]
                peaks.append(i + int(np.argmax(seg)))
            last = i
        return np.array(peaks, dtype=np.int64) + (self.first_frame or 0)

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


class CycleClock(JackProbe):
    """The probe, also stamping every JACK cycle with CLOCK_MONOTONIC_RAW as its callback runs.

    The stamp is taken back to the start of the cycle by JACK's own count of how far into the
    cycle the callback runs (the probe runs after the engine it records, in the same cycle).
    What is left can be late but never early, so the lowest stamp minus the cycle's frame (over
    the cycles around it) is when the cycle started: that puts any recorded frame on Link's
    clock.
    """

    def __init__(self, *args, **kwargs) -> None:
        self.stamps: list[tuple[int, float]] = []
        super().__init__(*args, **kwargs)

    def _process(self, frames: int) -> None:
        now = time.clock_gettime(time.CLOCK_MONOTONIC_RAW)
        into = self.client.frames_since_cycle_start / self.sr
        self.stamps.append((self.client.last_frame_time, now - into))
        super()._process(frames)

    def frame_to_raw(self, frame: float) -> float:
        f, t = np.array(self.stamps).T
        near = np.abs(f - frame) < 0.15 * self.sr  # near enough that no xrun is likely in between
        return float(frame / self.sr + np.min(t[near] - f[near] / self.sr))


class MidiClockSource:
    """``jack_midi_clock`` at a forced tempo, or following a JACK timecode master; its port name
    is read from JACK."""

    def __init__(self, jack_server, bpm: float, *, jitter_percent: int = 0, follow_master: bool = False,
                 resync_s: int = 1) -> None:
        before = set(jack_server.ports())
        # -B ignores a JACK timecode master; following one, it also sends song position (then,
        # ``resync_s`` later, continue)
        args = ["jack_midi_clock", "-b", f"{bpm:g}"] + (["-d", str(resync_s)] if follow_master else ["-B"])
        if jitter_percent:
            args += ["-J", str(jitter_percent)]
        self.proc = subprocess.Popen(args, env=jack_server.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        self.jack_server = jack_server
        self.port = ""
        assert wait_until(lambda: bool(self._new(jack_server, before)), 10.0), "jack_midi_clock did not register its port"

    def _new(self, jack_server, before: set) -> bool:
        new = [p for p in set(jack_server.ports()) - before if p.endswith(":mclk_out")]
        if new:
            self.port = new[0]
        return bool(new)

    def close(self) -> None:
        # SIGINT: jack_midi_clock leaves JACK cleanly only on it; killed otherwise, it leaves
        # a client the synchronous server waits for, cycle after cycle
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        # gone from JACK too, so the next source gets the same name (``jack_midi_clock``, not ``-01``)
        wait_until(lambda: self.port not in self.jack_server.ports(), 5.0)


class Recorder:
    """``jack_rec`` on both engine outputs for whole seconds, 32-bit PCM.

    32-bit integers rather than 16: libsndfile does not clip when it converts floats to integers.
    In 16-bit PCM a sample over full scale wraps round to an arbitrary value that could hide under
    the ceiling; in 32-bit PCM it lands on full scale (-1.0), which the ceiling check cannot miss.

    With a ``clock``, :meth:`sleep_until` and :meth:`elapsed_s` count the recording's own time:
    JACK frames since the recorder was connected.
    """

    def __init__(self, jack, path: Path, duration_s: int, *, clock: Optional[JackClock] = None) -> None:
        self.jack = jack
        self.path = path
        self.duration_s = duration_s
        self.clock = clock
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
        self.started_frame = clock.frame() if clock is not None else None

    def _clock(self) -> JackClock:
        assert self.clock is not None, "give the Recorder a clock (the jack_clock fixture) to wait on it"
        return self.clock

    def sleep_until(self, t_s: float) -> None:
        """Wait until ``t_s`` seconds of audio after the recorder was connected have passed."""
        clock = self._clock()
        clock.sleep_until((self.started_frame + round(t_s * clock.sr)) % _WRAP)

    def elapsed_s(self) -> float:
        """Seconds of audio since the recorder was connected: where in the recording an event
        sent now lands, at the earliest."""
        return self._clock().seconds_since(self.started_frame)

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
        assert sr == self.jack.sr and data.shape == (self.duration_s * sr, 2), (sr, data.shape)
        return data
