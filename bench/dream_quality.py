"""Benchmark: what a dream sounds like — raw, spectral and grid on the same ear, targets and seeds.

Run: ``.venv/bin/python bench/dream_quality.py [--model models/ear-default] [--quick] [--steps N]
[--seeds N] [--tap enc.5] [--threads N]``

Each parameterization (``/opt/param`` raw, spectral, grid) dreams the same 8 targets (8 disjoint
channel blocks of ``--tap``) from the same seeds, at the engine's default settings otherwise (a
2-bar loop at 120 BPM, ``/opt/batch 2``, ``/opt/context 1``, dreams started from quiet noise as the
worker starts them), for ``--steps`` steps each. Measured, per parameterization:

- **flatness**: median over runs of the final loop's spectral flatness, librosa's definition
  (power spectrum, n_fft 2048, hop 512, ``amin`` 1e-10; geometric over arithmetic mean per frame,
  averaged over frames). White noise is about 0.56, produced music about 0.001; the goal for grid
  is <= 0.05. The seconds the steps took are printed beside it (the goal: within 30 s of live
  dreaming);
- **rise**: median rise of the target activation (the objective on the clean loop, last minus
  first); the goal: grid's at least half of raw's;
- **specificity**: with ``/target/specificity 1``, one seed: the median rise of the targeted
  channels and of the rest of the tap (mean normalised activation); the goal: targeted >= 2 × rest;
- **plateau**: per target, the mean over seeds of where the dream settled: the mean target score
  of the loops kept by its last :data:`PLATEAU_STEPS` steps (the objective on the clean loop, as heard);
- **identification**: the 8 targets told apart from the loops of the dreams' last third
  (``--snapshots``) by a logistic regression on standard audio features (MFCC means and spreads,
  chroma, centroid, bandwidth, roll-off, flatness, zero crossings, loudness), leave-one-seed-out:
  the loops of one seed are never heard in training; the goal >= 95 %.

Then the paper's claim, without a threshold: raw dreams of a lower and a higher tap (``--low``,
``--high``) compared by onset periodicity at the beat's lags (autocorrelation of the onset
envelope at 1, 2 and 4 beats) and the share of the loudness envelope's modulation below 4 Hz.

Every figure comes from this run; the ratios (grid against raw) are printed last. On a busy 2-core
machine (one torch thread) the whole run takes about 15 minutes, ``--quick`` about 4.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from earengine.ear.checkpoint import load_ear  # noqa: E402
from earengine.optvis.dream import Dreamer  # noqa: E402
from earengine.optvis.specificity import split_rise  # noqa: E402
from earengine.params import default_registry, parse_sets  # noqa: E402

PARAMS = ("raw", "spectral", "grid")
SR = 44100
#: Steps whose kept loops' mean score is a dream's plateau.
PLATEAU_STEPS = 10
N_FFT, HOP = 2048, 512


# -- standard audio features (numpy; librosa's definitions where it has one) -------------------
def _power(x: np.ndarray) -> np.ndarray:
    window = np.hanning(N_FFT + 1)[:-1]
    pad = np.pad(x, N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(pad, N_FFT)[::HOP] * window
    return np.abs(np.fft.rfft(frames, axis=1)).T ** 2  # (F, T)


def flatness(x: np.ndarray) -> float:
    """Spectral flatness as librosa computes it, averaged over frames."""
    s = np.maximum(1e-10, _power(x))
    return float(np.mean(np.exp(np.mean(np.log(s), axis=0)) / np.mean(s, axis=0)))


def _mel(n_mels: int = 40) -> np.ndarray:
    hz = np.fft.rfftfreq(N_FFT, 1 / SR)
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    edges = 700 * (10 ** (np.linspace(mel(30), mel(SR / 2), n_mels + 2) / 2595) - 1)
    fb = np.zeros((n_mels, hz.size))
    for i in range(n_mels):
        lo, mid, hi = edges[i:i + 3]
        fb[i] = np.clip(np.minimum((hz - lo) / (mid - lo), (hi - hz) / (hi - mid)), 0, None)
    return fb


_MEL = _mel()


def features(x: np.ndarray) -> np.ndarray:
    """One vector of standard audio features for a loop."""
    from scipy.fft import dct

    s = _power(x)
    hz = np.fft.rfftfreq(N_FFT, 1 / SR)
    mfcc = dct(np.log(_MEL @ s + 1e-10), axis=0, norm="ortho")[:13]
    total = s.sum(0) + 1e-12
    centroid = (hz[:, None] * s).sum(0) / total
    bandwidth = np.sqrt(((hz[:, None] - centroid) ** 2 * s).sum(0) / total)
    rolloff = hz[np.argmax(np.cumsum(s, 0) >= 0.85 * total, axis=0)]
    pitched = (hz > 55) & (hz < 4000)
    pc = np.round(12 * np.log2(hz[pitched] / 440.0)).astype(int) % 12
    chroma = np.stack([s[pitched][pc == k].sum(0) for k in range(12)])
    chroma = chroma / (chroma.sum(0) + 1e-12)
    zcr = np.mean(np.abs(np.diff(np.sign(x))) > 0)
    rms = np.sqrt(np.mean(x ** 2))
    flat = np.exp(np.mean(np.log(np.maximum(s, 1e-10)), 0)) / np.mean(np.maximum(s, 1e-10), 0)
    return np.concatenate([mfcc.mean(1), mfcc.std(1), chroma.mean(1),
                           [np.log(centroid.mean() + 1), np.log(bandwidth.mean() + 1), np.log(rolloff.mean() + 1),
                            flat.mean(), zcr, np.log(rms + 1e-9)]])


def identification(xs: list, labels: list, groups: list) -> float:
    """Leave-one-seed-out accuracy of a logistic regression on :func:`features`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import LeaveOneGroupOut, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(set(groups)) < 2:
        return float("nan")
    feats = np.stack([features(x) for x in xs])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    return float(np.mean(cross_val_score(model, feats, labels, groups=groups, cv=LeaveOneGroupOut())))


def organisation(x: np.ndarray, bpm: float) -> tuple[float, float]:
    """Onset periodicity at 1, 2 and 4 beats (mean normalised autocorrelation of the onset
    envelope) and the share of loudness modulation below 4 Hz (of 0.5-20 Hz)."""
    s = np.log(_power(x) + 1e-10)
    onset = np.maximum(0, np.diff(s, axis=1)).mean(0)
    onset = onset - onset.mean()
    ac = np.correlate(np.tile(onset, 2), onset, mode="valid")[: onset.size]
    ac = ac / (ac[0] + 1e-12)
    frame_s = HOP / SR
    beat = 60.0 / bpm / frame_s
    periodicity = float(np.mean([ac[int(round(k * beat)) % onset.size] for k in (1, 2, 4)]))
    env = np.sqrt(_power(x).sum(0))
    spec = np.abs(np.fft.rfft(env - env.mean())) ** 2
    hz = np.fft.rfftfreq(env.size, frame_s)
    band = (hz >= 0.5) & (hz <= 20)
    slow = float(spec[band & (hz < 4)].sum() / (spec[band].sum() + 1e-12))
    return periodicity, slow


# -- dreaming --------------------------------------------------------------------------------
def dream(loaded, settings: dict, steps: int, snapshots: int = 1):
    """Dream ``steps`` steps; returns the dreamer, first and last clean score, first and last view,
    the seconds the steps took, the loops heard at the last ``snapshots`` of ``snapshots``
    evenly spaced points of the last third (the final loop last), and the plateau (the mean score
    of the loops kept by the last :data:`PLATEAU_STEPS` steps).

    What is measured is what the engine plays: the loop the dream last kept (``Dreamer.heard``),
    never a step about to be taken back; the last step is judged at the end (``Dreamer.settle``)."""
    d = Dreamer(loaded.ear, settings, stats=loaded.stats, cpc=loaded.cpc)
    d.reset("noise")  # as the worker starts
    _, first, view0 = d.clean()
    at = {steps - k * max(1, steps // (3 * snapshots)) for k in range(snapshots)}
    loops, kept = [], []
    t0 = time.perf_counter()
    for i in range(1, steps + 1):
        kept.append(d.step().target)
        if i in at and i < steps:
            loops.append(d.heard())
    seconds = time.perf_counter() - t0
    d.settle()
    loops.append(d.waveform())  # the loop kept once the last step is judged
    _, last, view1 = d.clean()
    tail = [k for k in kept[-PLATEAU_STEPS:] if np.isfinite(k)]
    return d, float(first), float(last), view0, view1, seconds, loops, float(np.mean(tail)) if tail else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "models" / "ear-default"))
    ap.add_argument("--steps", type=int, default=None, help="steps per dream (default 60; --quick 15)")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per target (default 3; --quick 2)")
    ap.add_argument("--tap", default="enc.5", help="tap whose 8 channel blocks are the targets")
    ap.add_argument("--low", default="enc.2", help="lower tap of the organisation comparison")
    ap.add_argument("--high", default="ar.4", help="higher tap of the organisation comparison")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--snapshots", type=int, default=3,
                    help="loops of each dream the classifier hears (from its last third; all of one seed)")
    ap.add_argument("--quick", action="store_true", help="fewer steps and seeds: a minute or two")
    ap.add_argument("--params", default=",".join(PARAMS), help="parameterizations to run (comma-separated)")
    ap.add_argument("--no-organisation", action="store_true", help="skip the lower/higher tap comparison")
    ap.add_argument("--no-specificity", action="store_true", help="skip the specificity runs")
    ap.add_argument("--set", action="append", default=[], metavar="ADDRESS=VALUE",
                    help="a setting for every dream (repeatable), e.g. --set /grid/sparsity=1")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--save-audio", default=None, help="also write every heard loop, its target and seed (.npz)")
    args = ap.parse_args()
    steps = args.steps or (15 if args.quick else 60)
    seeds = args.seeds or (2 if args.quick else 3)
    torch.set_num_threads(args.threads)
    loaded = load_ear(args.model)
    registry = default_registry()
    if args.set:
        registry.update(parse_sets(registry, args.set))
    base = registry.snapshot()
    n = int(round(base["/loop/bars"] * base["/clock/beats_per_bar"] * 60 / base["/clock/bpm"] * SR))
    channels = loaded.ear.tap_shapes(n)[args.tap][0]
    width = channels // 8
    targets = [f"{args.tap}:{i * width}-{(i + 1) * width - 1}" for i in range(8)]
    print(f"ear {args.model} ({loaded.config.get('weights_sha256', '')[:12]}); targets {', '.join(targets)}; "
          f"{seeds} seeds, {steps} steps each; torch threads {args.threads}")

    results: dict = {}
    params = [p for p in args.params.split(",") if p]
    for param in params:
        xs, labels, groups, flats, rises, secs = [], [], [], [], [], []
        plateaus: dict = {}
        for ti, target in enumerate(targets):
            for seed in range(seeds):
                s = {**base, "/opt/param": param, "/target/spec": target, "/opt/seed": seed}
                d, first, last, _, _, seconds, loops, plateau = dream(loaded, s, steps, args.snapshots)
                plateaus.setdefault(target, []).append(plateau)
                x = loops[-1]
                for heard in loops:  # successive loops of one dream: one seed, one group
                    xs.append(heard), labels.append(ti), groups.append(seed)
                flats.append(flatness(x)), rises.append(last - first), secs.append(seconds)
        hits, rests = [], []
        for target in () if args.no_specificity else targets:
            s = {**base, "/opt/param": param, "/target/spec": target, "/opt/seed": 0, "/target/specificity": 1.0}
            d, _, _, v0, v1, *_ = dream(loaded, s, steps)
            hit, rest = split_rise(d.objective, v0, v1)
            hits.append(hit), rests.append(rest)
        r = {
            "flatness": statistics.median(flats),
            "flatness_max": max(flats),
            "seconds": statistics.median(secs),
            "rise": statistics.median(rises),
            "target_rise": statistics.median(hits) if hits else float("nan"),
            "rest_rise": statistics.median(rests) if rests else float("nan"),
            "identification": identification(xs, labels, groups),
            "plateau": {t: statistics.mean(v) for t, v in plateaus.items()},
            "rises": rises,
        }
        results[param] = r
        if args.save_audio:
            np.savez_compressed(Path(args.save_audio).with_suffix(f".{param}.npz"), x=np.stack(xs),
                                labels=np.array(labels), groups=np.array(groups))
        print(f"{param:9s} flatness {r['flatness']:.2g} (max {r['flatness_max']:.2g}) after {steps} steps "
              f"({r['seconds']:.1f} s) | rise {r['rise']:+.4f} | specificity: targeted {r['target_rise']:+.4f}, "
              f"rest {r['rest_rise']:+.4f} | identification {100 * r['identification']:.0f} %", flush=True)
        print(f"{param:9s} plateau per target: "
              + ", ".join(f"{t.split(':')[-1]} {v:.4f}" for t, v in r["plateau"].items()), flush=True)

    org = {}
    for tap in () if args.no_organisation else (args.low, args.high):
        per, slow = [], []
        for seed in range(seeds):
            s = {**base, "/opt/param": "raw", "/target/spec": tap, "/opt/seed": seed}
            d, *_ = dream(loaded, s, steps)
            p, m = organisation(d.waveform(), base["/clock/bpm"])
            per.append(p), slow.append(m)
        org[tap] = (statistics.median(per), statistics.median(slow))
        print(f"organisation of raw dreams of {tap:6s}: onset periodicity at 1/2/4 beats {org[tap][0]:+.3f}, "
              f"modulation below 4 Hz {100 * org[tap][1]:.0f} %")

    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "organisation": org, "steps": steps,
                                               "seeds": seeds, "targets": targets, "model": args.model,
                                               "settings": args.set}, indent=2))
    if not {"grid", "raw"} <= set(results) or not org:
        return 0
    g, raw = results["grid"], results["raw"]
    ratio_rise = g["rise"] / raw["rise"] if raw["rise"] else float("nan")
    spec_ratio = {p: (r["target_rise"] / r["rest_rise"] if r["rest_rise"] > 0 else float("inf"))
                  for p, r in results.items()}
    print("ratios:")
    print(f"  flatness raw / grid: {raw['flatness'] / max(g['flatness'], 1e-12):.3g} (grid {g['flatness']:.2g}, raw "
          f"{raw['flatness']:.2g}; goal grid <= 0.05 within 30 s of dreaming: "
          f"{'met' if g['flatness'] <= 0.05 and g['seconds'] <= 30 else 'not met'})")
    print(f"  activation rise grid / raw: {ratio_rise:.2f} (goal >= 0.5: {'met' if ratio_rise >= 0.5 else 'not met'})")
    for p in (p for p in PARAMS if p in results):
        ok = results[p]["target_rise"] > 0 and (results[p]["target_rise"] >= 2 * results[p]["rest_rise"])
        print(f"  specificity {p}: targeted / rest rise {spec_ratio[p]:.2f} (goal >= 2: {'met' if ok else 'not met'}); "
              f"identification {100 * results[p]['identification']:.0f} % (goal >= 95 %)")
    print(f"  organisation {args.high} / {args.low}: onset periodicity {org[args.high][0]:+.3f} / {org[args.low][0]:+.3f}, "
          f"slow modulation {100 * org[args.high][1]:.0f} % / {100 * org[args.low][1]:.0f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
