"""The CPC loss: chance level, a perfect predictor, and the two contrast sets."""

import math

import pytest
import torch

from earengine.ear.cpc import CPCConfig, CPCHead
from earengine.errors import ConfigError


def _head(sat, k=4, gap=2, ctx=8, enc=12):
    head = CPCHead(ctx, enc, CPCConfig(prediction_steps=k, prediction_gap=gap, score_across_time=sat))
    # The predictors start at zero (chance level); most tests want them random.
    torch.nn.init.normal_(head.predictor.weight, generator=torch.Generator().manual_seed(9))
    return head


def test_predictors_start_at_zero():
    head = CPCHead(8, 12, CPCConfig())
    assert head.predictor.weight.abs().sum() == 0


@pytest.mark.parametrize("sat", [True, False])
def test_zero_predictor_is_exactly_chance(sat):
    """All scores equal: loss = log(number of candidates)."""
    batch, k = 5, 4
    head = _head(sat, k=k)
    torch.nn.init.zeros_(head.predictor.weight)
    g = torch.Generator().manual_seed(0)
    z, c = torch.randn(batch, 12, 40, generator=g), torch.randn(batch, 8, 10, generator=g)
    ends = torch.arange(3, 40, 4)
    result = head(z, c, ends)
    candidates = batch * k if sat else batch
    assert result.loss.item() == pytest.approx(math.log(candidates), rel=1e-6)
    # Which contexts count: their targets (end + gap + 1 ... end + gap + k) fit in 40 steps.
    assert result.n_contexts == int(((ends + 2 + 4) <= 39).sum())


@pytest.mark.parametrize("sat", [True, False])
def test_perfect_predictions_give_full_accuracy_and_near_zero_loss(sat):
    batch, k, gap, enc = 4, 3, 1, 64
    head = _head(sat, k=k, gap=gap, ctx=8, enc=enc)
    g = torch.Generator().manual_seed(1)
    c = torch.randn(batch, 8, 1, generator=g)
    ends = torch.tensor([5])
    n_steps = 5 + gap + k + 1
    with torch.no_grad():
        pred = head.predictor(c[:, :, 0]).view(batch, k, enc)
    z = torch.randn(batch, enc, n_steps, generator=g)
    # Put a scaled copy of every prediction where it belongs: the true candidate wins by far.
    for kk in range(k):
        z[:, :, 5 + gap + 1 + kk] = 50 * pred[:, kk] / pred[:, kk].norm(dim=-1, keepdim=True)
    result = head(z, c, ends)
    assert result.accuracy.item() == 1.0
    assert result.loss.item() < 0.05
    # Shuffling the targets across the batch makes the task fail: the test can tell.
    shuffled = z[[1, 2, 3, 0]]
    assert head(shuffled, c, ends).accuracy.item() < 0.5


def test_gradients_flow_to_contexts_and_targets():
    head = _head(True)
    g = torch.Generator().manual_seed(2)
    z = torch.randn(3, 12, 30, generator=g, requires_grad=True)
    c = torch.randn(3, 8, 8, generator=g, requires_grad=True)
    head(z, c, torch.arange(3, 30, 4)[:8]).loss.backward()
    assert z.grad.abs().sum() > 0 and c.grad.abs().sum() > 0 and head.predictor.weight.grad.abs().sum() > 0


def test_clip_too_short_for_the_horizon_is_one_line():
    head = _head(True, k=16, gap=4)
    with pytest.raises(ConfigError) as info:
        head(torch.randn(2, 12, 20), torch.randn(2, 8, 5), torch.arange(3, 20, 4))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("bad", [{"prediction_steps": 0}, {"prediction_gap": -1}, {"prediction_steps": 2.5}])
def test_bad_cpc_config(bad):
    with pytest.raises(ConfigError):
        CPCConfig(**bad)


def test_cpc_config_round_trip():
    cfg = CPCConfig(prediction_steps=7, prediction_gap=0, score_across_time=False)
    assert CPCConfig.from_dict(cfg.to_dict()) == cfg
