"""What the worker publishes for the streams, with a real (tiny) ear: the loop's activations as it
is heard while repeating, the neurons the target reads, and their trip through shared memory."""

import numpy as np
import pytest
import torch

from earengine.optvis.objectives import Channels, Layer, Neuron, Region, Surprise
from earengine.streams.activations import ActivationBuffer, ActivationPublisher
from earengine.viz.frames import loop_activations, target_mask

HOP_STEP = 4096  # samples per encoding step: loops of whole steps line up across repetitions


@pytest.fixture(scope="module")
def ear(tiny_ear):
    return tiny_ear


def loop(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 44100
    return (0.3 * torch.sin(2 * torch.pi * 330 * t) * (t * 4 % 1 < 0.5) + 0.01 * torch.randn(n, generator=g)).float()


def test_loop_activations_are_the_last_repetition_as_heard_while_looping(ear):
    x = loop(20 * HOP_STEP)
    alone = loop_activations(ear, x, context=0)
    once = loop_activations(ear, x, context=1)
    twice = loop_activations(ear, x, context=2)
    with torch.no_grad():
        direct = ear(x[None, :])
    shapes = ear.tap_shapes(x.numel())
    for tap, a in alone.items():
        want = direct[tap][0]
        assert np.array_equal(a, (want if want.dim() == 3 else want[:, None, :]).numpy())
        assert once[tap].shape == a.shape and once[tap].shape[-1] == shapes[tap][-1]
    # the encoder hears less than a loop: after one repetition of context it has settled
    for tap in ("scaleogram", "enc.3", "enc.7"):
        assert np.abs(once[tap] - twice[tap]).max() <= 1e-3 * np.abs(once[tap]).max(), tap  # float32 noise
    # the context model hears about 4 s: at the loop's start it now hears the loop's end, not silence
    assert np.abs(once["ar.8"][..., :4] - alone["ar.8"][..., :4]).max() > 1e-2 * np.abs(once["ar.8"]).max()


def test_the_mask_marks_exactly_the_neurons_a_target_reads(ear):
    shapes = {t: (s[0], s[1] if len(s) == 3 else 1, s[-1]) for t, s in ear.tap_shapes(20 * HOP_STEP).items()}
    c, f, _ = shapes["enc.5"]
    m = target_mask(Channels("enc.5", 1, 2), shapes)
    assert set(m) == {"enc.5"}
    assert m["enc.5"][1:3].all() and not m["enc.5"][[0] + list(range(3, c))].any()
    m = target_mask(Neuron("enc.5", 3, 2), shapes)
    assert m["enc.5"].sum() == 1 and m["enc.5"][3, 2]
    m = target_mask(Region("enc.5", channel=0.25, channel_width=0.5, pitch=0.5, pitch_width=0.2, time_width=0.3), shapes)
    rows = np.flatnonzero(m["enc.5"].any(0))
    assert m["enc.5"].any(1).sum() == c // 2 and 0 < rows.size < f and abs(rows.mean() - (f - 1) / 2) <= 1
    m = target_mask(Layer("ar.3") + 0.5 * Channels("enc.2", 0, 0), shapes)
    assert m["ar.3"].all() and m["ar.3"].shape == (shapes["ar.3"][0], 1)
    assert m["enc.2"][0].all() and not m["enc.2"][1:].any()
    m = target_mask(Surprise(), shapes)  # cannot be evaluated without predictors: its whole taps
    assert m["enc.7"].all() and m["ar.8"].all()


def test_published_sets_survive_shared_memory_and_a_small_buffer_asks_for_more(ear):
    from earengine.optvis.dream import Dreamer
    from earengine.params import default_registry

    settings = default_registry().snapshot()
    settings.update({"/loop/bars": 1, "/clock/bpm": 240.0, "/target/spec": "enc.5:1-2"})
    dreamer = Dreamer(ear, settings)
    dreamer.reset("noise")
    dreamer.step()
    taps = ear.tap_names()
    want = loop_activations(ear, dreamer.waveform_tensor().detach(), context=1)
    need = ActivationBuffer.needed(want, target_mask(dreamer.objective, {t: a.shape for t, a in want.items()}))
    small = ActivationBuffer(need // 2)
    try:
        publisher = ActivationPublisher(small.name)
        assert publisher.publish(dreamer, step=1, loss=0.5) == need  # too small: says how much it needs
        assert publisher.publish(dreamer, step=1, loss=0.5) is None  # and says it once
        assert small.read(1, taps=taps) is None
        publisher.close()
    finally:
        small.close()
    buf = ActivationBuffer(need)
    try:
        publisher = ActivationPublisher(buf.name)
        assert publisher.publish(dreamer, step=1, loss=0.5) is None
        dreamer.step()
        assert publisher.publish(dreamer, step=2, loss=0.25) is None
        first, second = buf.read(1, taps=taps, key=11), buf.read(2, taps=taps)
        # both slots are readable: the engine finds the set of the loop it was handed
        assert first.step == 1 and second.step == 2 and first.key == 11 and second.loss == 0.25
        for tap, a in loop_activations(ear, dreamer.waveform_tensor().detach(), context=1).items():
            assert np.array_equal(second.acts[tap], a)
        assert set(second.mask) == {"enc.5"} and second.mask["enc.5"][1:3].all() and not second.mask["enc.5"][3:].any()
        assert buf.read(3, taps=taps) is None
        publisher.close()
    finally:
        buf.close()
