"""Benchmark: dream optimizer steps per second, ours against a plain fixed-kernel implementation.

Run: ``.venv/bin/python bench/dream_step.py [--model models/ear-default] [--repeats 5]
[--paper-repeats 3] [--target ar.8] [--threads N] [--device cpu|cuda] [--no-paper]``

One dream step as the worker runs it: a 2-bar loop at 120 BPM (4 s, 176,400 samples), a seamless
batch of 4 copies (``/opt/batch 4``), each the loop with one loop of periodic context before it
(``/opt/context 1``, so 8 s of audio per copy) rolled by a random phase, through the ear to the
default target (a region of ``enc.5``; only the layers up to it run, ``--target ar.8`` runs them
all), gradient back to the samples, normalised, SGD step.

Two methods, on the same ear, from the same starting loop, in the same run:

- ``ours``: :meth:`earengine.optvis.dream.Dreamer.step`, with the multi-rate scaleogram;
- ``plain``: the same step written the straightforward way in this file — a constant-Q transform
  by one ``conv1d`` at stride hop with full-length complex kernels (every kernel zero-padded to
  the longest, 40 Hz's, real and imaginary parts as separate output channels), then the same ear
  layers, the same objective and the same gradient step.

Two ears: the default one (``--model``; the small preset with random weights when that folder has
no checkpoint) and the paper-size one (``EarConfig.preset("paper")``, random weights: timing does
not depend on what the ear has learnt). Both methods take their first step from the same loop
with the same random shifts, and the first line of each ear checks that their losses agree.

Timing: median seconds per step after one warm-up step, methods alternated round by round so a
change in machine load hits both alike. Steps per loop: how many steps the worker makes while one
4 s loop plays. Torch threads: as the worker's (every core but one) unless ``--threads``.
The last line is the speed ratio plain / ours for each ear.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from earengine.ear.model import Ear, EarConfig  # noqa: E402
from earengine.ear.scaleogram import bin_frequencies_hz, kernel_lengths  # noqa: E402
from earengine.optvis.dream import Dreamer  # noqa: E402
from earengine.optvis.objectives import View  # noqa: E402
from earengine.params import default_registry  # noqa: E402

BARS, BPM = 2, 120.0
SETTINGS = {"/loop/bars": BARS, "/clock/bpm": BPM, "/opt/batch": 4, "/opt/context": 1, "/opt/seed": 3}


class PlainStep:
    """The dream step with a plain conv1d constant-Q and nothing else clever.

    Parameters
    ----------
    ear : Ear
        Used from its first encoder block on (``forward_scaleogram``).
    dreamer : Dreamer
        Supplies the settings, objective and statistics, so both methods optimise the same thing.
    x0 : Tensor, shape (n_samples,)
        The starting loop.
    """

    def __init__(self, ear: Ear, dreamer: Dreamer, x0: torch.Tensor) -> None:
        cfg = ear.scaleogram.config
        self.ear, self.cfg, self.dreamer = ear, cfg, dreamer
        freqs, lengths = bin_frequencies_hz(cfg), kernel_lengths(cfg)
        self.half = int(math.ceil(lengths[0] / 2)) - 1  # the longest kernel sets everyone's length
        taps = np.arange(-self.half, self.half + 1)
        weight = np.zeros((2 * cfg.n_bins, 1, taps.size))
        for k, (f, length) in enumerate(zip(freqs, lengths)):
            window = np.where(np.abs(taps) < length / 2, 0.5 + 0.5 * np.cos(2 * np.pi * taps / length), 0.0)
            window /= window.sum()
            weight[k, 0] = window * np.cos(2 * np.pi * f * taps / cfg.sr)
            weight[cfg.n_bins + k, 0] = -window * np.sin(2 * np.pi * f * taps / cfg.sr)
        device = x0.device
        self.weight = torch.from_numpy(weight).float().to(device)
        self.x = x0.detach().clone().requires_grad_(True)
        self.optimizer = torch.optim.SGD([self.x], lr=dreamer.settings["/opt/lr"])
        self.generator = torch.Generator()
        self.generator.set_state(dreamer.generator.get_state())  # the same random shifts, step by step

    def scaleogram(self, x: torch.Tensor) -> torch.Tensor:
        """Log power, (batch, 1, bins, frames), frame m centred at sample m * hop."""
        hop, n_bins = self.cfg.hop_length, self.cfg.n_bins
        z = F.conv1d(F.pad(x[:, None], (self.half, self.half + hop)), self.weight, stride=hop)
        z = z[..., : x.shape[-1] // hop]
        power = z[:, :n_bins].square() + z[:, n_bins:].square()
        return ((torch.log(power + self.cfg.log_floor) + self.cfg.log_offset) * self.cfg.log_scale)[:, None]

    def loss(self) -> torch.Tensor:
        s = self.dreamer.settings
        x, n = self.x, self.x.numel()
        reps, b = 1 + int(s["/opt/context"]), int(s["/opt/batch"])
        shift = torch.rand(b, generator=self.generator) * float(s["/reg/time_shift"])
        shift[0] = 0.0
        offsets = (shift * n).long().to(x.device)
        idx = (torch.arange(reps * n, device=x.device)[None, :] - offsets[:, None]) % (reps * n)
        objective = self.dreamer.objective
        acts = self.ear.forward_scaleogram(self.scaleogram(x.repeat(reps)[idx]), taps=tuple(objective.taps))
        loop = {tap: (int(round(a.shape[-1] * (reps - 1) / reps)), a.shape[-1]) for tap, a in acts.items()}
        return -objective(View(acts, loop, shift, stats=self.dreamer.stats)).mean()

    def step(self) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss()
        loss.backward()
        g = self.x.grad
        g.div_(g.std().clamp_min(1e-12))
        self.optimizer.step()
        with torch.no_grad():
            peak = self.x.abs().max()
            if peak > 1.0:
                self.x.div_(peak)
        return float(loss.detach())


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def bench_ear(label: str, ear: Ear, stats: dict, repeats: int, device: str, target: str) -> dict[str, float]:
    registry = default_registry()
    registry.update({**SETTINGS, "/target/spec": target}, source="cli")
    dreamer = Dreamer(ear, registry.snapshot(), stats=stats, device=device)
    dreamer.reset("noise")  # seeded: the same loop for both methods
    plain = PlainStep(ear, dreamer, dreamer.waveform_tensor().detach())
    with torch.no_grad():
        ours_loss = float(dreamer.evaluate()[0])
        plain_loss = float(plain.loss())
    n = dreamer.n
    print(f"{label}: width {ear.config.width:g}, {ear.n_parameters() / 1e6:.2f} M parameters, loop {n} samples; "
          f"first-step loss ours {ours_loss:.5g}, plain {plain_loss:.5g} "
          f"(relative difference {abs(ours_loss - plain_loss) / max(1e-12, abs(plain_loss)):.1e})")
    methods = {"ours": lambda: dreamer.step(), "plain conv1d": plain.step}
    times: dict[str, list[float]] = {name: [] for name in methods}
    for name, fn in methods.items():  # warm-up
        timed(fn, device)
    for _ in range(repeats):
        for name, fn in methods.items():
            times[name].append(timed(fn, device))
    loop_s = n / dreamer.sr
    out = {}
    for name, values in times.items():
        t = statistics.median(values)
        out[name] = t
        print(f"{label}, {name}: {t * 1e3:.0f} ms per step (median of {repeats}, best {min(values) * 1e3:.0f}), "
              f"{1 / t:.2f} steps/s, {loop_s / t:.1f} steps per {loop_s:g} s loop")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None,
                        help="the default ear's checkpoint folder "
                             "(default: models/ear-default, else a random small-preset ear)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per method, default ear")
    parser.add_argument("--paper-repeats", type=int, default=3, help="timed steps per method, paper-size ear")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: as the worker)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--no-paper", action="store_true", help="skip the paper-size ear")
    parser.add_argument("--target", default="", help="shorthand target, e.g. ar.8 (default: the registry's region "
                        "of enc.5; only the layers up to the target's run)")
    args = parser.parse_args(argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    torch.set_num_threads(args.threads or max(1, cores - 1))
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"dream step bench: {BARS} bars at {BPM:g} BPM, batch {SETTINGS['/opt/batch']}, context "
          f"{SETTINGS['/opt/context']}, target {args.target or 'the default region of enc.5'}; torch "
          f"{torch.__version__} on {args.device}, {torch.get_num_threads()} threads, {cores} cores, "
          f"load average {load}")
    model = Path(args.model or REPO / "models" / "ear-default")
    if args.model and not (model / "config.json").is_file():
        parser.error(f"--model={args.model} must be an ear checkpoint folder (with config.json)")
    if (model / "config.json").is_file():
        from earengine.ear.checkpoint import load_ear

        loaded = load_ear(model, device=args.device)
        default, stats, label = loaded.ear, loaded.stats, f"default ear ({model.name})"
    else:
        torch.manual_seed(0)
        default, stats = Ear(EarConfig.preset("small")).eval(), {}
        label = "default ear (no checkpoint at --model: small preset, random weights)"
    results = {"default ear": bench_ear(label, default.to(args.device), stats, args.repeats, args.device,
                                          args.target)}
    if not args.no_paper:
        torch.manual_seed(0)
        paper = Ear(EarConfig.preset("paper")).to(args.device).eval()
        results["paper-size ear"] = bench_ear("paper-size ear (random weights)", paper, {}, args.paper_repeats,
                                              args.device, args.target)
    print("speed ratio, plain conv1d time per step / ours: " + ", ".join(
        f"{name} {r['plain conv1d'] / r['ours']:.2f}x" for name, r in results.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
