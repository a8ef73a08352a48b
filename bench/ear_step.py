"""Forward + backward time of one 4 s loop through the ear, as dreaming uses it.

Batch 1, the waveform requires grad, the loss is taken at the deepest tap (``ar.8``), so the
gradient runs through the autoregressive model, the encoder and the scaleogram back to the
samples. Measured for the shipped default ear (``models/ear-default``, or its configuration
when the folder is absent) and for the paper-size ear (width 1), in eval mode, in one run.
The last line is the ratio: how many times longer a paper-size step takes.

Usage: ``python bench/ear_step.py [--device cpu|cuda] [--repeats N] [--seconds S]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from earengine.ear.model import Ear, EarConfig  # noqa: E402


def default_ear(device: str) -> tuple[Ear, str]:
    path = REPO / "models" / "ear-default"
    if (path / "model.safetensors").is_file():
        from earengine.ear.checkpoint import load_ear

        return load_ear(path, device=device).ear, f"default ear ({path.relative_to(REPO)})"
    return Ear(EarConfig.preset("small")).to(device).eval(), "default ear (small preset, random weights)"


def time_step(ear: Ear, n_samples: int, repeats: int, device: str) -> float:
    g = torch.Generator(device=device).manual_seed(0)
    x0 = 0.1 * torch.randn(1, n_samples, generator=g, device=device)

    def step() -> None:
        x = x0.clone().requires_grad_(True)
        act = ear(x, taps=("ar.8",))["ar.8"]
        act.square().mean().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()

    for _ in range(2):
        step()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    n = int(round(args.seconds * 44100))
    small, label = default_ear(args.device)
    paper = Ear(EarConfig.preset("paper")).to(args.device).eval()
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, loop {args.seconds:g} s, batch 1")
    t_small = time_step(small, n, args.repeats, args.device)
    print(f"{label}: width {small.config.width:g}, {small.n_parameters() / 1e6:.2f} M parameters, "
          f"{1000 * t_small:.1f} ms per forward+backward")
    t_paper = time_step(paper, n, args.repeats, args.device)
    print(f"paper-size ear: width 1, {paper.n_parameters() / 1e6:.2f} M parameters, "
          f"{1000 * t_paper:.1f} ms per forward+backward")
    print(f"ratio paper-size / default: {t_paper / t_small:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
