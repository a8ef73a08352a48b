"""Benchmark: where loops start against a MIDI clock's bars and a Link peer's bars, earengine
against a plain timer-thread scheduler, in the same run.

Run: ``.venv/bin/python bench/clock_accuracy.py [--loads 30] [--midi-bpm 174] [--link-bpm 121]``

Needs Debian's jackd2 and jack-midi-clock, JACK-Client and aalink. It starts its own JACK dummy
server (synchronous, 44.1 kHz, 256-frame periods) and, on it:

- a master: ``jack_midi_clock`` (MIDI clock driven by JACK transport) for the first half, a Link
  peer in a process of its own (aalink) for the second;
- ``earengine run --clock midi`` (then ``/clock/source link``), loading a four-bar click loop every
  bar and a quarter, so every click it plays is a loop starting on a bar line of the master;
- the peer: a plain timer-thread scheduler in this process, the way a sync is often first
  written. For MIDI clock, a thread waits for every 96th pulse (a bar line) and asks for a click;
  for Link, a thread sleeps until the next bar line Link reports and asks for a click. A JACK
  client plays each click at the start of the next period.
- a recorder (a JACK client of its own) that takes both outputs and the clock pulses with their
  JACK frames, and stamps each cycle with ``CLOCK_MONOTONIC_RAW`` (Link's clock) so a frame can
  be put on the Link peer's grid.

Errors are click time minus the nearest bar line of the master, in ms. It prints the distribution
of |error| for both schedulers against both masters, then the p99 ratios last (timer / earengine:
above 1 means earengine is closer to the bars). The goal for earengine is p99 <= 3 ms. The player
puts a loop's first sample on the bar line inside the audio buffer, so the error is the clock's
alone; starting on the buffer edge nearest the line would add up to half a period (2.9 ms at 256
frames).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: earengine and tests.helpers from this checkout

SR, PERIOD, PPQ = 44100, 256, 24


class Server:
    """A private JACK dummy server (what the test fixture does, without pytest)."""

    def __init__(self) -> None:
        self.name = f"earengine-bench-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.env = dict(os.environ, JACK_DEFAULT_SERVER=self.name, JACK_NO_START_SERVER="1", PYO_GUI_WX="0")
        os.environ.update(JACK_DEFAULT_SERVER=self.name, JACK_NO_START_SERVER="1", PYO_GUI_WX="0")
        self.sr, self.period = SR, PERIOD
        self.proc = subprocess.Popen(["jackd", "--no-realtime", "-S", "-t", "5000", "-n", self.name, "-d", "dummy",
                                      "-r", str(SR), "-p", str(PERIOD)], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not self.ports():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("jackd -d dummy did not start (apt-get install jackd2)")
            time.sleep(0.1)

    def ports(self) -> list[str]:
        done = subprocess.run(["jack_lsp"], env=self.env, capture_output=True, text=True)
        return done.stdout.split() if done.returncode == 0 else []

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class TimerScheduler:
    """The plain way: a thread decides a bar line has come and asks for a click; a JACK client
    plays it at the start of the next period. For MIDI clock it waits for every 96th pulse
    after start; for Link it sleeps until Link's next bar line."""

    def __init__(self) -> None:
        import jack

        self.client = jack.Client("bench-timer", no_start_server=True)
        self.out = self.client.outports.register("out")
        self.midi_in = self.client.midi_inports.register("midi_in")
        self.fire = threading.Event()
        self.pulses: "list[int]" = []
        self.pulse_seen = threading.Condition()
        self.mode = "midi"
        self.link_grid = None  # (time.monotonic, beat, bpm) from the Link thread
        self._stop = threading.Event()
        self.client.set_process_callback(self._process)
        self.client.activate()
        threading.Thread(target=self._midi_thread, daemon=True).start()
        threading.Thread(target=self._link_thread, daemon=True).start()

    def _process(self, frames: int) -> None:
        buf = self.out.get_array()
        buf[:] = 0.0
        if self.fire.is_set():
            self.fire.clear()
            buf[0] = 0.9
        events = list(self.midi_in.incoming_midi_events())
        if events:
            with self.pulse_seen:
                for _, data in events:
                    if bytes(data) == b"\xfa":
                        self.pulses.clear()
                    elif bytes(data) == b"\xf8":
                        self.pulses.append(1)
                self.pulse_seen.notify_all()

    def _midi_thread(self) -> None:
        fired = 0
        while not self._stop.is_set():
            with self.pulse_seen:
                self.pulse_seen.wait(0.1)
                n = len(self.pulses)
            if self.mode != "midi":
                fired = 0
                continue
            bar = (n - 1) // (4 * PPQ) if n else -1  # the pulse that opens a bar is its first
            if n and bar >= fired:
                fired = bar + 1
                self.fire.set()

    def _link_thread(self) -> None:
        import aalink

        while self.mode != "link" and not self._stop.is_set():
            time.sleep(0.05)  # join only once the peer's session is there, so it stays the older

        async def run() -> None:
            link = aalink.Link(120.0)
            link.quantum = 4
            link.enabled = True
            await asyncio.sleep(1.0)  # time to join
            while not self._stop.is_set():
                beat, bpm = link.beat, link.tempo
                wait = (math.floor(beat / 4.0) * 4.0 + 4.0 - beat) * 60.0 / bpm
                time.sleep(wait)  # the plain way: sleep until the bar line, then ask
                self.fire.set()
                await asyncio.sleep(0.01)
            link.enabled = False

        asyncio.run(run())

    def close(self) -> None:
        self._stop.set()
        self.client.deactivate()
        self.client.close()


def stats(errors: np.ndarray) -> str:
    a = np.abs(errors)
    return (f"n={a.size:3d}  median {np.median(a):5.2f}  p90 {np.percentile(a, 90):5.2f}  "
            f"p99 {np.percentile(a, 99):5.2f}  max {a.max():5.2f} ms  (mean signed {errors.mean():+5.2f} ms)")


def start_loops(engine, probe, path: Path, *, bpm: float, loads: int) -> tuple[int, int]:
    """Load a click loop ``loads`` times, a bar and a quarter apart, so each click is a loop start
    on a bar line; returns the JACK frames between which the clicks were recorded."""
    from tests.helpers.recordings import click_loop

    loop = click_loop(path, bpm=bpm, sr=SR)
    mark = probe.filled + probe.first_frame
    bar_s = 4 * 60.0 / bpm
    for _ in range(loads):
        engine.send("/loop/load", str(loop))
        time.sleep(1.25 * bar_s)
    time.sleep(bar_s)
    return mark, probe.filled + probe.first_frame


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--loads", type=int, default=30, help="loop starts per master for earengine")
    p.add_argument("--midi-bpm", type=float, default=174.0)
    p.add_argument("--link-bpm", type=float, default=121.0)
    args = p.parse_args()

    from tests.helpers.engines import Engine
    from tests.helpers.jack import CycleClock, MidiClockSource, wait_until
    from tests.helpers.link import LinkPeer
    from tests.helpers.recordings import bar_frames

    import jack

    server = Server()
    folder = Path(tempfile.mkdtemp(prefix="earengine-bench-clock-"))
    transport = jack.Client("bench-transport", no_start_server=True)
    transport.activate()
    transport.transport_stop()
    source = MidiClockSource(server, args.midi_bpm)
    timer = TimerScheduler()
    probe = CycleClock("bench-probe", audio_ports=2, midi=True, seconds=40 + 4 * args.loads)
    peer = engine = None
    results: dict = {}
    try:
        probe.connect(source.port, probe.midi_in)
        probe.connect(source.port, timer.midi_in)
        probe.connect("bench-timer:out", probe.ins[1])
        engine = Engine(server.env, ["--clock", "midi", "--midi-in", source.port, "--set", "/loop/xfade=0",
                                     "--set", "/loop/gain=0"])
        wait_until(lambda: "earengine:output_1" in server.ports(), 10.0)
        probe.connect("earengine:output_1", probe.ins[0])

        # -- against MIDI clock --------------------------------------------------------------
        print(f"MIDI clock: jack_midi_clock at {args.midi_bpm:g} BPM, {args.loads} loop starts", flush=True)
        time.sleep(0.3)
        timer.mode = "midi"
        transport.transport_start()
        time.sleep(2.0)
        engine.bpm = args.midi_bpm
        mark, end = start_loops(engine, probe, folder / "midi.wav", bpm=args.midi_bpm, loads=args.loads)
        bars = bar_frames(probe.midi)
        for name, ch in (("earengine", 0), ("timer thread", 1)):
            clicks = probe.clicks(channel=ch)
            clicks = clicks[(clicks >= mark) & (clicks < end)]
            results[("midi", name)] = np.array([(c - bars[np.argmin(np.abs(bars - c))]) / SR * 1000.0 for c in clicks])
        transport.transport_stop()

        # -- against a Link peer -------------------------------------------------------------
        print(f"Link: a peer at {args.link_bpm:g} BPM in another process, {args.loads} loop starts", flush=True)
        peer = LinkPeer(args.link_bpm)
        time.sleep(1.0)
        engine.send("/loop/mute", 1)
        engine.send("/clock/source", "link")
        timer.mode = "link"
        wait_until(lambda: abs(engine.get("/clock/bpm") - args.link_bpm) < 0.01, 10.0)
        engine.send("/loop/mute", 0)
        time.sleep(2.0)
        engine.bpm = args.link_bpm
        mark, end = start_loops(engine, probe, folder / "link.wav", bpm=args.link_bpm, loads=args.loads)
        for name, ch in (("earengine", 0), ("timer thread", 1)):
            clicks = probe.clicks(channel=ch)
            clicks = clicks[(clicks >= mark) & (clicks < end)]
            errors = []
            for frame in clicks:
                beat = peer.beat_at(probe.frame_to_raw(frame))
                errors.append(((beat + 2.0) % 4.0 - 2.0) * 60.0 / args.link_bpm * 1000.0)
            results[("link", name)] = np.array(errors)
    finally:
        for closer in (engine, peer, probe, timer, source):
            try:
                if closer is not None:
                    closer.close()
            except Exception:
                pass
        transport.deactivate()
        transport.close()
        server.close()

    print()
    print("loop-start error, |click - nearest bar line of the master|:")
    for (master, name), errors in results.items():
        print(f"  {master:4s}  {name:12s}  {stats(errors)}")
    ours_ok = all(np.percentile(np.abs(results[(m, 'earengine')]), 99) <= 3.0 for m in ("midi", "link"))
    print(f"earengine p99 <= 3 ms against both masters: {'yes' if ours_ok else 'no'}")
    ratios = []
    for master in ("midi", "link"):
        ours = np.percentile(np.abs(results[(master, "earengine")]), 99)
        theirs = np.percentile(np.abs(results[(master, "timer thread")]), 99)
        ratios.append(f"{master} {theirs / max(ours, 1e-9):.2f}x")
    print("p99 ratio (timer thread / earengine): " + ", ".join(ratios))
    return 0 if ours_ok else 1


if __name__ == "__main__":
    sys.exit(main())
