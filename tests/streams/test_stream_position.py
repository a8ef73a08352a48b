"""The activations the streams show are the loop heard's: they travel with their loop through the
player and change at the bar line where it enters, however many newer loops wait meanwhile."""

import numpy as np
import pytest

from earengine.streams.activations import ActivationSet
from earengine.streams.position import PlayerTracker
from earengine.synth.player import Loop, LoopPlayer
from tests.helpers.offline import SR, OfflineRig, rig_maker


class Rig(OfflineRig):
    """An offline player (120 BPM, 4/4: 2 s bars) and the tracker the streams read."""

    defaults = {"/loop/xfade": 0.0, "/clock/bpm": 120.0}

    def build(self):
        self.player = LoopPlayer(self.audio, self.registry)
        self.tracker = PlayerTracker(self.player, self.audio)

    def parts(self):
        return [self.tracker, self.player]


@pytest.fixture
def rig(tmp_path):
    yield from rig_maker(Rig, tmp_path)


def dreamed(key):
    """A 1-bar loop as the worker delivers it: its key and its activations in its meta."""
    acts = ActivationSet(key, step=key, loss=0.0, acts={"enc.0": np.full((2, 3, 4), key, np.float32)})
    samples = (0.1 * np.sin(np.arange(2 * SR) * 2 * np.pi * (110 + key) / SR)).astype(np.float32)
    return Loop(samples, SR, 1, "dream", meta={"key": key, "acts": acts})


def test_the_activations_of_the_loop_heard_stay_until_the_bar_line_where_the_next_enters(rig):
    r = rig()
    r.player.queue(dreamed(1), keep_phase=True)
    r.render(0.2)
    pos = r.tracker()
    assert pos.key == 1 and pos.acts.step == 1
    # the worker dreams ten more loops while it plays: each replaces the one waiting
    for key in range(2, 12):
        r.player.queue(dreamed(key), keep_phase=True)
        r.render(0.05)
        assert r.tracker().acts.step == 1 and r.tracker().key == 1
    # then every buffer until the bar line shows loop 1's, and from it on the last one queued's
    seen = []
    for _ in range(80):
        r.render(0.025)
        pos = r.tracker()
        seen.append((pos.key, pos.acts.step, pos.phase))
    assert all(key == step for key, step, _ in seen)  # each position carries its own loop's set
    keys = [key for key, _, _ in seen]
    assert set(keys) == {1, 11} and keys == sorted(keys)
    change = keys.index(11)
    assert seen[change - 1][2] > 0.95 and seen[change][2] < 0.05  # at the bar line
    assert float(r.tracker().acts.acts["enc.0"][0, 0, 0]) == 11.0


def test_a_loop_without_activations_carries_none():
    from earengine.streams.position import Position

    assert Position(0.0, 0.5, 2.0, key=3).acts is None
    with_acts = Position(0.0, 0.5, 2.0, key=3, acts=ActivationSet(3, 3, 0.0, {}))
    assert with_acts == Position.from_dict(with_acts.to_dict())  # the set is what it refers to, not its value
