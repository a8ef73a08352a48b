"""The pyo gradient voices on pyo's offline server: pitch, timbre per run, cue, steps, no clicks."""

import math

import numpy as np
import pytest
import soundfile as sf

from earengine.params import default_registry
from earengine.sonify.receiver import SonReceiver
from earengine.sonify.timbre import CUE_NOTE_S, CUE_NOTES_HZ
from earengine.synth.server import AudioServer
from earengine.synth.voices import GradientVoices
from earengine.units import db_to_amp
from tests.helpers.offline import OfflineRig, rig_maker

pytest.importorskip("pyo")

SR = 44100


class Rig(OfflineRig):
    """Voices and receiver on an offline server, rendering into a WAV read back at the end."""

    defaults = {"/son/scale": "off", "/son/register_spread": 0.0, "/son/pan_spread": 0.0, "/son/loudness": "flat"}

    def build(self):
        self.voices = GradientVoices(self.audio, self.registry)
        self.receiver = SonReceiver(self.registry, self.voices)

    def parts(self):
        return [self.receiver, self.voices]


@pytest.fixture
def rig(tmp_path):
    yield from rig_maker(Rig, tmp_path)


def spectrum(x):
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return np.fft.rfftfreq(x.size, 1 / SR), spec


def level_at(freqs, spec, f, width=8.0):
    return spec[np.abs(freqs - f) < width].max()


def test_a_frame_sounds_at_its_mapped_pitches(rig):
    r = rig(**{"/son/voicing": "simultaneous", "/son/rest": 0.0, "/son/hold": True})
    r.receiver.begin("a", 2)
    r.receiver.frame("a", 0, [1e-3, 1.0])  # the bottom of the range, and half way up
    r.render(1.5)
    t = r.voices.slots[0].current
    x = r.finish()
    assert t is not None and t.freq_hz == pytest.approx((220.0, 220.0 * 2**1.5))
    freqs, spec = spectrum(x[SR // 2 :, 0])
    top2 = sorted(freqs[np.argsort(spec)[-2:]])
    assert top2[0] == pytest.approx(220.0, abs=2.0)
    peaks = [freqs[np.argmax(np.where(np.abs(freqs - f) < 30, spec, 0))] for f in t.freq_hz]
    assert peaks == pytest.approx(list(t.freq_hz), abs=2.0)
    assert np.all(np.isfinite(x)) and np.abs(x).max() <= db_to_amp(-12.0)


def test_two_runs_sound_together_each_with_its_own_timbre(rig):
    r = rig(**{"/son/voicing": "simultaneous", "/son/rest": 0.0, "/son/hold": True})
    r.receiver.begin("sine-run", 1)
    r.receiver.begin("triangle-run", 1)
    r.receiver.frame("sine-run", 0, [1e-3])      # 220 Hz, sine
    r.receiver.frame("triangle-run", 0, [1e3])   # 1760 Hz, triangle: odd harmonics
    r.render(1.5)
    x = r.finish()[SR // 2 :, 0]
    freqs, spec = spectrum(x)
    assert level_at(freqs, spec, 220.0) > 0.3 * spec.max() and level_at(freqs, spec, 1760.0) > 0.3 * spec.max()
    third_of_sine = level_at(freqs, spec, 660.0)
    third_of_triangle = level_at(freqs, spec, 5280.0)
    assert third_of_triangle > 20 * third_of_sine
    assert third_of_triangle > 0.05 * level_at(freqs, spec, 1760.0)


def test_without_hold_a_step_with_no_new_frame_is_silent(rig):
    r = rig(**{"/son/step_ms": 100.0, "/son/rest": 0.0, "/son/voicing": "simultaneous"})
    r.receiver.begin("a", 1)
    r.receiver.frame("a", 0, [1.0])
    r.render(1.0)
    x = r.finish()[:, 0]
    rms = [np.sqrt(np.mean(x[i : i + 2205] ** 2)) for i in range(0, x.size - 2205, 2205)]
    loud = [i for i, v in enumerate(rms) if v > 1e-3]
    assert loud and max(loud) <= 6  # one step of 100 ms (plus its release), then silence
    assert rms[-1] < 1e-6


def test_sequential_voicing_plays_layers_in_turn_on_the_step_clock(rig):
    r = rig(**{"/son/step_ms": 400.0, "/son/rest": 0.2, "/son/hold": True, "/son/octaves": 4.0})
    r.receiver.begin("a", 4)
    r.receiver.frame("a", 0, [1e-3, 1e-1, 1e1, 1e3])
    r.render(2.5)
    t = r.voices.slots[0].current
    x = r.finish()[SR // 2 :, 0]
    hop, win, period = SR // 100, SR // 50, 40  # 10 ms hops; a step is 40 hops
    times = {k: [] for k in range(4)}
    silent = 0
    for i in range((x.size - win) // hop):
        seg = x[i * hop : i * hop + win]
        if np.sqrt(np.mean(seg**2)) < 1e-3:
            silent += 1
            continue
        freqs, spec = spectrum(seg)
        f = freqs[np.argmax(spec)]
        k = int(np.argmin([abs(math.log2(f / g)) for g in t.freq_hz]))
        times[k].append(i % period)
    # each layer sounds a fifth of the step (8 hops) after the one before, and the rest is silent
    centre = {k: math.degrees(np.angle(np.mean(np.exp(2j * np.pi * np.array(v) / period)))) / 360 * period
              for k, v in times.items()}
    for k in range(1, 4):
        gap = (centre[k] - centre[k - 1]) % period
        assert gap == pytest.approx(8.0, abs=1.5), (k, centre)
    steps = (x.size - win) // hop / period
    assert all(len(v) >= 5 * steps for v in times.values()), {k: len(v) for k, v in times.items()}
    assert silent >= 4 * steps  # the 80 ms rest holds about five silent 20 ms windows per step


def test_nan_sounds_the_cue_and_the_output_stays_finite(rig):
    r = rig(**{"/son/hold": True})
    r.receiver.begin("a", 2)
    r.receiver.frame("a", 0, [1.0, 1.0])
    r.render(0.3)
    r.receiver.frame("a", 1, [math.nan, math.inf])
    r.render(0.6)
    assert r.voices.cues == 1
    x = r.finish()
    assert np.all(np.isfinite(x))
    start = int(0.3 * SR)
    first = x[start + 512 : start + int(CUE_NOTE_S * SR), 0]
    freqs, spec = spectrum(first)
    assert level_at(freqs, spec, CUE_NOTES_HZ[0]) > 0.5 * spec.max()


def test_voices_do_not_click(rig):
    r = rig(**{"/son/step_ms": 60.0, "/son/voicing": "sequential"})
    r.receiver.begin("a", 4)
    rng = np.random.default_rng(1)
    top_hz = 0.0
    for step in range(40):
        norms = np.exp(rng.normal(0, 2, 4))
        r.receiver.frame("a", step, norms)
        r.render(0.06)
        if r.voices.slots[0].current is not None:
            top_hz = max(top_hz, max(r.voices.slots[0].current.freq_hz))
    x = r.finish()
    amp = db_to_amp(-12.0)
    # every voice moving at the highest pitch heard, plus a gate opening over 1 ms at most
    bound = 4 * amp * (2 * math.pi * top_hz / SR + 1.0 / (0.001 * SR))
    assert np.abs(np.diff(x, axis=0)).max() <= bound


def test_a_tempo_division_puts_steps_on_the_engine_clocks_grid(tmp_path):
    from earengine.clock.grid import BarClock

    registry = default_registry()
    registry.update({"/son/division": "1/16", "/clock/bpm": 120.0, "/son/rest": 0.5, "/son/hold": True,
                     "/son/voicing": "sequential", "/son/scale": "off"})
    audio = AudioServer("offline", sr=SR)
    audio.start()
    clock = BarClock(sr=SR, bpm=120.0, beats_per_bar=4)
    audio.add_callback(lambda: clock.tick(audio.buffersize))  # as the loop player does, first
    path = tmp_path / "grid.wav"
    audio.record(str(path))
    audio.render(int(0.33 * SR))  # the voices start off the clock's grid…
    voices = GradientVoices(audio, registry, clock=clock)
    receiver = SonReceiver(registry, voices)
    receiver.begin("a", 1)
    receiver.frame("a", 0, [1.0])
    audio.render(int(3.5 * SR))  # …and meet it at the bar line at 2 s
    audio.stop_recording()
    receiver.close()
    voices.close()
    audio.close()
    x, _ = sf.read(str(path), dtype="float64", always_2d=True)
    env = np.abs(x[:, 0])
    hop = 64
    frames = np.array([env[i : i + hop].max() for i in range(0, env.size - hop, hop)])
    on = np.flatnonzero((frames[1:] > 0.02) & (frames[:-1] <= 0.02)) * hop
    sixteenth = 0.125 * SR  # 5512.5 samples at 120 BPM
    off_grid = np.abs((on + sixteenth / 2) % sixteenth - sixteenth / 2)
    before, after = off_grid[on < 2 * SR], off_grid[on > 2 * SR + 256]
    assert before.size >= 10 and after.size >= 10
    assert before.min() > 1000  # free-running from where they started
    assert after.max() <= 256 + 2 * hop, after  # on the grid, within a buffer


def test_the_local_shorthand_opens_the_synth_sink(monkeypatch):
    from earengine.sonify.sinks import open_sink
    from earengine.synth import local

    monkeypatch.setattr(local.LocalSynthSink.__init__, "__defaults__", ("offline", ))  # no device in tests
    sink = open_sink("local")
    try:
        assert isinstance(sink, local.LocalSynthSink) and sink.audio.mode == "offline"
    finally:
        sink.close()


def test_local_synth_sink_sonifies_a_loop_with_no_engine(tmp_path):
    import torch

    from earengine.sonify.capture import GradientSonifier
    from earengine.synth.local import LocalSynthSink

    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    g = torch.Generator().manual_seed(0)
    sink = LocalSynthSink("offline", values={"/son/hold": True})
    try:
        path = tmp_path / "local.wav"
        sink.audio.record(str(path))
        with GradientSonifier(net, sink=sink, run="local") as son:
            for _ in range(5):
                net.zero_grad()
                net(torch.randn(3, 4, generator=g)).sum().backward()
                son.step()
            sink.audio.render(SR // 2)
            assert sink.receiver.counts["frames"] == 5
        assert "local" not in sink.receiver.runs
        sink.audio.stop_recording()
    finally:
        sink.close()
    x, _ = sf.read(str(path))
    assert np.all(np.isfinite(x)) and np.abs(x).max() > 0.01
