"""The ear on the engine's web page, in a real headless Chromium, with a dreaming engine process on
the tiny ear: the neuron view's pixels change while frames stream and hold still when nothing
streams (/stream/run 0); clicking a neuron aims the dream at its channel (read back over OSC)."""

import hashlib
import time

import pytest

from earengine.process import EngineProcess
from tests.helpers.browser import browser
from tests.helpers.engines import REPO, OscPeer
from tests.helpers.waits import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PIXELS = "const c = document.getElementById('ear-canvas'); return c.toDataURL('image/png');"


@pytest.fixture(scope="module")
def engine(tiny_ear_dir):
    args = ["--audio", "null", "--ear", str(tiny_ear_dir), "--oscquery-port", "0", "--no-zeroconf",
            "--status-every", "1000", "--set", "/loop/bars=1", "--set", "/clock/bpm=240"]
    with EngineProcess(args, cwd=str(REPO), ready_s=60) as eng:
        assert wait_until(lambda: any(line.startswith("oscquery: http://") for line in eng.lines), 10)
        yield eng


def page_url(engine) -> str:
    line = next(line for line in engine.lines if line.startswith("oscquery: http://"))
    return line.split()[1]


def snapshot(driver) -> str:
    return hashlib.sha256(driver.execute_script(PIXELS).encode()).hexdigest()


def test_the_neurons_light_while_streaming_hold_still_without_and_a_click_aims_the_dream(engine):
    osc = OscPeer(engine.port)
    try:
        with browser() as driver:
            driver.get(page_url(engine))
            # the layout (computed once for this ear) and frames with activations arrive
            drawn = "return window.earengine && earengine.ear ? earengine.ear.stats.drawn : 0"
            assert wait_until(lambda: driver.execute_script(drawn) > 10, 120), "no frame drawn"
            # the page says when it was ready: controls and layout drawn (bench/web_view.py times it)
            assert driver.execute_script("return typeof earengine.readyAt") == "number"
            shots = {snapshot(driver)}
            assert wait_until(lambda: shots.add(snapshot(driver)) or len(shots) >= 3, 10), "the ear stays still while streaming"

            osc.send("/stream/run", 0)
            osc.send("/get", "/stream/run")  # answered once the engine stopped streaming
            assert osc.wait_for("/stream/run", 5) == (0,)
            count = driver.execute_script(drawn)  # frames already queued are drawn when they sound
            settled = ("const s = earengine.ear.stats;"  # read at once: every frame received is drawn or skipped
                       "return s.received === s.drawn + s.skipped && s.drawn >= arguments[0];")
            assert wait_until(lambda: driver.execute_script(settled, count), 5)
            still = snapshot(driver)
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:  # a second of animation frames with nothing streamed
                assert snapshot(driver) == still, "the ear moved with nothing streaming"
            osc.send("/stream/run", 1)
            assert wait_until(lambda: snapshot(driver) != still, 10)

            # a click on a neuron of enc.5 sets the target to its channel
            x, y, channel = driver.execute_script(
                "const t = earengine.ear.taps.get('enc.5'); const f = t.px.length / t.channels;"
                "const i = Math.floor(t.px.length / 2);"
                "return [t.x[i], t.y[i], Math.floor(i / f)];")
            driver.execute_script(
                "const c = document.getElementById('ear-canvas'), b = c.getBoundingClientRect();"
                "const e = new MouseEvent('click', {clientX: b.left + arguments[0] * b.width / c.width,"
                " clientY: b.top + arguments[1] * b.height / c.height, bubbles: true}); c.dispatchEvent(e);", x, y)

            def target():
                osc.send("/get", "/target/spec")
                got = osc.wait_for("/target/spec", 2)
                return got[0].split("*")[0] if got else None  # the engine writes the weight: enc.5:8*1

            assert wait_until(lambda: target() == f"enc.5:{channel}", 10), target()
    finally:
        osc.close()
