"""Where each track is cut into a training part and a held-out part, and the clips drawn from either.

:class:`Split` cuts every track of a :class:`~earengine.corpus.clips.ClipSource` by time (the last
20 % held out by default), :func:`track_bounds` gives the parts' sample ranges,
:func:`sample_batch` draws random clips from one part of every track (training), and
:func:`split_grid` lays evenly spaced clips over it (a repeatable probe). Clips drawn from one part
never reach into the other. For the Immersions paper's probe protocol, :func:`disjoint_starts`
spreads clips over whole tracks without overlap and :func:`random_split` divides them at random.

Examples
--------
>>> from earengine.corpus.synthetic import SyntheticCorpus
>>> corpus = SyntheticCorpus(n_tracks=16, seed=0, track_duration_s=8.0)
>>> batch, tracks = sample_batch(corpus, batch_size=4, duration_s=0.25, split="heldout",
...                              rng=np.random.default_rng(0))
>>> batch.shape, tracks.dtype
((4, 11025), dtype('int64'))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from earengine.corpus.clips import ClipSource, n_samples
from earengine.errors import ConfigError

__all__ = ["SPLITS", "Split", "check_split", "track_bounds", "sample_batch", "split_grid", "random_split",
           "disjoint_starts"]

SPLITS = ("train", "heldout")
"""The two parts of every track."""


@dataclass(frozen=True)
class Split:
    """Where each track is cut into a training part and a held-out part.

    The first ``1 - heldout_fraction`` of every track (by time) is for training, the rest is held
    out for the probe. Clips drawn from one part never reach into the other.

    Parameters
    ----------
    heldout_fraction : float in (0, 1)
        Share of each track, at its end, that is held out.

    Examples
    --------
    >>> Split().bounds(1000, "train"), Split().bounds(1000, "heldout")
    ((0, 800), (800, 1000))
    >>> Split.from_dict(Split(0.25).to_dict())
    Split(heldout_fraction=0.25)
    """

    heldout_fraction: float = 0.2

    def __post_init__(self) -> None:
        f = self.heldout_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 < float(f) < 1.0:
            raise ConfigError(f"heldout_fraction={f!r} must be a number strictly between 0 and 1, e.g. 0.2")
        object.__setattr__(self, "heldout_fraction", float(f))

    def bounds(self, n_total: int, split: str) -> tuple:
        """Sample range ``(first, end)`` of ``split`` (``"train"`` or ``"heldout"``) in a track of
        ``n_total`` samples; ``end`` is exclusive."""
        check_split(split)
        cut = int(round(int(n_total) * (1.0 - self.heldout_fraction)))
        return (0, cut) if split == "train" else (cut, int(n_total))

    def to_dict(self) -> dict:
        return {"heldout_fraction": self.heldout_fraction}

    @classmethod
    def from_dict(cls, d: dict) -> "Split":
        unknown = set(d) - {"heldout_fraction"}
        if unknown:
            raise ConfigError(f"split keys={sorted(unknown)} must be only ['heldout_fraction']")
        return cls(**d)


def check_split(split: object) -> str:
    """``split`` when it is ``"train"`` or ``"heldout"``; a :class:`ConfigError` otherwise."""
    if split not in SPLITS:
        raise ConfigError(f"split={split!r} must be 'train' or 'heldout'")
    return str(split)


def track_bounds(source: ClipSource, split: str, split_spec: Optional[Split] = None) -> list:
    """The sample range ``(first, end)`` of the ``split`` part of every track of ``source``.

    Parameters
    ----------
    source : ClipSource
    split : {"train", "heldout"}
    split_spec : Split, optional
        Where tracks are cut; ``Split()`` (last 20 % held out) by default.

    Returns
    -------
    list of (int, int)
        One ``(first, end)`` per track, in samples at ``source.sr``; ``end`` is exclusive.

    Examples
    --------
    >>> from earengine.corpus.synthetic import SyntheticCorpus
    >>> track_bounds(SyntheticCorpus(n_tracks=2, track_duration_s=10.0), "heldout")
    [(352800, 441000), (352800, 441000)]
    """
    split_spec = split_spec if split_spec is not None else Split()
    split = check_split(split)
    return [split_spec.bounds(n_samples(source.duration_s(t), source.sr), split)
            for t in range(source.n_tracks)]


def sample_batch(
    source: ClipSource,
    *,
    batch_size: int,
    duration_s: float,
    split: str,
    rng: np.random.Generator,
    split_spec: Optional[Split] = None,
) -> tuple:
    """Draw random clips from the training or the held-out part of the tracks.

    Tracks are drawn uniformly among those whose ``split`` part is at least ``duration_s`` long;
    the start is uniform (to the sample) within that part.

    Parameters
    ----------
    source : ClipSource
    batch_size : int > 0
    duration_s : float > 0
        Length of every clip.
    split : {"train", "heldout"}
    rng : numpy.random.Generator
        Seeded generator; the batch depends only on it and on the source.
    split_spec : Split, optional
        Where tracks are cut; ``Split()`` (last 20 % held out) by default.

    Returns
    -------
    audio : np.ndarray (batch_size, n_samples(duration_s, source.sr)) float32
    tracks : np.ndarray (batch_size,) int64
        The track of every clip.

    Raises
    ------
    ConfigError
        When no track's ``split`` part is long enough for ``duration_s``.
    """
    split_spec = split_spec if split_spec is not None else Split()
    split = check_split(split)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be an integer >= 1")
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(f"rng={rng!r} must be a numpy.random.Generator, e.g. np.random.default_rng(0)")
    try:
        dur = float(duration_s)
    except (TypeError, ValueError):
        dur = float("nan")
    if not math.isfinite(dur) or dur <= 0:
        raise ConfigError(f"duration_s={duration_s!r} must be a finite number of seconds > 0")
    n = n_samples(dur, source.sr)
    bounds = track_bounds(source, split, split_spec)
    eligible = np.array([t for t, (lo, hi) in enumerate(bounds) if hi - lo >= n], dtype=np.int64)
    if eligible.size == 0:
        longest = max(hi - lo for lo, hi in bounds) / source.sr
        raise ConfigError(
            f"duration_s={dur:g} must fit in the {split} part of at least one track; the longest "
            f"is {longest:.3g} s — use shorter clips or longer tracks"
        )
    tracks = eligible[rng.integers(0, eligible.size, size=int(batch_size))]
    audio = np.empty((int(batch_size), n), dtype=np.float32)
    for i, t in enumerate(tracks):
        lo, hi = bounds[int(t)]
        first = int(rng.integers(lo, hi - n + 1))
        audio[i] = source.clip(int(t), first / source.sr, dur)
    return audio, tracks.astype(np.int64)


def split_grid(
    source: ClipSource,
    *,
    duration_s: float,
    split: str,
    hop_s: Optional[float] = None,
    split_spec: Optional[Split] = None,
) -> list:
    """Evenly spaced clips covering the ``split`` part of every track, for a repeatable probe.

    Parameters
    ----------
    source : ClipSource
    duration_s : float > 0
    split : {"train", "heldout"}
    hop_s : float > 0, optional
        Distance between clip starts; ``duration_s`` (clips side by side) by default.
    split_spec : Split, optional

    Returns
    -------
    list of (track, start_s)
        Every clip lies wholly inside its track's ``split`` part; ``start_s`` is sample-exact.
    """
    split_spec = split_spec if split_spec is not None else Split()
    split = check_split(split)
    dur = float(duration_s)
    hop = dur if hop_s is None else float(hop_s)
    if not (math.isfinite(dur) and dur > 0):
        raise ConfigError(f"duration_s={duration_s!r} must be a finite number of seconds > 0")
    if not (math.isfinite(hop) and hop > 0):
        raise ConfigError(f"hop_s={hop_s!r} must be a finite number of seconds > 0")
    n, hop_n = n_samples(dur, source.sr), max(1, n_samples(hop, source.sr))
    grid = []
    for t, (lo, hi) in enumerate(track_bounds(source, split, split_spec)):
        for first in range(lo, hi - n + 1, hop_n):
            grid.append((t, first / source.sr))
    return grid


def random_split(labels, *, eval_fraction: float = 0.5, seed: int = 0) -> tuple:
    """Clips divided at random into training and evaluation clips, each class on its own (the
    Immersions paper's probe protocol: its clips are "partitioned into a training and an
    evaluation set", with nothing said of holding out whole parts).

    Parameters
    ----------
    labels : sequence of int
        The class of every clip.
    eval_fraction : float in (0, 1)
        Share of each class's clips that evaluates; rounded, and at least one clip on each side
        for a class of two clips or more (a class of one clip trains).
    seed : int >= 0
        The same seed gives the same split.

    Returns
    -------
    train, evaluate : np.ndarray of int64
        Indices into ``labels``, sorted (so a class's clips keep their order), disjoint, together
        every clip.

    Examples
    --------
    >>> train, evaluate = random_split([0, 0, 0, 0, 1, 1, 1, 1], seed=0)
    >>> len(train), len(evaluate), sorted(set(train) | set(evaluate)) == list(range(8))
    (4, 4, True)
    """
    f = eval_fraction
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 < float(f) < 1.0:
        raise ConfigError(f"eval_fraction={f!r} must be a number strictly between 0 and 1, e.g. 0.5")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be an integer >= 0")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ConfigError(f"labels of shape {labels.shape} must be one label per clip")
    rng = np.random.default_rng(int(seed))
    train, evaluate = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = len(idx)
        n_eval = min(max(int(round(float(f) * k)), 1), k - 1) if k >= 2 else 0
        chosen = np.zeros(k, dtype=bool)
        chosen[rng.permutation(k)[:n_eval]] = True
        evaluate.append(idx[chosen])
        train.append(idx[~chosen])
    return (np.sort(np.concatenate(train)).astype(np.int64) if train else np.zeros(0, np.int64),
            np.sort(np.concatenate(evaluate)).astype(np.int64) if evaluate else np.zeros(0, np.int64))


def disjoint_starts(lengths, n: int, count: int, rng: np.random.Generator) -> tuple:
    """``count`` clips of ``n`` samples spread evenly, with a random jitter, over segments of
    ``lengths`` samples (a track, or the works of a composer), each clip inside one segment and,
    where the segments leave room, none overlapping another.

    Returns
    -------
    starts : list of (segment, first sample)
        In order along the segments.
    overlap : bool
        True when some clips overlap: the segments were too short for ``count`` clips side by side.

    Examples
    --------
    >>> disjoint_starts([100, 50], 10, 5, np.random.default_rng(0))
    ([(0, 14), (0, 36), (0, 61), (0, 83), (1, 19)], False)
    """
    room = np.array([max(0, int(length) - int(n) + 1) for length in lengths], dtype=np.int64)
    total = int(room.sum())
    if total == 0:
        raise ConfigError(f"clips of {n} samples must fit in at least one segment; the longest is "
                          f"{max((int(x) for x in lengths), default=0)} samples")
    edges = (np.arange(count + 1, dtype=np.int64) * total) // count
    ends = np.cumsum(room)
    starts = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        if hi - lo >= n:  # room in this slot: the next clip starts at hi or later
            s = int(lo + rng.integers(0, hi - lo - n + 1))
        else:
            s = int(min(lo + rng.integers(0, max(1, hi - lo)), total - 1))
        seg = int(np.searchsorted(ends, s, side="right"))
        starts.append((seg, s - int(ends[seg - 1] if seg else 0)))
    overlap = any(a[0] == b[0] and b[1] < a[1] + n for a, b in zip(starts, starts[1:]))
    return starts, overlap
