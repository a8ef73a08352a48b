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
    scores, notes, strongest = [], [], []
    with Progress(args.loops, "render") as progress:
        for i in range(args.loops):
            for _ in range(args.steps_per_loop):
                stats = dreamer.step()
            dreamer.settle()  # the loop written is one the dream kept, never a step it would take back
            x = dreamer.waveform()
            write_wav(out / f"loop-{i:03d}.wav", x, sr=dreamer.sr)
            pattern = dreamer.pattern()  # with /opt/param grid, the notes beside the sound
            if pattern is not None:
                write_pattern(out / f"loop-{i:03d}.mid", pattern, bpm=args.bpm)
                notes.append(len(pattern.notes))
                with torch.no_grad():
                    strongest.append(float(dreamer.param.strengths().max()))
            with torch.no_grad():
                spec = dreamer.ear.scaleogram(torch.from_numpy(x)[None].to(args.device))[0, 0].cpu().numpy()
            _png(out / f"loop-{i:03d}.png", spec, f"loop {i}, step {stats.step}", dreamer.ear.scaleogram.config)
            scores.append(dreamer.target_score())
            progress.update(1, target=scores[-1], **({"notes": notes[-1]} if notes else {}))
    record = {
        "earengine_version": __version__,
        "model": str(args.model or DEFAULT_EAR),
        "model_hash": loaded.config.get("weights_sha256", ""),
        "settings": settings,
        "loops": args.loops,
        "steps_per_loop": args.steps_per_loop,
        "start": args.start,
        "target_scores": scores,
        "notes": notes,  # per loop, with /opt/param grid (those that pass /grid/threshold)
    }
    (out / "render.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(f"target activation: first loop {scores[0]:.4f}, last loop {scores[-1]:.4f}")
    threshold = settings["/grid/threshold"]
    for i, n in enumerate(notes):  # the grid's notes: a silent MIDI file is said, not just written
        if n:
            print(f"loop {i}: {n} note{'s' if n != 1 else ''} in loop-{i:03d}.mid")
        else:
            print(f"loop {i}: no note sounds (the strongest is {strongest[i]:.3f}); loop-{i:03d}.mid is empty")
    empty = sum(1 for n in notes if not n)
    midi = ""
    if notes:
        midi = f", {len(notes) - empty} MIDI files with notes" + (f" and {empty} empty ones" if empty else "")
    print(f"wrote {args.loops} loops, scaleograms{midi} and render.json to {out}")
    return 0


def scaleogram_db(spec, config):
    """The log-power channel of a scaleogram as dB, 0 dB being a full-scale sine in its bin.

    Parameters
    ----------
    spec : np.ndarray
        Channel 0 of the ear's scaleogram, ``(log(power + log_floor) + log_offset) * log_scale``.
    config : ScaleogramConfig

    A sine of amplitude ``a`` gives ``|X| = a / 2`` in its bin (see :mod:`earengine.ear.scaleogram`),
    so its level is ``20 log10(2 |X|)``: a half-scale sine reads -6 dB.
    """
    import numpy as np

    log_power = np.asarray(spec, dtype=np.float64) / config.log_scale - config.log_offset
    return 10.0 * log_power / np.log(10.0) + 20.0 * np.log10(2.0)


def octave_ticks(config) -> tuple[list, list]:
    """Bins of the C of every octave in the scaleogram, and their names (``C2`` is MIDI note 36).

    >>> from earengine.ear.scaleogram import ScaleogramConfig
    >>> bins, names = octave_ticks(ScaleogramConfig(fmin_hz=40.0, bins_per_octave=24, n_bins=216))
    >>> names[:2], [round(b, 2) for b in bins[:2]]
    (['C2', 'C3'], [17.03, 41.03])
    """
    import math

    from earengine.music import midi_to_hz

    bins, names = [], []
    for octave in range(-1, 11):
        k = config.bins_per_octave * math.log2(midi_to_hz(12 * (octave + 1)) / config.fmin_hz)
        if 0 <= k <= config.n_bins - 1:
            bins.append(k)
            names.append(f"C{octave}")
    return bins, names


def _png(path: Path, spec, title: str, config) -> None:
    """The scaleogram as an image: seconds across, notes up (a tick at each octave's C), dB in colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame_s = config.hop_length / config.sr  # frame m is centred at m * hop_length
    n_bins, n_frames = spec.shape
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=80)
    image = ax.imshow(scaleogram_db(spec, config), origin="lower", aspect="auto", cmap="magma",
                      extent=(-frame_s / 2, (n_frames - 0.5) * frame_s, -0.5, n_bins - 0.5))
    bins, names = octave_ticks(config)
    ax.set_yticks(bins, names)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("note")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="dB (0: full-scale sine)")
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
