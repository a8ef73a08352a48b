"""Probe accuracy along a training run: how far do more steps take the ear?

Reads the periodic checkpoints a run keeps (``earengine train --keep-checkpoints N`` writes
``OUT/checkpoints/step-NNNNNNN``), probes each on the same clips, and prints one line per
checkpoint and task, then the slope of the last stretch of the curve: whether the ear was still
learning when training stopped (steps bind) or had levelled off (data, width or the method bind).
The baselines (random init, supervised) do not depend on the checkpoint; they are cached and
printed once. The last line is the ratio of the final checkpoint's accuracy to the first's.

Usage: ``python bench/probe_curve.py RUN_DIR [--tasks tracks,composers] [--every 1000]``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def load_step(folder: Path, ear_config):
    from safetensors.torch import load_file

    from earengine.ear.checkpoint import LoadedEar
    from earengine.ear.model import build_ear

    meta = json.loads((folder / "train_state.json").read_text())
    ear, head = build_ear(ear_config, 0)
    state = load_file(str(folder / "model.safetensors"))
    ear.load_state_dict({k: v for k, v in state.items() if not k.startswith("cpc.")}, strict=False)
    config = {"training": {"seed": meta["train"]["seed"]}, "data": {}}
    return LoadedEar(ear.eval(), head, config, folder), meta["step"]


def main() -> int:
    import torch

    from earengine.corpus.manifest import corpus_home
    from earengine.corpus.sources import open_source
    from earengine.ear.model import EarConfig
    from earengine.ear.probe import ProbeConfig, run_probe
    from earengine.ear.probe_data import composer_set, track_set

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--tasks", default="tracks,composers")
    ap.add_argument("--every", type=int, default=1000, help="probe checkpoints this many steps apart")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    steps = sorted(p for p in (run / "checkpoints").glob("step-*") if p.is_dir())
    if not steps:
        sys.exit(f"probe curve: {run} holds no checkpoints/step-* folders")
    ear_config = EarConfig.from_dict(json.loads((steps[0] / "train_state.json").read_text())["ear"])
    chosen = [p for p in steps if int(p.name[5:]) % args.every == 0] or steps
    if chosen[-1] != steps[-1]:
        chosen.append(steps[-1])
    config = ProbeConfig()
    quiet = open("/dev/null", "w")
    from earengine.ear.model import Ear

    scaleogram = Ear(ear_config).scaleogram
    curves = {}
    for task in [t for t in args.tasks.split(",") if t]:
        if task == "tracks":
            probe_set = track_set(open_source(str(corpus_home("soundtracks") / "nexuiz-music")), scaleogram, config)
        else:
            probe_set = composer_set(corpus_home("composers"), scaleogram, config)
        curve = []
        for folder in chosen:
            loaded, step = load_step(folder, ear_config)
            result = run_probe(loaded, config=config, probe_set=probe_set, stream=quiet)
            rows = {r["model"]: r["heldout_accuracy"] for r in result["rows"]}
            curve.append((step, rows["cpc"]))
            print(f"{task}: step {step}: CPC {100 * rows['cpc']:.1f}% held-out "
                  f"(random init {100 * rows['random']:.1f}%, supervised {100 * rows['supervised']:.1f}%)")
        curves[task] = curve
        if len(curve) >= 2:
            (s0, a0), (s1, a1) = curve[-2], curve[-1]
            print(f"{task}: last stretch {100 * (a1 - a0) / max(1, s1 - s0) * 1000:+.1f} points per 1000 steps")
    ratios = [c[-1][1] / max(c[0][1], 1e-9) for c in curves.values() if c]
    print("ratio last/first checkpoint accuracy: " + ", ".join(f"{t} {r:.2f}" for t, r in zip(curves, ratios)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
