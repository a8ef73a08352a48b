"""Benchmark: the worker on another machine, through a relay that behaves like a venue's Wi-Fi.

Run: ``.venv/bin/python bench/remote_worker.py [--model models/ear-default] [--seconds 30]
[--delay-ms 25] [--mbit 20] [--threads 1] [--device cpu|cuda]``

Two runs of the engine at the defaults (2 bars at 120 BPM), ``--audio null`` (real time, no
device), each for ``--seconds``:

- ``local``: the worker as a child process (shared memory), as ``earengine run`` starts it;
- ``remote``: ``earengine worker --listen 127.0.0.1:0`` as a process with a fresh secret file, and
  the engine connected to it through a TCP relay written here, which holds every chunk
  ``--delay-ms`` each way (50 ms of round trip at the default) and paces each direction at
  ``--mbit`` Mbit/s.

Printed for each: new loops reaching the player per bar, xruns (as the null server counts them),
the worker's steps/s (its own average over its last 20 steps, sampled once a second, median);
for the remote run also the bytes per bar each way and the round-trip time the engine measures.
The last line is the ratio of steps/s remote / local.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from earengine.engine import Engine, EngineConfig  # noqa: E402
from earengine.resources import DEFAULT_EAR  # noqa: E402
from earengine.worker.wire import new_secret  # noqa: E402


class Relay:
    """A TCP relay on loopback: ``delay_s`` added each way, each direction paced at ``bits_per_s``."""

    def __init__(self, target_port: int, *, delay_s: float, bits_per_s: float) -> None:
        self.target_port = target_port
        self.delay_s = delay_s
        self.bits_per_s = bits_per_s
        self.bytes = {"up": 0, "down": 0}  # up: engine to worker
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._run, name="relay", daemon=True).start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            server = await asyncio.start_server(self._client, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    async def _client(self, reader, writer) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer, "up"), self._pipe(up_reader, writer, "down"),
                             return_exceptions=True)

    async def _pipe(self, reader, writer, way: str) -> None:
        queue: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        busy_until = [0.0]

        async def deliver() -> None:
            while True:
                at, data = await queue.get()
                if data is None:
                    writer.close()
                    return
                wait = at - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        task = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(16384)
                if not data:
                    break
                self.bytes[way] += len(data)
                # serialised at the link's rate, then in flight for delay_s
                depart = max(loop.time(), busy_until[0]) + len(data) * 8 / self.bits_per_s
                busy_until[0] = depart
                queue.put_nowait((depart + self.delay_s, data))
        finally:
            queue.put_nowait((0.0, None))
            await task

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)


def run_engine(config: EngineConfig, seconds: float) -> dict:
    lines: list[str] = []

    class Out:
        def write(self, text: str) -> None:
            lines.extend(text.splitlines())

        def flush(self) -> None:
            pass

    with Engine(config, out=Out()) as engine:
        clock = engine.player.clock
        deadline = time.monotonic() + 300
        while engine.dream.loops < 1 and time.monotonic() < deadline:  # the ear loaded, a first loop made
            time.sleep(0.1)
        bar0, loops0, started0 = clock.bar_position, engine.dream.loops, engine.player.loops_started
        bytes0 = engine.counts().get("worker_bytes_received", 0)
        rates, rtts = [], []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(1.0)
            rates.append(engine.dream.last["steps_per_s"])
            if getattr(engine.dream, "rtt_s", None) is not None:
                rtts.append(engine.dream.rtt_s * 1000)
        bars = clock.bar_position - bar0
        return {"bars": bars, "loops_per_bar": (engine.dream.loops - loops0) / bars,
                "swaps_per_bar": (engine.player.loops_started - started0) / bars,
                "xruns": int(engine.audio.xruns), "steps_per_s": statistics.median(rates) if rates else 0.0,
                "down_bytes": engine.counts().get("worker_bytes_received", 0) - bytes0,
                "rtt_ms": statistics.median(rtts) if rtts else None, "lines": lines}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_EAR))
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--delay-ms", type=float, default=25.0, help="added each way (default 25: 50 ms round trip)")
    parser.add_argument("--mbit", type=float, default=20.0, help="each direction's rate cap")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the remote worker (the local one takes every core but one)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args(argv)
    base = dict(audio="null", osc_port=0, oscquery_port=None, stream_ws_port=None, ear=args.model, device=args.device)
    print(f"remote worker bench: {args.model}, defaults (2 bars at 120 BPM), {args.seconds:g} s each, "
          f"relay +{args.delay_ms:g} ms each way at {args.mbit:g} Mbit/s, {args.threads} torch thread(s), {args.device}")

    local = run_engine(EngineConfig(**base), args.seconds)
    print(f"local:  {local['loops_per_bar']:.2f} new loops per bar ({local['swaps_per_bar']:.2f} swapped in), "
          f"xruns {local['xruns']}, worker {local['steps_per_s']:.2f} steps/s")

    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "worker.key"
        new_secret(key)
        cmd = [sys.executable, "-m", "earengine", "worker", "--listen", "127.0.0.1:0", "--ear", args.model,
               "--secret-file", str(key), "--threads", str(args.threads), "--device", args.device, "--status-every", "0"]
        server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=str(REPO))
        try:
            port = None
            for line in server.stdout:
                found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
                if found:
                    port = int(found.group(1))
                    break
            if port is None:
                print("the worker server did not start")
                return 1
            threading.Thread(target=lambda: [None for _ in server.stdout], daemon=True).start()
            relay = Relay(port, delay_s=args.delay_ms / 1000, bits_per_s=args.mbit * 1e6)
            remote = run_engine(EngineConfig(**base, worker=f"127.0.0.1:{relay.port}", secret_file=key), args.seconds)
            up = relay.bytes["up"]
            relay.close()
        finally:
            server.terminate()
            server.wait(20)
    bars = remote["bars"]
    print(f"remote: {remote['loops_per_bar']:.2f} new loops per bar ({remote['swaps_per_bar']:.2f} swapped in), "
          f"xruns {remote['xruns']}, worker {remote['steps_per_s']:.2f} steps/s, "
          f"{remote['down_bytes'] / bars / 1000:.0f} kB per bar to the engine, {up / bars / 1000:.1f} kB per bar to the "
          f"worker, rtt {remote['rtt_ms']:.0f} ms")
    ratio = remote["steps_per_s"] / local["steps_per_s"] if local["steps_per_s"] else float("nan")
    print(f"worker steps/s remote / local: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
