"""The ear view of the engine's web page, in headless Chromium, while the shipped ear dreams.

Starts ``earengine run --audio null`` on the shipped ear (or ``--ear``), opens its page in Debian's
Chromium (Selenium), waits for the first frames drawn, then counts for ``--seconds``, in the page
(window.earengine.ear.stats): animation frames that drew a new stream frame (frames/s), the lag
from a frame's timetag (when it sounds) to when it was drawn (p95), and the share of the stream's
frames never drawn (lost on the way, or skipped because a newer one was already overdue), and the
animation frames the page got per second. Then it opens the page again, as a user would on a running
engine, and reports when it was ready: the time from navigation start to controls and layout drawn
(window.earengine.readyAt). Optionally writes a PNG screenshot of the page (``--screenshot docs/web-page.png``).

Goals: >= 30 frames/s, p95 <= 50 ms, ready <= 1 s. Last lines::

    N frames/s
    p95 M ms
    dropped P %
    ready R ms
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from earengine.process import EngineProcess  # noqa: E402
from earengine.resources import DEFAULT_EAR  # noqa: E402
from tests.helpers.browser import CHROMEDRIVER, CHROMIUM, FLAGS, missing  # noqa: E402

STATS = "const s = earengine.ear.stats; return [s.drawn, s.skipped, s.first, s.last, s.lags.slice(), s.ticks || 0];"
READY = "return window.earengine && earengine.readyAt !== undefined ? earengine.readyAt : null"


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split(" ")[0]
    except OSError:
        return "?"


def ready_ms(driver, timeout_s: float = 60.0) -> float:
    """Milliseconds from navigation start to controls and layout drawn (NaN if not within the timeout)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = driver.execute_script(READY)
        if got is not None:
            return float(got)
        time.sleep(0.05)
    return float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ear", default=str(DEFAULT_EAR))
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--fps", type=float, default=30.0, help="/stream/fps (default 30)")
    p.add_argument("--screenshot", default=None, help="also write a PNG of the page here")
    args = p.parse_args()
    why = missing()
    if why:
        print(why)
        return 2
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    engine_args = ["--audio", "null", "--ear", args.ear, "--oscquery-port", "0", "--no-zeroconf",
                   "--status-every", "1000", "--set", f"/stream/fps={args.fps}"]
    with EngineProcess(engine_args, cwd=str(REPO), ready_s=120) as eng:
        deadline = time.monotonic() + 10
        while not any(line.startswith("oscquery: http://") for line in eng.lines):
            if time.monotonic() > deadline:
                print("the engine serves no OSCQuery page")
                return 1
            time.sleep(0.05)
        url = next(line for line in eng.lines if line.startswith("oscquery: http://")).split()[1]
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS + ("--window-size=1280,1100",):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        try:
            driver.get(url)
            deadline = time.monotonic() + 300
            while True:  # the layout and the first frames with activations (the dream's first loop)
                drawn = driver.execute_script("return window.earengine && earengine.ear ? earengine.ear.stats.drawn : 0")
                if drawn > 30:
                    break
                if time.monotonic() > deadline:
                    print("no frame drawn within 300 s")
                    return 1
                time.sleep(0.2)
            first_ready = ready_ms(driver, 1.0)
            d0, s0, _, last0, _, t0_ticks = driver.execute_script(STATS)
            driver.execute_script("earengine.ear.stats.lags.length = 0")
            t0 = time.monotonic()
            time.sleep(args.seconds)
            d1, s1, _, last1, lags, t1_ticks = driver.execute_script(STATS)
            elapsed = time.monotonic() - t0
            load = loadavg()
            if args.screenshot:
                out = Path(args.screenshot)
                out.parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(out))
                print(f"screenshot: {out} ({os.path.getsize(out) // 1024} KB)")
            driver.get(url)  # the page opened again on the running engine, as a user would
            ready = ready_ms(driver)
        finally:
            driver.quit()
    drawn, sent = d1 - d0, max(1, last1 - last0)
    lags = sorted(lags)
    p95 = lags[min(len(lags) - 1, int(0.95 * len(lags)))] if lags else float("nan")
    print(f"stream at {args.fps:g} frames/s, {elapsed:.1f} s counted: {drawn} drawn, {s1 - s0} skipped, "
          f"{sent} sent; lag median {lags[len(lags) // 2] if lags else float('nan'):.1f} ms; "
          f"{(t1_ticks - t0_ticks) / elapsed:.1f} animation frames/s; load {load} "
          f"({os.cpu_count()} CPUs); first load ready {first_ready:.0f} ms")
    print(f"{drawn / elapsed:.1f} frames/s")
    print(f"p95 {p95:.1f} ms")
    print(f"dropped {100.0 * max(0, sent - drawn) / sent:.1f} %")
    print(f"ready {ready:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
