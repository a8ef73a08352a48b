"""The linear probe: does the ear's representation tell tracks apart? (the paper's Table 2)

For every track, clips are drawn from its training part and from its held-out part (the last 20 %
by time, never seen in training). Each clip becomes one feature vector — the **last context
vector** (the final time step of ``ar.8``, which has seen the whole clip), as in the paper; the
mean of ``ar.8`` over time is available as ``feature="mean"``. The features are standardised with
the training clips' mean and deviation, and a multinomial logistic regression (one linear layer,
trained in torch with Adam on the full batch) learns the track from the training clips; its
accuracy is measured on the held-out clips.

Three ears are compared, all of the same architecture:

``cpc``
    the checkpoint, trained with CPC;
``random``
    the same architecture with random weights, initialised from the same seed the checkpoint's
    training started from (so it *is* the CPC ear before training). Its batch-norm statistics
    are measured on the probe's training clips first: left at their initial 0 and 1, whole
    layers of a random ear stay silent and the baseline would be unfairly weak;
``supervised``
    the same architecture from that same initialisation, plus a linear head on the same feature,
    trained with cross-entropy on the track labels of the probe's training clips for
    ``steps`` Adam steps of ``batch_size`` clips — the probe's own step budget.

Examples
--------
The command line: ``earengine probe --model models/ear-default --data synthetic --write``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from earengine.errors import ConfigError, check_config_keys

__all__ = ["ProbeConfig", "run_probe", "format_probe_table", "write_probe"]

_FEATURES = ("last", "mean")


@dataclass(frozen=True)
class ProbeConfig:
    """Settings of the probe.

    Parameters
    ----------
    clips_per_track : int > 0
        Clips drawn per track from its training part, and again from its held-out part.
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
    clip_s: float = 4.5
    feature: str = "last"
    steps: int = 300
    batch_size: int = 16
    lr: float = 1e-2
    weight_decays: tuple = (1e-3, 1e-2, 1e-1, 1.0)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("clips_per_track", "steps", "batch_size"):
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


def _clips(source, split: str, per_track: int, clip_s: float, rng: np.random.Generator):
    from earengine.ear.data import Split, _track_bounds, n_samples

    n = n_samples(clip_s, source.sr)
    audio, labels = [], []
    for t, (lo, hi) in enumerate(_track_bounds(source, split, Split())):
        if hi - lo < n:
            raise ConfigError(
                f"clip_s={clip_s:g} must fit in the {split} part of track {t} "
                f"({(hi - lo) / source.sr:.2f} s); use a shorter --clip-s"
            )
        # Evenly spread starts with a random jitter: covers the whole part, repeatable by seed.
        edges = np.linspace(lo, hi - n, per_track + 1)
        for i in range(per_track):
            first = int(rng.integers(int(edges[i]), max(int(edges[i]) + 1, int(edges[i + 1]) + 1)))
            audio.append(source.clip(t, first / source.sr, n / source.sr))
            labels.append(t)
    return np.stack(audio).astype(np.float32), np.array(labels, dtype=np.int64)


def _features_from_scaleogram(ear, s, feature: str):
    c = ear.forward_scaleogram(s, taps=("ar.8",))["ar.8"]
    return c[:, :, -1] if feature == "last" else c.mean(dim=-1)


def _features(ear, scaleograms, feature: str, batch: int = 32):
    import torch

    ear.eval()
    out = []
    with torch.no_grad():
        for i in range(0, scaleograms.shape[0], batch):
            out.append(_features_from_scaleogram(ear, scaleograms[i : i + batch], feature))
    return torch.cat(out)


def _calibrate_batchnorm(ear, scaleograms, batch: int = 32) -> None:
    """Set every batch norm's running statistics to their average over ``scaleograms``."""
    import torch

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
    import torch

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
    import torch

    mean = train_x.mean(0, keepdim=True)
    std = train_x.std(0, keepdim=True).clamp_min(1e-6)
    return [torch.nan_to_num((x - mean) / std) for x in (train_x,) + others]


def _logistic(train_x, train_y, test_x, test_y, n_classes: int, config: ProbeConfig, per_track: int) -> dict:
    import torch

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
    import torch

    from earengine.ear.train import build_ear

    ear, _ = build_ear(ear_config, seed)
    ear.to(device).train()
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


def run_probe(loaded, source=None, config: ProbeConfig = ProbeConfig(), *, device: str = "cpu", stream=None) -> dict:
    """Probe a loaded ear (see :func:`earengine.ear.checkpoint.load_ear`).

    Parameters
    ----------
    loaded : LoadedEar
    source : ClipSource, optional
        The checkpoint's own training data (from its ``config.json``) by default.
    config : ProbeConfig
    device : str
    stream : file-like, optional
        Progress lines (stderr by default).

    Returns
    -------
    dict
        JSON-able: settings, chance level and one row per model with ``train_accuracy``,
        ``heldout_accuracy`` and ``heldout_loss``.
    """
    import sys

    import torch

    from earengine.ear.data import from_description
    from earengine.ear.train import build_ear
    from earengine.progress import Progress

    stream = stream if stream is not None else sys.stderr
    if source is None:
        source = from_description(loaded.config["data"])
    if source.n_tracks < 2:
        raise ConfigError(f"n_tracks={source.n_tracks} must be >= 2 for a track-identification probe")
    ear_config = loaded.ear.config
    init_seed = int(loaded.config.get("training", {}).get("seed", 0))
    rng = np.random.default_rng([config.seed, 11])
    a_train, y_train = _clips(source, "train", config.clips_per_track, config.clip_s, rng)
    a_test, y_test = _clips(source, "heldout", config.clips_per_track, config.clip_s, rng)
    scale = loaded.ear.scaleogram.to(device)
    with torch.no_grad():
        s_train = torch.cat([scale(torch.from_numpy(a_train[i : i + 32]).to(device)) for i in range(0, len(a_train), 32)])
        s_test = torch.cat([scale(torch.from_numpy(a_test[i : i + 32]).to(device)) for i in range(0, len(a_test), 32)])
    y_train_t, y_test_t = torch.from_numpy(y_train).to(device), torch.from_numpy(y_test).to(device)
    n_classes = source.n_tracks
    rows = []

    def evaluate(name: str, ear) -> None:
        f_train = _features(ear.to(device), s_train, config.feature).cpu()
        f_test = _features(ear, s_test, config.feature).cpu()
        row = {"model": name}
        row.update(_logistic(f_train, y_train_t.cpu(), f_test, y_test_t.cpu(), n_classes, config, config.clips_per_track))
        rows.append(row)
        print(f"probe: {name}: held-out accuracy {100 * row['heldout_accuracy']:.1f}%", file=stream)

    evaluate("cpc", loaded.ear)
    random_ear, _ = build_ear(ear_config, init_seed)
    _calibrate_batchnorm(random_ear.to(device), s_train)
    evaluate("random", random_ear)
    with Progress(config.steps, "probe: supervised baseline", stream=stream) as progress:
        sup = _supervised(ear_config, init_seed, s_train, y_train_t, n_classes, config, device, progress)
    evaluate("supervised", sup)
    return {
        "config": config.to_dict(),
        "n_tracks": n_classes,
        "train_clips": int(len(y_train)),
        "heldout_clips": int(len(y_test)),
        "chance": round(1.0 / n_classes, 4),
        "init_seed": init_seed,
        "data": {k: v for k, v in source.describe().items() if k != "tracks"},
        "rows": rows,
    }


_ROW_NAMES = {
    "cpc": "CPC ear (this checkpoint)",
    "random": "same architecture, random init",
    "supervised": "same architecture, supervised",
}


def format_probe_table(result: Mapping) -> str:
    """The probe result as a plain-text table (what ``earengine probe`` prints)."""
    cfg = result["config"]
    feature = "last context vector (ar.8)" if cfg["feature"] == "last" else "mean of ar.8 over time"
    lines = [
        f"Track identification, {result['n_tracks']} tracks, chance {100 * result['chance']:.1f}%.",
        f"{result['train_clips']} training-split and {result['heldout_clips']} held-out clips of "
        f"{cfg['clip_s']:g} s; feature: {feature}; logistic regression, {cfg['steps']} Adam steps,",
        "L2 penalty chosen by validation on the later training-split clips.",
        f"Supervised baseline: {cfg['steps']} Adam steps of {cfg['batch_size']} clips on the training-split clips.",
        "",
        f"{'model':<34}{'L2':>7}{'train acc':>11}{'held-out acc':>14}{'held-out loss':>15}",
    ]
    for row in result["rows"]:
        lines.append(
            f"{_ROW_NAMES.get(row['model'], row['model']):<34}{row.get('weight_decay', float('nan')):>7g}"
            f"{100 * row['train_accuracy']:>10.1f}%{100 * row['heldout_accuracy']:>13.1f}%{row['heldout_loss']:>15.3f}"
        )
    return "\n".join(lines)


def write_probe(path, result: Mapping) -> None:
    """Store ``result`` under ``probe`` in the checkpoint's ``config.json`` (weights untouched)."""
    from earengine.ear.checkpoint import CONFIG_FILE, atomic_write_json, read_config

    from pathlib import Path

    config = read_config(path)
    config["probe"] = dict(result)
    atomic_write_json(Path(path) / CONFIG_FILE, config)
