"""The model card of a trained ear: what it heard (with licenses and attribution), how it was
trained, how it probes, and the commands that make it again.

Written from the checkpoint's ``config.json`` and the manifests of the corpora it heard, so the
card and the ear never disagree (``scripts/ear_card.py`` writes the shipped ears' cards).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Mapping, Optional

from earengine.ear.checkpoint import WEIGHTS_FILE, read_config
from earengine.ear.probe import format_probe_table
from earengine.files import atomic_write_bytes

__all__ = ["music_heard", "render_card", "write_card"]


def music_heard(manifest: Mapping) -> list:
    """One entry per source of a corpus manifest (a pool's, a soundtracks' or a composers'):
    ``{"source", "tracks", "minutes", "licenses", "holders", "titles"}``, in source order."""
    groups: dict = defaultdict(list)
    for t in manifest.get("tracks", []):
        groups[t.get("package") or t.get("label") or t.get("source", "?")].append(t)
    out = []
    for source, tracks in groups.items():
        holders = sorted({t.get("notice") or t.get("copyright", "unknown") for t in tracks})
        version = tracks[0].get("version")
        out.append({
            "source": f"{source} {version}" if version else source,
            "tracks": len(tracks),
            "minutes": round(sum(float(t["duration_s"]) for t in tracks) / 60, 1),
            "licenses": sorted({t.get("license", "unknown") for t in tracks}),
            "holders": holders,
            "titles": [t.get("title", Path(t["out"]).stem) for t in tracks],
        })
    return out


def _probe_section(config: Mapping) -> list:
    lines = []
    probes = config.get("probes", {})
    for task, title in (("tracks", "Track identification"), ("composers", "Composer identification")):
        result = probes.get(task)
        if not result:
            continue
        rows = {r["model"]: r for r in result["rows"]}
        cpc = rows["cpc"]["heldout_accuracy"]
        margin = min(cpc - rows["random"]["heldout_accuracy"], cpc - rows["supervised"]["heldout_accuracy"])
        lines += [f"### {title}", "", "```", format_probe_table(result), "```", "",
                  f"This ear: {100 * cpc:.1f}% on held-out music, {100 * margin:.1f} points above the "
                  "better of the two baselines.", ""]
    return lines


def render_card(path: Path, *, name: str, commands: list, manifest: Optional[Mapping] = None,
                notes: Optional[list] = None) -> str:
    """The card of the checkpoint in ``path`` as Markdown text (see :func:`write_card`)."""
    path = Path(path)
    config = read_config(path)
    ear, training = config["ear"], config.get("training", {})
    weights = path / WEIGHTS_FILE
    lines = [
        f"# {name}",
        "",
        "An artificial ear for earengine: a constant-Q scaleogram, the Immersions encoder (8 residual "
        "2-D blocks) and causal autoregressive model (9 residual 1-D blocks), trained with "
        "contrastive predictive coding on real music.",
        "",
        "| | |",
        "|---|---|",
        f"| weights | `{WEIGHTS_FILE}`, {weights.stat().st_size / 1e6:.1f} MB, "
        f"{config.get('n_parameters', 0):,} parameters (ear + CPC predictors) |",
        f"| weights_sha256 | `{config.get('weights_sha256', '')}` |",
        f"| earengine | {config.get('earengine_version', '?')} (checkpoint format {config.get('format_version')}) |",
        f"| width | {ear['width']} |",
        f"| CPC | {ear['cpc']['prediction_steps']} steps predicted after a gap of {ear['cpc']['prediction_gap']}; "
        f"scores {'across time steps' if ear['cpc']['score_across_time'] else 'within each step'} |",
        "",
        "## Training",
        "",
        f"{training.get('steps_done')} steps of Adam (peak rate {training.get('lr')}, "
        f"{training.get('warmup_steps')} warm-up steps, cosine decay to {training.get('final_lr_ratio')} of the "
        f"peak), batch {training.get('batch_size')} clips of {training.get('clip_s')} s, seed {training.get('seed')}, "
        f"scaleograms of the training data computed once. Wall time {training.get('wall_s', 0) / 60:.0f} min on "
        f"{training.get('device')} ({training.get('torch_version')}), one torch thread on a shared 2-core machine. "
        f"Final CPC loss {training.get('final_loss')}, contrastive accuracy "
        f"{100 * float(training.get('final_accuracy', 0)):.1f}% (mean of the last 50 steps). "
        "`loss.png` shows the curve. Training used only the first 80 % of every track; the "
        "last 20 % is held out, and the composers' held-out works were never heard.",
        "",
        "## Probes (the paper's Table 2)",
        "",
    ]
    lines += _probe_section(config)
    if notes:
        lines += notes + [""]
    lines += ["## Reproduce", "", "```"] + commands + ["```", ""]
    if manifest is not None:
        heard = music_heard(manifest)
        total = sum(h["minutes"] for h in heard)
        lines += [
            "## Music heard",
            "",
            f"{sum(h['tracks'] for h in heard)} tracks, {total / 60:.2f} h, built by `earengine corpus all` "
            "from Debian's game-music packages (downloaded, never installed) and music21's scores "
            "rendered on one FluidSynth piano. The music is not in this repository; its authors keep "
            "their rights under the licenses below.",
            "",
            "| source | tracks | minutes | licenses | by |",
            "|---|---|---|---|---|",
        ]
        for h in heard:
            by = "; ".join(h["holders"])
            lines.append(f"| {h['source']} | {h['tracks']} | {h['minutes']} | {', '.join(h['licenses'])} | {by} |")
        lines += [""]
        for h in heard:
            lines.append(f"- {h['source']}: {', '.join(h['titles'])}.")
        lines += [""]
    return "\n".join(lines)


def write_card(path: Path, **kwargs) -> Path:
    """Write :func:`render_card`'s text to ``path/README.md``."""
    out = Path(path) / "README.md"
    atomic_write_bytes(out, render_card(path, **kwargs).encode())
    return out
