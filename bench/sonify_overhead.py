"""Benchmark: what sonifying a training run costs per step, against no sonification and the seed.

Run: ``.venv/bin/python bench/sonify_overhead.py [--rounds 30] [--steps 20] [--threads 1]``

Two models, each trained three ways in the same process, interleaved round by round (the order
shuffled every round, so drift in machine load spreads evenly over the three):

- ``plain``: ``zero_grad``, forward, loss, ``backward``, ``optimizer.step()``;
- ``ours``: the same loop with a :class:`~earengine.sonify.capture.GradientSonifier` hooked on the
  optimizer, sending every frame over OSC/UDP to a local socket (a receiver that never reads, so
  the engine's own work does not count: it happens in another process);
- ``seed``: Perone's per-layer approach from his post — each layer weight's ``.grad.norm()``
  turned into a NumPy number and a 10 ms sine tone generated for it, every step.

Models: the seed's CNN (conv 20, conv 50, fc 500, fc 10) at batch 10 on 28×28 inputs, and a
deep MLP with 52 parameter tensors (25 hidden layers of 128 and a head) at batch 32. Inputs are
seeded random tensors (the cost does not depend on what the pixels show).

Two figures per model and mode. The A/B figure is the median, over rounds, of the mean step time
within a round, against the plain loop's. On a shared machine step times wander by several percent
from round to round, so the benchmark also times the sonification work itself inside the loop —
our capture-and-send in the optimizer hook, the seed's norms and tones — and divides it by the
plain step time: that is the overhead with the noise of everything else taken out. (Timed alone,
away from the loop, our capture is several times cheaper again: the gradients are then hot in
cache. Inside a real loop it pays for one read of every gradient from memory, which is most of
its cost on a CPU.) The last line is our in-loop overhead against the goal of at most 1%.
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from earengine.sonify.capture import GradientSonifier  # noqa: E402
from earengine.sonify.demo import SeedNet  # noqa: E402
from earengine.sonify.sinks import OscSink  # noqa: E402

MODES = ("plain", "ours", "seed")


class DeepMLP(nn.Module):
    """25 hidden Linear layers of 128 plus a head: 52 parameter tensors."""

    def __init__(self, *, generator: torch.Generator) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(128, 128) for _ in range(25))
        self.head = nn.Linear(128, 10)
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-0.08, 0.08, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = F.relu(layer(x))
        return F.log_softmax(self.head(x), dim=1)


def seed_tone(freq_hz: float, *, sr: int = 44100, duration_s: float = 0.01) -> np.ndarray:
    """Perone's generate_tone: a sine restarted at phase 0, as float32, times 0.1."""
    return 0.1 * np.sin(2 * np.pi * np.arange(sr * duration_s) * freq_hz / sr).astype(np.float32)


class Case:
    def __init__(self, name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, port: int) -> None:
        self.name, self.model, self.x, self.y = name, model, x, y
        self.opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.5)
        self.weights = [m.weight for m in model.modules() if isinstance(getattr(m, "weight", None), torch.Tensor)]
        self.sink = OscSink("127.0.0.1", port)
        self.sonifier = GradientSonifier(model, sink=self.sink, run=name[:32], optimizer=self.opt)
        self.seed_frames: list[np.ndarray] = []
        self.tensors = sum(1 for _ in model.parameters())
        self.spent = {"ours": 0.0, "seed": 0.0}  # seconds inside the sonification work
        self.counted = {"ours": 0, "seed": 0}
        capture = self.sonifier.step

        def timed_capture(step=None):
            t0 = time.perf_counter()
            try:
                return capture(step)
            finally:
                self.spent["ours"] += time.perf_counter() - t0
                self.counted["ours"] += 1

        self.sonifier.step = timed_capture  # the optimizer hook calls this

    def steps(self, mode: str, n: int) -> float:
        """Mean seconds per step over ``n`` steps of ``mode``."""
        model, opt, x, y = self.model, self.opt, self.x, self.y
        if mode == "ours":
            self.sonifier.open()
        try:
            t0 = time.perf_counter()
            for _ in range(n):
                opt.zero_grad()
                loss = F.nll_loss(model(x), y)
                loss.backward()
                if mode == "seed":
                    t1 = time.perf_counter()
                    for w in self.weights:
                        norm = w.grad.norm()
                        tone = 200.0 + norm.numpy() * 100.0
                        self.seed_frames.append(seed_tone(float(tone)))
                    self.seed_frames.append(np.zeros(882, dtype=np.float32))
                    self.spent["seed"] += time.perf_counter() - t1
                    self.counted["seed"] += 1
                opt.step()
            elapsed = time.perf_counter() - t0
        finally:
            if mode == "ours":
                self.sonifier.close()
            del self.seed_frames[:]
        return elapsed / n

    def capture_alone(self, repeats: int) -> float:
        """Seconds for one capture-and-send on the current gradients, nothing else."""
        opt = self.opt
        opt.zero_grad()
        F.nll_loss(self.model(self.x), self.y).backward()
        son = GradientSonifier(self.model, sink=self.sink, run="alone")
        son.open()
        try:
            for _ in range(20):
                son.step()
            t0 = time.perf_counter()
            for _ in range(repeats):
                son.step()
            return (time.perf_counter() - t0) / repeats
        finally:
            son.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="rounds of the three modes (default 30)")
    parser.add_argument("--steps", type=int, default=20, help="steps per mode per round (default 20)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: steadier figures)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(args.seed)
    order_rng = random.Random(args.seed)

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # never read: the kernel drops
    receiver.bind(("127.0.0.1", 0))
    port = receiver.getsockname()[1]

    cases = [
        Case("seed CNN, batch 10", SeedNet(generator=g), torch.randn(10, 1, 28, 28, generator=g),
             torch.randint(0, 10, (10,), generator=g), port),
        Case("deep MLP, 52 tensors, batch 32", DeepMLP(generator=g), torch.randn(32, 128, generator=g),
             torch.randint(0, 10, (32,), generator=g), port),
    ]
    print(f"torch {torch.__version__}, {args.threads} thread(s); {args.rounds} rounds x {args.steps} steps per mode")
    summary = []
    for case in cases:
        for mode in MODES:  # warm up every path
            case.steps(mode, 5)
        times = {mode: [] for mode in MODES}
        for _ in range(args.rounds):
            modes = list(MODES)
            order_rng.shuffle(modes)
            for mode in modes:
                times[mode].append(case.steps(mode, args.steps))
        med = {mode: statistics.median(v) for mode, v in times.items()}
        alone = case.capture_alone(500)
        ab = {m: 100.0 * (med[m] / med["plain"] - 1.0) for m in ("ours", "seed")}
        inside = {m: 100.0 * case.spent[m] / case.counted[m] / med["plain"] for m in ("ours", "seed")}
        print(f"{case.name} ({case.tensors} parameter tensors): plain {med['plain'] * 1e3:.3f} ms/step; "
              f"ours {med['ours'] * 1e3:.3f} ms/step (A/B {ab['ours']:+.1f}%), its capture and send "
              f"{case.spent['ours'] / case.counted['ours'] * 1e6:.0f} us in the loop ({inside['ours']:.2f}%), "
              f"{alone * 1e6:.0f} us timed alone; seed's per-layer {med['seed'] * 1e3:.3f} ms/step "
              f"(A/B {ab['seed']:+.1f}%), its norms and tones {case.spent['seed'] / case.counted['seed'] * 1e6:.0f} us "
              f"in the loop ({inside['seed']:.2f}%)")
        summary.append((case.name, inside["ours"], inside["seed"]))
    receiver.close()
    for case in cases:
        case.sink.close()
    parts = [f"{name}: ours {ours:.2f}%, seed's {seed:.2f}%" for name, ours, seed in summary]
    print("sonification work per step, as a share of the plain step (goal for ours: at most 1%): " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
