"""The labelled clips a probe learns from and is tested on, for each of the paper's two tasks.

``tracks``
    Which track is this? Clips from the training part of every track (the first 80 % by time)
    teach the classifier; clips from the held-out last 20 % test it.
``composers``
    Who wrote this? Clips from a composer's training works teach it; clips from works held out
    whole (see :mod:`earengine.corpus.composers`) test it.

A :class:`ProbeSet` holds the clips' scaleograms, which depend only on the audio and the
scaleogram's settings, not on the ear's weights: they are cached under
``$EARENGINE_HOME/cache/probe`` (or ``$EARENGINE_PROBE_CACHE``; safetensors) by a hash of
everything that made them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from earengine.corpus.audio_folder import AudioFolder
from earengine.corpus.clips import n_samples
from earengine.corpus.manifest import Manifest
from earengine.corpus.splits import track_bounds
from earengine.errors import ConfigError
from earengine.files import user_dir

__all__ = ["ProbeSet", "TASKS", "track_set", "composer_set", "cached"]

TASKS = ("tracks", "composers")


@dataclass(frozen=True)
class ProbeSet:
    """Labelled clips of one task, as scaleograms (torch tensors, ``(n, 1, bins, frames)``).

    Within each class, clips are in time order (tracks) or work order (composers), so that the
    later clips of a class can validate a classifier fitted on its earlier ones.
    """

    task: str
    classes: tuple
    s_train: object
    y_train: object
    s_test: object
    y_test: object
    data: dict

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def _spread(lo: int, hi: int, n: int, count: int, rng: np.random.Generator) -> list:
    """``count`` clip starts of ``n`` samples in ``[lo, hi)``, evenly spread with a random jitter."""
    if hi - lo < n:
        return []
    edges = np.linspace(lo, hi - n, count + 1)
    return [int(rng.integers(int(edges[i]), max(int(edges[i]) + 1, int(edges[i + 1]) + 1))) for i in range(count)]


def _track_clips(source, split: str, per_track: int, clip_s: float, rng: np.random.Generator):
    n = n_samples(clip_s, source.sr)
    audio, labels = [], []
    for t, (lo, hi) in enumerate(track_bounds(source, split)):
        starts = _spread(lo, hi, n, per_track, rng)
        if not starts:
            raise ConfigError(f"clip_s={clip_s:g} must fit in the {split} part of track {t} "
                              f"({(hi - lo) / source.sr:.2f} s); use a shorter --clip-s")
        audio += [source.clip(t, first / source.sr, n / source.sr) for first in starts]
        labels += [t] * per_track
    return np.stack(audio).astype(np.float32), np.array(labels, dtype=np.int64)


def _scaleograms(scaleogram, audio: np.ndarray, device: str):
    with torch.no_grad():
        return torch.cat([scaleogram(torch.from_numpy(audio[i:i + 32]).to(device)).cpu()
                          for i in range(0, len(audio), 32)])


def cached(key: dict, make, *, cache_dir: Optional[Path] = None):
    """``make()`` (a dict of tensors), stored under a hash of ``key`` and read back next time."""
    if cache_dir is None:
        cache_dir = os.environ.get("EARENGINE_PROBE_CACHE") or user_dir("cache") / "probe"
    folder = Path(cache_dir)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
    path = folder / f"{digest}.safetensors"
    if path.is_file():
        try:
            return load_file(str(path))
        except Exception:  # a cache file cut short by a stop: make it again
            path.unlink(missing_ok=True)
    tensors = make()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    tmp.replace(path)
    return tensors


def track_set(source, scaleogram, config, *, device: str = "cpu", cache_dir: Optional[Path] = None) -> ProbeSet:
    """Track identification on ``source`` (a ClipSource): train on the first 80 % of every
    track, test on the last 20 %."""
    if source.n_tracks < 2:
        raise ConfigError(f"n_tracks={source.n_tracks} must be >= 2 for a track-identification probe")
    desc = source.describe()
    key = {"task": "tracks", "data": desc, "durations": [source.duration_s(t) for t in range(source.n_tracks)],
           "clips": config.clips_per_track, "clip_s": config.clip_s, "seed": config.seed,
           "scaleogram": scaleogram.config.to_dict(), "version": 1}

    def make() -> dict:
        rng = np.random.default_rng([config.seed, 11])
        a_train, y_train = _track_clips(source, "train", config.clips_per_track, config.clip_s, rng)
        a_test, y_test = _track_clips(source, "heldout", config.clips_per_track, config.clip_s, rng)
        return {"s_train": _scaleograms(scaleogram, a_train, device), "y_train": torch.from_numpy(y_train),
                "s_test": _scaleograms(scaleogram, a_test, device), "y_test": torch.from_numpy(y_test)}

    t = cached(key, make, cache_dir=cache_dir)
    names = desc.get("tracks") or [f"track {i}" for i in range(source.n_tracks)]
    data = {k: v for k, v in desc.items() if k != "tracks"}
    return ProbeSet("tracks", tuple(names), t["s_train"], t["y_train"], t["s_test"], t["y_test"], data)


def composer_set(folder, scaleogram, config, *, device: str = "cpu", cache_dir: Optional[Path] = None) -> ProbeSet:
    """Composer identification on a composer corpus folder (see :mod:`earengine.corpus.composers`):
    train on clips of every composer's training works, test on clips of its held-out works."""
    folder = Path(folder).expanduser()
    if not (folder / "manifest.json").is_file():
        raise ConfigError(f"data={str(folder)!r} must be a composer corpus with a manifest.json; "
                          "build one with 'earengine corpus composers'")
    manifest = Manifest.load(folder, "composers")
    tracks = [t for t in manifest.tracks if t.get("split") in ("train", "heldout")]
    classes = tuple(sorted({t["label"] for t in tracks}))
    for c in classes:
        if {t["split"] for t in tracks if t["label"] == c} != {"train", "heldout"}:
            raise ConfigError(f"composer={c!r} must have training and held-out works; rebuild the corpus "
                              "with more minutes per composer")
    if len(classes) < 2:
        raise ConfigError(f"composers={list(classes)} must be at least 2 for a composer probe")
    key = {"task": "composers", "tracks": [(t["out"], t["sha256"], t["split"]) for t in tracks],
           "clips": config.clips_per_composer, "clip_s": config.clip_s, "seed": config.seed,
           "scaleogram": scaleogram.config.to_dict(), "version": 1}

    def make() -> dict:
        source = AudioFolder(folder, cache_mb=0)
        index = {name: i for i, name in enumerate(source.track_names)}
        rng = np.random.default_rng([config.seed, 13])
        n = n_samples(config.clip_s, source.sr)
        out = {}
        for split in ("train", "heldout"):
            audio, labels = [], []
            for label, c in enumerate(classes):
                works = [t for t in tracks if t["label"] == c and t["split"] == split]
                # Clips in proportion to each render's length, in work order.
                lengths = np.array([max(0, n_samples(t["duration_s"], source.sr) - n) for t in works], float)
                if lengths.sum() <= 0:
                    raise ConfigError(f"clip_s={config.clip_s:g} must be shorter than {c}'s {split} works")
                starts = _spread(0, int(lengths.sum()) + n, n, config.clips_per_composer, rng)
                bounds = np.cumsum(lengths)
                for s0 in starts:
                    w = int(np.searchsorted(bounds, s0, side="right"))
                    w = min(w, len(works) - 1)
                    offset = s0 - (bounds[w - 1] if w else 0)
                    audio.append(source.clip(index[works[w]["out"]], float(offset) / source.sr, n / source.sr))
                    labels.append(label)
            key_s, key_y = ("s_train", "y_train") if split == "train" else ("s_test", "y_test")
            out[key_s] = _scaleograms(scaleogram, np.stack(audio).astype(np.float32), device)
            out[key_y] = torch.tensor(labels, dtype=torch.int64)
        return out

    t = cached(key, make, cache_dir=cache_dir)
    data = {"kind": "composers", "path": str(folder), "renders": len(tracks),
            "heldout_works": sorted({t["work"] for t in tracks if t["split"] == "heldout"})}
    return ProbeSet("composers", classes, t["s_train"], t["y_train"], t["s_test"], t["y_test"], data)
