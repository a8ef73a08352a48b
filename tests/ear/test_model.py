"""The ear's layout, taps and causality (tiny widths, seeded)."""

import pytest
import torch

from earengine.ear.model import AR_TABLE, ENCODER_TABLE, Ear, EarConfig
from earengine.errors import ConfigError

TINY = 1 / 64
SR = 44100


def _ear(name="small", width=TINY, seed=0):
    torch.manual_seed(seed)
    return Ear(EarConfig.preset(name, width=width)).eval()


def test_tap_names_in_order():
    ear = _ear()
    names = ear.tap_names()
    assert names == ("scaleogram",) + tuple(f"enc.{i}" for i in range(8)) + tuple(f"ar.{i}" for i in range(9))


@pytest.mark.parametrize("preset", ["small", "paper"])
def test_every_preset_runs_and_shapes_match_the_layout(preset):
    ear = _ear(preset)
    x = 0.1 * torch.randn(2, SR, generator=torch.Generator().manual_seed(1))
    acts = ear.forward_taps(x)
    shapes = ear.tap_shapes(SR)
    assert list(acts) == list(ear.tap_names())
    for name, a in acts.items():
        assert tuple(a.shape) == (2,) + shapes[name], name
        assert torch.isfinite(a).all(), name
    # The frequency axis collapses to one bin at the end of the encoder (216 bins in).
    assert shapes["enc.7"][1] == 1
    assert shapes["scaleogram"][1] == 216
    # Two 2x poolings in each of encoder and autoregressive model: 43 frames -> 11 -> 3.
    assert shapes["enc.7"][2] == -(-ear.scaleogram.n_frames(SR) // 4)
    assert shapes["ar.8"][1] == -(-shapes["enc.7"][2] // 4)


def test_requested_taps_only_and_unknown_tap_refused():
    ear = _ear()
    x = torch.zeros(1, SR)
    acts = ear(x, taps=("enc.5", "ar.8"))
    assert list(acts) == ["enc.5", "ar.8"]
    assert list(ear(x, taps="enc.1")) == ["enc.1"]
    with pytest.raises(ConfigError) as info:
        ear(x, taps=("enc.9",))
    assert "\n" not in str(info.value)


def test_no_hooks_left_behind():
    ear = _ear()
    ear.forward_taps(torch.zeros(1, SR))
    for module in ear.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_paper_size_matches_the_paper_parameter_counts():
    from earengine.ear.cpc import CPCHead

    ear = Ear(EarConfig.preset("paper"))
    enc = sum(p.numel() for p in ear.encoder.parameters())
    ar = sum(p.numel() for p in ear.ar.parameters())
    head = CPCHead(ear.context_channels, ear.encoding_channels, ear.config.cpc)
    pred = sum(p.numel() for p in head.parameters())
    # Immersions: encoder 4.9 M (with a 2-channel input), AR 4.7 M, predictors 2.1 M.
    assert abs(enc - 4.9e6) < 0.05e6
    assert abs(ar - 4.7e6) < 0.05e6
    assert pred == 256 * 512 * 16
    assert ear.config.encoder_channels == tuple(c for c, *_ in ENCODER_TABLE)
    assert ear.config.ar_channels == tuple(c for c, *_ in AR_TABLE)
    assert Ear.ar_receptive_field_steps() == 43
    assert Ear.encoder_receptive_field_frames() == 19


def test_width_scales_channels_with_a_floor_of_one():
    cfg = EarConfig.preset("paper", width=1e-4)
    assert set(cfg.encoder_channels) == {1} and set(cfg.ar_channels) == {1}
    cfg = EarConfig.preset("paper", width=0.5)
    assert cfg.encoder_channels[-1] == 256 and cfg.ar_channels[-1] == 128


@pytest.mark.parametrize("width", [0, -1.0, float("nan"), float("inf")])
def test_nonsense_width_is_one_line(width):
    with pytest.raises(ConfigError) as info:
        EarConfig.preset("small", width=width)
    assert "width=" in str(info.value) and "\n" not in str(info.value)


def test_scaleogram_that_does_not_collapse_is_refused():
    from earengine.ear.scaleogram import ScaleogramConfig

    with pytest.raises(ConfigError, match="n_bins=200"):
        EarConfig(scaleogram=ScaleogramConfig(n_bins=200))


def test_config_round_trip():
    from earengine.ear.cpc import CPCConfig

    cfg = EarConfig(width=0.3, dropout=0.05, cpc=CPCConfig(prediction_steps=8, prediction_gap=2, score_across_time=False))
    assert EarConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError):
        EarConfig.from_dict({**cfg.to_dict(), "depth": 3})


@pytest.mark.parametrize("t", [47, 60, 90])
def test_strictly_causal_in_time(t):
    """Changing scaleogram frames after t changes no output whose receptive field ends by t."""
    ear = _ear(width=1 / 16)
    g = torch.Generator().manual_seed(t)
    n_frames = 120
    s = torch.randn(2, 1, 216, n_frames, generator=g)
    s2 = s.clone()
    s2[..., t + 1 :] += 3.0 * torch.randn(s2[..., t + 1 :].shape, generator=g)
    with torch.no_grad():
        a, b = ear.forward_scaleogram(s), ear.forward_scaleogram(s2)
    ends = ear.tap_end_frames(n_frames)
    for name in ear.tap_names():
        past = ends[name] <= t
        assert past.any() and (~past).any(), name
        assert torch.equal(a[name][..., past], b[name][..., past]), name
        # The perturbation is seen right after t: the test could fail.
        assert not torch.equal(a[name][..., ~past], b[name][..., ~past]), name


def test_the_waveform_path_matches_the_scaleogram_path():
    ear = _ear()
    x = 0.1 * torch.randn(1, SR, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        direct = ear(x, taps=("ar.8",))["ar.8"]
        via = ear.forward_scaleogram(ear.scaleogram(x), taps=("ar.8",))["ar.8"]
    assert torch.equal(direct, via)


def test_gradient_reaches_the_waveform_at_silence():
    """Dreaming starts from silence: the gradient w.r.t. the input must exist and be finite."""
    ear = _ear()
    x = torch.zeros(1, SR, requires_grad=True)
    ear(x, taps=("enc.5",))["enc.5"].pow(2).mean().backward()
    assert torch.isfinite(x.grad).all()
