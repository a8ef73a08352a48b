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
from earengine.ear.probe import format_probe_table, probe_key
from earengine.files import atomic_write_bytes

__all__ = ["music_heard", "render_card", "write_card", "PAPER_TABLE2"]

#: The Immersions paper's Table 2: evaluation accuracy of a linear classifier on the context
#: vector, for the ear trained on its own task's kind of music with scores within each step
#: (``cpc``) and across time steps (``sat``, as earengine's ears by default), and for the same
#: architecture trained supervised from scratch. The paper gives no random-init row.
PAPER_TABLE2 = {
    "tracks": {"what": "15 house tracks", "cpc": 0.9044, "sat": 0.9181, "supervised": 0.4825},
    "composers": {"what": "MAESTRO composers", "cpc": 0.7749, "sat": 0.7590, "supervised": 0.1970},
}
_TASK_TITLES = (("tracks", "Track identification"), ("composers", "Composer identification"))
_SPLIT_WORDS = {
    "held-out": ("", "on held-out music", "held-out: {held}"),
    "random": (", clips split at random (the paper's protocol)", "on evaluation clips",
               "random clips (the paper's protocol)"),
}


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


def _accuracies(result: Mapping) -> dict:
    return {r["model"]: r["heldout_accuracy"] for r in result["rows"]}


def _probe_section(config: Mapping) -> list:
    lines = []
    probes = config.get("probes", {})
    for task, title in _TASK_TITLES:
        for split, (heading, where, _) in _SPLIT_WORDS.items():
            result = probes.get(probe_key(task, split))
            if not result:
                continue
            acc = _accuracies(result)
            margin = min(acc["cpc"] - acc["random"], acc["cpc"] - acc["supervised"])
            lines += [f"### {title}{heading}", "", "```", format_probe_table(result), "```", "",
                      f"This ear: {100 * acc['cpc']:.1f}% {where}, {100 * margin:.1f} points above the "
                      "better of the two baselines.", ""]
    return lines + _beside_the_paper(probes)


def _pct(v: float, digits: int = 1) -> str:
    """A share as a percentage; the paper's figures with the two decimals it prints."""
    return f"{100 * v:.{digits}f} %"


def _beside_the_paper(probes: Mapping) -> list:
    """Both splits of both tasks in one table, with the paper's Table 2 figures beside them."""
    if not any(probe_key(task, "random") in probes for task, _ in _TASK_TITLES):
        return []
    lines = [
        "### Beside the paper's Table 2",
        "",
        "The paper fits its classifier on some clips and evaluates it on others, \"partitioned into a "
        "training and an evaluation set\", without saying that whole sections or works are held out: "
        "the random split is its protocol, like for like. The held-out split, earengine's default, is "
        "stricter: its evaluation clips come from the last fifth of each track, or from works, that "
        "no training clip was drawn from and the ear did not train on. Held-out or evaluation accuracy:",
        "",
        "| task | split | this ear | random init | supervised | paper: CPC / SAT | paper: supervised |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, title in _TASK_TITLES:
        paper = PAPER_TABLE2[task]
        for split, (_, _, label) in _SPLIT_WORDS.items():
            result = probes.get(probe_key(task, split))
            if not result:
                continue
            acc = _accuracies(result)
            n = result.get("n_tracks", result.get("n_classes"))
            what = f"{title}: {n} here, {paper['what']} in the paper"
            held = "last 20 % of each track" if task == "tracks" else "whole works"
            theirs = ((f"{_pct(paper['cpc'], 2)} / {_pct(paper['sat'], 2)}", _pct(paper["supervised"], 2))
                      if split == "random" else ("", ""))
            lines.append(f"| {what} | {label.format(held=held)} | {_pct(acc['cpc'])} | {_pct(acc['random'])} | "
                         f"{_pct(acc['supervised'])} | {theirs[0]} | {theirs[1]} |")
    return lines + [""]


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
    """Write :func:`render_card`'s text to ``path/README.md``. Without a ``manifest``, the card's
    "Music heard" section is kept as it was: new probes of an ear do not change what it heard."""
    out = Path(path) / "README.md"
    text = render_card(path, **kwargs)
    if kwargs.get("manifest") is None and out.is_file():
        old = out.read_text()
        heard = old.find("\n## Music heard\n")
        if heard >= 0:
            text = text.rstrip("\n") + "\n" + old[heard:]
    atomic_write_bytes(out, text.encode())
    return out
