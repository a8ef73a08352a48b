"""The loop optimizer: one step at a time, the loop changes so the target fires harder.

A :class:`Dreamer` owns a parameterization of the loop, an optimizer and the objective. Every
setting comes from the registry's ``/opt``, ``/target``, ``/reg`` (and ``/loop``, ``/clock``)
values, given as a plain ``{address: value}`` mapping; :meth:`Dreamer.configure` applies new values
at a step boundary. Each step:

0. render the loop from what is optimized — a parameterization of its own (``/opt/param``, see
   :mod:`earengine.optvis.param`): the waveform, its 1/f-scaled spectrum, or notes on the bar grid;
1. tile the loop ``1 + /opt/context`` times and roll each batch copy by a random phase
   (``/reg/time_shift``; whole steps for the grid, whose copies are also transposed), so the loop
   is heard with periodic context and loops seamlessly;
2. jitter pitch (``/reg/pitch_cents``), compute the scaleogram, mask a time and a frequency band;
3. run the ear, score the objective on the loop part only, add the regularizers (and, with
   ``/target/specificity``, the activation of the other channels of the target's tap);
4. ``loss = penalties - score`` — the one place where the sign flips;
5. normalise and noise the gradient, step, keep the waveform finite and within [-1, 1], mix
   toward the reference clip.

Each choice is a piece from a table keyed by its parameter: the parameterization from
:data:`~earengine.optvis.param.FACTORIES` (``/opt/param``), the optimizer from :data:`OPTIMIZERS`
(``/opt/algorithm``), the penalties from :data:`~earengine.optvis.regularizers.PENALTIES` (only
those whose weight is above 0), the start of :meth:`Dreamer.reset` from :data:`STARTS`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping, Optional

import numpy as np
import torch
from torch import Tensor

from earengine.errors import ParameterError
from earengine.optvis import regularizers as R
from earengine.optvis import transforms as T
from earengine.optvis.objectives import Objective, Region, View, build
from earengine.optvis.param import FACTORIES, Parameterization, make
from earengine.optvis.params import MIX_ON_GRID, OPT_COMMANDS, OPT_PARAMS
from earengine.optvis.stepsize import FixedStep, StepControl
from earengine.optvis.targets import parse_many
from earengine.params.registry import check_choices, check_table
from earengine.params.spec import row

__all__ = ["Dreamer", "StepStats", "loop_samples", "parse_target_spec", "OPTIMIZERS", "STEP_CONTROLS", "STARTS"]

#: ``/opt/algorithm`` choice -> the optimizer class (checked against the row).
OPTIMIZERS: dict = check_choices(row(OPT_PARAMS, "/opt/algorithm"),
                                 {"sgd": torch.optim.SGD, "adam": torch.optim.Adam})
#: ``/opt/step`` choice -> the step control (checked against the row).
STEP_CONTROLS: dict = check_choices(row(OPT_PARAMS, "/opt/step"), {"adaptive": StepControl, "fixed": FixedStep})


def loop_samples(*, bars: int, bpm: float, beats_per_bar: int, sr: int) -> int:
    """Samples in a loop of ``bars`` bars at a tempo."""
    return int(round(bars * beats_per_bar * 60.0 / bpm * sr))


def parse_target_spec(text: str, *, taps, shapes=None) -> Optional[Objective]:
    """``"enc.5:12*1 + ar.3*0.5"`` → a weighted sum of objectives; ``""`` → None (the region)."""
    total = None
    for target, weight in parse_many(text, taps=taps, shapes=shapes):
        obj = build(target)
        obj = obj if weight == 1.0 else weight * obj
        total = obj if total is None else total + obj
    return total


@dataclass(frozen=True)
class StepStats:
    """What one step did: loss (minimised), target score of the loop kept (maximised), time it
    took, and how settled the dream is (0 … 1, see :attr:`StepControl.settled`)."""

    step: int
    loss: float
    target: float
    seconds: float
    finite: bool
    settled: float = 0.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Dreamer:
    """Optimizes a loop for an ear.

    Parameters
    ----------
    ear : Ear
        Any ear with ``scaleogram``, ``forward_scaleogram`` and ``tap_names``; put in eval mode
        and frozen here.
    settings : mapping
        Registry values (address → value).
    stats : mapping, optional
        The checkpoint's activation statistics (for normalisation).
    cpc : CPCHead, optional
        For the ``surprise`` target.
    device : str
    """

    def __init__(self, ear, settings: Mapping, *, stats: Optional[Mapping] = None, cpc=None, device: str = "cpu"):
        self.ear = ear.to(device).eval()
        for p in self.ear.parameters():
            p.requires_grad_(False)
        self.cpc = cpc.to(device).eval() if cpc is not None else None
        self.stats = stats
        self.device = device
        self.sr = int(ear.scaleogram.config.sr)
        self.silence = float(ear.scaleogram.silence_value)
        self.settings: dict = {}
        self.step_count = 0
        self.objective: Optional[Objective] = None
        self.reference: Optional[Tensor] = None
        self.param: Optional[Parameterization] = None
        self._penalties: tuple = ()
        self._optimizer = None
        self._last_good: Optional[list] = None
        self.generator = torch.Generator().manual_seed(int(settings.get("/opt/seed", 0)))
        #: How far the next step goes, and the best score of the loop as heard (see
        #: :mod:`earengine.optvis.stepsize`).
        self.control: StepControl = STEP_CONTROLS[settings.get("/opt/step", "adaptive")]()
        self._kept = float("nan")  # the target score of the loop the last kept step left
        self._heard: Optional[tuple] = None  # that loop (waveform, notes): what the engine plays
        self.n = 0
        self.configure(settings)
        self.reset("silence")

    # -- settings ---------------------------------------------------------------------------
    def configure(self, settings: Mapping) -> None:
        """Apply registry values at a step boundary; raises ParameterError, changing nothing."""
        new = {**self.settings, **settings}
        if new.get("/opt/param") == "grid" and new.get("/reg/mix", 0.0) > 0:
            raise ParameterError(f"/reg/mix={new['/reg/mix']}: {MIX_ON_GRID}")
        objective = self._objective(new)
        n = loop_samples(bars=new["/loop/bars"], bpm=new["/clock/bpm"],
                         beats_per_bar=new["/clock/beats_per_bar"], sr=self.sr)
        old, old_objective, old_penalties = self.settings, self.objective, self._penalties
        self.settings = new
        self.objective = objective
        self._penalties = R.active(new)
        rebuild = any(old.get(a) != new.get(a) for a in _REBUILD) or any(
            old.get(a) != new.get(a) for a in new if a.startswith("/grid/") and a not in _GRID_LIVE)
        if self.param is not None and (n != self.n or rebuild):
            try:
                self._set_waveform(_resample(self.waveform_tensor(), n), carry=True)
            except ParameterError:
                # refused settings change nothing
                self.settings, self.objective, self._penalties = old, old_objective, old_penalties
                raise
        elif self._optimizer is not None and any(old.get(a) != new.get(a) for a in _TIMBRE):
            self.param.set_timbre(new)  # a performer's timbre, from which the dream moves on
        step = new.get("/opt/step", "adaptive")
        if old.get("/opt/step", step) != step:
            self.control = STEP_CONTROLS[step]()
            if self.param is not None:
                self.control.bound(*self.param.bold)
        elif any(old.get(a) != new.get(a) for a in new if a.startswith(_JUDGED)):
            self.control.restart()  # another objective: the best score so far means nothing now
        if self.param is not None and old and any(old.get(a) != new.get(a) for a in new if a.startswith("/target/")):
            self.param.loosen()  # a warm start: the old target's loop, free to move toward the new one
        self.n = n

    def _objective(self, s: Mapping) -> Objective:
        taps = self.ear.tap_names()
        shapes = None
        if hasattr(self.ear, "tap_shapes"):  # channels and rows checked here, not at the first step
            shapes = self.ear.tap_shapes(loop_samples(bars=s["/loop/bars"], bpm=s["/clock/bpm"],
                                                      beats_per_bar=s["/clock/beats_per_bar"], sr=self.sr))
        target = parse_target_spec(s.get("/target/spec", ""), taps=taps, shapes=shapes)
        if target is not None:
            return target
        tap = s["/target/layer"]
        if tap not in taps:
            raise ParameterError(f"/target/layer={tap} must be one of {', '.join(taps)}")
        return Region(tap, s["/target/channel"], s["/target/channel_width"], s["/target/pitch"],
                      s["/target/pitch_width"], s["/target/time"], s["/target/time_width"], s["/target/exponent"])

    def set_reference(self, samples: Optional[np.ndarray]) -> None:
        """The clip ``/reg/mix`` pulls toward (resampled to the loop's length when used)."""
        self.reference = None if samples is None else torch.as_tensor(samples, dtype=torch.float32)

    # -- the loop ---------------------------------------------------------------------------
    def reset(self, kind: str, samples: Optional[np.ndarray] = None) -> None:
        """Start again from ``silence``, ``noise``, a ``file``'s samples or the ``current`` loop.

        A grid cannot take a waveform: whatever the kind, it starts again from fresh notes (seeded
        by ``/opt/seed``), which are already music."""
        n = loop_samples(bars=self.settings["/loop/bars"], bpm=self.settings["/clock/bpm"],
                         beats_per_bar=self.settings["/clock/beats_per_bar"], sr=self.sr)
        self.n = n
        start = STARTS.get(kind)
        if start is None:
            raise ParameterError(f"reset kind={kind!r} must be {', '.join(STARTS)}")
        self._set_waveform(start(self, kind, n, samples).clamp(-1, 1))

    def _set_waveform(self, x: Tensor, *, carry: bool = False) -> None:
        """Start the parameterization from waveform ``x`` (a grid starts from fresh notes unless
        ``carry`` keeps the notes of the grid it replaces)."""
        x = x.detach().to(self.device, torch.float32)
        self.param = make(self.settings, n_samples=x.numel(), sr=self.sr, generator=self.generator, x=x,
                          device=self.device, previous=self.param if carry else None)
        self.n = x.numel()
        lr = self.settings["/opt/lr"]
        groups = [{**g, "lr": lr * g["lr_scale"]} for g in self.param.groups()]
        self._optimizer = OPTIMIZERS[self.settings["/opt/algorithm"]](groups, lr=lr)
        self._last_good = self._tensors_copy()
        self._heard = None
        self.control.bound(*self.param.bold)

    def _tensors(self) -> list:
        return [p for g in self.param.groups() for p in g["params"]]

    def _tensors_copy(self) -> list:
        return [p.detach().clone() for p in self._tensors()]

    def waveform_tensor(self) -> Tensor:
        return self.param.waveform()

    def pattern(self):
        """The notes of the loop (a :class:`~earengine.pattern.Pattern`) with ``/opt/param grid``, else None."""
        return self.param.pattern(self.settings)

    def waveform(self) -> np.ndarray:
        """The current loop, float32 in [-1, 1]."""
        return self.waveform_tensor().detach().clamp(-1, 1).cpu().numpy().astype(np.float32)

    # -- one step ---------------------------------------------------------------------------
    def evaluate(self, batch: Optional[int] = None):
        """Loss, score and the view for the current loop (no step).

        ``batch`` copies (default ``/opt/batch``); copy 0 is the loop as heard, which no transform
        touches, so ``batch=1`` is the loop without jitter or masks and draws no random numbers."""
        loss, scores, view, _ = self._evaluate(int(self.settings["/opt/batch"]) if batch is None else batch)
        return loss, scores.mean(), view

    def _evaluate(self, b: int):
        """Loss (minimised), the score of every copy (maximised) and the view."""
        s = self.settings
        reps = 1 + int(s["/opt/context"])
        views = self.param.views(b, self.generator)  # (B, N); copy 0 is the loop itself
        x = views[0]
        n = x.numel()
        tiled = views.repeat(1, reps)
        shift = torch.zeros(b)
        if b > 1:
            shift[1:] = torch.rand(b - 1, generator=self.generator) * float(s["/reg/time_shift"])
        if self.param.steps:  # the grid's copies move by whole steps: the notes stay on the grid
            shift = torch.floor(shift * self.param.steps) / self.param.steps
        offsets = (shift * n).round().long().to(x.device)
        idx = (torch.arange(reps * n, device=x.device)[None, :] - offsets[:, None]) % (reps * n)
        batch = tiled.gather(1, idx)
        for transform in WAVEFORM_TRANSFORMS:  # each leaves copy 0 as it is
            batch = transform(batch, self.generator, s)
        spec = self.ear.scaleogram(batch)
        for transform in SCALEOGRAM_TRANSFORMS:
            spec = transform(spec, self.generator, s, fill=self.silence)
        taps = tuple(dict.fromkeys(self.objective.taps))
        acts = self.ear.forward_scaleogram(spec, taps=taps)
        loop = {}
        for tap, a in acts.items():
            total = a.shape[-1]
            loop[tap] = (int(round(total * (reps - 1) / reps)), total)
        view = View(acts, loop, shift, stats=self.stats, cpc=self._cpc_loss if self.cpc is not None else None)
        scores = self.objective(view)
        penalty = self.param.penalty().to(x.device)
        if self._penalties:
            heard = R.Heard(x, spec, view, self.objective, taps, self.sr, self.silence)
            for weight, piece in self._penalties:
                penalty = penalty + weight * piece(heard)
        loss = penalty - scores.mean()  # the one sign flip: objectives are maximised, the optimizer minimises
        return loss, scores, view, x

    def _cpc_loss(self, acts) -> Tensor:
        z, c = acts["enc.7"][:, :, 0, :], acts["ar.8"]
        ends = self.ear.context_end_steps(z.shape[-1])
        return self.cpc(z, c, ends).loss

    def step(self) -> StepStats:
        """One optimizer step; the loop stays finite and within [-1, 1] whatever happens.

        The step is judged by :attr:`control` on the loop as heard: a step that made it score worse
        is taken back before any gradient is computed for it, and the next step is shorter."""
        t0 = time.perf_counter()
        s = self.settings
        with torch.no_grad():
            x = self.waveform_tensor()
            if self.param.writes_back and float(x.square().mean().sqrt()) < 1e-3:
                # In (near) silence the log scaleogram sits on its floor and the gradient is
                # exactly zero: give the ear a faint noise (-50 dBFS) to start hearing from.
                self._write(x + 3e-3 * torch.randn(x.shape, generator=self.generator).to(x.device))
                self.control.restart()
        self._optimizer.zero_grad(set_to_none=True)
        loss, scores, _, x = self._evaluate(int(s["/opt/batch"]))
        heard = float(scores[0].detach())  # the loop as it sounds: copy 0, untouched by the jitter
        penalty = float((loss + scores.mean()).detach())
        finite = bool(torch.isfinite(loss))
        if finite and not self.control.judge(heard - penalty):
            self._restore(self._last_good)  # the loop before the step that made it worse
            self.step_count += 1
            return StepStats(self.step_count, float(loss.detach()), self._kept, time.perf_counter() - t0, True,
                             self.control.settled)
        self._kept = heard
        if finite:
            self._hear(x)
            loss.backward()
            grads = [p.grad for p in self._tensors() if p.grad is not None]
            if grads and all(bool(torch.isfinite(g).all()) for g in grads):
                for g in grads:  # each tensor on its own scale: notes, drums, timbre, samples
                    if s["/opt/grad_norm"]:
                        g.div_(g.std().clamp_min(1e-12) if g.numel() > 1 else g.abs().clamp_min(1e-12))
                    if s["/reg/grad_noise"] > 0:
                        g.add_(torch.randn(g.shape, generator=self.generator).to(g.device) * s["/reg/grad_noise"]
                               * (g.std() if g.numel() > 1 else 1.0))
                self._last_good = self._tensors_copy()  # the kept loop, to go back to
                for group in self._optimizer.param_groups:
                    group["lr"] = s["/opt/lr"] * group["lr_scale"] * self.control.scale
                self._optimizer.step()
                self.param.post_step()
            else:
                finite = False
        with torch.no_grad():
            x = self.waveform_tensor()
            if not torch.isfinite(x).all():
                finite = False
                self._restore(self._last_good)
            elif self.param.writes_back:  # a grid renders at its own fixed peak instead
                peak = x.abs().max()
                if peak > 1.0:  # peak-normalise rather than clip: keeps the shape of the sound
                    x = x / peak
                mix = float(s["/reg/mix"])
                if mix > 0 and self.reference is not None:
                    x = (1 - mix) * x + mix * _resample(self.reference, x.numel()).to(x.device)
                    self.control.rebase()  # pulled toward the reference on purpose: no step to take back
                self._write(x)
        self.step_count += 1
        return StepStats(self.step_count, float(loss.detach()) if finite else float("nan"),
                         heard if finite else float("nan"), time.perf_counter() - t0, finite, self.control.settled)

    @torch.no_grad()
    def settle(self) -> float:
        """Judge the loop the last step made now, without waiting for the next step (one forward
        pass of the loop alone, no gradient): keep it if it scores at least the best kept so far,
        else go back to that one. Returns the target score of the loop kept. For a loop that leaves
        the dream for good (a rendered file); a running dream judges each loop at its next step."""
        loss, scores, _, x = self._evaluate(1)
        heard = float(scores[0])
        if self.control.judge(heard - float(loss + scores.mean())):
            self._kept = heard
            self._hear(x)
            self._last_good = self._tensors_copy()
        else:
            self._restore(self._last_good)
        return self._kept

    def _hear(self, x: Tensor) -> None:
        """Keep the loop just judged worth keeping, and its notes: what the engine is given to play
        (a step's result is only heard once the next step has judged it)."""
        self._heard = (x.detach().clone(), self.param.pattern(self.settings))

    def heard_tensor(self) -> Tensor:
        """The loop the dream last kept (the current one before any step has been judged): what
        to play and to stream, never a step about to be taken back."""
        return self._heard[0] if self._heard is not None else self.waveform_tensor().detach()

    def heard(self) -> np.ndarray:
        """:meth:`heard_tensor` as float32 in [-1, 1]."""
        return self.heard_tensor().clamp(-1, 1).cpu().numpy().astype(np.float32)

    def heard_pattern(self):
        """The notes of :meth:`heard_tensor`'s loop (grid only, else None)."""
        return self._heard[1] if self._heard is not None else self.pattern()

    def _restore(self, tensors: list) -> None:
        with torch.no_grad():
            for p, good in zip(self._tensors(), tensors):
                p.copy_(good)

    def _write(self, x: Tensor) -> None:
        self.param.write(x)

    @torch.no_grad()
    def target_score(self) -> float:
        """The objective on the current loop without jitter or masks (what is heard)."""
        return float(self.clean()[1])

    @torch.no_grad()
    def clean(self):
        """Loss, score and view of the current loop without jitter or masks (what is heard)."""
        return self.evaluate(batch=1)


def _pitch(x: Tensor, generator: torch.Generator, s: Mapping) -> Tensor:
    return T.pitch_jitter(x, generator, cents=float(s["/reg/pitch_cents"]))


def _time_mask(spec: Tensor, generator: torch.Generator, s: Mapping, *, fill: float) -> Tensor:
    return T.time_mask(spec, generator, width=float(s["/reg/time_mask"]), fill=fill)


def _freq_mask(spec: Tensor, generator: torch.Generator, s: Mapping, *, fill: float) -> Tensor:
    return T.freq_mask(spec, generator, width=float(s["/reg/freq_mask"]), fill=fill)


#: The batch's transforms in order, on the waveform and then on its scaleogram: ``transform(x,
#: generator, settings)``. Every one leaves copy 0 as it is, so the loop as heard is always in the
#: batch, and a batch of one is the loop without jitter or masks.
WAVEFORM_TRANSFORMS = (_pitch,)
SCALEOGRAM_TRANSFORMS = (_time_mask, _freq_mask)


#: Settings that change what a step is judged by (the objective and the parameterization's own penalty).
_JUDGED = ("/target/", "/reg/", "/grid/sparsity", "/opt/context")
#: Settings after which the parameterization is made again (a grid keeps its notes).
_REBUILD = ("/opt/param", "/opt/algorithm", "/opt/spectral_decay", "/clock/beats_per_bar", "/loop/bars")
#: Grid settings read as they are, without making the grid again.
_TIMBRE = ("/grid/brightness", "/grid/attack_ms", "/grid/decay_ms")
_GRID_LIVE = ("/grid/threshold", "/grid/note_steps", "/grid/midi_channel", "/grid/drum_channel", "/grid/midi") + _TIMBRE


def _silence(dreamer: Dreamer, kind: str, n: int, samples: Optional[np.ndarray]) -> Tensor:
    return torch.zeros(n)


def _noise(dreamer: Dreamer, kind: str, n: int, samples: Optional[np.ndarray]) -> Tensor:
    x = 0.05 * torch.randn(n, generator=dreamer.generator)
    # noise of the parameterization's own colour
    return FACTORIES[dreamer.settings["/opt/param"]].colour(x, dreamer.settings, sr=dreamer.sr)


def _samples(dreamer: Dreamer, kind: str, n: int, samples: Optional[np.ndarray]) -> Tensor:
    if samples is None:
        if dreamer.param is None:
            raise ParameterError(f"reset {kind} needs samples")
        samples = dreamer.waveform()
    return _resample(torch.as_tensor(np.asarray(samples, dtype=np.float32)), n)


#: ``/opt/reset`` kind -> ``start(dreamer, kind, n, samples)``, the waveform a dream starts from
#: (checked against the command's choices).
STARTS = check_table("/opt/reset kind", row(OPT_COMMANDS, "/opt/reset").args[0].choices,
                     {"silence": _silence, "noise": _noise, "file": _samples, "current": _samples,
                      "input": _samples})


def _resample(x: Tensor, n: int) -> Tensor:
    """Linear resampling of a loop to ``n`` samples (periodic)."""
    x = x.detach().float().cpu()
    if x.numel() == n:
        return x.clone()
    pos = torch.arange(n, dtype=torch.float64) * (x.numel() / n)
    lo = pos.floor().long()
    frac = (pos - lo).float()
    return x[lo % x.numel()] * (1 - frac) + x[(lo + 1) % x.numel()] * frac
