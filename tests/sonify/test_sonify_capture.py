"""Capture: the norms are the gradients' norms, hooks come and go, AMP and accumulation are right."""

import math

import numpy as np
import pytest
import torch

from earengine.errors import ParameterError
from earengine.sonify.capture import GradientSonifier, layer_groups
from earengine.sonify.frame import GradientFrame
from earengine.sonify.sinks import MemorySink


def make_net(seed=0):
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(4 * 6 * 6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3),
    )
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return net, g


def batch(g, n=5):
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def loss_of(net, x, y):
    return torch.nn.functional.cross_entropy(net(x), y)


def expected(net, groups):
    """Reference: torch.linalg.vector_norm of each layer's gradients, concatenated."""
    out = []
    for _, params in groups:
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        out.append(float(torch.linalg.vector_norm(flat)))
    return np.array(out)


def test_norms_equal_vector_norm_of_each_layers_gradient():
    net, g = make_net()
    sink = MemorySink()
    with GradientSonifier(net, sink=sink, run="ref") as son:
        for _ in range(3):
            net.zero_grad()
            loss_of(net, *batch(g)).backward()
            frame = son.step()
            ref = expected(net, layer_groups(net))
            assert np.allclose(frame.norms, ref, rtol=1e-5)
    assert [f.step for f in sink.frames] == [0, 1, 2]
    assert son.layer_names == ("0", "3", "5")
    assert sink.runs == {"ref": ("0", "3", "5")} and sink.ended == ["ref"]


def test_chosen_layers_and_groups():
    net, g = make_net()
    layers = {"features": ["0"], "head": ["3.weight", "5"]}
    with GradientSonifier(net, sink=MemorySink(), run="g", layers=layers) as son:
        loss_of(net, *batch(g)).backward()
        frame = son.step()
    assert frame.names == ("features", "head")
    assert np.allclose(frame.norms, expected(net, layer_groups(net, layers)), rtol=1e-5)
    single = GradientSonifier(net, sink=MemorySink(), layers=["3.weight", "5.bias"])
    assert np.allclose(single.norms(), [float(net[3].weight.grad.norm()), float(net[5].bias.grad.norm())], rtol=1e-6)
    with pytest.raises(ParameterError, match="neither a module nor a parameter"):
        layer_groups(net, ["nope"])


def test_one_fused_reduction_and_one_host_copy_per_step(monkeypatch):
    net, g = make_net()
    calls = {"foreach": 0, "cpu": 0, "norm": 0}
    real_foreach, real_cpu, real_norm = torch._foreach_norm, torch.Tensor.cpu, torch.Tensor.norm

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    son = GradientSonifier(net, sink=MemorySink())
    loss_of(net, *batch(g)).backward()
    monkeypatch.setattr(torch, "_foreach_norm", counting("foreach", real_foreach))
    monkeypatch.setattr(torch.Tensor, "cpu", counting("cpu", real_cpu))
    monkeypatch.setattr(torch.Tensor, "norm", counting("norm", real_norm))
    son.step()
    son.step()
    assert calls == {"foreach": 2, "cpu": 2, "norm": 0}


def test_backward_hook_takes_one_frame_per_backward_and_is_removed_on_exit():
    net, g = make_net()
    sink = MemorySink()
    with GradientSonifier(net, sink=sink, run="auto", hook="backward") as son:
        assert son.hooks == len(list(net.parameters()))
        for _ in range(3):
            net.zero_grad()
            loss_of(net, *batch(g)).backward()
            assert np.allclose(sink.frames[-1].norms, expected(net, layer_groups(net)), rtol=1e-5)
    assert len(sink.frames) == 3 and son.hooks == 0
    net.zero_grad()
    loss_of(net, *batch(g)).backward()  # no hook left: nothing more arrives
    assert len(sink.frames) == 3
    assert all(not getattr(p, "_post_accumulate_grad_hooks", None) for p in net.parameters())


def test_hooks_are_removed_even_when_training_fails():
    net, g = make_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sink = MemorySink()
    with pytest.raises(RuntimeError, match="boom"):
        with GradientSonifier(net, sink=sink, optimizer=opt):
            raise RuntimeError("boom")
    assert not opt._optimizer_step_pre_hooks
    loss_of(net, *batch(g)).backward()
    opt.step()
    assert sink.frames == [] and sink.ended == ["run"]


def test_optimizer_hook_hears_the_accumulated_gradient_once_per_optimizer_step():
    net, g = make_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    sink = MemorySink()
    accumulate = 4
    with GradientSonifier(net, sink=sink, optimizer=opt) as son:
        for step in range(2):
            opt.zero_grad()
            for _ in range(accumulate):
                (loss_of(net, *batch(g)) / accumulate).backward()
            ref = expected(net, layer_groups(net))
            opt.step()
            assert np.allclose(sink.frames[-1].norms, ref, rtol=1e-5)
    assert len(sink.frames) == 2 and son.hooks == 0
    assert not opt._optimizer_step_pre_hooks


def test_under_amp_the_norms_are_those_of_the_unscaled_gradient():
    """bf16 autocast with a GradScaler: read after unscale_ (manual) or in the optimizer hook."""
    net, g = make_net()
    twin, _ = make_net()
    x, y = batch(g, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss_of(twin, x, y).backward()  # the same gradient, never scaled
    ref = expected(twin, layer_groups(twin))

    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    sink = MemorySink()
    with GradientSonifier(net, sink=sink, run="manual") as son:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = loss_of(net, x, y)
        scaler.scale(loss).backward()
        scaled = son.norms()
        scaler.unscale_(opt)
        frame = son.step()
        scaler.step(opt)
        scaler.update()
    assert np.allclose(scaled, ref * 2.0**12, rtol=1e-4)  # before unscale_: 4096 times too loud
    assert np.allclose(frame.norms, ref, rtol=1e-4)

    opt.zero_grad()
    with GradientSonifier(net, sink=sink, run="hooked", optimizer=opt):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = loss_of(net, x, y)
        scaler.scale(loss).backward()
        scaler.step(opt)  # unscales, then steps: the hook sees unscaled gradients
        scaler.update()
    assert np.allclose(sink.frames[-1].norms, ref, rtol=1e-4)


def test_a_nan_gradient_is_flagged_per_layer():
    net, g = make_net()
    sink = MemorySink()
    with GradientSonifier(net, sink=sink) as son:
        loss_of(net, *batch(g)).backward()
        net[3].weight.grad[0, 0] = float("nan")
        net[5].bias.grad[1] = float("inf")
        frame = son.step()
    assert frame.bad == (1, 2)
    assert math.isnan(frame.norms[1]) and math.isinf(frame.norms[2]) and math.isfinite(frame.norms[0])
    assert son.bad_steps == 1


def test_a_layer_without_gradient_counts_as_zero():
    net, g = make_net()
    with GradientSonifier(net, sink=MemorySink()) as son:
        x, y = batch(g)
        net[0].weight.grad = None
        (net[5](torch.randn(2, 16, generator=g)).sum()).backward()
        frame = son.step()
    assert frame.norms[0] == 0.0 and frame.norms[1] == 0.0 and frame.norms[2] > 0.0


def test_every_skips_steps_and_step_numbers_can_be_given():
    net, g = make_net()
    sink = MemorySink()
    with GradientSonifier(net, sink=sink, every=3) as son:
        loss_of(net, *batch(g)).backward()
        got = [son.step() for _ in range(7)]
        son.step(step=1000)
    assert [f.step for f in sink.frames] == [0, 3, 6]
    assert got[1] is None
    assert son.frames == 3


class PacedSink(MemorySink):
    """A real-time sink that sounds one frame every ``step_s`` and notes when frames arrive, on
    ``clock`` (a function of no arguments giving seconds)."""

    def __init__(self, step_s, clock=None):
        super().__init__()
        self.step_s = step_s
        self.clock = clock
        self.arrivals = []

    def sounded_step_s(self, run):
        return self.step_s

    def send(self, frame):
        if self.clock is not None:
            self.arrivals.append(self.clock())
        super().send(frame)


class TrainingClock:
    """The pace's clock, moved by the test: each training step takes ``step_s``, so what the pace
    decides depends on the steps taken, not on how busy the machine is."""

    def __init__(self, step_s):
        self.step_s = step_s
        self.now = 1000.0

    def perf_counter(self):
        return self.now


def test_pace_captures_just_often_enough_for_every_sounded_step(monkeypatch):
    from earengine.sonify import capture

    clock = TrainingClock(0.002)  # a small model: 500 steps a second
    monkeypatch.setattr(capture, "time", clock)  # the pace's only clock read
    net, g = make_net()
    x, y = batch(g)
    sink = PacedSink(0.05, clock=clock.perf_counter)
    with GradientSonifier(net, sink=sink, run="paced") as son:
        for _ in range(250):  # half a second of training
            net.zero_grad()
            loss_of(net, x, y).backward()
            son.step()
            clock.now += clock.step_s
        clock.now += 5.0  # a pause (an evaluation): it counts as one second at most
        son.step()
        assert son.last.step == 250  # the step after a pause is always heard
    gaps = np.diff(sink.arrivals)[:-1]
    assert sink.frames[0].step == 0  # the first step is always heard
    assert son.paced == son.steps - son.frames > 4 * son.frames
    # never closer than a quarter step; within one sounded step, less two training steps and the
    # delivery time (and the training step that crosses that line), so each gets a fresh frame
    longest = 0.05 - 2 * clock.step_s - capture.DELIVERY_S + clock.step_s
    assert np.all(gaps >= 0.25 * 0.05) and np.all(gaps <= longest + 1e-9), gaps
    assert 0.5 / 0.05 <= len(sink.frames) - 1 <= 0.5 / (0.25 * 0.05)
    np.testing.assert_allclose(sink.frames[-1].norms, expected(net, layer_groups(net)), rtol=1e-6)
    for sonifier in (GradientSonifier(net, sink=MemorySink(), run="all"),
                     GradientSonifier(net, sink=PacedSink(10.0), run="forced", pace=False)):
        with sonifier:
            for _ in range(5):
                sonifier.step()
        assert sonifier.frames == 5 and sonifier.paced == 0
    from earengine.sonify.sinks import MultiSink

    assert MultiSink([PacedSink(0.02), PacedSink(0.01)]).sounded_step_s("r") == 0.01
    assert MultiSink([PacedSink(0.02), MemorySink()]).sounded_step_s("r") is None  # a WAV wants every step


def test_sink_shorthands_and_callables(tmp_path):
    net, g = make_net()
    seen = []
    path = tmp_path / "run.wav"
    with GradientSonifier(net, sink=[seen.append, str(path)], run="both") as son:
        loss_of(net, *batch(g)).backward()
        son.step()
    assert len(seen) == 1 and isinstance(seen[0], GradientFrame)
    assert path.is_file()
    with pytest.raises(ParameterError, match="must be a sink"):
        GradientSonifier(net, sink=42)
    with pytest.raises(ParameterError, match="needs optimizer"):
        GradientSonifier(net, sink=seen.append, hook="optimizer")


def test_frames_round_trip_nan_included():
    f = GradientFrame("r", 4, (1.5, float("nan"), float("inf")), ("a", "b", "c"))
    back = GradientFrame.from_dict(f.to_dict())
    assert back.same(f) and back.bad == (1, 2)
    import json

    assert GradientFrame.from_dict(json.loads(json.dumps(f.to_dict()))).same(f)
    with pytest.raises(ParameterError):
        GradientFrame("", 0, (1.0,))
    with pytest.raises(ParameterError):
        GradientFrame("r", 0, ())
