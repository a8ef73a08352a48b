"""Benchmark: a soak. The engine dreams for a set time while everything else a show asks of it runs.

Run: ``.venv/bin/python bench/soak.py [--minutes 20] [--audio jack|null] [--rate 1000] [--listen]
[--no-realtime]``

For ``--minutes`` (20 by default) the engine (``earengine run`` with the shipped ear, on a JACK
dummy server when ``jackd`` is installed, else the null device):

- dreams, with activation streams to two UDP receivers (this process reads them);
- takes OSC control at ``--rate`` messages a second (``/loop/gain`` moving, from one socket, paced),
  with a ``/sync`` every second that must come back;
- sonifies a training run: a small network trained in a process of its own, sending its gradient
  norms to the engine each step (``GradientSonifier`` with the engine as its sink);
- with ``--listen`` (JACK only), also listens: ``earengine run --input``, ``/listen/run 1`` and
  ``/stream/source input``, while ``jack_metro`` (jackd2's metronome, a client of its own) beeps
  eight times a second into ``earengine:input_1/2``.

The JACK server runs with real-time scheduling, as a performer's machine should grant it (the
README's "Listening" section), unless ``--no-realtime``; the engine's audio thread is then
real-time, and its worker and listener niced.

Each minute one line gives the resident memory (VmRSS) of the engine and of its worker, xruns,
control datagrams lost (dropped by the engine's inbox bound or by the kernel before the engine
read them), control messages sent and ``/sync`` round trips missed, stream frames received by
each receiver, and worker restarts. The last line is the memory slope of the engine and of the
worker in MB per 10 minutes, a least-squares fit over the minutes after the first (the first
minute loads the ear and warms the allocators); the goal is at most 1 MB per 10 minutes each,
with 0 xruns, 0 worker restarts and 0 control datagrams lost.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import udp  # noqa: E402
from earengine.osc.wire import decode_packet, encode_message  # noqa: E402
from earengine.control.osc import udp_drops
from earengine.process import EngineProcess  # noqa: E402

GOAL_MB_PER_10MIN = 1.0

TRAINER = r"""
import sys, time, torch
from earengine.sonify import GradientSonifier
port = int(sys.argv[1])
torch.manual_seed(0)
torch.set_num_threads(1)
net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 128), torch.nn.ReLU(),
                          torch.nn.Linear(128, 10))
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.5)
x, y = torch.randn(512, 64), torch.randint(0, 10, (512,))
with GradientSonifier(net, sink=f"osc://127.0.0.1:{port}", run="soak", optimizer=opt):
    step = 0
    while True:
        i = torch.randint(0, 512, (32,))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x[i]), y[i]).backward()
        opt.step()
        step += 1
        time.sleep(0.05)
"""


def rss_mb(pid: Optional[int]) -> float:
    """Resident memory of a process in MB (VmRSS); NaN if it is gone."""
    if pid is None:
        return float("nan")
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def worker_pid(engine_pid: int) -> Optional[int]:
    """The engine's worker: its child started by multiprocessing's spawn (not the resource tracker)."""
    try:
        children = Path(f"/proc/{engine_pid}/task/{engine_pid}/children").read_text().split()
    except OSError:
        return None
    for pid in children:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"spawn_main" in cmd:
            return int(pid)
    return None


def slope_mb_per_10min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (minutes, MB) samples, in MB per 10 minutes."""
    t = np.array([s[0] for s in samples])
    m = np.array([s[1] for s in samples])
    ok = np.isfinite(m)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(t[ok], m[ok], 1)[0] * 10.0)


class StreamReceiver(udp.Listener):
    """A UDP port that counts the stream's datagrams and its frames (``/stream/phase`` messages)."""

    def __init__(self) -> None:
        self.datagrams = 0
        self.frames = 0
        super().__init__()

    def datagram(self, data: bytes) -> None:
        self.datagrams += 1
        if b"/stream/phase" in data:
            self.frames += 1


class Control:
    """The control surface: ``--rate`` messages a second from one socket, a ``/sync`` every second,
    and questions (``/counts``) on a socket of their own."""

    def __init__(self, address, rate: float) -> None:
        self.address = address
        self.rate = rate
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.asker = udp.Asker(address)
        self.sent = 0
        self.syncs_sent = 0
        self.synced = 0
        self.fails = 0
        self._stop = False
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._send, daemon=True),
                         threading.Thread(target=self._replies, daemon=True)]
        for t in self._threads:
            t.start()

    def _send(self) -> None:
        period = 1.0 / self.rate
        t0 = time.monotonic()
        next_sync = t0 + 1.0
        k = 0
        while not self._stop:
            due = t0 + k * period
            wait = due - time.monotonic()
            if wait > 0.002:
                time.sleep(wait - 0.001)
                continue
            gain = -12.0 + 6.0 * ((k % 200) / 200.0)
            self.sock.sendto(encode_message("/loop/gain", (gain,)), self.address)
            self.sent += 1
            k += 1
            if time.monotonic() >= next_sync:
                self.syncs_sent += 1
                self.sock.sendto(encode_message("/sync", (self.syncs_sent,)), self.address)
                next_sync += 1.0

    def _replies(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, OSError):
                continue
            for _, address, _args in decode_packet(data):
                if address == "/synced":
                    self.synced += 1
                elif address == "/fail":
                    self.fails += 1

    def ask(self, address: str, *args, reply: str, wait_s: float = 5.0):
        with self._lock:
            return self.asker.ask(address, *args, reply=reply, wait_s=wait_s)

    def counts(self) -> dict:
        args = self.ask("/counts", reply="/counts.reply") or ()
        return dict(zip(args[::2], args[1::2]))

    def close(self) -> None:
        self._stop = True
        for t in self._threads:
            t.join(timeout=2)
        self.sock.close()
        self.asker.sock.close()


@contextmanager
def audio_env(mode: str, realtime: bool) -> Iterator[dict]:
    if mode == "jack":
        from xruns import jack_server  # a uniquely named jackd -d dummy, as bench/xruns.py runs it

        with jack_server(realtime=realtime) as env:
            yield env
    else:
        yield dict(os.environ)


@contextmanager
def metronome(env: dict) -> Iterator[None]:
    """``jack_metro`` beeping eight times a second into the engine's inputs."""
    if shutil.which("jack_metro") is None:
        raise SystemExit("jack_metro not found: install the Debian package jackd2")
    proc = subprocess.Popen(["jack_metro", "-n", "soak-metro", "-b", "480", "-f", "880", "-D", "30", "-A", "0.5"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10.0
        while True:
            ports = subprocess.run(["jack_lsp"], env=env, capture_output=True, text=True).stdout.split()
            out = [p for p in ports if p.startswith("soak-metro:")]
            if out or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if not out:
            raise SystemExit("jack_metro did not start")
        for port in ("earengine:input_1", "earengine:input_2"):
            subprocess.run(["jack_connect", out[0], port], env=env, check=True)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="how long to soak (default 20)")
    ap.add_argument("--audio", choices=("jack", "null"), default="jack" if shutil.which("jackd") else "null")
    ap.add_argument("--rate", type=float, default=1000.0, help="OSC control messages a second (default 1000)")
    ap.add_argument("--ear", default=str(REPO / "models" / "ear-default"))
    ap.add_argument("--every-s", type=float, default=60.0, help="seconds between lines (default 60)")
    ap.add_argument("--listen", action="store_true", help="listen to a metronome too (JACK only)")
    ap.add_argument("--no-realtime", action="store_true", help="run jackd without real-time scheduling")
    args = ap.parse_args()
    if args.listen and args.audio != "jack":
        raise SystemExit("--listen needs --audio jack (a JACK client plays into the engine's inputs)")

    with ExitStack() as stack:
        env = stack.enter_context(audio_env(args.audio, not args.no_realtime))
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        eng = EngineProcess(["--audio", args.audio, "--ear", args.ear, "--no-oscquery", "--no-zeroconf",
                             "--status-every", "3600", *(["--input"] if args.listen else [])],
                            env=env, cwd=str(REPO), ready_s=120.0, stop_s=15.0)
        stack.enter_context(eng)
        print(f"soak: engine pid {eng.proc.pid}, audio {args.audio}, OSC on port {eng.port}, "
              f"{args.minutes:g} minutes", flush=True)
        control = Control(eng.address, args.rate)
        stack.callback(control.close)
        deadline = time.monotonic() + 180.0
        while not any("worker: ear loaded" in line for line in eng.lines):
            if time.monotonic() > deadline or not eng.running():
                raise SystemExit("the worker did not load the ear:\n" + "\n".join(eng.lines[-20:]))
            time.sleep(0.5)
        receivers = [StreamReceiver(), StreamReceiver()]
        for r in receivers:
            stack.callback(r.close)
            if control.ask("/stream/add", r.dest, reply="/done", wait_s=10.0) is None:
                raise SystemExit(f"/stream/add {r.dest} was not done")
        if args.listen:
            stack.enter_context(metronome(env))
            for address, value in (("/stream/source", "input"), ("/listen/run", 1)):
                control.sock.sendto(encode_message(address, (value,)), control.address)
            while not any("listen: the ear hears" in line for line in eng.lines):
                if time.monotonic() > deadline + 120.0 or not eng.running():
                    raise SystemExit("the listener did not start:\n" + "\n".join(eng.lines[-20:]))
                time.sleep(0.5)
        trainer = subprocess.Popen([sys.executable, "-c", TRAINER, str(eng.port)], env=env, cwd=str(REPO),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        stack.callback(lambda: (trainer.terminate(), trainer.wait(timeout=10)))

        t0 = time.monotonic()
        drops0 = udp_drops(eng.port)
        start = control.counts()
        engine_mem: list[tuple[float, float]] = []
        worker_mem: list[tuple[float, float]] = []
        end = t0 + args.minutes * 60.0
        next_line = t0 + args.every_s
        while True:
            now = time.monotonic()
            if now < next_line and now < end:
                time.sleep(min(1.0, next_line - now, end - now))
                continue
            minutes = (now - t0) / 60.0
            c = control.counts()
            wpid = worker_pid(eng.proc.pid)
            e_mb, w_mb = rss_mb(eng.proc.pid), rss_mb(wpid)
            engine_mem.append((minutes, e_mb))
            worker_mem.append((minutes, w_mb))
            lost = (udp_drops(eng.port) - drops0) + (c.get("dropped", 0) - start.get("dropped", 0))
            print(f"minute {minutes:.1f}: engine {e_mb:.1f} MB, worker {w_mb:.1f} MB, "
                  f"xruns {c.get('xruns', 0) - start.get('xruns', 0)}, control sent {control.sent}, "
                  f"lost {lost}, syncs {control.synced} of {control.syncs_sent}, "
                  f"stream frames {receivers[0].frames} and {receivers[1].frames} "
                  f"(engine sent {c.get('stream_frames', 0) - start.get('stream_frames', 0)}), "
                  f"worker restarts {c.get('worker_restarts', 0)}, "
                  f"training {'running' if trainer.poll() is None else 'ended'} "
                  f"({c.get('son_frames', 0)} steps heard)"
                  + (f", input sets heard {c.get('listen_sets', 0) - start.get('listen_sets', 0)}" if args.listen else ""),
                  flush=True)
            if now >= end:
                break
            next_line += args.every_s
        control_lost = lost
        xruns = c.get("xruns", 0) - start.get("xruns", 0)
        restarts = c.get("worker_restarts", 0)
        if trainer.poll() is not None:
            print("soak: the training run ended early: " + (trainer.stderr.read() or "")[-500:], flush=True)
    # after the first minute (the ear loads, the allocators warm up), if that leaves enough points
    fit = [s for s in engine_mem if s[0] > 1.0]
    fit = fit if len(fit) >= 3 else engine_mem
    wfit = [s for s in worker_mem if s[0] > 1.0]
    wfit = wfit if len(wfit) >= 3 else worker_mem
    e_slope, w_slope = slope_mb_per_10min(fit), slope_mb_per_10min(wfit)
    print(f"soak summary: {args.minutes:g} minutes, xruns {xruns}, worker restarts {restarts}, "
          f"control datagrams lost {control_lost} of {control.sent}")
    print(f"memory slope: engine {e_slope:+.2f} MB per 10 min, worker {w_slope:+.2f} MB per 10 min "
          f"(goal at most {GOAL_MB_PER_10MIN:g}; worst / goal = {max(e_slope, w_slope) / GOAL_MB_PER_10MIN:.2f})")
    ok = max(e_slope, w_slope) <= GOAL_MB_PER_10MIN and xruns == 0 and restarts == 0 and control_lost == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
