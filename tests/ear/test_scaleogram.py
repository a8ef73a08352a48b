"""Physics and contract tests of the constant-Q scaleogram."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from earengine.errors import ConfigError, ParameterError
from earengine.ear.scaleogram import (
    Scaleogram,
    ScaleogramConfig,
    bin_frequencies_hz,
    reference_magnitude,
    relative_error,
)

SR = 44100


@pytest.fixture(scope="module")
def paper() -> Scaleogram:
    return Scaleogram(ScaleogramConfig())


def tensor(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.atleast_2d(x), dtype=torch.float32)


def steady_magnitude(s: Scaleogram, x: np.ndarray) -> np.ndarray:
    """Per-bin magnitude averaged over frames far from both ends of the signal."""
    mag = s.magnitude(tensor(x))[0].numpy()
    n = mag.shape[-1]
    return mag[:, n // 3: 2 * n // 3].mean(axis=-1)


# ---------------------------------------------------------------- tones land in their bins
@pytest.mark.parametrize("k", [0, 30, 75, 120, 170, 215])
def test_sine_peaks_in_its_bin_and_leaks_little(paper: Scaleogram, k: int) -> None:
    freq = bin_frequencies_hz(paper.config)[k]
    t = np.arange(2 * SR) / SR
    mag = steady_magnitude(paper, 0.5 * np.sin(2 * np.pi * freq * t))
    assert mag.argmax() == k
    # A sine of amplitude a at a bin centre has |X| = a / 2 with unit-L1 kernels.
    # (The top bins also hear the sine's mirror image beyond Nyquist, 0.4% at bin 215.)
    assert mag[k] == pytest.approx(0.25, rel=1e-3 if k < 200 else 1e-2)
    db = 20 * np.log10(mag / mag[k] + 1e-30)
    # filter_scale 0.43 makes wide filters: two bins away is only a few dB down (-4.0 / -4.5 dB).
    for j in (k - 2, k + 2):
        if 0 <= j < len(mag):
            assert db[j] < -3.5
    # Half an octave (12 bins) and more away the Hann sidelobes are below -45 dB (-49.3 dB at most).
    far = np.abs(np.arange(len(mag)) - k) >= 12
    assert db[far].max() < -45


@pytest.mark.parametrize("k", [20, 100, 190])
def test_narrow_filters_leak_below_30_db_two_bins_away(k: int) -> None:
    s = Scaleogram(ScaleogramConfig(filter_scale=1.0))
    freq = bin_frequencies_hz(s.config)[k]
    t = np.arange(2 * SR) / SR
    mag = steady_magnitude(s, 0.5 * np.sin(2 * np.pi * freq * t))
    assert mag.argmax() == k
    # With filter_scale=1 the Hann main lobe ends two bins away: -35.7 dB above, -46.7 dB below.
    assert 20 * np.log10(mag[k + 2] / mag[k]) < -30
    assert 20 * np.log10(mag[k - 2] / mag[k]) < -30


def test_click_is_localised_at_its_frame(paper: Scaleogram) -> None:
    hop = paper.config.hop_length
    frame = 40
    x = np.zeros(100 * hop)
    x[frame * hop] = 1.0
    mag = paper.magnitude(tensor(x))[0].numpy()
    energy = (mag ** 2).sum(axis=0)
    assert energy.argmax() == frame
    # Every bin, long kernels included, peaks at the click's frame.
    assert (mag.argmax(axis=-1) == frame).all()
    # Short (high) kernels have no energy two frames away.
    assert mag[150:, [frame - 2, frame + 2]].max() < 1e-6 * mag[150:, frame].max()


# ---------------------------------------------------------------- silence and gradients
@pytest.mark.parametrize("phase", [False, True])
def test_silence_is_finite_and_has_finite_gradient(phase: bool) -> None:
    s = Scaleogram(ScaleogramConfig(phase_channel=phase))
    x = torch.zeros(2, 8 * 1024, requires_grad=True)
    y = s(x)
    assert y.shape == (2, s.n_channels, 216, 8)
    assert torch.isfinite(y).all()
    assert (y[:, 0] == s.silence_value).all()
    if phase:
        assert (y[:, 1] == 0).all()
    (y * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_gradient_near_silence_is_bounded() -> None:
    # A dream may start from near-silence: the phase channel must not blow the gradient up there.
    s = Scaleogram(ScaleogramConfig(phase_channel=True))
    x = (1e-7 * torch.randn(1, 16 * 1024, generator=torch.Generator().manual_seed(5))).requires_grad_(True)
    y = s(x)
    assert torch.isfinite(y).all()
    y[:, 1].sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().max() < 1e6


def test_gradient_matches_finite_difference_of_the_reference() -> None:
    cfg = ScaleogramConfig(fmin_hz=110.0, n_bins=96, hop_length=512)
    s = Scaleogram(cfg)
    rng = np.random.default_rng(7)
    x = 0.3 * rng.standard_normal(32 * 512)
    v = rng.standard_normal(x.shape)
    xt = tensor(x).requires_grad_(True)
    s.complex(xt).abs().square().sum().backward()
    analytic = float((xt.grad[0].double().numpy() * v).sum())
    eps = 1e-4
    energy = lambda z: float((reference_magnitude(z, cfg) ** 2).sum())
    numeric = (energy(x + eps * v) - energy(x - eps * v)) / (2 * eps)
    assert analytic == pytest.approx(numeric, rel=1e-3)


# ---------------------------------------------------------------- the float64 reference
def _signals(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    t = np.arange(n) / SR
    duration = n / SR
    # Exponential sweep from 30 Hz to 20 kHz.
    rate = math.log(20000 / 30) / duration
    sweep = 0.8 * np.sin(2 * np.pi * 30 * (np.exp(rate * t) - 1) / rate)
    tones = sum(a * np.sin(2 * np.pi * f * t + p) for a, f, p in
                [(0.3, 41.0, 0.1), (0.2, 440.0, 1.0), (0.2, 1234.5, 2.0), (0.1, 7000.0, 0.3), (0.1, 18000.0, 0.0)])
    return {"noise": 0.3 * rng.standard_normal(n), "sweep": sweep, "tones": tones}


@pytest.mark.parametrize("name", ["noise", "sweep", "tones"])
def test_matches_float64_reference(paper: Scaleogram, name: str) -> None:
    x = _signals(SR)[name]
    err = relative_error(paper.magnitude(tensor(x))[0], reference_magnitude(x, paper.config))
    assert err < 1e-3


@pytest.mark.parametrize("cfg", [
    ScaleogramConfig(n_bins=120, hop_length=2048, max_decimation=512),
    ScaleogramConfig(n_bins=120, max_decimation=1),                # every bin at the full rate
    ScaleogramConfig(sr=22050, fmin_hz=55.0, n_bins=84, bins_per_octave=12, hop_length=333,
                     filter_scale=1.0),
])
def test_other_configs_match_reference(cfg: ScaleogramConfig) -> None:
    x = _signals(30000)["noise"][None].repeat(2, 0) * np.array([[1.0], [0.5]])
    err = relative_error(Scaleogram(cfg).magnitude(tensor(x)), reference_magnitude(x, cfg))
    assert err < 1e-3


def test_frames_follow_hop(paper: Scaleogram) -> None:
    assert paper.n_frames(176400) == 172          # the paper's 172 frames per 4 s
    assert paper(torch.zeros(1, 3000)).shape[-1] == paper.n_frames(3000) == 2
    with pytest.raises(ParameterError):
        paper.n_frames(1000)
    with pytest.raises(ParameterError):
        paper(torch.zeros(1000))


# ---------------------------------------------------------------- phase channel
def test_phase_channel_is_near_zero_for_a_bin_centre_sine() -> None:
    s = Scaleogram(ScaleogramConfig(phase_channel=True))
    freqs = bin_frequencies_hz(s.config)
    t = np.arange(2 * SR) / SR
    for k in (24, 100, 180):
        y = s(tensor(0.5 * np.sin(2 * np.pi * freqs[k] * t + 0.7)))
        assert y.shape == (1, 2, 216, s.n_frames(2 * SR))
        assert torch.isfinite(y).all()
        assert y[:, 1].abs().max() <= math.pi + 1e-6
        assert y[0, 1, k, 20:-20].abs().max() < 1e-2
        # Neighbours hear the sine's own frequency: their derivative is the offset from their centre.
        for j in (k - 1, k + 1):
            offset = math.remainder(2 * math.pi * (freqs[k] - freqs[j]) * 1024 / SR, 2 * math.pi)
            assert float(y[0, 1, j, 20:-20].mean()) == pytest.approx(offset, abs=1e-2)
    # A sine between bins advances faster or slower than either neighbour's centre frequency.
    f_mid = math.sqrt(freqs[100] * freqs[101])
    y = s(tensor(0.5 * np.sin(2 * np.pi * f_mid * t)))[0, 1, :, 20:-20].mean(-1)
    expected = 2 * math.pi * (f_mid - freqs[100]) * 1024 / SR
    assert float(y[100]) == pytest.approx(math.remainder(expected, 2 * math.pi), abs=1e-2)


# ---------------------------------------------------------------- config contract
def test_config_round_trip() -> None:
    cfg = ScaleogramConfig(fmin_hz=55.0, n_bins=100, phase_channel=True, log_scale=0.1)
    assert ScaleogramConfig.from_dict(cfg.to_dict()) == cfg
    assert ScaleogramConfig.from_dict(ScaleogramConfig().to_dict()) == ScaleogramConfig()


@pytest.mark.parametrize("kwargs, name", [
    ({"fmin_hz": 30000.0}, "fmin_hz"),
    ({"n_bins": 300}, "n_bins"),
    ({"hop_length": 0}, "hop_length"),
    ({"hop_length": -5}, "hop_length"),
    ({"n_bins": 0}, "n_bins"),
    ({"sr": 0}, "sr"),
    ({"sr": -44100}, "sr"),
    ({"log_floor": 0.0}, "log_floor"),
])
def test_bad_configs_raise_one_line_errors(kwargs: dict, name: str) -> None:
    with pytest.raises(ConfigError) as info:
        ScaleogramConfig(**kwargs)
    message = str(info.value)
    assert message.startswith(f"{name}=") and " must be " in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_unknown_config_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="^n_binz=3 must be one of"):
        ScaleogramConfig.from_dict({"n_binz": 3})


# ---------------------------------------------------------------- devices
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch with CUDA)")
def test_cuda_matches_cpu(paper: Scaleogram) -> None:
    x = tensor(_signals(SR)["tones"])
    cpu = paper(x)
    gpu = paper.to("cuda")(x.cuda()).cpu()
    paper.to("cpu")
    assert torch.allclose(cpu, gpu, atol=1e-3)


def test_batch_size_does_not_change_the_result(paper: Scaleogram) -> None:
    # Small and large batches take different FFT routes; each item must come out the same.
    rng = np.random.default_rng(3)
    x = tensor(0.3 * rng.standard_normal((4, 20000)))
    together = paper(x)
    for i in range(4):
        alone = paper(x[i: i + 1])
        assert torch.allclose(alone[0], together[i], atol=1e-4)
