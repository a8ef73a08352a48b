"""The train/held-out split: parts that never overlap, batches and grids that stay inside them."""

from __future__ import annotations

import numpy as np
import pytest

from earengine.corpus.clips import ClipSource, n_samples
from earengine.corpus.synthetic import SyntheticCorpus
from earengine.corpus.splits import (Split, disjoint_starts, random_split, sample_batch, split_grid,
                                    track_bounds)
from earengine.errors import ConfigError

from tests.helpers.errors import one_line


class _Recorder:
    """A ClipSource wrapper that remembers which sample ranges were read."""

    def __init__(self, source: ClipSource) -> None:
        self.source, self.sr, self.n_tracks = source, source.sr, source.n_tracks
        self.track_names = source.track_names
        self.reads: list = []

    def clip(self, track, start_s, duration_s):
        self.reads.append((track, n_samples(start_s, self.sr), n_samples(duration_s, self.sr)))
        return self.source.clip(track, start_s, duration_s)

    def duration_s(self, track):
        return self.source.duration_s(track)

    def describe(self):
        return self.source.describe()


def test_sample_batch_shapes_dtypes_and_determinism(corpus):
    audio, tracks = sample_batch(corpus, batch_size=6, duration_s=0.5, split="train", rng=np.random.default_rng(3))
    assert audio.shape == (6, 22050) and audio.dtype == np.float32
    assert tracks.shape == (6,) and tracks.dtype == np.int64
    assert np.all((0 <= tracks) & (tracks < corpus.n_tracks))
    again, tracks_again = sample_batch(
        corpus, batch_size=6, duration_s=0.5, split="train", rng=np.random.default_rng(3)
    )
    np.testing.assert_array_equal(audio, again)
    np.testing.assert_array_equal(tracks, tracks_again)


@pytest.mark.parametrize("fraction", [0.2, 0.35])
def test_heldout_and_training_clips_never_overlap(corpus, fraction):
    spec = Split(fraction)
    rec = _Recorder(corpus)
    rng = np.random.default_rng(0)
    cut = spec.bounds(n_samples(8.0), "train")[1]
    assert cut == round(n_samples(8.0) * (1 - fraction))
    for split in ("train", "heldout"):
        rec.reads.clear()
        _, tracks = sample_batch(rec, batch_size=200, duration_s=1.0, split=split, rng=rng, split_spec=spec)
        assert [r[0] for r in rec.reads] == tracks.tolist()
        for _, first, count in rec.reads:
            if split == "train":
                assert 0 <= first and first + count <= cut
            else:
                assert cut <= first and first + count <= n_samples(8.0)
        starts = np.array([r[1] for r in rec.reads])
        assert starts.min() < starts.max()  # actually random
        assert len(set(tracks.tolist())) == corpus.n_tracks


def test_sample_batch_refuses_clips_longer_than_the_part():
    c = SyntheticCorpus(n_tracks=2, seed=0, track_duration_s=5.0)
    with pytest.raises(ConfigError) as err:
        sample_batch(c, batch_size=2, duration_s=2.0, split="heldout", rng=np.random.default_rng(0))
    assert one_line(err.value) and "heldout" in str(err.value)


@pytest.mark.parametrize(
    "kwargs",
    [{"split": "test"}, {"batch_size": 0}, {"duration_s": -1.0}, {"rng": 0}],
)
def test_sample_batch_bad_arguments(corpus, kwargs):
    args = {"batch_size": 2, "duration_s": 0.5, "split": "train", "rng": np.random.default_rng(0)}
    args.update(kwargs)
    with pytest.raises(ConfigError) as err:
        sample_batch(corpus, **args)
    assert one_line(err.value)


def test_split_round_trips_and_validates():
    assert Split.from_dict(Split(0.3).to_dict()) == Split(0.3)
    assert Split().to_dict() == {"heldout_fraction": 0.2}
    for bad in (0.0, 1.0, -0.1, "half", True):
        with pytest.raises(ConfigError):
            Split(bad)
    with pytest.raises(ConfigError):
        Split.from_dict({"heldout_fraction": 0.2, "extra": 1})


def test_split_grid_covers_the_heldout_part_without_leaving_it(corpus):
    grid = split_grid(corpus, duration_s=0.5, split="heldout", hop_s=0.25)
    lo, hi = Split().bounds(n_samples(8.0), "heldout")
    assert {t for t, _ in grid} == set(range(corpus.n_tracks))
    per_track = [s for t, s in grid if t == 0]
    assert len(per_track) == (hi - lo - 22050) // n_samples(0.25) + 1
    for _, start in grid:
        first = n_samples(start)
        assert lo <= first and first + 22050 <= hi


def test_track_bounds_are_the_split_of_every_track(corpus):
    n = n_samples(8.0)
    assert track_bounds(corpus, "train") == [Split().bounds(n, "train")] * corpus.n_tracks
    assert track_bounds(corpus, "heldout", Split(0.5)) == [(n // 2, n)] * corpus.n_tracks
    with pytest.raises(ConfigError):
        track_bounds(corpus, "test")


# -- the Immersions paper's probe protocol: clips split at random ----------------------------------
def _clip_labels(sizes) -> np.ndarray:
    """Synthetic clips in class order: ``sizes[c]`` clips of class ``c``."""
    return np.repeat(np.arange(len(sizes)), sizes)


def test_random_split_is_seeded_disjoint_and_keeps_each_class_in_both():
    labels = _clip_labels([32, 32, 10, 7, 2])
    train, evaluate = random_split(labels, eval_fraction=0.5, seed=4)
    again = random_split(labels, eval_fraction=0.5, seed=4)
    other = random_split(labels, eval_fraction=0.5, seed=5)
    assert np.array_equal(train, again[0]) and np.array_equal(evaluate, again[1])
    assert not np.array_equal(evaluate, other[1])
    assert set(train).isdisjoint(evaluate) and sorted(set(train) | set(evaluate)) == list(range(len(labels)))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(evaluate) > 0)  # each class keeps its order
    for c, size in enumerate([32, 32, 10, 7, 2]):
        assert np.sum(labels[evaluate] == c) == min(max(round(0.5 * size), 1), size - 1)
        assert np.sum(labels[train] == c) >= 1


@pytest.mark.parametrize("fraction", [0.2, 0.25, 0.5, 0.8])
def test_random_split_gives_each_class_its_share(fraction):
    labels = _clip_labels([40, 20, 100])
    train, evaluate = random_split(labels, eval_fraction=fraction, seed=0)
    for c, size in enumerate([40, 20, 100]):
        assert np.sum(labels[evaluate] == c) == round(fraction * size)
    assert len(train) + len(evaluate) == 160


def test_random_split_picks_every_clip_about_as_often():
    labels = _clip_labels([8])
    counts = np.zeros(8)
    for seed in range(400):
        counts[random_split(labels, seed=seed)[1]] += 1
    assert np.all(np.abs(counts / 400 - 0.5) < 0.1)


def test_random_split_keeps_a_lone_clip_for_training():
    labels = np.array([0, 1, 1])
    train, evaluate = random_split(labels, seed=0)
    assert 0 in train and labels[evaluate].tolist() == [1]


@pytest.mark.parametrize("kwargs", [{"eval_fraction": 0.0}, {"eval_fraction": 1.0}, {"eval_fraction": "half"},
                                    {"seed": -1}, {"seed": 1.5}])
def test_random_split_bad_arguments(kwargs):
    with pytest.raises(ConfigError) as err:
        random_split([0, 0, 1, 1], **kwargs)
    assert one_line(err.value)


@pytest.mark.parametrize("lengths,count", [([1000], 20), ([300, 120, 95], 9), ([50, 0, 400], 7)])
def test_disjoint_starts_stay_in_their_segment_and_never_overlap(lengths, count):
    n = 40
    starts, overlap = disjoint_starts(lengths, n, count, np.random.default_rng(1))
    assert len(starts) == count and not overlap
    for seg, first in starts:
        assert 0 <= first and first + n <= lengths[seg]
    for (s1, a), (s2, b) in zip(starts, starts[1:]):
        assert s1 < s2 or (s1 == s2 and b >= a + n)


def test_disjoint_starts_say_when_clips_must_overlap():
    starts, overlap = disjoint_starts([100], 40, 5, np.random.default_rng(0))
    assert overlap and len(starts) == 5 and all(0 <= first <= 60 for _, first in starts)
    with pytest.raises(ConfigError) as err:
        disjoint_starts([30, 20], 40, 2, np.random.default_rng(0))
    assert one_line(err.value)
