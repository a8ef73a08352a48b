"""The streaming ear: hop by hop, the same activations as a full forward, at a fraction of its work."""

from __future__ import annotations

import math

import pytest
import torch

from earengine.errors import ParameterError
from earengine.listen.streaming import StreamingEar

SR = 44100


def music(seconds: float, seed: int = 0) -> torch.Tensor:
    """Gated noise bursts over a gliding tone: every tap moves."""
    g = torch.Generator().manual_seed(seed)
    n = int(seconds * SR)
    t = torch.arange(n) / SR
    gate = (torch.sin(2 * math.pi * 1.3 * t) > 0).float()
    return (0.1 * torch.randn(n, generator=g) * gate + 0.3 * torch.sin(2 * math.pi * (220 + 60 * t) * t)).float()


def full(ear, x: torch.Tensor, end: int, frames: int) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return ear(x[end - frames * ear.hop_length:end][None])


def hear(se: StreamingEar, x: torch.Tensor, k: int):
    end = k * se.hop
    return se.hear(x[end - se.tail_samples:end][None], k, lambda n: x[end - n:end][None] if end >= n else None)


def assert_same(got: dict, want: dict) -> None:
    """Equal up to the scaleogram's fast path, whose rounding depends on the input's length: two
    full forwards over 212 and 182 frames differ by up to 1e-2 of a tap's largest value (ar.8);
    a column out of line differs by the order of the values themselves."""
    assert list(got) == list(want)
    for tap, a in got.items():
        b = want[tap][..., -a.shape[-1]:]
        assert a.shape == b.shape, tap
        scale = float(b.abs().max()) or 1.0
        assert float((a - b).abs().max()) <= 1e-2 * scale, tap


def test_every_tap_s_newest_frames_equal_a_full_forward_over_the_field(tiny_ear):
    se = StreamingEar(tiny_ear)
    x = music(8.0)
    field = tiny_ear.receptive_field_frames() + se.lookback + se.show_frames
    start = se.full_frames + 4
    for k in range(start, start + 12):  # every phase of the encoder's steps, twice and more
        got = hear(se, x, k)
        assert_same(got, full(tiny_ear, x, k * se.hop, field))
    # the newest frames cover the window shown
    assert got["scaleogram"].shape[-1] == se.show_frames
    assert se.window_s == pytest.approx(se.show_frames * se.hop / SR)


def test_steps_come_from_earlier_hops_full_fills_only_at_the_start_or_after_a_gap(tiny_ear):
    se = StreamingEar(tiny_ear)
    x = music(12.0, seed=1)
    k0 = se.full_frames + 8
    for k in range(k0, k0 + 40):
        hear(se, x, k)
    assert se.fills == se.step  # one per phase of the grid, then none
    field = tiny_ear.receptive_field_frames() + se.lookback + se.show_frames
    # the listener fell behind by more than a tail covers: filled again, and still exact
    k = k0 + 40 + 3 * se.tail_frames
    got = hear(se, x, k)
    assert se.fills == se.step + 1
    assert_same(got, full(tiny_ear, x, k * se.hop, field))


def test_a_restarted_input_forgets_what_it_kept_and_no_long_input_gives_nothing(tiny_ear):
    se = StreamingEar(tiny_ear)
    x = music(8.0, seed=2)
    k = se.full_frames + 8
    assert hear(se, x, k) is not None
    # grid index went back (the ring restarted): nothing kept is reused; with no long input, None
    assert se.hear(x[: se.tail_samples][None], se.tail_frames, lambda n: None) is None
    with pytest.raises(ParameterError, match="must be"):
        se.hear(torch.zeros(1, 10), k, lambda n: None)
    with pytest.raises(ParameterError, match="multiple"):
        StreamingEar(tiny_ear, show_frames=5)
