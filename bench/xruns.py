"""Benchmark: JACK xruns while the dream worker runs flat out, against the engine without a worker.

Run: ``.venv/bin/python bench/xruns.py [--seconds 60] [--model models/ear-default] [--no-realtime]``

Starts its own JACK server with the dummy driver — 44.1 kHz, 256-sample periods (5.8 ms), in
JACK's normal asynchronous mode, where a client that misses its period is an xrun rather than a
delayed cycle — and, in turn:

1. ``earengine run --audio jack --no-dream``: the reference, the engine with no worker;
2. ``earengine run --audio jack --ear MODEL --set /opt/run=1``: the worker dreams flat out (one
   step after another, no pause) while the loops it makes play.

Each run plays a loop (seeded noise bursts, so the audio path is busy in both) and is measured for
``--seconds`` once it is ready (for 2, once the worker has published loops). Xruns are counted by
an independent JACK client of this script's own (``jack.Client.set_xrun_callback``); the engine's
own count (``/status``) is printed beside it. The server runs with real-time scheduling unless
``--no-realtime`` (then xruns mostly measure the machine's scheduler, not the engine).

With no checkpoint at ``--model`` the worker gets the default ear's configuration (small preset)
with random weights, saved to a temporary folder: a step costs the same whatever the weights.
The last line is the difference and ratio of the two counts; the goal is none while dreaming.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SR, PERIOD = 44100, 256


@contextmanager
def jack_server(*, realtime: bool) -> Iterator[dict]:
    """A uniquely named asynchronous ``jackd -d dummy``; yields the environment that selects it."""
    for tool in ("jackd", "jack_lsp"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: install the Debian package jackd2 (apt-get install jackd2)")
    name = f"earengine-xruns-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    env = dict(os.environ, JACK_DEFAULT_SERVER=name, JACK_NO_START_SERVER="1", PYO_GUI_WX="0")
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(["jackd", "--realtime" if realtime else "--no-realtime", "-n", name, "-d", "dummy",
                             "-r", str(SR), "-p", str(PERIOD)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20.0
        while subprocess.run(["jack_lsp"], env=env, capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise SystemExit(f"jackd -d dummy did not start:\n{log.read()[-2000:]}")
            time.sleep(0.1)
        yield env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class XrunCounter:
    """A JACK client that does nothing but count the server's xruns and their reported delays."""

    def __init__(self, env: dict) -> None:
        import jack

        self.count = 0
        self.delays_us: list[float] = []
        self.client = jack.Client("xrun-counter", no_start_server=True, servername=env["JACK_DEFAULT_SERVER"])
        self.client.set_xrun_callback(self._on_xrun)
        self.client.activate()

    def _on_xrun(self, delay_us: float) -> None:
        self.count += 1
        self.delays_us.append(float(delay_us))

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


class Osc:
    """A UDP socket speaking python-osc's encoding to the engine."""

    def __init__(self, port: int) -> None:
        self.dest = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))

    def status(self) -> Optional[tuple]:
        from pythonosc.osc_message import OscMessage
        from pythonosc.osc_message_builder import OscMessageBuilder

        self.sock.sendto(OscMessageBuilder("/status").build().dgram, self.dest)
        self.sock.settimeout(2.0)
        try:
            while True:
                msg = OscMessage(self.sock.recv(65536))
                if msg.address == "/status.reply":
                    return tuple(msg.params)
        except socket.timeout:
            return None

    def close(self) -> None:
        self.sock.close()


@contextmanager
def engine(env: dict, args: list[str]) -> Iterator[tuple[subprocess.Popen, Osc, list]]:
    from earengine.errors import EarEngineError
    from earengine.process import EngineProcess

    eng = EngineProcess(["--audio", "jack", "--status-every", "5", *args], env=env, cwd=str(REPO), stop_s=15.0)
    try:
        eng.start()
    except EarEngineError as exc:
        raise SystemExit(str(exc)) from None
    osc = None
    try:
        osc = Osc(eng.port)
        yield eng.proc, osc, eng.lines
    finally:
        if osc is not None:
            osc.close()
        eng.close()


def measure(env: dict, label: str, args: list[str], seconds: float, *, dreaming: bool) -> dict:
    with engine(env, args) as (proc, osc, lines):
        deadline = time.monotonic() + 120.0
        while True:  # ready: a loop playing, and (dreaming) the worker publishing loops
            status = osc.status()
            playing = status is not None and status[4] >= 1
            if playing and (not dreaming or (status[0] == "dreaming" and status[1] >= 2)):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{label}: the engine did not get ready; last status {status}:\n"
                                 + "\n".join(lines[-20:]))
            time.sleep(0.2)
        counter = XrunCounter(env)
        try:
            start = status
            t0 = time.monotonic()
            time.sleep(seconds)
            elapsed = time.monotonic() - t0
            count, delays = counter.count, list(counter.delays_us)
        finally:
            counter.close()
        end = osc.status()
    if end is None:
        raise SystemExit(f"{label}: the engine stopped answering /status:\n" + "\n".join(lines[-20:]))
    steps = end[1] - start[1] if dreaming and end[1] >= start[1] else 0
    result = {"xruns": count, "seconds": elapsed, "engine_xruns": end[8] - start[8], "steps": steps,
              "loops": end[4] - start[4], "worst_delay_ms": max(delays, default=0.0) / 1000.0}
    rate = f", worker {steps / elapsed:.2f} steps/s" if dreaming else ""
    print(f"{label}: {count} xruns in {elapsed:.0f} s (worst reported delay {result['worst_delay_ms']:.1f} ms; "
          f"engine's own count {result['engine_xruns']}), {result['loops']} loop swaps{rate}", flush=True)
    return result


def noise_loop(path: Path) -> None:
    import soundfile

    rng = np.random.default_rng(0)
    step = SR // 4
    env = np.exp(-np.arange(step) / SR * 25.0)
    x = np.concatenate([rng.standard_normal(step) * env for _ in range(16)])  # 4 s: 2 bars at 120 BPM
    soundfile.write(str(path), (0.3 * x / np.abs(x).max()).astype(np.float32), SR)


def random_default_ear(folder: Path) -> Path:
    import torch

    from earengine.ear.checkpoint import save_ear
    from earengine.ear.cpc import CPCHead
    from earengine.ear.model import Ear, EarConfig

    torch.manual_seed(0)
    ear = Ear(EarConfig.preset("small")).eval()
    save_ear(folder / "ear", ear, CPCHead(ear.context_channels, ear.encoding_channels, ear.config.cpc),
             info={"data": {"kind": "none"}})
    return folder / "ear"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds per run (default 60)")
    parser.add_argument("--model", default=None,
                        help="ear checkpoint folder the worker dreams with "
                             "(default: models/ear-default, else a random small-preset ear)")
    parser.add_argument("--no-realtime", action="store_true", help="run jackd without real-time scheduling")
    parser.add_argument("--device", default="cpu", help="where the worker runs the ear (cpu or cuda)")
    args = parser.parse_args(argv)
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"xruns bench: jackd -d dummy, {SR} Hz, {PERIOD}-sample periods, asynchronous, "
          f"{'no real-time' if args.no_realtime else 'real-time'} scheduling; {os.cpu_count()} CPUs, "
          f"load average {load}; {args.seconds:g} s per run", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        loop = Path(tmp) / "bursts.wav"
        noise_loop(loop)
        model = Path(args.model or REPO / "models" / "ear-default")
        if args.model and not (model / "config.json").is_file():
            parser.error(f"--model={args.model} must be an ear checkpoint folder (with config.json)")
        if not (model / "config.json").is_file():
            model = random_default_ear(Path(tmp))
            print(f"no checkpoint at --model; dreaming with the small preset, random weights ({model})")
        with jack_server(realtime=not args.no_realtime) as env:
            ref = measure(env, "engine, no worker (--no-dream)", ["--no-dream", "--loop", str(loop)], args.seconds,
                          dreaming=False)
            dream = measure(env, f"engine + worker flat out ({model.name}, {args.device})",
                            ["--ear", str(model), "--device", args.device, "--set", "/opt/run=1", "--loop", str(loop)],
                            args.seconds, dreaming=True)
    diff = dream["xruns"] - ref["xruns"]
    ratio = f"{dream['xruns'] / ref['xruns']:.2f}" if ref["xruns"] else ("1.00" if not dream["xruns"] else "inf")
    print(f"xruns while dreaming minus without: {diff:+d} ({dream['xruns']} vs {ref['xruns']} in {args.seconds:g} s, "
          f"ratio {ratio}); goal: 0 while dreaming")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
