"""The linear probe: does the ear's representation tell tracks (or composers) apart? (the
paper's Table 2)

For every class, clips are drawn from music it trained on and from held-out music: for tracks the
last 20 % of each track by time, for composers whole works (``split="held-out"``); or, the
Immersions paper's protocol, clips of whole tracks and all works split at random
(``split="random"``; see :mod:`earengine.ear.probe_data`). Each clip becomes one feature vector — the **last context
vector** (the final time step of ``ar.8``, which has seen the whole clip), as in the paper; the
mean of ``ar.8`` over time is available as ``feature="mean"``. The features are standardised with
the training clips' mean and deviation, and a multinomial logistic regression (one linear layer,
trained in torch with Adam on the full batch) learns the track from the training clips; its
accuracy is measured on the held-out clips.

Three ears are compared, all of the same architecture (four with ``compare``):

``cpc``
    the checkpoint, trained with CPC;
``cpc_other``
    optionally, an ear trained with the other CPC contrast (scores across time steps or within
    each step);
``random``
    the same architecture with random weights, initialised from the same seed the checkpoint's
    training started from (so it *is* the CPC ear before training). Its batch-norm statistics
    are measured on the probe's training clips first: left at their initial 0 and 1, whole
    layers of a random ear stay silent and the baseline would be unfairly weak;
``supervised``
    the same architecture from that same initialisation, plus a linear head on the same feature,
    trained with cross-entropy on the labels of the probe's training clips for
    ``steps`` Adam steps of ``batch_size`` clips — the probe's own step budget.

Examples
--------
The command line: ``earengine probe --model models/ear-default --task tracks --write`` (and
``--task composers``; see :mod:`earengine.ear.probe_data` for the two tasks' clips).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from earengine.corpus.sources import from_description
from earengine.ear.checkpoint import CONFIG_FILE, read_config
from earengine.ear.model import build_ear
from earengine.ear.probe_data import cached, probe_split, track_set
from earengine.errors import ConfigError, check_config_keys
from earengine.files import atomic_write_json
from earengine.progress import Progress

__all__ = ["ProbeConfig", "run_probe", "calibrate_batchnorm", "format_probe_table", "write_probe", "probe_key"]

_FEATURES = ("last", "mean")


@dataclass(frozen=True)
class ProbeConfig:
    """Settings of the probe.

    Parameters
    ----------
    clips_per_track : int > 0
        Track task: clips drawn per track from its training part, and again from its held-out
        part.
    clips_per_composer : int > 0
        Composer task: clips drawn per composer from its training works, and again from its
        held-out works.
    clip_s : float > 0
        Clip length in seconds (4.5 s: the last context's receptive field, 4.34 s, fits).
    feature : {"last", "mean"}
        Last context vector of the clip, or the mean of the contexts over time.
    steps : int > 0
        Adam steps for the logistic regression and for the supervised baseline.
    batch_size : int > 0
        Clips per step of the supervised baseline.
    lr : float > 0
        Adam rate of the logistic regression (the supervised baseline uses ``lr / 10``).
    weight_decays : tuple of float >= 0
        Candidate L2 penalties on the classifier weights. Each model's penalty is chosen by
        validation inside its training clips (fit on the earlier three quarters of every
        track's training clips, score on the later quarter, as the held-out part is later in
        time), then the classifier is refitted on all training clips. Held-out clips are never
        used to choose.
    seed : int >= 0
        Draws the clips and the supervised baseline's dropout masks.
    """

    clips_per_track: int = 16
    clips_per_composer: int = 48
    clip_s: float = 4.5
    feature: str = "last"
    steps: int = 300
    batch_size: int = 16
    lr: float = 1e-2
    weight_decays: tuple = (1e-3, 1e-2, 1e-1, 1.0)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("clips_per_track", "clips_per_composer", "steps", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"{name}={v!r} must be an integer >= 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} must be an integer >= 0")
        for name in ("clip_s", "lr"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"{name}={v!r} must be a finite number > 0")
        decays = tuple(float(v) for v in self.weight_decays) if isinstance(self.weight_decays, (list, tuple)) else ()
        if not decays or any(not math.isfinite(v) or v < 0 for v in decays):
            raise ConfigError(f"weight_decays={self.weight_decays!r} must be a non-empty list of numbers >= 0")
        object.__setattr__(self, "weight_decays", decays)
        if self.feature not in _FEATURES:
            raise ConfigError(f"feature={self.feature!r} must be one of {', '.join(_FEATURES)}")

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["weight_decays"] = list(self.weight_decays)
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> "ProbeConfig":
        check_config_keys(data, {f.name for f in dataclasses.fields(cls)}, what="probe")
        return cls(**dict(data))


def _features_from_scaleogram(ear, s, feature: str):
    c = ear.forward_scaleogram(s, taps=("ar.8",))["ar.8"]
    return c[:, :, -1] if feature == "last" else c.mean(dim=-1)


def _features(ear, scaleograms, feature: str, batch: int = 32):
    ear.eval()
    out = []
    with torch.no_grad():
        for i in range(0, scaleograms.shape[0], batch):
            out.append(_features_from_scaleogram(ear, scaleograms[i : i + batch], feature))
    return torch.cat(out)


def calibrate_batchnorm(ear, scaleograms, batch: int = 32) -> None:
    """Set every batch norm's running statistics to their average over ``scaleograms``."""
    norms = [m for m in ear.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    ear.train()
    with torch.no_grad():
        for i in range(0, scaleograms.shape[0], batch):
            ear.forward_scaleogram(scaleograms[i : i + batch], taps=("ar.8",))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    ear.eval()


def _fit_logistic(a, y, n_classes: int, steps: int, lr: float, weight_decay: float):
    w = torch.zeros(a.shape[1], n_classes, requires_grad=True)
    bias = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.Adam([w, bias], lr=lr)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(a @ w + bias, y) + weight_decay * w.square().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return w.detach(), bias.detach()


def _standardise(train_x, *others):
    mean = train_x.mean(0, keepdim=True)
    std = train_x.std(0, keepdim=True).clamp_min(1e-6)
    return [torch.nan_to_num((x - mean) / std) for x in (train_x,) + others]


def _logistic(train_x, train_y, test_x, test_y, n_classes: int, config: ProbeConfig, per_track: int) -> dict:
    decays = config.weight_decays
    chosen = decays[0]
    if len(decays) > 1 and per_track >= 2:
        # Validation by time inside the training clips (they are in time order within a track).
        position = torch.arange(len(train_y)) % per_track
        late = position >= max(1, (3 * per_track) // 4)
        best = -1.0
        for wd in decays:
            fit, val = _standardise(train_x[~late], train_x[late])
            w, b = _fit_logistic(fit, train_y[~late], n_classes, config.steps, config.lr, wd)
            acc = float(((val @ w + b).argmax(1) == train_y[late]).float().mean())
            if acc >= best:  # ties go to the stronger penalty
                best, chosen = acc, wd
    a, t = _standardise(train_x, test_x)
    w, b = _fit_logistic(a, train_y, n_classes, config.steps, config.lr, chosen)
    with torch.no_grad():
        train_acc = float(((a @ w + b).argmax(1) == train_y).float().mean())
        logits = t @ w + b
        test_loss = float(torch.nn.functional.cross_entropy(logits, test_y))
        test_acc = float((logits.argmax(1) == test_y).float().mean())
    return {
        "train_accuracy": round(train_acc, 4),
        "heldout_accuracy": round(test_acc, 4),
        "heldout_loss": round(test_loss, 4),
        "weight_decay": chosen,
    }


def _supervised(ear_config, seed: int, s_train, y_train, n_classes: int, config: ProbeConfig, device: str, progress):
    ear, _ = build_ear(ear_config, seed)
    ear.to(device).train()
    with torch.random.fork_rng(devices=[]):  # the head from the seed too, not the global RNG
        torch.manual_seed(config.seed + 7)
        head = torch.nn.Linear(ear.context_channels, n_classes).to(device)
    gen = torch.Generator(device=device)
    gen.manual_seed(config.seed + 7)
    ear.set_generator(gen)
    rng = np.random.default_rng([config.seed, 7])
    params = list(ear.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=config.lr / 10)
    n = s_train.shape[0]
    for _ in range(config.steps):
        idx = torch.from_numpy(rng.choice(n, size=min(config.batch_size, n), replace=False))
        logits = head(_features_from_scaleogram(ear, s_train[idx], config.feature))
        loss = torch.nn.functional.cross_entropy(logits, y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        progress.update(1, loss=float(loss.detach()))
    ear.set_generator(None)
    return ear.eval()


def _digest(*tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


def _contrast(ear_config) -> str:
    return "across time steps" if ear_config.cpc.score_across_time else "within each step"


def run_probe(
    loaded,
    source=None,
    config: ProbeConfig = ProbeConfig(),
    *,
    device: str = "cpu",
    stream=None,
    probe_set=None,
    compare=None,
    cache_dir=None,
    split: str = "held-out",
) -> dict:
    """Probe a loaded ear (see :func:`earengine.ear.checkpoint.load_ear`), the paper's Table 2 way.

    Parameters
    ----------
    loaded : LoadedEar
    source : ClipSource, optional
        Track identification on this source; the checkpoint's own training data (from its
        ``config.json``) when neither ``source`` nor ``probe_set`` is given.
    config : ProbeConfig
    device : str
    stream : file-like, optional
        Progress lines (stderr by default).
    probe_set : ProbeSet, optional
        Labelled clips of a task (see :mod:`earengine.ear.probe_data`), instead of ``source``.
    compare : LoadedEar, optional
        A second CPC ear of the same architecture trained with the other contrast (scores across
        time steps or within each step): its row is added as ``cpc_other``.
    cache_dir : path, optional
        Where clip scaleograms and the baselines' rows are cached
        (``$EARENGINE_HOME/cache/probe`` by default).
    split : {"held-out", "random"}
        How the clips are divided when ``probe_set`` is not given (``probe_set.split`` otherwise).

    Returns
    -------
    dict
        JSON-able: task, split, settings, chance level and one row per model with
        ``train_accuracy``, ``heldout_accuracy`` and ``heldout_loss`` (on the test clips, whichever
        the split).
    """
    stream = stream if stream is not None else sys.stderr
    if probe_set is None:
        if source is None:
            source = from_description(loaded.config["data"])
        probe_set = track_set(source, loaded.ear.scaleogram, config, device=device, cache_dir=cache_dir,
                              split=split)
    test_word = probe_split(probe_set.split).test
    ear_config = loaded.ear.config
    init_seed = int(loaded.config.get("training", {}).get("seed", 0))
    s_train, s_test = probe_set.s_train.to(device), probe_set.s_test.to(device)
    y_train_t, y_test_t = probe_set.y_train, probe_set.y_test
    n_classes = probe_set.n_classes
    per_class = int(len(y_train_t)) // n_classes
    rows = []

    def evaluate(name: str, ear) -> dict:
        f_train = _features(ear.to(device), s_train, config.feature).cpu()
        f_test = _features(ear, s_test, config.feature).cpu()
        row = {"model": name}
        row.update(_logistic(f_train, y_train_t, f_test, y_test_t, n_classes, config, per_class))
        return row

    def report(row: dict) -> None:
        rows.append(row)
        print(f"probe: {row['model']}: {test_word} accuracy {100 * row['heldout_accuracy']:.1f}%", file=stream)

    report(dict(evaluate("cpc", loaded.ear), contrast=_contrast(ear_config)))
    if compare is not None:
        if compare.ear.config.to_dict() | {"cpc": None} != ear_config.to_dict() | {"cpc": None}:
            raise ConfigError("compare must be an ear of the same architecture as model "
                              "(the same width and scaleogram), trained with the other contrast")
        report(dict(evaluate("cpc_other", compare.ear), contrast=_contrast(compare.ear.config)))

    # The baselines depend only on the architecture, the seed, the clips and the settings: cached.
    key = {"ear": ear_config.to_dict(), "init_seed": init_seed, "config": config.to_dict(),
           "clips": _digest(s_train, y_train_t, s_test, y_test_t), "device": str(device), "version": 1}

    def baselines() -> dict:
        random_ear, _ = build_ear(ear_config, init_seed)
        calibrate_batchnorm(random_ear.to(device), s_train)
        random_row = evaluate("random", random_ear)
        with Progress(config.steps, "probe: supervised baseline", stream=stream) as progress:
            sup = _supervised(ear_config, init_seed, s_train, y_train_t.to(device), n_classes, config, device, progress)
        sup_row = evaluate("supervised", sup)
        fields = ("train_accuracy", "heldout_accuracy", "heldout_loss", "weight_decay")
        return {f"{r['model']}.{f}": torch.tensor([float(r[f])], dtype=torch.float64)
                for r in (random_row, sup_row) for f in fields}

    t = cached(dict(key, what="baselines"), baselines, cache_dir=cache_dir)
    for name in ("random", "supervised"):
        report({"model": name, **{f: float(t[f"{name}.{f}"][0]) for f in
                                  ("train_accuracy", "heldout_accuracy", "heldout_loss", "weight_decay")}})
    return {
        "task": probe_set.task,
        "split": probe_set.split,
        "config": config.to_dict(),
        "n_tracks" if probe_set.task == "tracks" else "n_classes": n_classes,
        "classes": list(probe_set.classes),
        "train_clips": int(len(y_train_t)),
        "heldout_clips": int(len(y_test_t)),
        "chance": round(1.0 / n_classes, 4),
        "init_seed": init_seed,
        "data": probe_set.data,
        "rows": rows,
    }


_ROW_NAMES = {
    "cpc": "CPC ear (this checkpoint)",
    "cpc_other": "CPC ear, other contrast",
    "random": "same architecture, random init",
    "supervised": "same architecture, supervised",
}


def _row_name(row: Mapping) -> str:
    if "contrast" in row:
        return f"CPC, scores {row['contrast']}" + (" (this ear)" if row["model"] == "cpc" else "")
    return _ROW_NAMES.get(row["model"], row["model"])


def format_probe_table(result: Mapping) -> str:
    """The probe result as a plain-text table (what ``earengine probe`` prints)."""
    cfg = result["config"]
    feature = "last context vector (ar.8)" if cfg["feature"] == "last" else "mean of ar.8 over time"
    task = result.get("task", "tracks")
    split = probe_split(result.get("split", "held-out"))
    n = result.get("n_tracks", result.get("n_classes"))
    what = (f"Track identification, {n} tracks" if task == "tracks" else
            f"Composer identification, {n} composers ({', '.join(result['classes'])})")
    lines = [
        f"{what}, {split.heads[task]}chance {100 * result['chance']:.1f}%.",
        split.clips[task].format(train=result["train_clips"], test=result["heldout_clips"]) + " of "
        f"{cfg['clip_s']:g} s; feature: {feature}; logistic regression, {cfg['steps']} Adam steps,",
        "L2 penalty chosen by validation on the later training clips of each class.",
        f"Supervised baseline: {cfg['steps']} Adam steps of {cfg['batch_size']} clips on the training clips.",
    ]
    if result.get("data", {}).get("overlapping_clips"):
        lines.append("Too short for clips side by side, so some overlap: "
                     f"{', '.join(result['data']['overlapping_clips'])}.")
    lines += [
        "",
        f"{'model':<40}{'L2':>7}{'train acc':>11}{split.test + ' acc':>14}{split.test + ' loss':>15}",
    ]
    for row in result["rows"]:
        lines.append(
            f"{_row_name(row):<40}{row.get('weight_decay', float('nan')):>7g}"
            f"{100 * row['train_accuracy']:>10.1f}%{100 * row['heldout_accuracy']:>13.1f}%{row['heldout_loss']:>15.3f}"
        )
    return "\n".join(lines)


def probe_key(task: str, split: str = "held-out") -> str:
    """Where a probe's result is kept under ``probes`` in ``config.json``: ``tracks``,
    ``composers``, and ``tracks:random``, ``composers:random`` for the paper's protocol."""
    probe_split(split)
    return task if split == "held-out" else f"{task}:{split}"


def write_probe(path, result: Mapping) -> None:
    """Store ``result`` under ``probes.<task>`` (``probes.<task>:random`` for the random split) in
    the checkpoint's ``config.json`` (weights untouched)."""
    config = read_config(path)
    key = probe_key(result.get("task", "tracks"), result.get("split", "held-out"))
    config.setdefault("probes", {})[key] = dict(result)
    atomic_write_json(Path(path) / CONFIG_FILE, config)
