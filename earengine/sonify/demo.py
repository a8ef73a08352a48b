"""The seed's five experiments, on real handwritten digits, heard and plotted.

Perone (2019) trained a small CNN (conv 20, conv 50, fc 500, fc 10) on MNIST for 200 steps and
listened to the gradient norms of its four weight tensors under SGD with lr 0.01, 0.1 and 1.0 at
batch 10, lr 1.0 at batch 256, and Adam with lr 0.01. Here the same network trains on the 1,797
handwritten digits that ship inside scikit-learn (8×8 images, upsampled to 28×28), so the demo
needs no download. Everything is seeded: the same arguments give the same sound.

What to expect with the default seed (``earengine sonify-demo``, seed 2): SGD 0.01 is steady; 0.1
is higher and more restless; 1.0 climbs to the top of the range as the norms explode and turns to
NaN at step 20, after which the cue repeats to the end; 1.0 at batch 256 explodes within a few
steps and turns to NaN at step 7, the cue repeating to the end; Adam has its own shape — a jump at
the start, then layers that move together. Divergence depends on the initial weights: at lr 1.0
and batch 256, seeds 0 to 5 give NaN to the end for 2, 3 and 5, one inf then dead ReLUs (zero
gradients, silence at the bottom) for 0, and no divergence for 1 and 4.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Mapping, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from earengine.audiofile import write_wav
from earengine.errors import ConfigError
from earengine.progress import Progress
from earengine.sonify.capture import GradientSonifier
from earengine.sonify.mapping import Settings
from earengine.sonify.render import render_frames
from earengine.sonify.sinks import MemorySink, OscSink

__all__ = ["DemoConfig", "DemoResult", "SeedNet", "digits_28", "train", "run_demo", "SEED_LAYERS"]

#: The demo's optimizers, by name (``DemoConfig.optimizer``): ``optimizer(params, config)``.
OPTIMIZERS = {
    "sgd": lambda params, c: torch.optim.SGD(params, lr=c.lr, momentum=c.momentum),
    "adam": lambda params, c: torch.optim.Adam(params, lr=c.lr),
}

#: The seed sonified the weight of each of its four layers.
SEED_LAYERS = {"conv1": "conv1.weight", "conv2": "conv2.weight", "fc1": "fc1.weight", "fc2": "fc2.weight"}


@dataclass(frozen=True)
class DemoConfig:
    """One experiment.

    Parameters
    ----------
    optimizer : {'sgd', 'adam'}
    lr : float > 0
        Learning rate.
    batch_size : int > 0
    steps : int > 0
        Training steps (the seed used 200).
    momentum : float >= 0
        SGD momentum (the seed used 0.5).
    seed : int
        Seeds the weights and the batch order.
    """

    optimizer: str = "sgd"
    lr: float = 0.01
    batch_size: int = 10
    steps: int = 200
    momentum: float = 0.5
    seed: int = 2

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer={self.optimizer!r} must be {' or '.join(OPTIMIZERS)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr={self.lr} must be a positive number")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} must be >= 1")
        if self.steps < 1:
            raise ConfigError(f"steps={self.steps} must be >= 1")
        if self.momentum < 0:
            raise ConfigError(f"momentum={self.momentum} must be >= 0")

    @property
    def name(self) -> str:
        """A run name such as ``sgd-lr1-bs256``."""
        return f"{self.optimizer}-lr{self.lr:g}-bs{self.batch_size}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DemoConfig":
        return cls(**dict(data))


@dataclass
class DemoResult:
    """What a demo run produced: its frames, losses and where (if anywhere) gradients went bad."""

    config: DemoConfig
    frames: list
    losses: list
    first_bad_step: Optional[int]
    first_bad_layer: Optional[str]
    seconds: float
    targets: list = field(default_factory=list)

    @property
    def norms(self) -> np.ndarray:
        """``(steps, layers)`` norms."""
        return np.array([f.norms for f in self.frames], dtype=np.float64)


def digits_28() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 handwritten digits as ``(images (N, 1, 28, 28), labels (N,))`` tensors.

    The 8×8 images (0–16) are scaled to [0, 1], upsampled bilinearly to 28×28 (the seed's MNIST
    size) and standardised with their own mean and standard deviation.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ConfigError("the demo needs scikit-learn for its digits: pip install scikit-learn") from None
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    x = (x - x.mean()) / x.std()
    return x, torch.tensor(digits.target, dtype=torch.long)


class SeedNet(nn.Module):
    """The seed's CNN: conv 5×5 → 20, pool, conv 5×5 → 50, pool, fc 800 → 500, fc 500 → 10.

    Parameters
    ----------
    generator : torch.Generator, optional
        Draws PyTorch's default initialisation from this generator instead of the global one.
    """

    def __init__(self, *, generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5, 1)
        self.conv2 = nn.Conv2d(20, 50, 5, 1)
        self.fc1 = nn.Linear(4 * 4 * 50, 500)
        self.fc2 = nn.Linear(500, 10)
        if generator is not None:
            for layer in (self.conv1, self.conv2, self.fc1, self.fc2):
                nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
                bound = 1.0 / math.sqrt(layer.weight[0].numel())
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2, 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2, 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return F.log_softmax(self.fc2(x), dim=1)


def train(
    config: DemoConfig,
    *,
    sink: Any = None,
    pace_s: float = 0.0,
    progress: Optional[IO[str]] = None,
    threads: Optional[int] = 1,
) -> DemoResult:
    """Train the seed's CNN on the digits for ``config.steps`` steps, sonifying every step.

    Parameters
    ----------
    config : DemoConfig
    sink : sink, optional
        Where the frames go besides the result; see :class:`~earengine.sonify.capture.GradientSonifier`.
        Not closed here.
    pace_s : float >= 0
        Seconds per step to keep to (live playing: one step per sounded step); 0 runs flat out.
    progress : file-like, optional
        Where plain progress lines go.
    threads : int > 0, optional
        torch threads while training (restored after). One is about as fast for a network this
        small and far faster on a busy machine, where threads wait on each other; None leaves
        torch's setting alone.
    """
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        return _train(config, sink=sink, pace_s=pace_s, progress=progress)
    finally:
        torch.set_num_threads(previous_threads)


def _train(config: DemoConfig, *, sink: Any, pace_s: float, progress: Optional[IO[str]]) -> DemoResult:
    x, y = digits_28()
    g = torch.Generator().manual_seed(config.seed)
    model = SeedNet(generator=g)
    opt = OPTIMIZERS[config.optimizer](model.parameters(), config)
    memory = MemorySink()
    losses: list[float] = []
    order = torch.randperm(len(x), generator=g)
    cursor = 0
    sinks = [memory] if sink is None else [memory, sink]
    t0 = time.monotonic()
    with Progress(config.steps, f"sonify-demo {config.name}", stream=progress if progress is not None else io.StringIO(),
                  interval_s=5.0, tty=False) as bar, \
            GradientSonifier(model, sink=sinks, run=config.name, layers=SEED_LAYERS, optimizer=opt):
        for step in range(config.steps):
            if cursor + config.batch_size > len(x):  # a new epoch, reshuffled
                order, cursor = torch.randperm(len(x), generator=g), 0
            idx = order[cursor : cursor + config.batch_size]
            cursor += config.batch_size
            opt.zero_grad(set_to_none=False)
            loss = F.nll_loss(model(x[idx]), y[idx])
            loss.backward()
            opt.step()  # the sonifier's hook captures the norms just before the update
            losses.append(float(loss.detach()))
            bar.update(1, loss=losses[-1])
            if pace_s > 0:
                time.sleep(max(0.0, t0 + (step + 1) * pace_s - time.monotonic()))
    first_bad = next((f for f in memory.frames if f.bad), None)
    return DemoResult(
        config=config,
        frames=memory.frames,
        losses=losses,
        first_bad_step=None if first_bad is None else first_bad.step,
        first_bad_layer=None if first_bad is None else first_bad.layer_name(first_bad.bad[0]),
        seconds=time.monotonic() - t0,
    )


def plot(result: DemoResult, path: Path) -> Path:
    """A PNG of each layer's norm (log scale) and pitch over the steps; non-finite steps marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    norms = result.norms
    steps = np.arange(norms.shape[0])
    names = result.frames[0].names if result.frames else ()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for i, name in enumerate(names):
        shown = np.where(np.isfinite(norms[:, i]) & (norms[:, i] > 0), norms[:, i], np.nan)
        top.plot(steps, shown, label=name, lw=1)
        if result.targets:  # a layer whose gradient is not finite is silent: no pitch to draw
            pitch = [t.freq_hz[i] if i not in t.nan else np.nan for t in result.targets]
            bottom.plot(steps, pitch, label=name, lw=1)
    bad = [f.step for f in result.frames if f.bad]
    for ax in (top, bottom):
        if bad:
            ax.vlines(bad, 0, 1, transform=ax.get_xaxis_transform(), colors="red", alpha=0.15, lw=1,
                      label="NaN/inf" if ax is top else None)
        ax.set_yscale("log")
    top.set_ylabel("gradient norm")
    bottom.set_ylabel("pitch (Hz)")
    bottom.set_xlabel("training step")
    top.set_title(f"{result.config.name}: gradient norms and the pitches they play")
    top.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def describe(result: DemoResult) -> list[str]:
    """Plain lines that say what happened (for a terminal or a screen reader)."""
    c = result.config
    lines = [f"{c.optimizer} lr {c.lr:g} batch {c.batch_size}"
             + (f" momentum {c.momentum:g}" if c.optimizer == "sgd" else "")
             + f": {len(result.frames)} steps in {result.seconds:.1f} s"]
    loss = result.losses
    lines.append(f"loss {loss[0]:.3g} at the first step, {loss[-1]:.3g} at the last")
    norms = result.norms
    names = result.frames[0].names
    finite = np.where(np.isfinite(norms), norms, np.nan)
    with np.errstate(all="ignore"):
        med = np.nanmedian(finite, axis=0) if np.isfinite(finite).any() else np.full(len(names), np.nan)
        top = np.nanmax(finite, axis=0) if np.isfinite(finite).any() else np.full(len(names), np.nan)
    lines.append("median norm " + ", ".join(f"{n} {m:.3g}" for n, m in zip(names, med)))
    lines.append("largest finite norm " + ", ".join(f"{n} {m:.3g}" for n, m in zip(names, top)))
    if result.first_bad_step is None:
        lines.append("every gradient stayed finite")
    else:
        bad = sum(1 for f in result.frames if f.bad)
        lines.append(f"gradient not finite first at step {result.first_bad_step} ({result.first_bad_layer}); "
                     f"{bad} of {len(result.frames)} steps sound the NaN cue")
    return lines


def run_demo(
    config: DemoConfig,
    *,
    out: Optional[Path] = None,
    png: Optional[Path] = None,
    values: Optional[Mapping[str, Any]] = None,
    live: Optional[tuple] = None,
    sr: int = 44100,
    progress: Optional[IO[str]] = None,
) -> DemoResult:
    """Train, render the WAV (``out``) and the PNG (``png``); with ``live=(host, port)`` also play
    through the engine, one training step per sounded step.

    ``values`` are ``/son/*`` values (e.g. :data:`~earengine.sonify.mapping.SEED_PRESET`).
    """
    settings = Settings.from_values(dict(values or {}))
    if live is None:
        result = train(config, progress=progress)
    else:
        sink = OscSink(*live)
        try:
            result = train(config, sink=sink, pace_s=settings.step_s(), progress=progress)
        finally:
            sink.close()
    audio, result.targets = render_frames(result.frames, settings, sr=sr)
    if out is not None:
        write_wav(out, audio, sr=sr)
    if png is not None:
        plot(result, png)
    return result
