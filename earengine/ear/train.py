"""Training the ear with contrastive predictive coding.

Adam with a linear warm-up and a cosine decay, progress as plain lines, periodic resumable
checkpoints, a loss-curve PNG, and — at the end — per-tap activation statistics stored in the
checkpoint. Runs on one CPU or GPU, or on several processes with PyTorch's
DistributedDataParallel when started by ``torchrun`` (each rank draws different clips; rank 0
writes every file).

Resuming is exact: a checkpoint holds the weights and batch-norm statistics, Adam's state, the
step counter and every random state (the numpy generator that draws clips and the torch
generator that draws dropout masks and input noise, per rank), and the learning rate is a pure
function of the step. An interrupted run resumed with the same configuration ends with the same
weights, bit for bit, as one that was never interrupted.

Files under ``out/``::

    model.safetensors, config.json     the final ear (see earengine.ear.checkpoint)
    loss.png                           loss and contrastive accuracy against step
    checkpoints/latest.json            which periodic checkpoint is newest
    checkpoints/step-NNNNNNN/          model + optimizer + random states at that step

Feeding the encoder: the scaleogram has no parameters, so when the training part of the data is
short enough (``cache="auto"``: up to two hours), the scaleogram of every track's training part
is computed once and batches are random crops of it — three to four times faster than computing
it per batch on a CPU. Waveform input noise (``EarConfig.input_noise``) exists only in the
waveform path (``cache="off"``), so a cached run trains without it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Mapping, Optional, Union

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save

from earengine import __version__
from earengine.corpus.sources import open_source
from earengine.corpus.splits import sample_batch, track_bounds
from earengine.ear.checkpoint import ear_state, save_ear
from earengine.ear.model import build_ear
from earengine.ear.scaleogram import kernel_lengths
from earengine.ear.stats import ear_statistics, stats_to_json
from earengine.ear.train_files import (
    _latest_checkpoint,
    _load_optimizer,
    _optimizer_tensors,
    _plot_loss,
    _rank_state,
    _restore_rank_state,
)
from earengine.errors import CheckpointError, ConfigError, check_config_keys
from earengine.files import atomic_write_bytes, atomic_write_json
from earengine.progress import Progress

__all__ = ["TrainConfig", "TRAIN_PRESETS", "train", "lr_at", "min_clip_s", "TrainResult"]

_CACHE_MODES = ("auto", "on", "off")
_CACHE_AUTO_MAX_S = 2 * 3600.0


@dataclass(frozen=True)
class TrainConfig:
    """How to train (the ear's own architecture lives in :class:`~earengine.ear.model.EarConfig`).

    Parameters
    ----------
    data : str
        ``"synthetic"``, ``"synthetic:N"`` or a folder of audio files.
    data_seed : int >= 0
        Seed of the synthetic corpus.
    steps : int > 0
        Optimizer steps.
    batch_size : int >= 2
        Clips per step (per process under torchrun); also the number of negatives per prediction.
    clip_s : float > 0
        Clip length in seconds; at least the ear's receptive field plus the prediction horizon.
    lr : float > 0
        Peak learning rate of Adam.
    warmup_steps : int >= 0
        Linear warm-up from 0 to ``lr``; then a cosine decay to ``lr * final_lr_ratio``.
    final_lr_ratio : float in [0, 1]
    grad_clip : float >= 0
        Clip the global gradient norm to this value (0: no clipping).
    seed : int >= 0
        Seeds the initial weights (the same for every rank), the clips and the dropout masks.
    checkpoint_every : int > 0
        Steps between resumable checkpoints.
    keep_checkpoints : int > 0
        Periodic checkpoints kept on disk.
    stats_clips : int >= 0
        Training clips used for the activation statistics at the end (0: skip data statistics).
    cache : {"auto", "on", "off"}
        Precompute the scaleograms of the training data (see the module notes).
    """

    data: str = "synthetic"
    data_seed: int = 0
    steps: int = 1000
    batch_size: int = 16
    clip_s: float = 6.5
    lr: float = 3e-4
    warmup_steps: int = 100
    final_lr_ratio: float = 0.02
    grad_clip: float = 5.0
    seed: int = 0
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    stats_clips: int = 64
    cache: str = "auto"

    def __post_init__(self) -> None:
        def integer(name: str, low: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ConfigError(f"{name}={v!r} must be an integer >= {low}")

        integer("steps", 1)
        integer("batch_size", 2)
        integer("warmup_steps", 0)
        integer("seed", 0)
        integer("data_seed", 0)
        integer("checkpoint_every", 1)
        integer("keep_checkpoints", 1)
        integer("stats_clips", 0)
        for name in ("clip_s", "lr"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"{name}={v!r} must be a finite number > 0")
        if not 0.0 <= self.final_lr_ratio <= 1.0:
            raise ConfigError(f"final_lr_ratio={self.final_lr_ratio} must be in [0, 1]")
        if not math.isfinite(self.grad_clip) or self.grad_clip < 0:
            raise ConfigError(f"grad_clip={self.grad_clip} must be a finite number >= 0 (0 turns clipping off)")
        if self.cache not in _CACHE_MODES:
            raise ConfigError(f"cache={self.cache!r} must be one of {', '.join(_CACHE_MODES)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "TrainConfig":
        check_config_keys(data, {f.name for f in dataclasses.fields(cls)}, what="training")
        return cls(**dict(data))

    @classmethod
    def preset(cls, name: str, **overrides) -> "TrainConfig":
        if name not in TRAIN_PRESETS:
            raise ConfigError(f"config={name!r} must be one of {sorted(TRAIN_PRESETS)}")
        values = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(TRAIN_PRESETS[name], **values)


# Without --data both presets train on 96 synthetic tracks, which need no download (on the
# 16-track corpus a small ear learns its 13 minutes by heart and barely generalises). The shipped
# ear trained on real music: --data $EARENGINE_HOME/corpus/pool (see models/ear-default/README.md).
TRAIN_PRESETS: dict[str, TrainConfig] = {
    # The paper: batch 32, Adam 3e-4, 1k warm-up (its cosine ran over 100k steps).
    "paper": TrainConfig(data="synthetic:96", batch_size=32, clip_s=7.0, lr=3e-4, warmup_steps=1000,
                         checkpoint_every=1000),
    # A CPU-sized run: shorter warm-up, a higher rate for the narrower network.
    "small": TrainConfig(data="synthetic:96", batch_size=16, clip_s=6.5, lr=1e-3, warmup_steps=100,
                         checkpoint_every=200),
}


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warm-up, then cosine decay."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    floor = config.final_lr_ratio
    return config.lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _min_clip_frames(ear) -> int:
    """Fewest scaleogram frames for which at least one context sees its whole receptive field
    and still has all its prediction targets inside the clip."""
    rf = ear.receptive_field_frames()
    horizon = ear.config.cpc.horizon_steps
    n = rf
    while True:
        step_end = ear.step_end_frames(n)
        ctx_end = ear.context_end_steps(step_end.numel())
        ok = (step_end[ctx_end] >= rf - 1) & (ctx_end + horizon <= step_end.numel() - 1)
        if bool(ok.any()):
            return n
        n += 1


def min_clip_s(ear) -> float:
    """Shortest training clip (seconds) the ear's receptive field and CPC horizon allow."""
    cfg = ear.config.scaleogram
    return _min_clip_frames(ear) * cfg.hop_length / cfg.sr


def check_clip(ear, clip_s: float) -> None:
    """Raise :class:`ConfigError` when ``clip_s`` is too short for the receptive field + horizon."""
    cfg = ear.config.scaleogram
    need = _min_clip_frames(ear)
    have = int(round(clip_s * cfg.sr)) // cfg.hop_length
    if have < need:
        raise ConfigError(
            f"clip_s={clip_s:g} must be at least {need * cfg.hop_length / cfg.sr:.2f} s: the receptive "
            f"field ({ear.receptive_field_frames() * cfg.hop_length / cfg.sr:.2f} s) plus the prediction "
            f"horizon ({ear.config.cpc.horizon_steps} steps of {ear.samples_per_step / cfg.sr * 1000:.0f} ms)"
        )


@dataclass
class TrainResult:
    path: Path
    steps: int
    wall_s: float
    final_loss: float
    final_accuracy: float


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------
class _FrameBank:
    """Scaleograms of every track's training part, computed once; batches are random crops."""

    def __init__(self, source, scaleogram, *, n_frames: int, device: str, chunk_s: float = 30.0) -> None:
        cfg = scaleogram.config
        hop = cfg.hop_length
        margin = int(math.ceil(float(np.max(kernel_lengths(cfg))) / 2 / hop)) + 1
        chunk = max(1, int(chunk_s * cfg.sr) // hop)
        self.n_frames = n_frames
        self.tracks: list = []
        for t, (lo, hi) in enumerate(track_bounds(source, "train")):
            total = (hi - lo) // hop
            if total < n_frames:
                continue
            audio = source.clip(t, lo / source.sr, (hi - lo) / source.sr)
            pieces = []
            for a in range(0, total, chunk):
                b = min(total, a + chunk)
                first, last = (a - margin) * hop, (b + margin) * hop
                seg = np.zeros(last - first, dtype=np.float32)
                src_lo, src_hi = max(0, first), min(len(audio), last)
                if src_hi > src_lo:
                    seg[src_lo - first : src_hi - first] = audio[src_lo:src_hi]
                with torch.no_grad():
                    s = scaleogram(torch.from_numpy(seg)[None].to(device))
                pieces.append(s[0, :, :, margin : margin + (b - a)])
            self.tracks.append(torch.cat(pieces, dim=-1))
        if not self.tracks:
            raise ConfigError(
                f"clip length of {n_frames} frames must fit in the training part of at least one track"
            )

    def batch(self, batch_size: int, rng: np.random.Generator, generator):
        picks = rng.integers(0, len(self.tracks), size=batch_size)
        crops = []
        for p in picks:
            s = self.tracks[int(p)]
            start = int(rng.integers(0, s.shape[-1] - self.n_frames + 1))
            crops.append(s[:, :, start : start + self.n_frames])
        return torch.stack(crops)


class _WaveBatches:
    """Clips drawn from the training split and turned into scaleograms per batch."""

    def __init__(self, source, scaleogram, *, clip_s: float, noise: float, device: str) -> None:
        self.source, self.scaleogram, self.clip_s, self.noise, self.device = source, scaleogram, clip_s, noise, device

    def batch(self, batch_size: int, rng: np.random.Generator, generator):
        audio, _ = sample_batch(self.source, batch_size=batch_size, duration_s=self.clip_s, split="train", rng=rng)
        x = torch.from_numpy(audio).to(self.device)
        if self.noise > 0:
            x = x + self.noise * torch.randn(x.shape, generator=generator, device=x.device)
        with torch.no_grad():
            return self.scaleogram(x)


# ---------------------------------------------------------------------------------------------
# The training module (one forward = one loss, as DistributedDataParallel wants)
# ---------------------------------------------------------------------------------------------
def _cpc_module(ear, head):
    class CPCModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ear = ear
            self.head = head

        def forward(self, s):
            z, c = self.ear.encode(s)
            result = self.head(z, c, self.ear.context_end_steps(z.shape[-1]))
            return result.loss, result.accuracy

    return CPCModel()


# ---------------------------------------------------------------------------------------------
# Checkpoints for resuming
# ---------------------------------------------------------------------------------------------
def _dist_env() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def train(
    ear_config,
    config: TrainConfig,
    out: Union[str, Path],
    *,
    device: str = "cpu",
    resume: bool = False,
    stream: Optional[IO[str]] = None,
    source=None,
    stop_after: Optional[int] = None,
    log_interval_s: float = 10.0,
) -> TrainResult:
    """Train an ear with CPC and write it to ``out``.

    Parameters
    ----------
    ear_config : EarConfig
    config : TrainConfig
    out : path-like
        Output folder (a checkpoint folder when done).
    device : str
        ``"cpu"`` or ``"cuda"`` (under torchrun each rank takes ``cuda:LOCAL_RANK``).
    resume : bool
        Continue from the newest checkpoint in ``out`` (it must exist).
    stream : file-like, optional
        Where progress lines go (stderr by default).
    source : ClipSource, optional
        Use this source instead of opening ``config.data``.
    stop_after : int, optional
        Stop (after writing a checkpoint) once this many steps are done, as an interruption would.
    log_interval_s : float > 0
        Seconds between progress lines off a terminal.

    Returns
    -------
    TrainResult
    """
    stream = stream if stream is not None else sys.stderr
    rank, world = _dist_env()
    device = _start_device(device, distributed=world > 1)
    run = _new_run(ear_config, config, Path(out), device=device, rank=rank, world=world, source=source)
    if resume:
        _resume(run)
    batches, cached = _batches(run)
    end_step = config.steps if stop_after is None else min(config.steps, int(stop_after))
    _steps(run, batches, end_step, stream=stream, log_interval_s=log_interval_s)
    wall_s = run.wall_s()
    final_loss, final_acc = _final_means(run.history)
    if end_step == config.steps and rank == 0:
        _save_final(run, end_step, wall_s, final_loss, final_acc, cached=cached, stream=stream)
    if run.distributed:
        dist.barrier()
    return TrainResult(run.out, end_step, wall_s, final_loss, final_acc)


@dataclass
class _Run:
    """One training run's parts, shared by its steps."""

    ear_config: object
    config: TrainConfig
    out: Path
    device: str
    rank: int
    world: int
    source: object
    ear: torch.nn.Module
    head: torch.nn.Module
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    np_rng: np.random.Generator
    generator: torch.Generator
    t_start: float
    start_step: int = 0
    history: list = field(default_factory=list)
    wall_before: float = 0.0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def wall_s(self) -> float:
        """Seconds trained so far, over every resumed part of the run."""
        return self.wall_before + time.monotonic() - self.t_start


def _start_device(device: str, *, distributed: bool) -> str:
    """Check the device and, under torchrun, join the process group; the device this rank uses."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} must be available; no CUDA device found (use --device cpu)")
    if distributed:
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
            torch.cuda.set_device(device)
    return device


def _new_run(ear_config, config: TrainConfig, out: Path, *, device: str, rank: int, world: int, source) -> _Run:
    """A fresh ear, its predictors, Adam and the run's random generators (seeded per rank)."""
    t_start = time.monotonic()
    ear, head = build_ear(ear_config, config.seed)
    check_clip(ear, config.clip_s)
    source = source if source is not None else open_source(config.data, seed=config.data_seed)
    ear.to(device)
    head.to(device)
    model = _cpc_module(ear, head)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    np_rng = np.random.default_rng([config.seed, rank])
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed * 1_000_003 + rank + 1)
    ear.set_generator(generator)
    return _Run(ear_config, config, out, device, rank, world, source, ear, head, model, opt, np_rng, generator,
                t_start)


def _resume(run: _Run) -> None:
    """Load the newest checkpoint in ``run.out`` into the run, after checking it was made by the
    same configuration (only ``steps`` may change) and the same number of processes."""
    ckpt = _latest_checkpoint(run.out)
    if ckpt is None:
        raise CheckpointError(f"out={str(run.out)!r} must hold a checkpoint to --resume; none found")
    meta = json.loads((ckpt / "train_state.json").read_text())
    if meta["ear"] != run.ear_config.to_dict():
        raise ConfigError(f"ear config must match the checkpoint in {str(ckpt)!r} to resume; it differs")
    saved = TrainConfig.from_dict(meta["train"])
    if dataclasses.replace(saved, steps=run.config.steps) != run.config:
        raise ConfigError(
            f"training config must match the checkpoint in {str(ckpt)!r} to resume (only --steps may change)"
        )
    if meta["world_size"] != run.world:
        raise ConfigError(f"world_size={run.world} must be {meta['world_size']} as when the checkpoint was written")
    state = load_file(str(ckpt / "model.safetensors"))
    run.ear.load_state_dict({k: v for k, v in state.items() if not k.startswith("cpc.")}, strict=False)
    run.head.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("cpc.")})
    _load_optimizer(run.opt, load_file(str(ckpt / "optimizer.safetensors")), meta["optimizer"])
    _restore_rank_state(json.loads((ckpt / f"rng.rank{run.rank}.json").read_text()), run.np_rng, run.generator)
    run.start_step, run.history, run.wall_before = meta["step"], meta["history"], meta["wall_s"]


def _batches(run: _Run) -> tuple[Union[_FrameBank, _WaveBatches], bool]:
    """Where the run's batches come from, and whether that is the scaleogram cache."""
    config, source, ear = run.config, run.source, run.ear
    cfg_s = run.ear_config.scaleogram
    n_frames = int(round(config.clip_s * cfg_s.sr)) // cfg_s.hop_length
    cached = config.cache == "on" or (
        config.cache == "auto"
        and sum(source.duration_s(t) for t in range(source.n_tracks)) * 0.8 <= _CACHE_AUTO_MAX_S
    )
    if cached:
        return _FrameBank(source, ear.scaleogram, n_frames=n_frames, device=run.device), True
    return _WaveBatches(source, ear.scaleogram, clip_s=config.clip_s, noise=run.ear_config.input_noise,
                        device=run.device), False


def _steps(run: _Run, batches, end_step: int, *, stream: IO[str], log_interval_s: float) -> None:
    """Optimizer steps from ``run.start_step`` up to ``end_step``, with progress lines and a
    checkpoint every ``checkpoint_every`` steps and at the end."""
    config, model, opt = run.config, run.model, run.opt
    step_model = model
    if run.distributed:
        device_ids = [run.device] if run.device.startswith("cuda") else None
        step_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    model.train()
    label = "train" if not run.distributed else f"train rank {run.rank}"
    progress_out = stream if run.rank == 0 else open(os.devnull, "w")
    with Progress(config.steps, label, stream=progress_out, interval_s=log_interval_s) as progress:
        progress.done = run.start_step
        for step in range(run.start_step, end_step):
            lr = lr_at(step, config)
            for group in opt.param_groups:
                group["lr"] = lr
            s = batches.batch(config.batch_size, run.np_rng, run.generator)
            loss, acc = step_model(s)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            loss_v, acc_v = float(loss.detach()), float(acc)
            if not math.isfinite(loss_v):
                raise ConfigError(
                    f"loss={loss_v} at step {step + 1} must be finite; lower --lr or check the data"
                )
            run.history.append([step + 1, round(loss_v, 5), round(acc_v, 5), float(f"{lr:.4g}")])
            progress.update(1, loss=loss_v, acc=acc_v, lr=lr)
            done = step + 1
            if done % config.checkpoint_every == 0 or done == end_step:
                _write_checkpoint(run, done)
    if run.rank != 0:
        progress_out.close()


def _write_checkpoint(run: _Run, step: int) -> None:
    """A resumable checkpoint at ``step``: every rank writes its random states, rank 0 the rest,
    then ``latest.json`` points at it and only the newest ``keep_checkpoints`` stay."""
    name = f"step-{step:07d}"
    checkpoints = run.out / "checkpoints"
    folder = checkpoints / name
    if run.rank == 0:
        folder.mkdir(parents=True, exist_ok=True)
    if run.distributed:
        dist.barrier()
    atomic_write_json(folder / f"rng.rank{run.rank}.json", _rank_state(run.np_rng, run.generator))
    if run.distributed:
        dist.barrier()
    if run.rank != 0:
        return
    atomic_write_bytes(folder / "model.safetensors", save(ear_state(run.ear, run.head)))
    tensors, opt_meta = _optimizer_tensors(run.opt)
    atomic_write_bytes(folder / "optimizer.safetensors", save(tensors))
    atomic_write_json(folder / "train_state.json", {
        "step": step,
        "ear": run.ear_config.to_dict(),
        "train": run.config.to_dict(),
        "world_size": run.world,
        "optimizer": opt_meta,
        "wall_s": run.wall_s(),
        "history": run.history,
    })
    atomic_write_json(checkpoints / "latest.json", {"dir": name, "step": step})
    _plot_loss(run.history, run.out / "loss.png")
    kept = sorted(p for p in checkpoints.iterdir() if p.is_dir() and p.name.startswith("step-"))
    for old in kept[: -run.config.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)


def _final_means(history: list) -> tuple[float, float]:
    """Mean loss and accuracy over the last fifth of the steps (at least 1, at most 50)."""
    tail = history[-max(1, min(50, len(history) // 5)) :]
    if not tail:
        return float("nan"), float("nan")
    return float(np.mean([h[1] for h in tail])), float(np.mean([h[2] for h in tail]))


def _save_final(run: _Run, end_step: int, wall_s: float, final_loss: float, final_acc: float, *,
                cached: bool, stream: IO[str]) -> None:
    """The finished ear with its activation statistics and how it was trained (rank 0 only)."""
    config, ear_config = run.config, run.ear_config
    print(f"train: measuring activation statistics on silence and {config.stats_clips} clips", file=stream)
    stats = ear_statistics(
        run.ear, run.source, clip_s=config.clip_s, n_clips=config.stats_clips,
        rng=np.random.default_rng([config.seed, 1_000]), device=run.device,
    ) if config.stats_clips > 0 else None
    info = {
        "data": run.source.describe(),
        "training": {
            **config.to_dict(),
            "steps_done": end_step,
            "wall_s": round(wall_s, 1),
            "device": str(run.device),
            "world_size": run.world,
            "torch_version": torch.__version__,
            "cached_scaleograms": bool(cached),
            "input_noise_applied": (not cached) and ear_config.input_noise > 0,
            "final_loss": round(final_loss, 5),
            "final_accuracy": round(final_acc, 5),
            "earengine_version": __version__,
        },
    }
    if stats is not None:
        info["stats"] = stats_to_json(stats)
    save_ear(run.out, run.ear, run.head, info=info)
    _plot_loss(run.history, run.out / "loss.png")
    print(f"train: wrote {run.out / 'model.safetensors'} and {run.out / 'config.json'}", file=stream)
