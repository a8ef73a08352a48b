"""``earengine render``: dream offline and write every loop, its scaleogram and its settings (and,
with ``/opt/param grid``, its notes as a standard MIDI file beside the WAV)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _render(args: argparse.Namespace) -> int:
    import torch

    from earengine import __version__
    from earengine.audiofile import write_wav
    from earengine.midi.file import write_pattern
    from earengine.ear.checkpoint import load_ear
    from earengine.resources import DEFAULT_EAR
    from earengine.errors import ParameterError
    from earengine.optvis.dream import Dreamer
    from earengine.params import default_registry, parse_sets
    from earengine.progress import Progress

    if args.loops < 1 or args.steps_per_loop < 1:
        raise ParameterError(f"--loops={args.loops} and --steps-per-loop={args.steps_per_loop} must be >= 1")
    registry = default_registry()
    registry.update(parse_sets(registry, args.set or []))
    values = {"/loop/bars": args.bars, "/clock/bpm": args.bpm}
    if args.target:
        values["/target/spec"] = args.target
    registry.update(values)
    loaded = load_ear(args.model or DEFAULT_EAR, device=args.device)
    settings = registry.snapshot()
    dreamer = Dreamer(loaded.ear, settings, stats=loaded.stats, cpc=loaded.cpc, device=args.device)
    if args.start != "silence":
        dreamer.reset(args.start)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scores = []
    with Progress(args.loops, "render") as progress:
        for i in range(args.loops):
            for _ in range(args.steps_per_loop):
                stats = dreamer.step()
            x = dreamer.waveform()
            write_wav(out / f"loop-{i:03d}.wav", x, sr=dreamer.sr)
            pattern = dreamer.pattern()  # with /opt/param grid, the notes beside the sound
            if pattern is not None:
                write_pattern(out / f"loop-{i:03d}.mid", pattern, bpm=args.bpm)
            with torch.no_grad():
                spec = dreamer.ear.scaleogram(torch.from_numpy(x)[None].to(args.device))[0, 0].cpu().numpy()
            _png(out / f"loop-{i:03d}.png", spec, f"loop {i}, step {stats.step}")
            scores.append(dreamer.target_score())
            progress.update(1, target=scores[-1])
    record = {
        "earengine_version": __version__,
        "model": str(args.model or DEFAULT_EAR),
        "model_hash": loaded.config.get("weights_sha256", ""),
        "settings": settings,
        "loops": args.loops,
        "steps_per_loop": args.steps_per_loop,
        "start": args.start,
        "target_scores": scores,
    }
    (out / "render.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(f"target activation: first loop {scores[0]:.4f}, last loop {scores[-1]:.4f}")
    notes = ", MIDI files" if dreamer.pattern() is not None else ""
    print(f"wrote {args.loops} loops, scaleograms{notes} and render.json to {out}")
    return 0


def _png(path: Path, spec, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3), dpi=80)
    ax.imshow(spec, origin="lower", aspect="auto", cmap="magma")
    ax.set_xlabel("frame")
    ax.set_ylabel("bin")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="dream offline: write loops as WAV (and MIDI with /opt/param grid), scaleograms as PNG, settings as JSON")
    p.add_argument("--model", default=None, help="ear checkpoint folder (default: the shipped ear)")
    p.add_argument("--bars", type=int, default=2, help="loop length in bars")
    p.add_argument("--bpm", type=float, default=120.0, help="tempo")
    p.add_argument("--loops", type=int, default=8, help="loops to write")
    p.add_argument("--steps-per-loop", type=int, default=5, help="optimizer steps between written loops")
    p.add_argument("--target", default="", help="shorthand target, e.g. enc.5:0-31 (default: the region parameters)")
    p.add_argument("--start", default="silence", choices=("silence", "noise"), help="what the dream starts from")
    p.add_argument("--set", action="append", metavar="ADDRESS=VALUE", help="set any parameter (repeatable)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--out", required=True, help="folder to write")
    p.set_defaults(func=_render)
