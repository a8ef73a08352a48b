"""Dreaming as a performer hears it: engine + worker process on a real JACK server, judged from a recording.

One ``earengine run --audio jack --ear <tiny ear>`` process dreams one-bar loops at 240 BPM (one
bar = one second = 44,100 samples, so an unchanging loop makes the output exactly periodic with
that period). A UDP socket of the test's own drives it over OSC, and ``jack_rec`` — a JACK client
that shares no code with the engine — records its outputs. The tests run in file order against
the same engine (each also stands alone): the dream is heard and evolves; a change of target
is in effect by the worker's next step and a regularizer's change is heard by the next loop; a
worker killed with SIGKILL neither stops the sound nor loses its parameters, and its successor
dreams on from the loop that was playing.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import soundfile

from tests.helpers.engines import OscPeer, engine_process
from tests.helpers.jack import Recorder
from tests.helpers.recordings import CEILING, SR, loop_phase, seconds

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BAR = SR  # one bar at 240 BPM in 4/4 is exactly one second
REPO = Path(__file__).resolve().parents[2]
# The waveform itself is dreamed here: mixing toward a reference clip (/reg/mix) and a new
# worker that takes up the playing loop act on samples, not on the grid's notes.
SETS = ("/loop/bars=1", "/clock/bpm=240", "/opt/lr=0.01", "/opt/seed=7", "/opt/param=raw")


# ---------------------------------------------------------------------------------------------
# The ear, the reference clip and the engine
# ---------------------------------------------------------------------------------------------
def reference_clip() -> np.ndarray:
    """One bar of a 441 Hz tone pulsing four times: nothing a dream from silence comes near."""
    t = np.arange(BAR) / SR
    pulse = 0.5 - 0.5 * np.cos(2 * np.pi * 4 * t)
    return (0.5 * np.sin(2 * np.pi * 441.0 * t) * pulse).astype(np.float32)


@dataclass
class Status:
    worker: str
    step: int
    steps_per_s: float
    loss: float
    loops: int

    @classmethod
    def ask(cls, osc: OscPeer) -> "Status":
        osc.send("/status")
        reply = osc.wait_for("/status.reply", 3.0)
        assert reply is not None, "the engine does not answer /status"
        return cls(str(reply[0]), int(reply[1]), float(reply[2]), float(reply[3]), int(reply[4]))


def poll(osc: OscPeer, predicate, timeout_s: float, what: str) -> Status:
    """Ask /status every 20 ms until ``predicate(status)``; fail saying ``what`` was awaited."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = Status.ask(osc)
        if predicate(status):
            return status
        assert time.monotonic() < deadline, f"{what} not within {timeout_s:g} s; last status {status}"
        time.sleep(0.02)


@dataclass
class DreamEngine:
    proc: subprocess.Popen
    osc: OscPeer
    lines: list

    def output(self) -> str:
        return "\n".join(self.lines[-40:])

    def worker_pid(self) -> int:
        """The worker: the engine's child started by multiprocessing's spawn (not its resource tracker)."""
        found = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            for pid in (task / "children").read_text().split():
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                if b"spawn_main" in cmdline:
                    found.append(int(pid))
        assert len(found) == 1, f"expected one worker process under the engine, found {found}"
        return found[0]


def dreaming_engine(jack, ear: Path):
    """The engine dreaming through ``ear`` with the settings of this file."""
    args = ["--ear", str(ear)]
    for item in SETS:
        args += ["--set", item]
    return engine_process(jack, args, duration_s=240, ready_s=60, wrap=DreamEngine)


@pytest.fixture(scope="module")
def dream(jack_server, tiny_ear_dir) -> Iterator[DreamEngine]:
    """The engine, dreaming, once dreamed loops have replaced each other twice."""
    with dreaming_engine(jack_server, tiny_ear_dir) as eng:
        eng.osc.send("/notify", 1)
        try:
            poll(eng.osc, lambda s: s.worker == "dreaming" and s.loops >= 2, 60.0, "two dreamed loops playing")
        except AssertionError as exc:
            pytest.fail(f"{exc}\nengine output:\n{eng.output()}")
        yield eng
        assert eng.proc.poll() is None, f"the engine stopped:\n{eng.output()}"


def wait_done(osc: OscPeer, address: str, timeout_s: float = 5.0) -> bool:
    """Whether ``/done <address>`` came (other commands' ``/done`` before it are passed over)."""
    deadline = time.monotonic() + timeout_s
    while (args := osc.wait_for("/done", max(0.0, deadline - time.monotonic()))) is not None:
        if args == (address,):
            return True
    return False


def wait_changed(osc: OscPeer, address: str, timeout_s: float = 3.0) -> tuple:
    """The value of the first ``/changed`` for ``address`` (we subscribed with ``/notify 1``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        args = osc.wait_for("/changed", max(0.0, deadline - time.monotonic()))
        assert args is not None, f"no /changed {address} within {timeout_s:g} s"
        if args[0] == address:
            return args[1:]


# ---------------------------------------------------------------------------------------------
# Measures on a recording
# ---------------------------------------------------------------------------------------------
def rms_db(x: np.ndarray) -> float:
    return 20.0 * math.log10(max(1e-12, math.sqrt(float(np.mean(x * x)))))


def bar_changes(rec: np.ndarray) -> list[float]:
    """Relative difference between each second of ``rec`` and the next: 0 for a loop that stays."""
    out = []
    for k in range(rec.size // BAR - 1):
        a, b = rec[k * BAR:(k + 1) * BAR], rec[(k + 1) * BAR:(k + 2) * BAR]
        out.append(math.sqrt(float(np.mean((b - a) ** 2)) / max(1e-20, float(np.mean(a * a)))))
    return out


# ---------------------------------------------------------------------------------------------
# Tests (in this order, against one engine)
# ---------------------------------------------------------------------------------------------
def test_dreamed_loop_is_heard_and_evolves(dream, jack_server, tmp_path):
    loops_before = Status.ask(dream.osc).loops
    rec = Recorder(jack_server, tmp_path / "rec.wav", 5).finish()
    loops_after = Status.ask(dream.osc).loops
    assert np.all(np.isfinite(rec))
    # jack_rec connects its two ports in turn: under load the second one starts a few cycles late
    # (zeros there); from where both run, the two outputs carry the same mono loop
    both = int(max(np.argmax(rec[:, 0] != 0), np.argmax(rec[:, 1] != 0)))
    assert both < rec.shape[0] // 10, "an output stayed silent"
    assert np.array_equal(rec[both:, 0], rec[both:, 1]), "both outputs carry the same mono loop"
    left = rec[:, 0]
    peak = float(np.abs(rec).max())
    changes = bar_changes(left)
    print(f"dream heard at {rms_db(left):.1f} dBFS RMS, peak {20 * math.log10(peak):.2f} dBFS; "
          f"loops {loops_before} -> {loops_after}; bar-to-bar change {[round(c, 3) for c in changes]}")
    assert peak <= CEILING + 1e-6, f"peak {20 * math.log10(peak):.3f} dBFS exceeds the -0.3 dBFS ceiling"
    assert rms_db(left) > -50.0, "the dreamed loop is (nearly) silent"
    # each new loop replaces the last at a bar line; an unchanged loop repeats sample for sample
    assert loops_after - loops_before >= 2, "dreamed loops should keep replacing each other"
    # (a settling dream changes its loop less and less — about 0.7 % a bar here — while a loop that
    # is not replaced repeats to the sample: 0)
    assert sum(c > 0.001 for c in changes) >= 2, f"the loop does not change from bar to bar: {changes}"


def test_target_change_is_in_effect_by_the_next_step(dream):
    osc = dream.osc
    # loss of the default target (a region of enc.5) over three consecutive published steps
    before, seen = [], set()
    while len(seen) < 3:
        s = poll(osc, lambda s: s.step not in seen, 10.0, "the next step")
        seen.add(s.step)
        before.append(s.loss)
    osc.send("/target/set", "scaleogram*1000")
    assert wait_changed(osc, "/target/spec") == ("scaleogram*1000",)
    # The engine reads the worker's newest loop every 50 ms, so /status moves by whole polls. The
    # first loop read after the change may predate it, the second may come from the step that was
    # in flight; the third comes from a step begun after the worker took the change.
    after, seen = [], {Status.ask(osc).step}
    while len(after) < 3:
        s = poll(osc, lambda s: s.step > max(seen), 10.0, "the next step")
        seen.add(s.step)
        after.append(s)
    print(f"loss {[round(v, 3) for v in before]} before the change; after it, "
          f"{[(s.step, round(s.loss, 4)) for s in after]} (step, loss) at the next three polls with a new step")
    # mean log power over the scaleogram, weighted 1000: a loss of another order than enc.5's
    assert after[2].loss < -100.0 * max(1.0, max(abs(v) for v in before)), (before, after)
    assert after[2].worker == "dreaming"


def test_regularizer_change_is_heard_by_the_next_loop(dream, jack_server, jack_clock, tmp_path):
    osc = dream.osc
    clip = reference_clip()
    path = tmp_path / "reference.wav"
    soundfile.write(str(path), clip, SR, subtype="FLOAT")
    osc.send("/reg/reference", str(path))
    assert wait_done(osc, "/reg/reference"), osc.inbox
    recorder = Recorder(jack_server, tmp_path / "rec.wav", 7, clock=jack_clock)
    recorder.sleep_until(2.0)
    sent_s = recorder.elapsed_s()
    osc.send("/reg/mix", 1.0)  # after each step the loop becomes the reference clip
    assert wait_changed(osc, "/reg/mix") == (1.0,)
    at_change = Status.ask(osc).step
    poll(osc, lambda s: s.step >= at_change + 2, 10.0, "a step after the change")
    made_s = recorder.elapsed_s()
    rec = recorder.finish()[:, 0]
    # the loop made after the change is swapped in at the next bar line (one second at most)
    quarter = seconds(0.25)
    r = [loop_phase(rec, clip.astype(np.float64), start=a, stop=a + quarter)[1]
         for a in range(0, rec.size - quarter + 1, quarter)]
    heard = next((k for k, v in enumerate(r) if v > 0.99), None)
    print(f"/reg/mix sent at {sent_s:.2f} s, a loop made with it by {made_s:.2f} s, the reference heard from "
          f"{'never' if heard is None else f'{heard * 0.25:.2f} s'}; correlation per quarter second "
          f"{[round(v, 3) for v in r]}")
    assert max(r[:int(sent_s / 0.25)]) < 0.5, "the reference was already playing before it was mixed in"
    assert heard is not None, "the reference clip is never heard"
    assert heard * 0.25 <= made_s + 1.0 + 0.3, "the reference came later than the next loop"
    # from then on every loop is the reference, and each takes over from the last at the bar line
    # where that one stood: identical loops join without a seam (no jump by a JACK period)
    assert min(r[heard:]) > 0.99, r[heard:]


def test_killed_worker_comes_back_and_the_sound_goes_on(dream, jack_server, jack_clock, tmp_path):
    osc = dream.osc
    path = tmp_path / "reference.wav"
    soundfile.write(str(path), reference_clip(), SR, subtype="FLOAT")
    osc.send("/reg/reference", str(path))  # kept by the worker, not by the registry
    assert wait_done(osc, "/reg/reference"), osc.inbox
    osc.send("/reg/mix", 0.0)  # dream freely (mixing nothing in)
    osc.send("/target/set", "enc.5:0-3")
    assert wait_changed(osc, "/target/spec") == ("enc.5:0-3*1",)
    osc.send("/reg/high_freq", 2.0)
    assert wait_changed(osc, "/reg/high_freq") == (2.0,)
    old = dream.worker_pid()
    before = poll(osc, lambda s: s.worker == "dreaming", 5.0, "dreaming")
    recorder = Recorder(jack_server, tmp_path / "rec.wav", 16, clock=jack_clock)
    recorder.sleep_until(3.0)
    os.kill(old, signal.SIGKILL)
    killed_s = recorder.elapsed_s()
    # the supervisor notices, restarts, and the new worker's step count starts again
    poll(osc, lambda s: s.worker != "dreaming", 5.0, "the engine noticing the dead worker")
    back = poll(osc, lambda s: s.worker == "dreaming" and s.step < before.step, 60.0,
                "the worker dreaming again with a fresh step count")
    back_s = recorder.elapsed_s()
    later = poll(osc, lambda s: s.step > back.step + 2, 20.0, "the new worker's steps advancing")
    new = dream.worker_pid()
    assert new != old
    # new loops from the new worker have been heard for two bars by the end of the recording
    assert back_s + 2.5 < recorder.duration_s, f"the worker took {back_s - killed_s:.1f} s to come back"
    rec = recorder.finish()[:, 0]
    for address, value in (("/target/spec", "enc.5:0-3*1"), ("/reg/high_freq", 2.0), ("/reg/mix", 0.0),
                           ("/opt/lr", 0.01)):
        osc.send("/get", address)
        assert osc.wait_for(address, 2.0) == pytest.approx((value,)), f"{address} changed across the restart"
    level = rms_db(rec[seconds(1.0):seconds(killed_s)])
    windows = [rms_db(rec[seconds(t):seconds(t + 1.0)]) for t in np.arange(killed_s, rec.size / SR - 1.0, 1.0)]
    print(f"killed at {killed_s:.2f} s, dreaming again at {back_s:.2f} s (step {back.step} -> {later.step}); "
          f"level {level:.1f} dBFS before, each second after: {[round(w, 1) for w in windows]}")
    assert np.all(np.isfinite(rec)) and np.abs(rec).max() <= CEILING + 1e-6
    assert all(abs(w - level) <= 4.0 for w in windows), "the level moved by more than 4 dB after the kill"
    # the reference clip given before the kill is still the new worker's: mixing it in is heard
    osc.send("/reg/mix", 1.0)
    assert wait_changed(osc, "/reg/mix") == (1.0,)
    at_change = Status.ask(osc).step
    poll(osc, lambda s: s.step >= at_change + 2, 10.0, "a step after the change")
    jack_clock.sleep_s(1.2)  # the next bar line, and the crossfade
    rec = Recorder(jack_server, tmp_path / "ref.wav", 2).finish()[:, 0]
    quarter = seconds(0.25)
    r = np.array([loop_phase(rec, reference_clip().astype(np.float64), start=a, stop=a + quarter)[1]
                  for a in range(0, rec.size - quarter + 1, quarter)])
    print(f"after the restart, /reg/mix 1: correlation with the reference per quarter second {np.round(r, 3)}")
    assert r.min() > 0.99, "the restarted worker lost the reference clip"
