"""Parameterizations: what the dream optimizes, each a piece of its own (``/opt/param``).

Every parameterization has one signature: it holds tensors the optimizer moves
(:meth:`Parameterization.groups`) and renders them as the loop (:meth:`Parameterization.waveform`,
a differentiable ``(N,)`` waveform). :meth:`~Parameterization.views` renders the copies of a
dream batch — copy 0 is always the loop itself — so that a parameterization can bring the
transforms that suit it.

- :class:`Raw` — the waveform itself (one value per sample).
- :class:`Spectral` — the waveform's spectrum with each coefficient scaled by ``1/f**decay``
  (``/opt/spectral_decay``; 0.5 is pink), as lucid does for images: the optimizer moves
  decorrelated coefficients whose equal steps make 1/f-coloured changes.
- :class:`Grid` — notes and drum hits on the bar grid in a key and scale, and three timbre values,
  rendered by :class:`~earengine.optvis.grid.GridSynth`; optionally plus a raw residual
  (``/grid/residual``). Its transforms: copies shifted by whole steps (the dreamer quantises its
  time shift with :attr:`Grid.steps`) and transposed by up to ``/grid/transpose`` scale degrees.

:data:`FACTORIES` maps each choice of ``/opt/param`` to its class, checked against the row: a
choice added to the row without a parameterization fails at import. Each class builds itself from
the settings (:meth:`Parameterization.build`) and says how the dream treats it (:meth:`~Parameterization.colour`,
:attr:`~Parameterization.writes_back`), so the dreamer never asks which one it holds.

Examples
--------
>>> import torch
>>> from earengine.params import default_registry
>>> s = default_registry().snapshot()
>>> p = make(s, n_samples=44100, sr=44100, generator=torch.Generator().manual_seed(0))
>>> p.name, p.waveform().shape, p.steps  # two bars of sixteenths
('grid', torch.Size([44100]), 32)
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

import numpy as np
import torch
from torch import Tensor

from earengine.errors import ParameterError
from earengine.music import NOTE_NAMES, SCALES, scale_notes, steps_per_bar
from earengine.optvis.grid import DRUMS, GridShape, GridSynth, Timbre
from earengine.optvis.params import OPT_PARAMS
from earengine.params.registry import check_choices
from earengine.params.spec import row
from earengine.pattern import DRUM_NOTES, Note, Pattern

__all__ = ["Parameterization", "Raw", "Spectral", "Grid", "FACTORIES", "make", "grid_shape", "coloured",
           "GRID_LR_SCALE"]

#: Grid logits move this many times faster than a raw sample at the same /opt/lr: one /opt/lr
#: serves every parameterization (with /opt/grad_norm a step moves each value by about lr × scale).
GRID_LR_SCALE = 40.0
#: A new target starts from the notes of the old one within ±this logit (see :meth:`Grid.loosen`).
LOOSE_LOGIT = 3.0
#: Below this strength nothing of the grid is taken to sound (a loop of all-silent notes has no notes).
SILENT_STRENGTH = 1e-3
#: Peak of a grid loop (it is normalised: the strengths set the balance, not the level).
GRID_PEAK = 0.9


class Parameterization:
    """Base: tensors to optimize and the loop they render to."""

    name = ""
    #: Steps of the bar grid a time shift is quantised to (0: any shift).
    steps = 0
    #: The first and the longest step, as factors of /opt/lr (see earengine.optvis.stepsize): a
    #: waveform's samples take /opt/lr itself.
    bold = (1.0, 1.0)
    #: The loop is a waveform the dream may write back after a step (peak-normalised, mixed toward
    #: the reference, nudged out of silence); a grid renders at its own fixed peak instead.
    writes_back = True

    @classmethod
    def build(cls, settings: Mapping, *, n_samples: int, sr: int, generator: torch.Generator, x: Optional[Tensor],
              device: str, previous: Optional["Parameterization"]) -> "Parameterization":
        """A new one from the settings, starting from waveform ``x`` (zeros when None) or carrying
        over what it can of ``previous``."""
        raise NotImplementedError  # pragma: no cover - abstract

    @classmethod
    def colour(cls, noise: Tensor, settings: Mapping, *, sr: int) -> Tensor:
        """White ``noise`` as a start of this parameterization's own colour (``/opt/reset noise``)."""
        return noise

    def groups(self) -> list[dict]:
        """Optimizer parameter groups: ``{"params": [...], "lr_scale": float}``."""
        raise NotImplementedError  # pragma: no cover - abstract

    def waveform(self) -> Tensor:
        """The loop, ``(N,)``, differentiable."""
        raise NotImplementedError  # pragma: no cover - abstract

    def views(self, batch: int, generator: torch.Generator) -> Tensor:
        """``(batch, N)`` copies of the loop for the dream batch; copy 0 is the loop itself."""
        x = self.waveform()
        return x[None, :].expand(batch, x.numel())

    def penalty(self) -> Tensor:
        """What the parameterization itself asks to keep small (0 for most)."""
        return torch.zeros(())

    def write(self, x: Tensor) -> None:
        """Set the loop to waveform ``x`` where the parameterization can (after a step's clean-up)."""

    def post_step(self) -> None:
        """Keep values in their range after an optimizer step."""

    def loosen(self) -> None:
        """Before a new target: undo what the old one made rigid, keep what it made (nothing for
        most; a grid brings its saturated notes back to where they can move)."""

    def set_timbre(self, settings: Mapping) -> None:
        """Take up a performer's timbre settings, for a parameterization that has a timbre (grid)."""

    def pattern(self, settings: Mapping) -> Optional[Pattern]:
        """The loop's notes (grid only)."""
        return None


class Raw(Parameterization):
    """The waveform, sample by sample."""

    name = "raw"

    def __init__(self, x: Tensor) -> None:
        self.x = x.detach().clone().float().requires_grad_(True)

    @classmethod
    def build(cls, settings: Mapping, *, n_samples: int, sr: int, generator: torch.Generator, x: Optional[Tensor],
              device: str, previous: Optional[Parameterization]) -> "Raw":
        return cls(_start(x, n_samples, device))

    def groups(self) -> list[dict]:
        return [{"params": [self.x], "lr_scale": 1.0}]

    def waveform(self) -> Tensor:
        return self.x

    def write(self, x: Tensor) -> None:
        self.x.data.copy_(x)


class Spectral(Parameterization):
    """The waveform's spectrum, coefficients scaled by ``1 / (f / 20 Hz) ** decay`` above 20 Hz."""

    name = "spectral"

    def __init__(self, x: Tensor, *, sr: int, decay: float = 0.5) -> None:
        n = x.numel()
        self.n = n
        hz = torch.fft.rfftfreq(n, 1.0 / sr).to(x.device)
        self.scale = (hz.clamp_min(20.0) / 20.0) ** (-float(decay))
        self.c = torch.zeros(n // 2 + 1, 2, device=x.device, requires_grad=True)
        self.write(x)

    @classmethod
    def build(cls, settings: Mapping, *, n_samples: int, sr: int, generator: torch.Generator, x: Optional[Tensor],
              device: str, previous: Optional[Parameterization]) -> "Spectral":
        return cls(_start(x, n_samples, device), sr=sr, decay=settings.get("/opt/spectral_decay", 0.5))

    @classmethod
    def colour(cls, noise: Tensor, settings: Mapping, *, sr: int) -> Tensor:
        return coloured(noise, sr=sr, decay=settings["/opt/spectral_decay"])

    def groups(self) -> list[dict]:
        # a coefficient is about sqrt(N) times a sample: the same /opt/lr moves the sound as much
        return [{"params": [self.c], "lr_scale": math.sqrt(self.n)}]

    def waveform(self) -> Tensor:
        return torch.fft.irfft(torch.view_as_complex(self.c) * self.scale, n=self.n)

    def write(self, x: Tensor) -> None:
        spec = torch.fft.rfft(x.detach().float()) / self.scale
        self.c.data.copy_(torch.view_as_real(spec))


def coloured(x: Tensor, *, sr: int, decay: float) -> Tensor:
    """``x`` (white noise) with its spectrum scaled as :class:`Spectral` scales its coefficients
    (``decay`` 0.5: pink), at the same RMS.

    >>> x = coloured(torch.randn(44100, generator=torch.Generator().manual_seed(0)), sr=44100, decay=0.5)
    >>> p = torch.fft.rfft(x).abs() ** 2
    >>> bool(p[100:200].mean() > 10 * p[1600:3200].mean())   # 16 times less power four octaves up
    True
    """
    hz = torch.fft.rfftfreq(x.numel(), 1.0 / sr).to(x.device)
    y = torch.fft.irfft(torch.fft.rfft(x) * (hz.clamp_min(20.0) / 20.0) ** (-float(decay)), n=x.numel())
    return y * (x.square().mean().sqrt() / y.square().mean().sqrt().clamp_min(1e-12))


def grid_shape(settings: Mapping) -> GridShape:
    """The lattice the ``/grid/*`` settings describe (raises ParameterError on settings that clash)."""
    s = settings
    key, scale = s["/grid/key"], s["/grid/scale"]
    if key not in NOTE_NAMES:
        raise ParameterError(f"/grid/key={key!r} must be one of {', '.join(NOTE_NAMES)}")
    per_octave = len(SCALES.get(scale, ()))
    if not per_octave:
        raise ParameterError(f"/grid/scale={scale!r} must be a scale of earengine.music.SCALES but off")
    count = per_octave * int(s["/grid/octaves"]) + 1
    notes = scale_notes(key, scale, lowest_midi=int(s["/grid/register"]), count=count)
    try:
        spb = steps_per_bar(s["/grid/division"], beats_per_bar=int(s["/clock/beats_per_bar"]))
    except ParameterError as exc:
        raise ParameterError(f"/grid/division={s['/grid/division']}: {exc}") from None
    return GridShape(notes, spb, int(s["/loop/bars"]))


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


class Grid(Parameterization):
    """Notes and drum hits on the bar grid, and a timbre; see :mod:`earengine.optvis.grid`.

    Parameters
    ----------
    settings : mapping
        Registry values (``/grid/*``, ``/loop/bars``, ``/clock/beats_per_bar``).
    n_samples : int
        Loop length.
    sr : int
    generator : torch.Generator
        Seeds the first notes.
    previous : Grid, optional
        A grid whose notes and timbre carry over (a new tempo, a new key: the notes stay on
        their steps and rows where the lattice still has them).
    """

    name = "grid"
    writes_back = False
    #: Notes start bold: a logit at -3 needs ~60 steps of 0.08 to sound; 4-8 × that, taken back
    #: when it overshoots, brings a new target's notes within a loop (bench/responsiveness.py).
    bold = (4.0, 8.0)

    def __init__(self, settings: Mapping, *, n_samples: int, sr: int, generator: torch.Generator,
                 device: str = "cpu", previous: Optional["Grid"] = None) -> None:
        self.shape = grid_shape(settings)
        self.steps = self.shape.steps
        self.synth = GridSynth(self.shape, n_samples=n_samples, sr=sr, device=device)
        self.n, self.sr, self.device = n_samples, sr, device
        self.voices = float(settings["/grid/voices"])
        self.sparsity = float(settings["/grid/sparsity"])
        self.drum_level = float(settings["/grid/drums"])
        self.transpose = int(settings["/grid/transpose"])
        self.residual_weight = float(settings["/grid/residual"])
        p, s = self.shape.pitches, self.shape.steps
        if previous is not None:
            self.notes = _carry(previous.notes.detach(), p, s).requires_grad_(True)
            self.drums = _carry(previous.drums.detach(), len(DRUMS), s).requires_grad_(True)
            self.timbre_raw = previous.timbre_raw.detach().clone().requires_grad_(True)
            self.residual = (_resample_loop(previous.residual.detach(), n_samples) if previous.residual.numel() == previous.n
                             else torch.zeros(n_samples)).to(device).requires_grad_(True)
        else:
            self.notes, self.drums = _first_notes(p, s, self.shape.steps_per_bar, generator, device)
            self.timbre_raw = torch.zeros(3, device=device, requires_grad=True)
            self.set_timbre(settings)
            self.residual = torch.zeros(n_samples, device=device, requires_grad=True)

    @classmethod
    def build(cls, settings: Mapping, *, n_samples: int, sr: int, generator: torch.Generator, x: Optional[Tensor],
              device: str, previous: Optional[Parameterization]) -> "Grid":
        """A grid cannot take a waveform: fresh notes, or the notes of a ``previous`` grid."""
        return cls(settings, n_samples=n_samples, sr=sr, generator=generator, device=device,
                   previous=previous if isinstance(previous, Grid) else None)

    # -- values ---------------------------------------------------------------------------------
    def set_timbre(self, settings: Mapping) -> None:
        """Set the timbre to ``/grid/brightness``, ``/grid/attack_ms`` and ``/grid/decay_ms``."""
        with torch.no_grad():
            self.timbre_raw.copy_(torch.tensor([_logit(settings["/grid/brightness"]),
                                                _logit((settings["/grid/attack_ms"] - 2.0) / 48.0),
                                                math.log(settings["/grid/decay_ms"])]))

    def timbre(self) -> Timbre:
        b, a, d = self.timbre_raw
        return Timbre(torch.sigmoid(b), 2.0 + 48.0 * torch.sigmoid(a), d.clamp(math.log(30.0), math.log(800.0)).exp())

    def strengths(self, notes: Optional[Tensor] = None) -> Tensor:
        """Note strengths in [0, 1], each step scaled down to at most ``/grid/voices`` in sum."""
        s = torch.sigmoid(self.notes if notes is None else notes)
        total = s.sum(-2, keepdim=True)
        return s * (self.voices / total.clamp_min(1e-6)).clamp(max=1.0)

    def drum_strengths(self) -> Tensor:
        return torch.sigmoid(self.drums) * self.drum_level

    def groups(self) -> list[dict]:
        groups = [{"params": [self.notes, self.drums, self.timbre_raw], "lr_scale": GRID_LR_SCALE}]
        if self.residual_weight > 0:
            groups.append({"params": [self.residual], "lr_scale": 1.0})
        return groups

    # -- rendering ------------------------------------------------------------------------------
    def _finish(self, y: Tensor) -> Tensor:
        """Normalise to a fixed peak (the balance is the dream's, the level is not) and add the residual."""
        peak = y.abs().amax(-1, keepdim=True).detach().clamp_min(1e-4)
        y = y * (GRID_PEAK / peak)
        if self.residual_weight > 0:
            y = y + self.residual_weight * self.residual
        return y

    def waveform(self) -> Tensor:
        return self._finish(self.synth.render(self.strengths(), self.drum_strengths(), self.timbre()))

    def views(self, batch: int, generator: torch.Generator) -> Tensor:
        """Copy 0 as it is; the others transposed by up to ``/grid/transpose`` scale degrees
        (rows shifted, the lattice's edge left silent)."""
        if batch < 2 or self.transpose <= 0:
            return super().views(batch, generator)
        degrees = torch.randint(-self.transpose, self.transpose + 1, (batch,), generator=generator)
        degrees[0] = 0  # copy 0 is the loop as it sounds
        notes = torch.stack([_shift_rows(self.notes, int(d)) for d in degrees])
        drums = self.drum_strengths()[None].expand(batch, -1, -1)
        return self._finish(self.synth.render(self.strengths(notes), drums, self.timbre()))

    def penalty(self) -> Tensor:
        return self.sparsity * torch.sigmoid(self.notes).mean()

    def post_step(self) -> None:
        with torch.no_grad():  # logits stay where sigmoid still has a gradient
            self.notes.clamp_(-8.0, 8.0)
            self.drums.clamp_(-8.0, 8.0)
            if self.residual_weight > 0:
                self.residual.clamp_(-1.0, 1.0)

    def loosen(self) -> None:
        """Bring every note and drum logit within ±:data:`LOOSE_LOGIT`: a dream drives its notes to
        the clamp (strength 0.0003 or 0.9997), where the sigmoid's slope is ~0 and a new target
        cannot move them. Within ±3 (0.05 … 0.95) the notes the old target made stay the loudest —
        what the two targets share is kept — and every note can move again."""
        with torch.no_grad():
            self.notes.clamp_(-LOOSE_LOGIT, LOOSE_LOGIT)
            self.drums.clamp_(-LOOSE_LOGIT, LOOSE_LOGIT)

    # -- notes out ------------------------------------------------------------------------------
    def pattern(self, settings: Mapping) -> Pattern:
        """The notes and drum hits whose strength, as a share of the loop's strongest, passes
        ``/grid/threshold`` (velocity from the share above it), on ``/grid/midi_channel`` and
        ``/grid/drum_channel``.

        A share, not the strength itself: the loop is rendered at a fixed peak, so raising every
        strength alike sounds the same, and the dream leaves them low (the sparsity penalty pulls
        them all down together). What is heard is each note against the strongest one."""
        threshold = float(settings["/grid/threshold"])
        length = float(settings["/grid/note_steps"])
        notes: list[Note] = []
        with torch.no_grad():
            rows = [(self.strengths().cpu().numpy(), self.shape.notes, int(settings["/grid/midi_channel"]))]
            if self.drum_level > 0:
                rows.append((self.drum_strengths().cpu().numpy(), tuple(DRUM_NOTES[d] for d in DRUMS),
                             int(settings["/grid/drum_channel"])))
        strongest = max(float(r[0].max()) for r in rows)
        if strongest < SILENT_STRENGTH:
            rows = []  # nothing sounds: no note is the strongest
        for strengths, pitches, channel in rows:
            share = strengths / strongest
            for p, s in zip(*np.nonzero(share >= threshold)):
                above = (share[p, s] - threshold) / max(1e-6, 1.0 - threshold)
                notes.append(Note(int(s), int(pitches[p]), int(round(40 + 87 * min(1.0, above))), channel, length))
        return Pattern(tuple(notes), self.shape.steps_per_bar, self.shape.bars, int(settings["/clock/beats_per_bar"]))


def _first_notes(pitches: int, steps: int, steps_per_bar: int, generator: torch.Generator, device: str):
    """A start that is already music and leaves the choice of notes to the ear: every note of the
    scale soft on every step (a shimmering chord in key, strengths near 0.05, seeded to differ a
    little), a kick on every other beat and hats on the off-beats. Starting from random strong
    notes instead makes a dream remember its seed more than its target."""
    notes = torch.full((pitches, steps), -3.0)
    notes += 0.3 * torch.randn(notes.shape, generator=generator)
    beat = max(1, steps_per_bar // 4)
    drums = torch.full((len(DRUMS), steps), -5.0)
    idx = torch.arange(steps)
    drums[0, idx % (2 * beat) == 0] = 0.5
    drums[2, (idx % beat == beat // 2) if beat > 1 else idx >= 0] = -0.5
    return notes.to(device).requires_grad_(True), drums.to(device).requires_grad_(True)


def _shift_rows(x: Tensor, k: int) -> Tensor:
    """Rows moved up by ``k`` (down for negative), filled with the lowest logit: a transposition."""
    if k == 0:
        return x
    fill = torch.full_like(x[: abs(k)], -8.0)
    return torch.cat([fill, x[:-k]]) if k > 0 else torch.cat([x[-k:], fill])


def _carry(old: Tensor, rows: int, steps: int) -> Tensor:
    """Old logits on a new lattice: rows kept from the bottom, steps repeated or cut."""
    new = torch.full((rows, steps), -5.0, device=old.device)
    r = min(rows, old.shape[0])
    idx = torch.arange(steps, device=old.device) % old.shape[1]
    new[:r] = old[:r][:, idx]
    return new


def _resample_loop(x: Tensor, n: int) -> Tensor:
    pos = torch.arange(n, dtype=torch.float64) * (x.numel() / n)
    lo = pos.floor().long()
    frac = (pos - lo).float()
    return x[lo % x.numel()] * (1 - frac) + x[(lo + 1) % x.numel()] * frac


def _start(x: Optional[Tensor], n_samples: int, device: str) -> Tensor:
    return torch.zeros(n_samples, device=device) if x is None else x.to(device)


#: ``/opt/param`` choice -> its parameterization (checked against the row).
FACTORIES: dict[str, type[Parameterization]] = check_choices(
    row(OPT_PARAMS, "/opt/param"),
    {"grid": Grid, "raw": Raw, "spectral": Spectral},
)


def make(settings: Mapping, *, n_samples: int, sr: int, generator: torch.Generator,
         x: Optional[Tensor] = None, device: str = "cpu", previous: Optional[Parameterization] = None) -> Parameterization:
    """The parameterization ``/opt/param`` names, starting from waveform ``x`` (raw, spectral) or
    carrying over a previous grid's notes."""
    name = settings["/opt/param"]
    factory = FACTORIES.get(name)
    if factory is None:
        raise ParameterError(f"/opt/param={name!r} must be one of {', '.join(FACTORIES)}")
    return factory.build(settings, n_samples=n_samples, sr=sr, generator=generator, x=x, device=device,
                         previous=previous)
