"""Dreaming on a tiny ear: objectives rise, regularizers do what they say, output stays sane."""

import numpy as np
import pytest
import torch

from earengine.errors import ParameterError
from earengine.optvis import regularizers as R
from earengine.optvis import transforms as T
from earengine.optvis.dream import Dreamer, loop_samples
from earengine.params import default_registry


@pytest.fixture(scope="module")
def ear(tiny_ear):
    return tiny_ear


def settings():
    s = default_registry().snapshot()
    s.update({"/opt/param": "raw", "/loop/bars": 1, "/clock/bpm": 400.0, "/opt/lr": 0.01, "/opt/batch": 2,
              "/target/layer": "enc.2", "/target/channel_width": 1.0})
    return s


def live_neuron(ear, tap):
    """A neuron of ``tap`` that fires on noise (a random ear has dead ReLUs; those cannot rise)."""
    with torch.no_grad():
        a = ear(torch.randn(1, 22050, generator=torch.Generator().manual_seed(5)) * 0.05, taps=(tap,))[tap][0]
    c, r = divmod(int(a.mean(-1).flatten().argmax()), a.shape[1])
    return f"{tap}:{c}@{r}"


def run(ear, steps, **values):
    d = Dreamer(ear, {**settings(), "/opt/lr": 0.003, **values})
    d.reset("noise")
    first = d.target_score()
    for _ in range(steps):
        d.step()
    return d, first, d.settle()


#: The seeds every ascent test holds for. Float results differ between processors (oneDNN picks
#: AVX-512, AVX2 or SSE kernels), so each trajectory differs too: what is asserted holds for all.
SEEDS = (0, 1, 2, 3)


@pytest.mark.parametrize("spec", ["", "enc.2:0", "enc.2:0-1", "neuron", "enc.4", "ar.1", "ar.2"])
def test_every_objective_rises_on_every_seed(ear, spec):
    spec = live_neuron(ear, "enc.3") if spec == "neuron" else spec
    for seed in SEEDS:
        d = Dreamer(ear, {**settings(), "/opt/lr": 0.003, "/target/spec": spec, "/opt/seed": seed})
        d.reset("noise")
        kept = [d.step().target for _ in range(12)]
        # Exact on any machine: a step that lowered the loop's score was taken back, so the score
        # of the loop kept never falls (the raw loop has no penalty of its own to trade against).
        assert all(b >= a for a, b in zip(kept, kept[1:])), (spec, seed, kept)
        assert d.settle() > kept[0], (spec, seed, kept)


def test_a_step_that_lowers_the_score_is_taken_back(ear):
    d = Dreamer(ear, {**settings(), "/target/spec": "enc.2"})
    d.reset("noise")
    start = d.waveform()
    kept = d.step()  # judges the start (the first loop is always kept), then steps
    before = d.waveform()
    # Whatever the step made, put a loop that scores worse than the kept one in its place (the
    # worst of a few plain changes of it), as a step far too long would.
    candidates = [before * 0.2, -before, np.roll(before, before.size // 3), before[::-1].copy()]
    scores = []
    for c in candidates:
        d.param.write(torch.from_numpy(c))
        scores.append(d.target_score())
    worse = candidates[int(np.argmin(scores))]
    assert min(scores) < kept.target
    d.param.write(torch.from_numpy(worse))
    after = d.step()
    assert d.control.taken_back == 1 and d.control.scale == min(d.control.cap, d.control.start * d.control.grow) * d.control.shrink
    assert after.target == kept.target  # the score reported is the loop kept
    np.testing.assert_array_equal(d.waveform(), start)  # back to the loop kept, bit for bit


def test_a_new_target_restarts_the_step(ear):
    d = Dreamer(ear, {**settings(), "/target/spec": "enc.2"})
    d.reset("noise")
    for _ in range(3):
        d.step()
    assert d.control.best is not None
    d.configure({"/target/spec": "enc.4"})
    assert d.control.best is None and d.control.scale == d.control.start
    d.configure({"/opt/lr": 0.004})  # the step's length, not what it is judged by: kept
    assert d.control.best is None


def test_region_time_and_exponent_rise(ear):
    _, first, last = run(ear, 12, **{"/target/time": 0.25, "/target/time_width": 0.3, "/target/exponent": 2.0,
                                     "/opt/algorithm": "adam", "/opt/lr": 0.003})
    assert last > first


def test_spectral_parameterization_rises(ear):
    _, first, last = run(ear, 12, **{"/opt/param": "spectral"})  # the same /opt/lr as raw
    assert last > first


def test_output_finite_and_bounded_even_with_absurd_lr(ear):
    d = Dreamer(ear, {**settings(), "/opt/lr": 1.0, "/opt/grad_norm": False, "/reg/grad_noise": 2.0})
    d.reset("noise")
    for _ in range(5):
        d.step()
        x = d.waveform()
        assert np.all(np.isfinite(x)) and np.abs(x).max() <= 1.0


def test_loop_length_follows_bars_and_tempo(ear):
    d = Dreamer(ear, settings())
    assert d.n == loop_samples(bars=1, bpm=400.0, beats_per_bar=4, sr=44100) == 26460
    d.configure({"/clock/bpm": 240.0})
    assert d.n == d.waveform().size == 44100
    with pytest.raises(ParameterError):
        d.configure({"/target/spec": "enc.9:1"})
    assert d.n == 44100  # refused settings change nothing


def test_seam_penalty_lowers_the_discontinuity(ear):
    def seam(**reg):
        d = Dreamer(ear, {**settings(), "/opt/algorithm": "adam", "/opt/lr": 0.03, **reg})
        rng = np.random.default_rng(0)
        d.reset("file", np.concatenate([np.full(11025, 0.5), np.full(11025, -0.5)]).astype(np.float32)
                + 0.01 * rng.standard_normal(22050).astype(np.float32))
        for _ in range(10):
            d.step()
        return float(R.loop_seam(torch.from_numpy(d.waveform())))

    assert seam(**{"/reg/seam": 100.0}) < 0.5 * seam()


def test_high_frequency_penalty_lowers_energy_above_midband(ear):
    def upper(**reg):
        d = Dreamer(ear, {**settings(), "/target/layer": "enc.1", **reg})
        d.reset("noise")
        for _ in range(10):
            d.step()
        x = d.waveform()
        spectrum = np.abs(np.fft.rfft(x)) ** 2
        return spectrum[spectrum.size // 4:].sum() / spectrum.sum()

    assert upper(**{"/reg/high_freq": 10.0}) < upper()


def test_transforms_are_seeded_and_spare_the_first_copy():
    x = torch.randn(4, 4096)
    a = T.pitch_jitter(x, torch.Generator().manual_seed(1), cents=50)
    b = T.pitch_jitter(x, torch.Generator().manual_seed(1), cents=50)
    assert torch.equal(a, b) and torch.equal(a[0], x[0]) and not torch.equal(a[1], x[1])
    s = torch.randn(4, 1, 32, 40)
    m = T.time_mask(s, torch.Generator().manual_seed(2), width=0.25, fill=-1.0)
    assert torch.equal(m, T.time_mask(s, torch.Generator().manual_seed(2), width=0.25, fill=-1.0))
    assert torch.equal(m[0], s[0]) and (m[1] == -1.0).sum() == 32 * 10
    f = T.freq_mask(s, torch.Generator().manual_seed(3), width=0.25, fill=-1.0)
    assert torch.equal(f[0], s[0]) and (f[2] == -1.0).sum() == 8 * 40


def test_dream_steps_are_reproducible(ear):
    a = Dreamer(ear, {**settings(), "/reg/pitch_cents": 30.0, "/reg/time_mask": 0.2})
    b = Dreamer(ear, {**settings(), "/reg/pitch_cents": 30.0, "/reg/time_mask": 0.2})
    for d in (a, b):
        d.reset("noise")
        d.step()
        d.step()
    assert np.array_equal(a.waveform(), b.waveform())


def test_a_dream_on_the_default_ear_raises_its_target():
    from earengine.ear.checkpoint import load_ear
    from earengine.resources import DEFAULT_EAR

    loaded = load_ear(DEFAULT_EAR)
    s = default_registry().snapshot()  # the shipped defaults: 2 bars at 120 BPM, region target on enc.5
    rises = {}
    for param in ("raw", "grid"):  # grid is the default
        d = Dreamer(loaded.ear, {**s, "/opt/param": param}, stats=loaded.stats, cpc=loaded.cpc)
        d.reset("noise")
        first = d.target_score()
        for _ in range(30):
            d.step()
        rises[param] = d.target_score() - first
        x = d.waveform()
        assert np.all(np.isfinite(x)) and np.abs(x).max() <= 1.0
    # Normalised units (the data's spread is about 1). The shipped ear, trained on real music,
    # moves less in 30 raw steps than the synthetic one did (0.15 against 0.3 and more).
    assert rises["raw"] > 0.1, rises
    assert rises["grid"] > 0.5 * rises["raw"], rises  # music, and the target rises half as much or more


def test_penalties_are_rows_and_only_those_weighted_are_taken():
    reg = default_registry()
    for address in R.PENALTIES:
        reg.spec(address)  # a weight that is not a row would never be set
    s = settings()
    assert R.active(s) == ()  # every weight 0 by default: no penalty is built
    s.update({"/reg/seam": 2.0, "/reg/denoise": 0.5})
    assert [w for w, _ in R.active(s)] == [0.5, 2.0]  # in the table's order


def test_every_kind_of_target_has_an_objective():
    from earengine.optvis.objectives import BUILDERS, parse
    from earengine.optvis.targets import KINDS

    assert set(BUILDERS) == set(KINDS)
    examples = {"layer": "enc.5", "channels": "enc.5:0-3", "neuron": "enc.5:2@4", "surprise": "surprise"}
    assert set(examples) == set(KINDS)
    for kind, text in examples.items():
        assert str(parse(text, taps=("enc.5",))) == text, kind


@pytest.fixture(scope="module")
def shipped():
    from earengine.ear.checkpoint import load_ear
    from earengine.resources import DEFAULT_EAR

    return load_ear(DEFAULT_EAR)


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["enc.5:0-15", "ar.2:0-15"])
def test_the_shipped_ear_dreams_upward_on_every_seed(shipped, spec):
    # The engine's own defaults (notes on the bar grid, 2 bars at 120 BPM), as `make run` dreams.
    base = default_registry().snapshot()
    for seed in SEEDS:
        d = Dreamer(shipped.ear, {**base, "/target/spec": spec, "/opt/seed": seed}, stats=shipped.stats,
                    cpc=shipped.cpc)
        kept = [d.step().target for _ in range(8)]
        assert d.settle() > kept[0], (spec, seed, kept)


def test_mix_toward_a_reference_is_refused_on_a_grid_not_ignored(ear):
    from earengine.optvis.params import MIX_ON_GRID

    with pytest.raises(ParameterError, match="renders its loop from notes"):
        Dreamer(ear, {**settings(), "/opt/param": "grid", "/reg/mix": 0.3})
    d = Dreamer(ear, {**settings(), "/opt/param": "grid"})
    with pytest.raises(ParameterError, match=MIX_ON_GRID):
        d.configure({"/reg/mix": 0.3})
    assert d.settings["/reg/mix"] == 0.0  # refused: nothing changed


def test_the_seam_penalty_acts_on_a_grid_loop(ear):
    # A grid renders its loop: the seam penalty is taken on what it renders, with a gradient to its notes.
    d = Dreamer(ear, {**settings(), "/opt/param": "grid", "/reg/seam": 1000.0})
    loss, score, _ = d.evaluate()
    plain = Dreamer(ear, {**settings(), "/opt/param": "grid"})
    plain_loss, plain_score, _ = plain.evaluate()
    assert float(score.detach()) == pytest.approx(float(plain_score.detach()), rel=1e-5)
    assert float(loss.detach()) > float(plain_loss.detach())  # the seam is in the loss
    loss.backward()
    assert float(d.param.notes.grad.abs().sum()) > 0


def test_a_new_target_is_reached_within_a_bounded_number_of_steps_on_every_seed(ear):
    # The tiny ear on notes (the default parameterization): 20 steps on one target, then a switch
    # to another block of channels of the same tap and 30 steps more. On every seed the new target
    # rises; and on at least half the seeds the first 12 steps make 35 % or more of what the 30
    # make (all four on AVX-512 and AVX2 kernels, 0.47-0.97: the bold, loosened start; under SSE4.1
    # two seeds held for 12 steps and then rose). The shipped ear's seconds and loops, against the
    # old fixed step: bench/responsiveness.py.
    shares = []
    for seed in SEEDS:
        d = Dreamer(ear, {**settings(), "/opt/param": "grid", "/clock/bpm": 240.0, "/target/spec": "enc.4:0-1",
                          "/opt/seed": seed})
        for _ in range(20):
            d.step()
        d.configure({"/target/spec": "enc.4:4-5"})
        kept = [d.step().target for _ in range(30)]
        rise = kept[-1] - kept[0]
        assert rise > 0, (seed, [round(k, 3) for k in kept])
        shares.append((kept[11] - kept[0]) / rise)
    assert sum(share >= 0.35 for share in shares) >= len(SEEDS) / 2, shares


def test_settled_is_zero_after_a_switch_and_near_one_once_settled(ear):
    d = Dreamer(ear, {**settings(), "/target/spec": "enc.2"})
    d.reset("noise")
    stats = [d.step() for _ in range(60)]
    assert stats[-1].settled > 0.8, [round(s.settled, 2) for s in stats]
    d.configure({"/target/spec": "enc.4"})
    assert d.control.settled == 0.0
    assert d.step().settled < 0.1
    # a fixed step (the old way) reports the same figure, from what its steps add
    d.configure({"/opt/step": "fixed"})
    assert d.control.settled == 0.0 and d.step().finite


def test_a_target_beyond_the_taps_channels_is_refused_at_configure(ear):
    # Not at the first step, where the worker would stop on it again and again.
    channels = ear.tap_shapes(26460)["enc.2"][0]
    with pytest.raises(ParameterError, match=f"enc.2 has channels 0-{channels - 1}"):
        Dreamer(ear, {**settings(), "/target/spec": f"enc.2:{channels}-{channels + 3}"})
    d = Dreamer(ear, settings())
    with pytest.raises(ParameterError):
        d.configure({"/target/spec": f"enc.2:0@999"})
    assert d.settings["/target/spec"] == ""


def test_the_loop_given_to_play_is_one_the_dream_kept(ear):
    # A step's result is heard only once the next step has judged it: a step that is taken back
    # never reaches the engine (it would play for a whole bar).
    d = Dreamer(ear, {**settings(), "/target/spec": "enc.2"})
    d.reset("noise")
    start = d.waveform()
    np.testing.assert_array_equal(d.heard(), start)  # nothing judged yet: the loop as it is
    kept = d.step()  # judges the start (kept), then steps to a loop not yet judged
    np.testing.assert_array_equal(d.heard(), start)
    candidate = d.waveform()
    assert not np.array_equal(candidate, start)
    second = d.step()
    if d.control.taken_back:
        np.testing.assert_array_equal(d.heard(), start)
    else:
        np.testing.assert_array_equal(d.heard(), candidate)
    assert second.target >= kept.target
