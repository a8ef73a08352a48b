"""The labelled clips a probe learns from and is tested on, for each of the paper's two tasks
and each way of dividing them (:data:`PROBE_SPLITS`).

``tracks``
    Which track is this? ``held-out``: clips from the training part of every track (the first
    80 % by time) teach the classifier; clips from the held-out last 20 % test it.
``composers``
    Who wrote this? ``held-out``: clips from a composer's training works teach it; clips from
    works held out whole (see :mod:`earengine.corpus.composers`) test it.

``random`` is the Immersions paper's protocol, for a like-for-like comparison with its Table 2:
clips drawn without overlap over the whole of every track (all works of every composer) and
divided at random, within each class, into as many training as evaluation clips
(:func:`earengine.corpus.splits.random_split`, seeded by the probe's seed). Evaluation clips then
come from music the classifier's training clips sit next to, and that the ear may have heard.

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
from typing import Callable, Mapping, Optional

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from earengine.corpus.audio_folder import AudioFolder
from earengine.corpus.clips import n_samples
from earengine.corpus.manifest import Manifest
from earengine.corpus.splits import disjoint_starts, random_split, track_bounds
from earengine.errors import ConfigError
from earengine.files import user_dir
from earengine.params.registry import check_table

__all__ = ["ProbeSet", "ProbeSplit", "TASKS", "PROBE_SPLITS", "SPLIT_ROWS", "track_set", "composer_set", "cached"]

TASKS = ("tracks", "composers")
#: How a probe's clips are divided: ours (held-out parts of tracks, whole works) and the paper's.
PROBE_SPLITS = ("held-out", "random")


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
    split: str = "held-out"

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


def _held_out_tracks(source, config, rng) -> tuple:
    a_train, y_train = _track_clips(source, "train", config.clips_per_track, config.clip_s, rng)
    a_test, y_test = _track_clips(source, "heldout", config.clips_per_track, config.clip_s, rng)
    return a_train, y_train, a_test, y_test, []


def _pooled(source, classes: list, n: int, count: int, rng) -> tuple:
    """``count`` clips of ``n`` samples over each class's ``(track, first, length)`` segments,
    without overlap where they fit; the audio, the labels and the classes whose clips overlap."""
    audio, labels, overlapping = [], [], []
    for label, (name, segments) in enumerate(classes):
        starts, overlap = disjoint_starts([length for _, _, length in segments], n, count, rng)
        if overlap:
            overlapping.append(name)
        for seg, offset in starts:
            track, first, _ = segments[seg]
            audio.append(source.clip(track, (first + offset) / source.sr, n / source.sr))
            labels.append(label)
    return np.stack(audio).astype(np.float32), np.array(labels, dtype=np.int64), overlapping


def _divide(audio, labels, overlapping: list, seed: int) -> tuple:
    train, evaluate = random_split(labels, eval_fraction=0.5, seed=seed)
    return audio[train], labels[train], audio[evaluate], labels[evaluate], overlapping


def _random_tracks(source, config, rng) -> tuple:
    n = n_samples(config.clip_s, source.sr)
    classes = [(t, [(t, 0, n_samples(source.duration_s(t), source.sr))]) for t in range(source.n_tracks)]
    short = [t for t, ((_, _, length),) in classes if length < n]
    if short:
        raise ConfigError(f"clip_s={config.clip_s:g} must fit in track {short[0]}; use a shorter --clip-s")
    return _divide(*_pooled(source, classes, n, 2 * config.clips_per_track, rng), config.seed)


def _held_out_composers(source, index: dict, classes: tuple, tracks: list, config, rng) -> tuple:
    n = n_samples(config.clip_s, source.sr)
    out = []
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
        out += [np.stack(audio).astype(np.float32), np.array(labels, dtype=np.int64)]
    return (*out, [])


def _random_composers(source, index: dict, classes: tuple, tracks: list, config, rng) -> tuple:
    n = n_samples(config.clip_s, source.sr)
    segments = [(c, [(index[t["out"]], 0, n_samples(t["duration_s"], source.sr)) for t in tracks
                     if t["label"] == c]) for c in classes]
    return _divide(*_pooled(source, segments, n, 2 * config.clips_per_composer, rng), config.seed)


@dataclass(frozen=True)
class ProbeSplit:
    """One way of dividing a probe's clips: how each task draws them, and how the tables say so.

    ``tracks(source, config, rng)`` and ``composers(source, index, classes, renders, config, rng)``
    return the training audio and labels, the test audio and labels, and the classes whose clips
    overlap. ``key`` joins the clip cache's key; ``heads`` and ``clips`` are the table's words for
    each task (``clips`` formatted with the training and test clip counts), ``test`` its word for
    the test clips.
    """

    tracks: Callable
    composers: Callable
    key: Mapping
    heads: Mapping
    clips: Mapping
    test: str


#: One row per :data:`PROBE_SPLITS`: ours holds parts of the music out; the paper's splits clips.
SPLIT_ROWS = check_table("probe split", PROBE_SPLITS, {
    "held-out": ProbeSplit(
        _held_out_tracks, _held_out_composers, key={},
        heads={"tracks": "", "composers": "held-out works, "},
        clips={"tracks": "{train} training-split and {test} held-out clips",
               "composers": "{train} clips of training works and {test} clips of held-out works"},
        test="held-out"),
    "random": ProbeSplit(
        _random_tracks, _random_composers, key={"split": "random", "eval_fraction": 0.5},
        heads={"tracks": "clips of whole tracks split at random (the paper's protocol), ",
               "composers": "clips of all works split at random (the paper's protocol), "},
        clips={"tracks": "{train} training and {test} evaluation clips (seeded, half of each track's)",
               "composers": "{train} training and {test} evaluation clips (seeded, half of each composer's)"},
        test="eval"),
})


def probe_split(name: object) -> ProbeSplit:
    """The row of ``name`` (one of :data:`PROBE_SPLITS`); a one-line :class:`ConfigError` otherwise."""
    if name not in SPLIT_ROWS:
        raise ConfigError(f"split={name!r} must be one of {', '.join(PROBE_SPLITS)}")
    return SPLIT_ROWS[name]


def track_set(source, scaleogram, config, *, device: str = "cpu", cache_dir: Optional[Path] = None,
              split: str = "held-out") -> ProbeSet:
    """Track identification on ``source`` (a ClipSource): ``held-out`` trains on the first 80 %
    of every track and tests on the last 20 %; ``random`` splits clips of whole tracks."""
    row = probe_split(split)
    if source.n_tracks < 2:
        raise ConfigError(f"n_tracks={source.n_tracks} must be >= 2 for a track-identification probe")
    desc = source.describe()
    key = {"task": "tracks", "data": desc, "durations": [source.duration_s(t) for t in range(source.n_tracks)],
           "clips": config.clips_per_track, "clip_s": config.clip_s, "seed": config.seed,
           "scaleogram": scaleogram.config.to_dict(), "version": 1, **row.key}

    def make() -> dict:
        rng = np.random.default_rng([config.seed, 11])
        a_train, y_train, a_test, y_test, overlapping = row.tracks(source, config, rng)
        return {"s_train": _scaleograms(scaleogram, a_train, device), "y_train": torch.from_numpy(y_train),
                "s_test": _scaleograms(scaleogram, a_test, device), "y_test": torch.from_numpy(y_test),
                "overlapping": torch.tensor([int(t) for t in overlapping] or [-1], dtype=torch.int64)}

    t = cached(key, make, cache_dir=cache_dir)
    names = desc.get("tracks") or [f"track {i}" for i in range(source.n_tracks)]
    data = {k: v for k, v in desc.items() if k != "tracks"}
    overlapping = [names[i] for i in t.get("overlapping", torch.tensor([-1])).tolist() if i >= 0]
    if overlapping:
        data["overlapping_clips"] = overlapping
    return ProbeSet("tracks", tuple(names), t["s_train"], t["y_train"], t["s_test"], t["y_test"], data, split)


def composer_set(folder, scaleogram, config, *, device: str = "cpu", cache_dir: Optional[Path] = None,
                 split: str = "held-out") -> ProbeSet:
    """Composer identification on a composer corpus folder (see :mod:`earengine.corpus.composers`):
    ``held-out`` trains on clips of every composer's training works and tests on clips of its
    held-out works; ``random`` splits clips of all its works."""
    row = probe_split(split)
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
           "scaleogram": scaleogram.config.to_dict(), "version": 1, **row.key}

    def make() -> dict:
        source = AudioFolder(folder, cache_mb=0)
        index = {name: i for i, name in enumerate(source.track_names)}
        rng = np.random.default_rng([config.seed, 13])
        a_train, y_train, a_test, y_test, overlapping = row.composers(source, index, classes, tracks, config, rng)
        return {"s_train": _scaleograms(scaleogram, a_train, device), "y_train": torch.from_numpy(y_train),
                "s_test": _scaleograms(scaleogram, a_test, device), "y_test": torch.from_numpy(y_test),
                "overlapping": torch.tensor([classes.index(c) for c in overlapping] or [-1], dtype=torch.int64)}

    t = cached(key, make, cache_dir=cache_dir)
    data = {"kind": "composers", "path": str(folder), "renders": len(tracks),
            "heldout_works": sorted({t["work"] for t in tracks if t["split"] == "heldout"})}
    overlapping = [classes[i] for i in t.get("overlapping", torch.tensor([-1])).tolist() if i >= 0]
    if overlapping:
        data["overlapping_clips"] = overlapping
    return ProbeSet("composers", classes, t["s_train"], t["y_train"], t["s_test"], t["y_test"], data, split)
