"""Benchmark: the ear listening to the input while the engine dreams, on this CPU.

Run: ``.venv/bin/python bench/listen.py [--seconds 40] [--ear models/ear-default]``

An engine (``earengine run --audio jack --input``, dreaming at the defaults with the shipped ear)
runs on a uniquely named asynchronous ``jackd -d dummy`` (as bench/xruns.py runs it), real-time
as a performer's machine should grant it (``--no-realtime``: not). A UDP
receiver of the bench's streams every tap (``/stream/reduce channel``), ``/stream/source input``
throughout (so the worker computes no activations for the streams in either half, and the halves
differ by the listener alone). First ``--seconds`` with listening off: the dream's steps/s. Then
``--seconds`` with ``/listen/run 1`` while a JACK client (a process of the bench's own) plays a click (2 ms of noise) every
half second into ``earengine:input_1/2``:

- frames/s: frames of the input that arrived, counted once per set heard (distinct timetags);
- latency: for each click, from when it was played (its JACK frame, put on the wall clock by the
  playing client's cycle stamps, the engine's convention for when input is heard) to the arrival
  of the first frame whose scaleogram shows it; median and 95th percentile;
- xruns over the whole run (the engine's JACK xrun count), and the dream's steps/s with
  listening on against off.

Goals (issue 20): >= 30 frames/s, p95 <= 100 ms, 0 xruns, listening costs dreaming <= 25 %.
The last lines are ``listening on/off steps/s ratio R``, ``N frames/s`` and ``p95 M ms``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import udp  # noqa: E402
from earengine.osc.wire import decode_packet  # noqa: E402
from earengine.process import EngineProcess  # noqa: E402

GAP_S = 0.5  # between clicks


class Control(udp.Asker):
    """One UDP socket asking the engine and waiting for its reply."""

    def step(self) -> tuple[float, int]:
        return time.monotonic(), int(self.need("/status", reply="/status.reply")[1])


class Frames(udp.Listener):
    """A UDP stream receiver: per frame, its arrival, timetag and scaleogram value."""

    def __init__(self) -> None:
        self.frames: dict = defaultdict(dict)
        super().__init__()

    def datagram(self, data: bytes) -> None:
        now = time.time()
        for when, address, args in decode_packet(data):
            if address == "/stream/act/scaleogram" and args[1] == 0:
                f = self.frames[args[0]]
                f["arrival"], f["when"], f["level"] = now, when, float(args[3])

    def table(self, since: float) -> np.ndarray:
        """(arrival, timetag, scaleogram) of the frames that arrived since ``since``, by arrival."""
        rows = [(f["arrival"], f["when"], f["level"]) for f in list(self.frames.values())
                if "level" in f and f["when"] and f["arrival"] >= since]
        return np.array(sorted(rows), dtype=np.float64).reshape(-1, 3)


class Clicks:
    """A JACK client playing a click every ``GAP_S`` into the engine's inputs while on; ``played``
    holds when each was played on the wall clock (see the module notes)."""

    def __init__(self) -> None:
        import jack

        self.client = jack.Client("earengine-bench-clicks", no_start_server=True)
        self.sr = self.client.samplerate
        self.out = self.client.outports.register("out")
        self.burst = np.random.default_rng(3).uniform(-0.9, 0.9, int(0.002 * self.sr)).astype(np.float32)
        self.gap = int(GAP_S * self.sr)
        self.on = False
        self.next = None
        self.played: list[float] = []
        self.client.set_process_callback(self._process)
        self.client.activate()
        for port in ("earengine:input_1", "earengine:input_2"):
            self.client.connect(self.out, port)

    def _process(self, n: int) -> None:
        f0 = self.client.last_frame_time
        stamp = time.time() - self.client.frames_since_cycle_start / self.sr
        out = self.out.get_array()
        out[:] = 0.0
        if not self.on:
            self.next = None
            return
        if self.next is None:
            self.next = f0
        c = self.next
        while c < f0 + n:
            lo, hi = max(c, f0), min(c + self.burst.size, f0 + n)
            if lo < hi:
                out[lo - f0:hi - f0] = self.burst[lo - c:hi - c]
            if c >= f0:
                self.played.append(stamp - (f0 + n - 1 - c) / self.sr)
            if c + self.burst.size <= f0 + n:
                c += self.gap
            else:
                break
        self.next = c

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


def _clicks_main(server: str, on, stop, played) -> None:
    """The click player's process: its JACK thread alone in its interpreter, so the bench's own
    threads (the stream receiver's parsing) never keep it from its cycle (an xrun of the server)."""
    os.environ.update(JACK_DEFAULT_SERVER=server, JACK_NO_START_SERVER="1")
    clicks = Clicks()
    try:
        while not stop.wait(0.05):
            clicks.on = on.is_set()
    finally:
        clicks.on = False
        clicks.close()
        played.put(list(clicks.played))


class ClickProcess:
    """:class:`Clicks` in a process of its own; ``on`` starts and stops them, ``played`` (after
    :meth:`close`) says when each was played."""

    def __init__(self) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._on, self._stop, self._played = ctx.Event(), ctx.Event(), ctx.Queue()
        self.proc = ctx.Process(target=_clicks_main, daemon=True,
                                args=(os.environ["JACK_DEFAULT_SERVER"], self._on, self._stop, self._played))
        self.proc.start()
        self.played: list[float] = []

    @property
    def on(self) -> bool:
        return self._on.is_set()

    @on.setter
    def on(self, value: bool) -> None:
        (self._on.set if value else self._on.clear)()

    def close(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self.played = self._played.get(timeout=10)
            self.proc.join(timeout=5)


def latencies(table: np.ndarray, played: list[float]) -> list[float]:
    """From each click played to the arrival of the first frame whose scaleogram shows it."""
    if not len(table) or not played:
        return []
    arrival, when, level = table.T
    ends = np.unique(when)  # a frame spans the input heard from its timetag to the next frame's
    end = np.append(ends[1:], np.inf)[np.searchsorted(ends, when)]
    quiet = np.median(level[end < played[0]]) if np.any(end < played[0]) else np.min(level)
    loud = np.median([level[(when <= t) & (t < end)].max() for t in played if np.any((when <= t) & (t < end))])
    shows = level > quiet + 0.5 * (loud - quiet)
    out = []
    for t in played:
        first = np.flatnonzero(shows & (end > t - 0.05) & (arrival > t))
        if first.size and arrival[first[0]] - t < GAP_S:  # else: missed (not counted as a latency)
            out.append(float(arrival[first[0]] - t))
    return out


def steps_per_s(control: Control, seconds: float) -> float:
    t0, s0 = control.step()
    time.sleep(seconds)
    t1, s1 = control.step()
    return (s1 - s0) / (t1 - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=40.0, help="seconds with listening off, then on (default 40)")
    ap.add_argument("--ear", default=str(REPO / "models" / "ear-default"))
    ap.add_argument("--no-realtime", action="store_true", help="run jackd without real-time scheduling")
    args = ap.parse_args(argv)

    from xruns import jack_server  # a uniquely named asynchronous jackd -d dummy

    with ExitStack() as stack:
        env = stack.enter_context(jack_server(realtime=not args.no_realtime))
        os.environ.update({k: env[k] for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")})
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        eng = EngineProcess(["--audio", "jack", "--input", "--ear", args.ear, "--no-oscquery", "--no-zeroconf",
                             "--status-every", "3600"], env=env, cwd=str(REPO), ready_s=120.0, stop_s=15.0)
        stack.enter_context(eng)
        deadline = time.monotonic() + 180.0
        while not any("worker: ear loaded" in line for line in eng.lines):
            if time.monotonic() > deadline or not eng.running():
                raise SystemExit("the worker did not load the ear:\n" + "\n".join(eng.lines[-20:]))
            time.sleep(0.5)
        control = Control(eng.address)
        rx = Frames()
        stack.callback(rx.close)
        control.need("/stream/add", rx.dest, reply="/done", wait_s=10.0)
        clicks = ClickProcess()
        stack.callback(clicks.close)
        start = control.counts()
        # the streams show the input in both halves: the worker computes no activations for them
        # in either, so the halves differ by the listener alone
        control.send("/stream/source", "input")
        time.sleep(5.0)  # the dream under way
        off = steps_per_s(control, args.seconds)
        print(f"listening off: dreaming {off:.2f} steps/s over {args.seconds:g} s", flush=True)

        control.send("/listen/run", 1)
        deadline = time.monotonic() + 120.0
        while not any("listen: the ear hears" in line for line in eng.lines):
            if time.monotonic() > deadline:
                raise SystemExit("the listener did not start:\n" + "\n".join(eng.lines[-20:]))
            time.sleep(0.2)
        time.sleep(3.0)  # the listener under way: frames of silence first
        t0 = time.time()
        clicks.on = True
        t_steps, s_steps = control.step()
        time.sleep(args.seconds)
        t_end, s_end = control.step()
        clicks.on = False
        t1 = time.time()
        clicks.close()
        on = (s_end - s_steps) / (t_end - t_steps)
        time.sleep(1.0)
        end = control.counts()
        table = rx.table(t0 - 1.0)
        played = [t for t in clicks.played if t0 <= t <= t1 - 0.5]
        lat = latencies(table, played)
        sets = len(np.unique(table[(table[:, 0] >= t0) & (table[:, 0] <= t1), 1])) if len(table) else 0
        fps = sets / (t1 - t0)
        xruns = end.get("xruns", 0) - start.get("xruns", 0)
        fwd = (end.get("listen_forward_ms_p50", 0), end.get("listen_forward_ms_p95", 0))
    print(f"listening on: dreaming {on:.2f} steps/s; ear forward in the listener p50 {fwd[0]} ms, p95 {fwd[1]} ms")
    ms = np.array(lat) * 1000.0
    print(f"clicks: {len(played)} played, {len(lat)} seen within {GAP_S * 1000:.0f} ms"
          + (f", latency median {np.median(ms):.0f} ms, max {ms.max():.0f} ms" if ms.size else ""))
    print(f"xruns: {xruns} over the run ({2 * args.seconds + 10:.0f} s and more)")
    print(f"load: {Path('/proc/loadavg').read_text().strip()} (/proc/loadavg at the end; the machine may be shared)")
    print(f"listening on/off steps/s ratio {on / off if off else 0.0:.2f} (goal >= 0.75)")
    print(f"{fps:.1f} frames/s")
    print(f"p95 {np.percentile(ms, 95) if ms.size else float('nan'):.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
