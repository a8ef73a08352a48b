"""The grid parameterization: physics of its synthesizer, gradients, transforms, tempo, notes out."""

import math

import numpy as np
import pytest
import torch

from earengine.errors import ParameterError
from earengine.music import NOTE_NAMES, SCALES, midi_to_hz, scale_notes, steps_per_bar
from earengine.optvis.dream import Dreamer, loop_samples
from earengine.optvis.grid import GridShape, GridSynth, Timbre
from earengine.optvis.param import Spectral, grid_shape
from earengine.params import default_registry

SR = 44100


def settings(**values):
    s = default_registry().snapshot()
    s.update({"/loop/bars": 1, "/clock/bpm": 120.0, "/target/layer": "enc.2", "/target/channel_width": 1.0})
    s.update(values)
    return s


def synth(n=2 * SR, *, notes=(57, 60, 64, 69, 81), steps_per_bar=16):
    return GridSynth(GridShape(tuple(notes), steps_per_bar, 1), n_samples=n, sr=SR)


def one(shape, row, step):
    x = torch.zeros(shape.pitches, shape.steps)
    x[row, step] = 1.0
    return x


def no_drums(shape):
    return torch.zeros(3, shape.steps)


def pure(attack_ms=5.0, decay_ms=250.0):
    return Timbre(torch.tensor(0.0), torch.tensor(attack_ms), torch.tensor(decay_ms))


def test_a_note_sounds_at_its_step_within_a_millisecond():
    g = synth(n=4 * SR)
    for row, step in ((0, 0), (2, 5), (4, 9)):
        y = g.render(one(g.shape, row, step), no_drums(g.shape), pure()).numpy()
        onset = step * g.n / g.shape.steps
        first = int(np.argmax(np.abs(y) > 1e-4 * np.abs(y).max()))
        assert abs(first - onset) <= 0.001 * SR, (row, step, first, onset)
        if step:  # and nothing before it (this note does not ring around the loop)
            assert np.abs(y[: int(onset) - 1]).max() < 1e-6


def test_a_note_lands_in_its_pitch_scaleogram_bin(tiny_ear):
    scaleogram = tiny_ear.scaleogram
    cfg = scaleogram.config
    g = synth()
    for row, note in enumerate(g.shape.notes):
        y = g.render(one(g.shape, row, 0), no_drums(g.shape), pure(decay_ms=800.0))
        with torch.no_grad():
            s = scaleogram(y[None])[0, 0].numpy()  # (F, T)
        frames = slice(2, 20)  # while the note rings
        peak = int(np.argmax(s[:, frames].mean(1)))
        expected = cfg.bins_per_octave * math.log2(midi_to_hz(note) / cfg.fmin_hz)
        assert abs(peak - expected) <= 1.0, (note, peak, expected)


def test_gradients_reach_every_note_drum_and_timbre_value(tiny_ear):
    d = Dreamer(tiny_ear, settings(**{"/clock/bpm": 240.0}))
    loss, _, _ = d.evaluate()
    loss.backward()
    p = d.param
    for name, t in (("notes", p.notes), ("drums", p.drums), ("timbre", p.timbre_raw)):
        assert t.grad is not None and bool(torch.all(t.grad != 0)), name
    assert p.notes.grad.shape == (p.shape.pitches, p.shape.steps)


def _above(y: np.ndarray, hz: float) -> float:
    """Share of a loop's energy above ``hz`` (the loop's own spectrum: circular, so a jump at the
    seam would show as broadband energy)."""
    p = np.abs(np.fft.rfft(y)) ** 2
    f = np.fft.rfftfreq(y.size, 1 / SR)
    return float(p[f > hz].sum() / p.sum())


def test_loop_wrap_and_note_boundaries_are_click_free():
    g = synth(n=SR)  # 1 s: notes ring across the loop's end and into each other
    strengths = torch.zeros(g.shape.pitches, g.shape.steps)
    strengths[:, ::3] = 1.0
    strengths[2, -1] = 1.0  # the last step rings on past the wrap
    timbre = Timbre(torch.tensor(0.9), torch.tensor(2.0), torch.tensor(800.0))  # brightest, sharpest
    y = g.render(strengths, no_drums(g.shape), timbre).numpy()
    top = max(g.shape.notes)
    # the highest partial is 8 × 1 kHz: the whole loop, seam included, has nothing above 12 kHz
    assert midi_to_hz(top) * 8 < 12000
    assert _above(y, 12000) < 1e-7
    # the same measure hears a click: a hard cut at a note boundary
    clicky = y.copy()
    cut = SR // 4 + int(np.argmax(np.abs(y[SR // 4: 3 * SR // 4])))
    clicky[cut:] = 0.0
    assert _above(clicky, 12000) > 1e-5
    # the largest sample-to-sample step anywhere, across the wrap too, is that of the tones themselves
    jumps = np.abs(np.diff(np.concatenate([y, y[:1]])))
    assert jumps.max() < 2 * math.pi * midi_to_hz(top) * 8 / SR * np.abs(y).max() * 2


def test_drum_hits_have_their_energy_where_their_voice_says():
    g = synth()
    shares = {}
    for voice in range(3):
        drums = torch.zeros(3, g.shape.steps)
        drums[voice, 4] = 1.0
        y = g.render(torch.zeros(g.shape.pitches, g.shape.steps), drums, pure()).numpy()
        onset = 4 * g.n / g.shape.steps
        first = int(np.argmax(np.abs(y) > 1e-4 * np.abs(y).max()))
        assert abs(first - onset) <= 0.001 * SR
        p = np.abs(np.fft.rfft(y)) ** 2
        f = np.fft.rfftfreq(y.size, 1 / SR)
        shares[voice] = {band: float(p[(f >= lo) & (f < hi)].sum() / p.sum())
                         for band, (lo, hi) in {"low": (0, 200), "mid": (150, 8000), "high": (6000, 22050)}.items()}
    assert shares[0]["low"] > 0.8  # kick
    assert shares[1]["mid"] > 0.8  # snare
    assert shares[2]["high"] > 0.9  # hats


def test_a_tempo_change_keeps_the_notes_on_their_steps(tiny_ear):
    d = Dreamer(tiny_ear, settings())
    with torch.no_grad():
        d.param.notes.fill_(-8.0)
        d.param.drums.fill_(-8.0)
        d.param.notes[3, 6] = 8.0
    before = d.param.notes.detach().clone()
    d.configure({"/clock/bpm": 100.0})
    assert d.n == loop_samples(bars=1, bpm=100.0, beats_per_bar=4, sr=SR)
    assert torch.equal(d.param.notes.detach(), before)
    alone = (torch.sigmoid(d.param.notes.detach()) > 0.5).float()  # the note, without the faint rest
    y = d.param.synth.render(alone, torch.zeros(3, 16), d.param.timbre()).detach().numpy()
    onset = 6 * d.n / 16
    first = int(np.argmax(np.abs(y) > 1e-4 * np.abs(y).max()))
    assert abs(first - onset) <= 0.001 * SR


def test_copies_move_by_whole_steps_and_scale_degrees(tiny_ear):
    d = Dreamer(tiny_ear, settings(**{"/opt/batch": 4, "/grid/transpose": 2}))
    _, _, view = d.evaluate()
    steps = view.shifts * d.param.steps
    assert torch.allclose(steps, steps.round())
    g = d.param
    with torch.no_grad():
        g.notes.fill_(-8.0)
        g.notes[4, 0] = 8.0
    copies = g.views(8, torch.Generator().manual_seed(3))
    assert torch.allclose(copies[0], g.waveform())
    # each copy is the loop with its note on another row of the scale, never off it
    pitches = set()
    for y in copies.detach().numpy():
        p = np.abs(np.fft.rfft(y[: SR // 4]))
        pitches.add(round(12 * math.log2(np.fft.rfftfreq(SR // 4, 1 / SR)[np.argmax(p)] / 440.0)) + 69)
    assert len(pitches) > 1 and pitches <= set(g.shape.notes)


def test_grid_rises_and_stays_music(tiny_ear):
    d = Dreamer(tiny_ear, settings(**{"/clock/bpm": 240.0}))
    first = d.target_score()
    for _ in range(8):
        d.step()
    assert d.target_score() > first
    x = d.waveform()
    assert np.all(np.isfinite(x)) and np.abs(x).max() <= 1.0
    p = np.abs(np.fft.rfft(x)) ** 2
    assert np.exp(np.mean(np.log(p + 1e-12))) / p.mean() < 0.05  # far from noise


def test_musical_settings_come_from_the_one_scale_table():
    s = settings(**{"/grid/key": "C", "/grid/scale": "major", "/grid/register": 60, "/grid/octaves": 1})
    shape = grid_shape(s)
    assert shape.notes == (60, 62, 64, 65, 67, 69, 71, 72)
    assert shape.notes == scale_notes("C", "major", lowest_midi=60, count=8)
    reg = default_registry()
    assert reg.spec("/son/scale").choices == tuple(SCALES)  # the sonifier offers every scale of the table
    assert set(reg.spec("/grid/scale").choices) == set(SCALES) - {"off"}
    assert reg.spec("/son/root").choices == reg.spec("/grid/key").choices == NOTE_NAMES


@pytest.mark.parametrize("address, value", [("/grid/key", "H"), ("/grid/scale", "lydian_dominant")])
def test_unknown_key_or_scale_is_refused(address, value):
    reg = default_registry()
    with pytest.raises(ParameterError, match=address):
        reg.set(address, value)


def test_a_division_that_does_not_divide_the_bar_is_refused():
    from earengine.optvis.params import install_checks

    reg = default_registry()
    install_checks(reg)
    reg.set("/clock/beats_per_bar", 3)
    with pytest.raises(ParameterError, match="must divide the bar"):
        reg.set("/grid/division", "1/2")
    assert reg.get("/grid/division") == "1/16"
    reg.set("/clock/beats_per_bar", 4)
    reg.set("/grid/division", "1/2")
    with pytest.raises(ParameterError, match="beats_per_bar=3"):  # the other way round, too
        reg.set("/clock/beats_per_bar", 3)
    assert reg.get("/clock/beats_per_bar") == 4
    assert steps_per_bar("1/8", beats_per_bar=3) == 6


def test_settings_that_clash_change_nothing_in_the_dreamer(tiny_ear):
    d = Dreamer(tiny_ear, settings())
    with pytest.raises(ParameterError):
        d.configure({"/clock/beats_per_bar": 3, "/grid/division": "1/2"})
    assert d.settings["/clock/beats_per_bar"] == 4 and d.param.steps == 16


def test_pattern_has_the_strong_notes_on_their_steps(tiny_ear):
    d = Dreamer(tiny_ear, settings(**{"/grid/midi_channel": 3, "/grid/note_steps": 2.0}))
    g = d.param
    with torch.no_grad():
        g.notes.fill_(-8.0)
        g.drums.fill_(-8.0)
        g.notes[1, 2] = 8.0
        g.notes[5, 9] = 0.5
        g.drums[0, 0] = 8.0
    p = d.pattern()
    assert [(n.step, n.note, n.channel, n.length_steps) for n in p.notes] == [
        (0, 36, 10, 2.0), (2, g.shape.notes[1], 3, 2.0), (9, g.shape.notes[5], 3, 2.0)]
    loud, soft = p.notes[1], p.notes[2]
    assert loud.velocity > soft.velocity >= 1
    assert (p.steps_per_bar, p.bars) == (16, 1)


def test_spectral_is_pink_by_default():
    x = torch.zeros(SR)
    p = Spectral(x, sr=SR)
    with torch.no_grad():
        p.c.normal_(generator=torch.Generator().manual_seed(0))
    y = p.waveform().detach().numpy()
    power = np.abs(np.fft.rfft(y)) ** 2
    f = np.fft.rfftfreq(SR, 1 / SR)
    low = power[(f >= 100) & (f < 200)].mean()
    high = power[(f >= 1600) & (f < 3200)].mean()
    assert 10 < low / high < 22  # 1/f power: 16 times less four octaves up


def test_a_raw_residual_adds_texture_with_its_own_weight(tiny_ear):
    d = Dreamer(tiny_ear, settings(**{"/grid/residual": 0.1, "/clock/bpm": 240.0}))
    g = d.param
    assert [len(group["params"]) for group in g.groups()] == [3, 1]  # notes, drums, timbre | samples
    loss, _, _ = d.evaluate()
    loss.backward()
    assert g.residual.grad is not None and float(g.residual.grad.abs().max()) > 0
    with torch.no_grad():
        g.residual.fill_(0.5)
        bare = g.synth.render(g.strengths(), g.drum_strengths(), g.timbre())
        bare = bare * (0.9 / bare.abs().max())
    assert torch.allclose(g.waveform().detach(), bare + 0.05, atol=1e-5)


def test_specificity_measures_the_other_channels_of_the_targets_tap():
    from earengine.optvis.objectives import Channels, Layer, View
    from earengine.optvis.specificity import others, split_rise

    acts = torch.arange(8, dtype=torch.float32).reshape(1, 8, 1, 1).expand(2, 8, 3, 4).clone()
    view = View({"enc.1": acts}, {"enc.1": (0, 4)}, torch.zeros(2))
    target = Channels("enc.1", 2, 3)
    assert torch.allclose(others(target, view), torch.full((2,), (0 + 1 + 4 + 5 + 6 + 7) / 6))
    assert torch.allclose(others(Layer("enc.1"), view), torch.zeros(2))  # a whole tap leaves no others
    later = View({"enc.1": acts + torch.tensor([0, 0, 1, 1, 0, 0, 0, 0.0]).reshape(1, 8, 1, 1)}, {"enc.1": (0, 4)},
                 torch.zeros(2))
    assert split_rise(target, view, later) == pytest.approx((1.0, 0.0))


def test_specificity_keeps_the_rest_of_the_tap_down(tiny_ear):
    from earengine.optvis.specificity import split_rise

    for seed in (0, 1, 2):  # what holds on every seed, so on every processor's float kernels
        rises = {}
        for weight in (0.0, 1.0):
            d = Dreamer(tiny_ear, settings(**{"/opt/param": "raw", "/clock/bpm": 400.0, "/target/spec": "enc.4:2-3",
                                              "/target/specificity": weight, "/opt/lr": 0.003, "/opt/seed": seed}))
            d.reset("noise")
            _, _, before = d.clean()
            for _ in range(20):
                d.step()
            d.settle()  # the loop kept, not the last step's untried one
            _, _, after = d.clean()
            rises[weight] = split_rise(d.objective, before, after)
        target, rest = rises[1.0]
        assert target > 0 and target >= 2 * rest, (seed, rises)  # the target rises, twice as much as the rest or more
        assert rest < rises[0.0][1], (seed, rises)  # and the rest of the tap less than without specificity