"""Training runs heard through the engine on a real JACK server, judged from a recording.

``earengine run --audio jack`` plays into a JACK dummy server; two separate training processes
sonify themselves into it over OSC (``GradientSonifier`` with an ``OscSink``); ``jack_rec`` — a
JACK client that shares no code with the engine — records the engine's outputs. Each process
trains a one-layer linear model on inputs whose gradient norm is fixed by construction, so each
run has a known pitch: 1e-3 maps to the bottom of the range (220 Hz) and 1.0 three eighths of
four octaves up (220 × 2^1.5 ≈ 622 Hz). The first run sounds as a sine, the second as a triangle.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import engines
from tests.helpers.jack import Recorder
from tests.helpers.recordings import CEILING, SR

pytestmark = pytest.mark.integration
pytest.importorskip("pyo")
pytest.importorskip("soundfile")

REPO = Path(__file__).resolve().parents[2]
LOW_HZ, HIGH_HZ = 220.0, 220.0 * 2**1.5

TRAINER = textwrap.dedent("""
    import os, sys, time
    import torch
    from earengine.sonify.capture import GradientSonifier
    from earengine.sonify.sinks import OscSink

    port, run, norm, steps, rate, go = (int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4]),
                                        float(sys.argv[5]), sys.argv[6])
    model = torch.nn.Linear(4, 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    x = torch.full((1, 4), norm / 2.0)  # d(sum(w.x))/dw = x, whose norm is `norm`
    sink = OscSink("127.0.0.1", port)
    with GradientSonifier(model, sink=sink, run=run, optimizer=opt):  # the run is open from here
        deadline = time.monotonic() + 60
        while not os.path.exists(go) and time.monotonic() < deadline:  # the test says when
            time.sleep(0.005)
        t0 = time.monotonic()
        for step in range(steps):
            opt.zero_grad()
            model(x).sum().backward()
            opt.step()
            time.sleep(max(0.0, t0 + (step + 1) / rate - time.monotonic()))
    sink.close()
    print("sent", steps, "failures", sink.failures)
""")


def engine_process(jack):
    """The engine with no worker: the gradient voices are what is heard."""
    return engines.engine_process(jack, ("--no-dream",))


def trainer(jack, script: Path, port: int, run: str, norm: float, steps: int, rate: float, go: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script), str(port), run, str(norm), str(steps), str(rate), str(go)],
                            env=jack.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def level(x: np.ndarray, f_hz: float, width_hz: float = 6.0) -> float:
    """Peak magnitude near ``f_hz`` of a Hann-windowed spectrum, relative to the window's gain."""
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size))) / (x.size / 4)
    freqs = np.fft.rfftfreq(x.size, 1 / SR)
    return float(spec[np.abs(freqs - f_hz) < width_hz].max())


def test_two_training_processes_are_heard_and_told_apart(jack_server, jack_clock, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAINER)
    with engine_process(jack_server) as eng:
        for address, value in (("/son/voicing", "simultaneous"), ("/son/rest", 0.0), ("/son/hold", 1),
                               ("/son/scale", "off"), ("/son/register_spread", 0.0), ("/son/loudness", "flat"),
                               ("/son/gain", -12.0)):
            eng.osc.send(address, value)
        eng.osc.send("/get", "/son/gain")
        assert eng.osc.wait_for("/son/gain", 5.0) == (-12.0,), eng.output()
        port = eng.osc.dest[1]
        go = tmp_path / "go"
        low = trainer(jack_server, script, port, "low-sine", 1e-3, 150, 30.0, go)
        deadline = time.monotonic() + 60
        while True:  # runs take timbres in the order they open: the first one is the sine
            eng.osc.send("/son/runs")
            if "low-sine" in (eng.osc.wait_for("/son/runs.reply", 2.0) or ()):
                break
            assert time.monotonic() < deadline and low.poll() is None, eng.output()
            time.sleep(0.1)
        high = trainer(jack_server, script, port, "high-triangle", 1.0, 150, 30.0, go)
        while True:  # both processes have imported torch and opened their runs
            eng.osc.send("/son/runs")
            runs = eng.osc.wait_for("/son/runs.reply", 2.0) or ()
            if set(runs) == {"low-sine", "high-triangle"}:
                break
            assert time.monotonic() < deadline and low.poll() is None and high.poll() is None, (runs, eng.output())
            time.sleep(0.1)
        recorder = Recorder(jack_server, tmp_path / "rec.wav", 6, clock=jack_clock)
        recorder.sleep_until(1.0)  # one second of silence first
        go.touch()
        recorder.sleep_until(3.5)
        eng.osc.send("/son/mute", "high-triangle", 1)  # one run muted: the other plays on
        rec = recorder.finish()[:, 0]
        outputs = [p.communicate(timeout=30)[0] for p in (low, high)]
        assert all("sent 150 failures []" in o for o in outputs), outputs
        assert eng.proc.poll() is None, eng.output()
        eng.osc.send("/status")
        status = eng.osc.wait_for("/status.reply", 3.0)
    assert np.all(np.isfinite(rec)) and np.abs(rec).max() <= CEILING + 1e-6
    print("rms per quarter second:", [round(float(np.sqrt(np.mean(rec[i:i + SR // 4] ** 2))), 3)
                                      for i in range(0, rec.size, SR // 4)])
    before = rec[int(0.1 * SR) : int(0.9 * SR)]
    both = rec[int(1.6 * SR) : int(3.4 * SR)]
    alone = rec[int(4.0 * SR) : int(5.4 * SR)]
    print(f"before: {level(before, LOW_HZ):.4f} / {level(before, HIGH_HZ):.4f}; "
          f"both: {level(both, LOW_HZ):.4f} / {level(both, HIGH_HZ):.4f}; "
          f"muted: {level(alone, LOW_HZ):.4f} / {level(alone, HIGH_HZ):.4f}; status {status}")
    assert level(before, LOW_HZ) < 1e-3 and level(before, HIGH_HZ) < 1e-3
    # each run at its own pitch, at about its share of the gain (-12 dB, one voice, centred: 0.18)
    assert level(both, LOW_HZ) > 0.1 and level(both, HIGH_HZ) > 0.05
    # and its own timbre: the triangle carries a third harmonic, the sine none
    assert level(both, 3 * HIGH_HZ) > 0.05 * level(both, HIGH_HZ)
    assert level(both, 3 * LOW_HZ) < 0.01 * level(both, LOW_HZ)
    # muting one run silences it alone
    assert level(alone, HIGH_HZ) < 0.02 * level(both, HIGH_HZ)
    assert level(alone, LOW_HZ) > 0.5 * level(both, LOW_HZ)
