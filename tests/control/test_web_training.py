"""Training, seen, on the engine's web page in a real headless Chromium: a small torch model trains
in this process and sonifies itself into an engine process over real UDP (GradientSonifier with an
OscSink, as ``sink="engine"`` would); the engine forwards each step to the page (``/son/seen``, and
``/son/nan`` for the cue). The page names the run as text, its plot's pixels change as steps
arrive, the pitches it shows are the engine's mapping of the norms sent, and a step whose gradient
is NaN is marked on the plot, in the run's text, and said once in the page's one live region."""

import hashlib
import math

import numpy as np
import pytest
import torch

from earengine.music import NOTE_NAMES
from earengine.process import EngineProcess
from earengine.sonify.capture import GradientSonifier
from earengine.sonify.mapping import Settings, map_norms
from earengine.sonify.sinks import OscSink
from tests.helpers.browser import browser
from tests.helpers.engines import REPO
from tests.helpers.waits import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUN = "web-tiny"
CANVAS = "return document.getElementById('training-canvas').toDataURL('image/png');"
#: What the page holds for the run: [step, norms, hz, nan] per step shown.
STEPS = ("const r = earengine.training.runs.get(arguments[0]);"
         "return r ? r.steps.map((s) => [s.step, [...s.norms].map(String), [...s.hz].map(String), s.nan]) : null;")
#: Every text the live region took (the page's one polite region).
SAID = ("window.said = []; const a = document.getElementById('announce');"
        "new MutationObserver(() => said.push(a.textContent)).observe(a, {childList: true, characterData: true, subtree: true});")
#: Pixels of the plot as red as the NaN mark (rgba(255,70,60,0.8) on black).
RED = ("const c = document.getElementById('training-canvas'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
       "let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] > 180 && d[i + 1] < 90 && d[i + 2] < 90) n++; return n;")


@pytest.fixture(scope="module")
def engine():
    args = ["--audio", "null", "--no-dream", "--oscquery-port", "0", "--no-zeroconf", "--status-every", "1000"]
    with EngineProcess(args, cwd=str(REPO), ready_s=60) as eng:
        assert wait_until(lambda: any(line.startswith("oscquery: http://") for line in eng.lines), 10)
        yield eng


def page_url(engine) -> str:
    return next(line for line in engine.lines if line.startswith("oscquery: http://")).split()[1]


def pitch(hz: float) -> str:
    m = round(69 + 12 * math.log2(hz / 440))
    return f"{NOTE_NAMES[m % 12]}{m // 12 - 1}"


def as_float(text: str) -> float:
    return float("nan") if text == "NaN" else float(text)


def test_a_sonified_training_run_is_drawn_with_its_pitches_and_its_nan_step(engine):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    sent = {}

    def train(son, *, nan=False):
        opt.zero_grad()
        net(torch.randn(16, 8)).pow(2).mean().backward()
        if nan:  # one bad batch: its step is skipped, as a gradient scaler skips an overflowed one
            net[0].weight.grad[0, 0] = float("nan")
        frame = son.step()
        sent[frame.step] = np.asarray(frame.norms, dtype=np.float32)
        if not nan:
            opt.step()
        return frame.step

    with browser() as driver:
        driver.get(page_url(engine))
        assert wait_until(lambda: driver.execute_script(
            "return document.body.dataset.ready === '1' && earengine.ear && earengine.ear.connected"), 20), \
            driver.find_element("id", "connection").text
        driver.execute_script(SAID)
        shown = lambda: driver.execute_script(STEPS, RUN) or []  # noqa: E731
        last_shown = lambda: shown()[-1][0] if shown() else -1  # noqa: E731
        shot = lambda: hashlib.sha256(driver.execute_script(CANVAS).encode()).hexdigest()  # noqa: E731
        shots = [shot()]

        sink = OscSink(*engine.address)
        try:
            with GradientSonifier(net, sink=sink, run=RUN, pace=False) as son:
                # the run is named as text, and the plot changes with each step that arrives
                for _ in range(3):
                    step = train(son)
                    assert wait_until(lambda: last_shown() == step, 10), (step, shown())
                    assert wait_until(lambda: shot() not in shots, 5), f"the plot did not change with step {step}"
                    shots.append(shot())
                runs = driver.find_element("id", "training-runs")
                assert wait_until(lambda: f"run {RUN}, step {step}:" in runs.text, 5), runs.text

                for _ in range(5):
                    step = train(son)
                assert wait_until(lambda: last_shown() == step, 10), (step, shown())
                # the pitches shown are the engine's mapping of the norms sent (its defaults)
                for k, norms, hz, nan in shown():
                    norms = np.array([as_float(v) for v in norms])
                    np.testing.assert_array_equal(norms, sent[k])
                    want = map_norms(sent[k].astype(np.float64), Settings()).freq_hz
                    np.testing.assert_allclose([as_float(v) for v in hz], want, rtol=1e-5)
                    assert not nan
                assert wait_until(lambda: all(f"{round(h)} Hz ({pitch(h)})" in runs.text for h in want), 5), \
                    (runs.text, want)
                assert driver.execute_script(RED) == 0

                # a NaN step: marked on the plot and in the text, said once
                bad = train(son, nan=True)
                for _ in range(3):
                    step = train(son)
                assert wait_until(lambda: last_shown() == step, 10), (step, shown())
                marked = {k: nan for k, _, _, nan in shown()}
                assert marked[bad] and not any(v for k, v in marked.items() if k != bad), marked
                nan_hz = next(hz for k, _, hz, _ in shown() if k == bad)
                assert nan_hz[0] == "NaN" and nan_hz[1] != "NaN", nan_hz  # the NaN layer is silent, not the other
                assert driver.execute_script(RED) > 0, "the NaN step is not marked on the plot"
                assert wait_until(lambda: f"NaN cue at step {bad}, layer 0" in runs.text, 5), runs.text
                said = lambda: [t for t in driver.execute_script("return said") if "NaN" in t]  # noqa: E731
                assert wait_until(lambda: said(), 5), driver.execute_script("return said")
                for _ in range(3):
                    step = train(son)
                assert wait_until(lambda: last_shown() == step, 10)
                assert wait_until(lambda: f"run {RUN}, step {step}:" in runs.text, 5), runs.text
                assert len(said()) == 1 and f"NaN cue: run {RUN}, step {bad}, layer 0" in said()[0], said()
            # the run ends: the page lets it go
            assert wait_until(lambda: RUN not in runs.text, 10), runs.text
        finally:
            sink.close()
