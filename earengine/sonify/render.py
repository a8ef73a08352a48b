"""Offline rendering of gradient frames to audio, in numpy: no device, no pyo, no clicks.

Each frame becomes one step of sound (``/son/step_ms`` or a note value at a tempo). Every layer
is a voice with its own running phase, so a new pitch continues the waveform instead of restarting
it; gates and level changes move along linear ramps of ``/son/ramp`` ms; a voice changes pitch at
the start of its own window (sequential voicing, while it is silent) or glides over the ramp
(simultaneous voicing). Waves are band-limited sums of harmonics whose weights add up to 1. A NaN
or inf sounds the cue from :mod:`earengine.sonify.timbre`, never NaN audio.

The step clock keeps fractional samples, so a long render does not drift from ``n × step``.
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

import numpy as np

from earengine.errors import ParameterError
from earengine.sonify.frame import GradientFrame
from earengine.sonify.mapping import VOICINGS, Mapper, Settings, Targets
from earengine.sonify.timbre import (CUE_GAP_S, CUE_HARMONICS, CUE_NOTE_S, CUE_NOTES_HZ, CUE_TREMOLO_HZ,
                                     NYQUIST_MARGIN, harmonics)
from earengine.units import db_to_amp

__all__ = ["Renderer", "render_frames", "cue_sound"]


def _glide(start: float, end: float, n: int, ramp: int, at: int = 0) -> np.ndarray:
    """``start`` until sample ``at``, then a linear ramp over ``ramp`` samples to ``end``."""
    t = np.arange(n, dtype=np.float64) - at
    return start + (end - start) * np.clip(t / max(1, ramp), 0.0, 1.0) * (t >= 0)


def _slew_gate(level: float, a: int, b: int, n: int, ramp: int) -> tuple[np.ndarray, float]:
    """A gate that is open on ``[a, b)`` and shut elsewhere, moving at most ``1/ramp`` per sample
    from ``level``; returns the envelope and the level it ends on."""
    out = np.empty(n)
    rate = 1.0 / max(1, ramp)
    v = level
    for lo, hi, target in ((0, a, 0.0), (a, b, 1.0), (b, n, 0.0)):
        if hi <= lo:
            continue
        t = np.arange(1, hi - lo + 1, dtype=np.float64) * rate
        seg = np.minimum(v + t, target) if target > v else np.maximum(v - t, target)
        out[lo:hi] = seg
        v = float(seg[-1])
    return out, v


def _wave(phase: np.ndarray, freq: np.ndarray, table: Sequence[tuple[int, float]], sr: int) -> np.ndarray:
    """Sum of harmonics of a running phase; each fades out as it nears the Nyquist margin."""
    out = np.zeros_like(phase)
    edge = NYQUIST_MARGIN * sr
    fade_hz = 0.05 * sr
    for k, w in table:
        if k == 1:
            out += w * np.sin(phase)
            continue
        fade = np.clip((edge - k * freq) / fade_hz, 0.0, 1.0)
        if np.any(fade > 0):
            out += w * fade * np.sin(k * phase)
    return out


def cue_sound(*, sr: int, amp: float) -> np.ndarray:
    """The NaN cue as mono samples, peaking at or below ``amp``.

    >>> x = cue_sound(sr=8000, amp=0.5)
    >>> bool(np.abs(x).max() <= 0.5), bool(np.isfinite(x).all())
    (True, True)
    """
    n_note = int(round(CUE_NOTE_S * sr))
    ramp = max(1, int(0.005 * sr))
    parts, phase = [], 0.0
    for f in CUE_NOTES_HZ:
        inc = np.full(n_note, 2.0 * math.pi * f / sr)
        ph = phase + np.cumsum(inc)
        phase = float(ph[-1])
        parts.append(_wave(ph, np.full(n_note, f), CUE_HARMONICS, sr))
    x = np.concatenate(parts)
    t = np.arange(x.size) / sr
    tremolo = 0.6 + 0.4 * np.cos(2.0 * math.pi * CUE_TREMOLO_HZ * t)
    env = np.minimum(1.0, np.minimum(np.arange(x.size) + 1, x.size - np.arange(x.size)) / ramp)
    return amp * x * tremolo * env


class Renderer:
    """Renders steps to stereo audio, one :class:`Targets` (or one frame) at a time.

    Parameters
    ----------
    settings : Settings
        The ``/son/*`` values (wave, ramp, gain …).
    sr : int > 0
        Sample rate in Hz.
    bpm : float > 0
        Tempo for step lengths given as a note value.
    wave : str, optional
        Timbre, if not ``settings.wave`` (the engine gives each run its own).

    Examples
    --------
    >>> r = Renderer(Settings(), sr=8000)
    >>> for step in range(3):
    ...     _ = r.frame([0.1, 1.0, 10.0])
    >>> r.audio().shape, r.samples == 3 * 640
    ((1920, 2), True)
    """

    def __init__(self, settings: Settings, *, sr: int = 44100, bpm: float = 120.0, wave: Optional[str] = None) -> None:
        if sr <= 0:
            raise ParameterError(f"sr={sr} must be > 0")
        self.settings = settings
        self.sr, self.bpm = int(sr), float(bpm)
        self.wave = wave or settings.wave
        self.mapper = Mapper(settings)
        self._chunks: list[np.ndarray] = []
        self._cues: list[tuple[int, np.ndarray]] = []
        self._clock = 0.0  # exact position in samples, fractional
        self.samples = 0
        self._phase = np.zeros(0)
        self._freq = np.zeros(0)
        self._amp = np.zeros(0)
        self._pan = np.zeros(0)
        self._gate = np.zeros(0)
        self._last_cue = -math.inf
        self.targets: list[Targets] = []

    def frame(self, norms: Sequence[float]) -> Targets:
        """Map one step's norms (keeping the running window) and render it."""
        targets = self.mapper(norms, bpm=self.bpm)
        self.add(targets)
        return targets

    def add(self, targets: Targets) -> None:
        """Render one step."""
        n_voices = len(targets)
        if n_voices != self._phase.size:
            self._phase = np.zeros(n_voices)
            self._freq = np.minimum(np.asarray(targets.freq_hz, dtype=np.float64), NYQUIST_MARGIN * self.sr)
            self._amp = np.zeros(n_voices)
            self._pan = np.asarray(targets.pan, dtype=np.float64)
            self._gate = np.zeros(n_voices)
        start = self.samples
        self._clock += targets.step_s * self.sr
        n = int(round(self._clock)) - start
        self.targets.append(targets)
        if n <= 0:
            return
        sr = self.sr
        ramp = max(1, int(round(self.settings.ramp / 1000.0 * sr)))
        table = harmonics(self.wave)
        in_turn = VOICINGS[self.settings.voicing].in_turn
        top_hz = NYQUIST_MARGIN * sr  # at a low sample rate the audible band is narrower still
        left, right = np.zeros(n), np.zeros(n)
        for i in range(n_voices):
            a = int(round(targets.gate[i][0] * n))
            b = int(round(targets.gate[i][1] * n))
            f_new = min(targets.freq_hz[i], top_hz)
            if in_turn:  # a voice changes pitch in its own silence
                freq = np.where(np.arange(n) < a, self._freq[i], f_new)
            else:
                freq = _glide(self._freq[i], f_new, n, ramp)
            phase = self._phase[i] + np.cumsum(2.0 * math.pi * freq / sr)
            self._phase[i] = float(phase[-1] % (2.0 * math.pi))
            self._freq[i] = f_new
            env, self._gate[i] = _slew_gate(self._gate[i], a, b, n, ramp)
            amp = _glide(self._amp[i], targets.amp[i], n, ramp, at=a if in_turn else 0)
            self._amp[i] = targets.amp[i]
            pan = _glide(self._pan[i], targets.pan[i], n, ramp)
            self._pan[i] = targets.pan[i]
            if not np.any(env * amp > 0):
                continue
            x = _wave(phase, freq, table, sr) * env * amp
            left += x * np.cos(pan * math.pi / 2.0)
            right += x * np.sin(pan * math.pi / 2.0)
        self._chunks.append(np.stack([left, right], axis=1))
        if targets.nan and (start - self._last_cue) >= CUE_GAP_S * sr:
            self._last_cue = start
            self._cues.append((start, cue_sound(sr=sr, amp=db_to_amp(self.settings.gain))))
        self.samples += n

    def audio(self) -> np.ndarray:
        """Everything rendered so far, ``(samples, 2)`` float32, cues mixed in (and their tails)."""
        body = np.concatenate(self._chunks) if self._chunks else np.zeros((0, 2))
        end = max([body.shape[0]] + [s + c.size for s, c in self._cues])
        out = np.zeros((end, 2))
        out[: body.shape[0]] = body
        for s, c in self._cues:
            out[s : s + c.size] += (c * math.sqrt(0.5))[:, None]  # centred, equal power
        return out.astype(np.float32)


def render_frames(
    frames: Iterable[GradientFrame | Sequence[float]],
    settings: Optional[Settings] = None,
    *,
    sr: int = 44100,
    bpm: float = 120.0,
) -> tuple[np.ndarray, list[Targets]]:
    """Render a whole run: ``(audio (samples, 2) float32, one Targets per frame)``."""
    r = Renderer(settings or Settings(), sr=sr, bpm=bpm)
    for f in frames:
        r.frame(f.norms if isinstance(f, GradientFrame) else f)
    return r.audio(), r.targets
