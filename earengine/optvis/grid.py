"""A small differentiable synthesizer: notes and drum hits on the bar grid, rendered as one loop.

Its input is a lattice of note strengths, pitch × step — pitches are the notes of a scale on a key
(:func:`earengine.music.scale_notes`), steps a division of the bar — plus a drum kit (kick, snare,
hats) on the same steps and three timbre values (brightness, attack, decay). Everything it
renders is differentiable in all of these, so an optimizer can move them.

How it renders, and why it is clean:

- every note is one kernel — a band-limited harmonic tone (no partial above 0.45 × the sample
  rate) under an envelope that rises over the attack (a raised cosine, at least 2 ms), decays
  exponentially and fades out to exactly zero before it ends — starting at phase 0 on its step;
- each step's notes (its strengths times the kernels, one matrix product) are added in at the
  step's onset, ``round(s × N / S)`` samples into the loop, circularly: a note that rings across
  the loop's end continues at its start, so the loop wraps seamlessly; a tempo change (a new loop
  length ``N``) keeps every note on its step, to half a sample;
- drums are fixed kernels (a pitch-swept sine kick, a tone-plus-noise snare, high noise hats; the
  noise is seeded, so the kit is the same instrument in every dream) on the same steps.

Examples
--------
>>> import torch
>>> g = GridShape(notes=(57, 60, 62), steps_per_bar=4, bars=1)
>>> synth = GridSynth(g, n_samples=22050, sr=22050)
>>> strengths = torch.zeros(3, 4); strengths[0, 1] = 1.0
>>> y = synth.render(strengths, torch.zeros(3, 4), Timbre.default())
>>> y.shape, int(y.abs().argmax()) > 22050 // 4   # the note sounds after step 1's line
(torch.Size([22050]), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from earengine.music import midi_to_hz

__all__ = ["GridShape", "Timbre", "GridSynth", "DRUMS", "NOTE_SECONDS", "DRUM_SECONDS"]

#: The drum voices, in the order of the drum rows.
DRUMS = ("kick", "snare", "hat")
#: Longest a note rings (it has faded to zero by then), and a drum hit.
NOTE_SECONDS = 1.5
DRUM_SECONDS = 0.35
_FADE_S = 0.01  # the raised-cosine fade that ends every kernel at exactly zero
_HARMONICS = 8


@dataclass(frozen=True)
class GridShape:
    """The lattice: MIDI notes (rows, low to high) and steps (columns).

    Parameters
    ----------
    notes : tuple of int
        MIDI note of each row.
    steps_per_bar : int > 0
    bars : int > 0
    """

    notes: tuple
    steps_per_bar: int
    bars: int

    @property
    def steps(self) -> int:
        return self.steps_per_bar * self.bars

    @property
    def pitches(self) -> int:
        return len(self.notes)


@dataclass(frozen=True)
class Timbre:
    """Brightness in [0, 1] (each harmonic ``k`` has amplitude ``brightness**(k-1) / k``), attack and
    decay in milliseconds; floats or 0-d tensors (tensors carry gradients)."""

    brightness: object
    attack_ms: object
    decay_ms: object

    @classmethod
    def default(cls) -> "Timbre":
        return cls(torch.tensor(0.5), torch.tensor(5.0), torch.tensor(250.0))


def _fade(length: int, sr: int) -> Tensor:
    """1 until the last ``_FADE_S`` of ``length`` samples, then a raised cosine down to 0."""
    fade = max(2, int(_FADE_S * sr))
    t = torch.ones(length)
    ramp = 0.5 + 0.5 * torch.cos(torch.linspace(0, math.pi, min(fade, length)))
    t[-ramp.numel():] = ramp
    t[-1] = 0.0
    return t


class GridSynth:
    """Renders strengths on a :class:`GridShape` into a loop of ``n_samples`` samples.

    Parameters
    ----------
    shape : GridShape
    n_samples : int > 0
        Loop length (the bars at the current tempo).
    sr : int > 0
        Sample rate in Hz.
    device : str
    """

    def __init__(self, shape: GridShape, *, n_samples: int, sr: int, device: str = "cpu") -> None:
        self.shape, self.n, self.sr, self.device = shape, int(n_samples), int(sr), device
        self.length = min(self.n, int(NOTE_SECONDS * sr))
        t = torch.arange(self.length, dtype=torch.float32, device=device) / sr
        self.t = t
        freqs = torch.tensor([midi_to_hz(m) for m in shape.notes], dtype=torch.float32, device=device)
        k = torch.arange(1, _HARMONICS + 1, dtype=torch.float32, device=device)
        self.partials = freqs[:, None] * k[None, :]  # (P, K) Hz
        self.audible = (self.partials < 0.45 * sr).float()  # band limit: nothing aliases
        # sin(2π f_k t) for every pitch and partial: (P, K, L), made once
        self.basis = torch.sin(2 * math.pi * self.partials[:, :, None] * t[None, None, :])
        self.fade = _fade(self.length, sr).to(device)
        self.k = k
        self.drum_kit = _drum_kit(sr, min(self.n, int(DRUM_SECONDS * sr))).to(device)  # (3, L)
        self._indices: dict = {}

    # -- pieces ---------------------------------------------------------------------------------
    def envelope(self, attack_ms, decay_ms) -> Tensor:
        """(L,) attack (raised cosine), exponential decay, and the fade to zero."""
        attack_s = torch.as_tensor(attack_ms, dtype=torch.float32, device=self.device).clamp_min(2.0) / 1000.0
        decay_s = torch.as_tensor(decay_ms, dtype=torch.float32, device=self.device).clamp_min(1.0) / 1000.0
        rise = (self.t / attack_s).clamp(0.0, 1.0)
        rise = 0.5 - 0.5 * torch.cos(math.pi * rise)
        return rise * torch.exp(-self.t / decay_s) * self.fade

    def note_kernels(self, timbre: Timbre) -> Tensor:
        """(P, L) one note of each pitch, starting at phase 0 (peak near 1)."""
        b = torch.as_tensor(timbre.brightness, dtype=torch.float32, device=self.device).clamp(0.0, 0.999)
        weights = b ** (self.k - 1) / self.k  # (K,)
        weights = weights[None, :] * self.audible  # (P, K)
        weights = weights / weights.sum(1, keepdim=True).clamp_min(1e-6)
        tone = torch.einsum("pk,pkl->pl", weights, self.basis)
        return tone * self.envelope(timbre.attack_ms, timbre.decay_ms)[None, :]

    def _place(self, strengths: Tensor, kernels: Tensor) -> Tensor:
        """Kernels (P, L) placed on the steps with strengths (…, P, S), summed: (…, N).

        Each step's mix of kernels (a matrix product) is added in at its onset, circularly."""
        per_step = torch.einsum("...ps,pl->...sl", strengths, kernels)  # (…, S, L)
        lead = per_step.shape[:-2]
        flat = per_step.reshape(-1, per_step.shape[-2] * per_step.shape[-1])
        idx = self._index(kernels.shape[-1])
        y = torch.zeros(flat.shape[0], self.n, dtype=flat.dtype, device=flat.device).index_add(1, idx, flat)
        return y.reshape(*lead, self.n)

    def _index(self, length: int) -> Tensor:
        if length not in self._indices:
            onsets = torch.round(torch.arange(self.shape.steps, dtype=torch.float64) * self.n / self.shape.steps).long()
            self._indices[length] = ((onsets[:, None] + torch.arange(length)[None, :]) % self.n).reshape(-1).to(self.device)
        return self._indices[length]

    def render(self, strengths: Tensor, drums: Tensor, timbre: Timbre) -> Tensor:
        """The loop.

        Parameters
        ----------
        strengths : Tensor, shape (P, S) or (B, P, S)
            Note strengths (>= 0); row ``p`` is ``shape.notes[p]``, column ``s`` step ``s``.
        drums : Tensor, shape (3, S) or (B, 3, S)
            Kick, snare and hat strengths.
        timbre : Timbre

        Returns
        -------
        Tensor, shape (n_samples,) or (B, n_samples)
            Not normalised: a strength of 1 gives a note of peak about 1.
        """
        return self._place(strengths, self.note_kernels(timbre)) + self._place(drums, self.drum_kit)

    def onset_samples(self, step: int) -> float:
        """Where step ``step`` starts, in samples (fractional)."""
        return step * self.n / self.shape.steps


def _drum_kit(sr: int, length: int) -> Tensor:
    """(3, length) kick, snare, hat: each starts at 0, peaks near 1 and fades to exactly 0."""
    g = torch.Generator().manual_seed(20260101)  # the kit is an instrument: the same noise every time
    t = torch.arange(length, dtype=torch.float32) / sr
    fade = _fade(length, sr)
    rise = (t / 0.001).clamp(0, 1)  # 1 ms: no click on the onset
    # kick: a sine swept from 150 Hz down to 50 Hz
    f = 50.0 + 100.0 * torch.exp(-t / 0.03)
    kick = torch.sin(2 * math.pi * torch.cumsum(f, 0) / sr) * torch.exp(-t / 0.12)
    noise = torch.randn(length, generator=g)
    spec = torch.fft.rfft(noise)
    hz = torch.fft.rfftfreq(length, 1.0 / sr)
    snare_noise = torch.fft.irfft(spec * ((hz > 1000) & (hz < 8000)).float(), n=length)
    hat_noise = torch.fft.irfft(spec * ((hz > 7000) & (hz < 16000)).float(), n=length)
    snare = 0.6 * torch.sin(2 * math.pi * 185.0 * t) * torch.exp(-t / 0.05)
    snare = snare + 0.5 * snare_noise / snare_noise.abs().max() * torch.exp(-t / 0.07)
    hat = hat_noise / hat_noise.abs().max() * torch.exp(-t / 0.02)
    kit = torch.stack([kick, snare, 0.4 * hat]) * rise * fade
    return kit / kit.abs().amax(1, keepdim=True) * torch.tensor([[1.0], [0.7], [0.3]])
