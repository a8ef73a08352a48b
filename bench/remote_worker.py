"""Benchmark: the worker on another machine, through a relay that behaves like a venue's Wi-Fi.

Run: ``nice -n 19 .venv/bin/python bench/remote_worker.py [--model models/ear-default] [--seconds 30]
[--rounds 2] [--delay-ms 25] [--mbit 20] [--threads 1] [--device cpu|cuda] [--cut 5]``

Two runs of the engine at the defaults (2 bars at 120 BPM), ``--audio null`` (real time, no
device), each measured twice for ``--seconds``: as it starts (no stream), then with a UDP stream
destination at the stream defaults (every tap, ``/stream/reduce channel``, 30 fps); the two runs
alternate for ``--rounds`` (the load of a shared machine drifts):

- ``local``: the worker as a child process (shared memory), as ``earengine run`` starts it;
- ``remote``: ``earengine worker --listen 127.0.0.1:0`` as a process with a fresh secret file, and
  the engine connected to it through a relay (:class:`tests.helpers.relay.Relay`), which holds
  every chunk ``--delay-ms`` each way (50 ms of round trip at the default) and paces each
  direction at ``--mbit`` Mbit/s.

Printed for each: new loops reaching the engine per bar (and the bars wholly in the window
that got none), xruns (as the null server counts them), the worker's steps taken per second of
wall time;
for the remote run also the bytes per bar each way and the round-trip time the engine measures;
then the ratio of steps/s remote / local, plain and streamed (the median over the rounds).

Then, with ``--cut S`` (default 5; 0 skips it), the faults, the stream still on: the relay cut
for S seconds, then the worker killed (SIGKILL) and started again on its port. Printed: the
seconds from the link's return, and from the new worker's ``listening`` line, to the next new
loop at the engine; and what the player did meanwhile, looked at every 20 ms (a dreamed, audible
loop current with the clock running; the longest time its read position stood still).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import udp  # noqa: E402
from earengine.engine import Engine, EngineConfig  # noqa: E402
from earengine.resources import DEFAULT_EAR  # noqa: E402
from earengine.worker.wire import new_secret  # noqa: E402
from tests.helpers.relay import Relay  # noqa: E402
from tests.helpers.worker_server import WorkerProcess  # noqa: E402


class Receiver(udp.Listener):
    """A stream destination that counts what it gets."""

    def __init__(self) -> None:
        self.datagrams = 0
        super().__init__()

    def datagram(self, data: bytes) -> None:
        self.datagrams += 1


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        self.lines.extend(text.splitlines())

    def flush(self) -> None:
        pass


class SoundWatch:
    """Looks at the player every 20 ms on a thread: is a dreamed, audible loop current with the
    clock running, and how long has its read position stood still at most."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.looks = 0
        self.silent = 0
        self.longest_still_s = 0.0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        player, registry = self.engine.player, self.engine.registry
        phase, moved_at = None, time.monotonic()
        while not self._stop:
            loop = player.current
            now = time.monotonic()
            self.looks += 1
            if (loop is None or loop.source != "dream" or not player.clock.playing or registry.get("/loop/mute")
                    or not np.abs(loop.samples).max() > 0):
                self.silent += 1
            p = player.phase
            if p != phase:
                phase, moved_at = p, now
            self.longest_still_s = max(self.longest_still_s, now - moved_at)
            time.sleep(0.02)

    def close(self) -> str:
        self._stop = True
        self._thread.join(timeout=2)
        return (f"{self.looks} looks at the player, {self.silent} without a dreamed loop sounding; "
                f"its read position stood still {self.longest_still_s * 1000:.0f} ms at most")


def first_loop(engine) -> None:
    deadline = time.monotonic() + 300
    while engine.dream.loops < 1 and time.monotonic() < deadline:  # the ear loaded, a first loop made
        time.sleep(0.1)


def measure(engine, seconds: float) -> dict:
    """What the engine and its worker did for ``seconds``: loops per bar, bars that got no new
    loop, steps taken per second of wall time (the dream's own figure counts the optimizer's
    step only, not the activations computed between steps), xruns, bytes, rtt."""
    clock, dream = engine.player.clock, engine.dream
    bar0, loops0, started0, step0 = clock.bar_position, dream.loops, engine.player.loops_started, dream.last["step"]
    bytes0 = engine.counts().get("worker_bytes_received", 0)
    rtts, t0 = [], time.monotonic()
    bars_with_loop: set[int] = set()
    loops, next_rtt = loops0, t0 + 1.0
    end = t0 + seconds
    while time.monotonic() < end:
        time.sleep(0.01)
        if dream.loops != loops:
            loops = dream.loops
            bars_with_loop.add(int(clock.bar_position))
        if time.monotonic() >= next_rtt:
            next_rtt += 1.0
            if getattr(dream, "rtt_s", None) is not None:
                rtts.append(dream.rtt_s * 1000)
    elapsed = time.monotonic() - t0
    bars = clock.bar_position - bar0
    whole = range(int(bar0) + 1, int(clock.bar_position))  # the bars wholly inside the window
    return {"bars": bars, "loops_per_bar": (dream.loops - loops0) / bars,
            "swaps_per_bar": (engine.player.loops_started - started0) / bars,
            "bars_without": sum(1 for b in whole if b not in bars_with_loop), "whole_bars": len(whole),
            "xruns": int(engine.audio.xruns), "steps_per_s": (dream.last["step"] - step0) / elapsed,
            "down_bytes": engine.counts().get("worker_bytes_received", 0) - bytes0,
            "rtt_ms": statistics.median(rtts) if rtts else None}


def stream_to(engine, receiver: Receiver) -> None:
    engine.streams.add(receiver.dest)
    n = engine.dream.loops
    deadline = time.monotonic() + 30
    while engine.dream.loops < n + 2 and time.monotonic() < deadline:  # loops with activations now
        time.sleep(0.1)


def next_loop_s(engine, since: float, timeout_s: float = 60.0) -> float:
    """Seconds from ``since`` (monotonic) to the next new loop at the engine."""
    loops = engine.dream.loops
    deadline = time.monotonic() + timeout_s
    while engine.dream.loops == loops and time.monotonic() < deadline:
        time.sleep(0.005)
    return time.monotonic() - since if engine.dream.loops > loops else float("nan")


def line(name: str, m: dict, relay_up: int | None = None) -> str:
    text = (f"{name}: {m['loops_per_bar']:.2f} new loops per bar ({m['swaps_per_bar']:.2f} swapped in; "
            f"{m['bars_without']} of {m['whole_bars']} bars without one), xruns {m['xruns']}, "
            f"worker {m['steps_per_s']:.2f} steps/s")
    if relay_up is not None:
        text += (f", {m['down_bytes'] / m['bars'] / 1000:.0f} kB per bar to the engine, "
                 f"{relay_up / m['bars'] / 1000:.1f} kB per bar to the worker, rtt {m['rtt_ms']:.0f} ms")
    return text


def session(engine, receiver: Receiver, seconds: float, relay: Relay | None = None) -> dict:
    """Measures as it starts, then with ``receiver`` as a stream destination."""
    first_loop(engine)
    out = {}
    for name in ("plain", "streams"):
        if name == "streams":
            stream_to(engine, receiver)
        up0 = relay.bytes["up"] if relay is not None else 0
        out[name] = measure(engine, seconds)
        out[name + "_up"] = relay.bytes["up"] - up0 if relay is not None else None
    return out


def faults(engine, args, server: WorkerProcess, key: Path, relay: Relay) -> tuple[list[str], WorkerProcess]:
    """The relay cut, then the worker killed and started again; what the player did meanwhile."""
    lines = []
    watch = SoundWatch(engine)
    relay.cut()
    time.sleep(args.cut)
    relay.restore()
    link_s = next_loop_s(engine, relay.restored_at)
    lines.append(f"link cut {args.cut:g} s: the next new loop {link_s:.2f} s after it returned")
    time.sleep(2 * engine.player.clock.bar_s)
    server.kill()
    killed = time.monotonic()
    server = WorkerProcess(args.model, key, port=server.port, threads=args.threads, device=args.device)
    worker_s = next_loop_s(engine, server.up_at)
    lines.append(f"worker SIGKILLed, started again ({server.up_at - killed:.1f} s to load the ear): "
                 f"the next new loop {worker_s:.2f} s after it listened")
    lines.append(f"meanwhile {watch.close()}; xruns {engine.audio.xruns}, "
                 f"reconnects {engine.counts().get('worker_reconnects', 0)}")
    return lines, server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_EAR))
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=2,
                        help="local and remote runs, alternated (a shared machine's load drifts)")
    parser.add_argument("--delay-ms", type=float, default=25.0, help="added each way (default 25: 50 ms round trip)")
    parser.add_argument("--mbit", type=float, default=20.0, help="each direction's rate cap")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the remote worker (the local one takes every core but one)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--cut", type=float, default=5.0, help="seconds the relay is cut in the fault phase (0: none)")
    args = parser.parse_args(argv)
    base = dict(audio="null", osc_port=0, oscquery_port=None, stream_ws_port=None, ear=args.model, device=args.device)
    load = os.getloadavg()
    print(f"remote worker bench: {args.model}, defaults (2 bars at 120 BPM), {args.seconds:g} s per measure, "
          f"{args.rounds} round(s), relay +{args.delay_ms:g} ms each way at {args.mbit:g} Mbit/s, "
          f"{args.threads} torch thread(s), {args.device}; load {load[0]:.2f} on {os.cpu_count()} cores", flush=True)

    receiver = Receiver()
    ratios: dict[str, list[float]] = {"plain": [], "streams": []}
    fault_lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "worker.key"
        new_secret(key)
        server = WorkerProcess(args.model, key, threads=args.threads, device=args.device)
        relay = Relay(server.port, delay_s=args.delay_ms / 1000, bits_per_s=args.mbit * 1e6)
        try:
            for r in range(args.rounds):
                with Engine(EngineConfig(**base), out=Lines()) as engine:
                    local = session(engine, receiver, args.seconds)
                config = EngineConfig(**base, worker=f"127.0.0.1:{relay.port}", secret_file=key)
                with Engine(config, out=Lines()) as engine:
                    remote = session(engine, receiver, args.seconds, relay)
                    if args.cut > 0 and r == args.rounds - 1:
                        fault_lines, server = faults(engine, args, server, key, relay)
                    engine.registry.set("/opt/run", False)  # the server dreams on for nobody otherwise
                    time.sleep(1.0)
                print(f"round {r + 1}, load {os.getloadavg()[0]:.2f}:")
                for name, label in (("plain", ""), ("streams", ", streamed")):
                    print(line(f"  local{label}", local[name]))
                    print(line(f"  remote{label}", remote[name], remote[name + "_up"]))
                    if local[name]["steps_per_s"]:
                        ratios[name].append(remote[name]["steps_per_s"] / local[name]["steps_per_s"])
                sys.stdout.flush()
        finally:
            relay.close()
            server.close()
            receiver.close()
    for text in fault_lines:
        print(text)
    for name, label in (("plain", "no stream"), ("streams", "streamed")):
        each = ", ".join(f"{x:.2f}" for x in ratios[name])
        print(f"worker steps/s remote / local, {label}: {statistics.median(ratios[name]):.2f} (rounds: {each})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
