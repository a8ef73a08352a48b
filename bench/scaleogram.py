"""Benchmark: scaleogram forward+backward time and error, ours against its peers.

Run: ``.venv/bin/python bench/scaleogram.py [--repeats 9] [--no-batch8] [--threads 2]``

Every method gets 4 s of audio at the paper settings (44.1 kHz, 216 bins from 40 Hz, 24 bins per
octave, filter_scale 0.43, hop 1024), computes log power ``log(|X|^2 + 1e-9)``, sums it and back-
propagates to the waveform. Time is the median of several repeats after warm-up, with
``torch.set_num_threads(2)``; the repeats run in rounds over all methods so that a change in
machine load hits every method alike (the first line records the load average).

Peers, measured in the same run:

- ``nnAudio`` ``CQT1992v2`` (full-length kernels, one strided convolution) and ``CQT2010v2``
  (per-octave downsampling), with zero padding so that frame m is centred at sample m * hop;
- ``conv1d``: the plain fixed-kernel way, our exact kernels zero-padded to the longest one
  (16,177 taps), real and imaginary parts as 432 output channels of one ``conv1d`` at stride hop.

Error: :func:`earengine.ear.scaleogram.relative_error` (max absolute error over max reference
magnitude) against :func:`~earengine.ear.scaleogram.reference_magnitude` (float64, direct inner
products), the worst over three 4 s signals (white noise, an exponential sweep, a sum of tones).
Ours and ``conv1d`` compute the very transform the reference defines and are compared as they are.
nnAudio's kernels differ in length rounding, window and normalisation, so each nnAudio bin is first
scaled by the least-squares factor that best matches the reference bin; the remaining error is
what such a scale cannot explain (kernel shape and the approximations of the method). An extra
line checks CQT1992v2 against float64 inner products with nnAudio's own kernels.

The last line is the speed ratio of the fastest peer's median time to ours (and of the best
times). With two threads on a machine that other processes keep busy, every parallel region can
wait a scheduler slice for its second thread, which hurts many small operations (ours) far more
than a few big ones; compare the best-of times, or run with ``--threads 1``, there.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from earengine.ear.scaleogram import (  # noqa: E402
    Scaleogram,
    ScaleogramConfig,
    bin_frequencies_hz,
    kernel_lengths,
    reference_magnitude,
    relative_error,
)

SR = 44100
DURATION_S = 4.0


def signals(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(n) / SR
    rate = math.log(20000 / 30) / (n / SR)
    return {
        "noise": 0.3 * rng.standard_normal(n),
        "sweep": 0.8 * np.sin(2 * np.pi * 30 * (np.exp(rate * t) - 1) / rate),
        "tones": sum(a * np.sin(2 * np.pi * f * t) for a, f in
                     [(0.3, 41.0), (0.2, 440.0), (0.2, 1234.5), (0.1, 7000.0), (0.1, 18000.0)]),
    }


def conv1d_peer(cfg: ScaleogramConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """Complex magnitude by one strided conv1d with full-length kernels; returns (batch, bins, frames, 2)."""
    freqs, lengths = bin_frequencies_hz(cfg), kernel_lengths(cfg)
    half = int(math.ceil(lengths[0] / 2)) - 1
    taps = np.arange(-half, half + 1)
    weight = np.zeros((2 * cfg.n_bins, 1, len(taps)))
    for k, (f, length) in enumerate(zip(freqs, lengths)):
        m = int(math.ceil(length / 2)) - 1
        inside = np.abs(taps) <= m
        w = np.where(inside, 0.5 + 0.5 * np.cos(2 * np.pi * taps / length), 0.0)
        w /= w.sum()
        weight[k, 0] = w * np.cos(2 * np.pi * f * taps / SR)
        weight[cfg.n_bins + k, 0] = -w * np.sin(2 * np.pi * f * taps / SR)
    weight_t = torch.from_numpy(weight).float()
    hop = cfg.hop_length

    def run(x: torch.Tensor) -> torch.Tensor:
        n_frames = x.shape[-1] // hop
        out = torch.nn.functional.conv1d(
            torch.nn.functional.pad(x[:, None], (half, half)), weight_t, stride=hop)[..., :n_frames]
        return torch.stack([out[:, :cfg.n_bins], out[:, cfg.n_bins:]], dim=-1)

    return run


def nnaudio_peers(cfg: ScaleogramConfig) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    try:
        from nnAudio.features import CQT1992v2, CQT2010v2
    except Exception as exc:  # report and measure the rest
        print(f"nnAudio: not measured, import failed: {type(exc).__name__}: {exc}")
        return {}
    peers = {}
    for name, cls in (("nnAudio CQT1992v2", CQT1992v2), ("nnAudio CQT2010v2", CQT2010v2)):
        try:
            module = cls(sr=cfg.sr, hop_length=cfg.hop_length, fmin=cfg.fmin_hz, n_bins=cfg.n_bins,
                         bins_per_octave=cfg.bins_per_octave, filter_scale=cfg.filter_scale,
                         pad_mode="constant", output_format="Complex", verbose=False)
        except Exception as exc:
            print(f"{name}: not measured, construction failed: {type(exc).__name__}: {exc}")
            continue

        def run(x: torch.Tensor, module=module) -> torch.Tensor:
            return module(x)[:, :, : x.shape[-1] // cfg.hop_length]

        peers[name] = run
    return peers


def own_kernel_error(cfg: ScaleogramConfig, x: np.ndarray) -> float:
    """Error of nnAudio's CQT1992v2 against float64 inner products with nnAudio's own kernels."""
    from nnAudio.features import CQT1992v2

    module = CQT1992v2(sr=cfg.sr, hop_length=cfg.hop_length, fmin=cfg.fmin_hz, n_bins=cfg.n_bins,
                       bins_per_octave=cfg.bins_per_octave, filter_scale=cfg.filter_scale,
                       pad_mode="constant", output_format="Complex", verbose=False)
    with torch.no_grad():
        z = module(torch.as_tensor(x[None], dtype=torch.float32))[0]
    mag = torch.sqrt(z[..., 0] ** 2 + z[..., 1] ** 2).double().numpy()
    kernels = (module.cqt_kernels_real[:, 0].double() + 1j * module.cqt_kernels_imag[:, 0].double()).numpy()
    width = kernels.shape[1]
    padded = np.pad(x, (width // 2, width // 2))
    frames = np.lib.stride_tricks.sliding_window_view(padded, width)[:: cfg.hop_length][: mag.shape[1]]
    # CQT1992v2 scales each bin by sqrt(kernel length) ("librosa" normalisation).
    ref = np.abs(frames @ kernels.T).T * np.sqrt(module.lenghts.double().numpy())[:, None]
    return relative_error(mag, ref)


def fwd_bwd_seconds(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> float:
    """Seconds of one forward + log power + backward to the waveform."""
    xr = x.clone().requires_grad_(True)
    start = time.perf_counter()
    z = fn(xr)
    power = z[..., 0].square() + z[..., 1].square()
    torch.log(power + 1e-9).sum().backward()
    return time.perf_counter() - start


def least_squares_per_bin(est: np.ndarray, ref: np.ndarray) -> np.ndarray:
    num = (est * ref).sum(axis=-1, keepdims=True)
    den = (est * est).sum(axis=-1, keepdims=True)
    return est * np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--no-batch8", action="store_true", help="time batch 1 only")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = ScaleogramConfig()
    n = int(DURATION_S * SR)
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"scaleogram bench: {DURATION_S:g} s at {cfg.sr} Hz, {cfg.n_bins} bins from {cfg.fmin_hz:g} Hz, "
          f"{cfg.bins_per_octave}/octave, hop {cfg.hop_length}; torch {torch.__version__}, "
          f"{args.threads} threads, {os.cpu_count()} CPUs, load average {load}, median of {args.repeats}")
    ours = Scaleogram(cfg)

    def ours_run(x: torch.Tensor) -> torch.Tensor:
        z = ours.complex(x)
        return torch.stack([z.real, z.imag], dim=-1)

    methods: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"ours": ours_run}
    methods.update(nnaudio_peers(cfg))
    methods["conv1d full-length"] = conv1d_peer(cfg)

    sigs = signals(n)
    refs = {name: reference_magnitude(sig, cfg) for name, sig in sigs.items()}
    batches = [1] if args.no_batch8 else [1, 8]
    rng = torch.Generator().manual_seed(0)
    inputs = {b: 0.3 * torch.randn(b, n, generator=rng) for b in batches}

    # Errors first, then timing in rounds: each round runs every method once, so a change of
    # machine load during the run affects every method alike.
    results: dict[str, dict] = {}
    for name, fn in methods.items():
        try:
            errs = []
            with torch.no_grad():
                for sig_name, sig in sigs.items():
                    z = fn(torch.as_tensor(sig[None], dtype=torch.float32))
                    mag = torch.sqrt(z[..., 0] ** 2 + z[..., 1] ** 2)[0].double().numpy()
                    if name.startswith("nnAudio"):
                        mag = least_squares_per_bin(mag, refs[sig_name])
                    errs.append(relative_error(mag, refs[sig_name]))
            for b in batches:  # warm-up
                fwd_bwd_seconds(fn, inputs[b])
        except Exception as exc:
            print(f"{name}: failed: {type(exc).__name__}: {exc}")
            continue
        results[name] = {"error": max(errs), "samples": {b: [] for b in batches}}
    for _ in range(args.repeats):
        for name in results:
            for b in batches:
                results[name]["samples"][b].append(fwd_bwd_seconds(methods[name], inputs[b]))
    for name, res in results.items():
        res["times"] = {b: statistics.median(v) for b, v in res["samples"].items()}
        res["best"] = {b: min(v) for b, v in res["samples"].items()}
        timing = "  ".join(f"batch {b}: {res['times'][b] * 1e3:7.1f} ms (best {res['best'][b] * 1e3:7.1f})"
                           for b in batches)
        scaled = " (per-bin least-squares scale)" if name.startswith("nnAudio") else ""
        print(f"{name:20s} fwd+bwd median {timing}  error {res['error']:.1e}{scaled}")

    if "nnAudio CQT1992v2" in results:
        own = own_kernel_error(cfg, sigs["noise"][:SR])
        print(f"nnAudio CQT1992v2    vs float64 inner products with its own kernels: error {own:.1e} "
              f"(so its error above is the kernel definition, not arithmetic)")

    peers = {k: v for k, v in results.items() if k != "ours"}
    if "ours" not in results or not peers:
        print("speed ratio: not available (ours or every peer failed)")
        return 1
    parts = []
    for b in batches:
        fastest = min(peers, key=lambda k: peers[k]["times"][b])
        ratio = peers[fastest]["times"][b] / results["ours"]["times"][b]
        best = min(peers[k]["best"][b] for k in peers) / results["ours"]["best"][b]
        parts.append(f"batch {b}: {ratio:.1f}x vs {fastest} (best-of-{args.repeats}: {best:.1f}x)")
    print(f"speed ratio, fastest peer's median fwd+bwd time / ours (error ours "
          f"{results['ours']['error']:.1e}): " + ", ".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
