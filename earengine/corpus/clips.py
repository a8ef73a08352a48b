"""Clips: what every clip source hands out, and the arithmetic every source shares.

A clip source (:class:`ClipSource`) hands out mono float32 clips at a sample rate ``sr`` (44.1 kHz
by default), addressed by track index and start time; past the end of a track a clip is zero. The
synthetic corpus (:class:`earengine.corpus.synthetic.SyntheticCorpus`) and folders of audio files
(:class:`earengine.corpus.audio_folder.AudioFolder`) are the two kinds; the ear trains and is probed
on either.

Examples
--------
>>> n_samples(0.5), slice_padded(np.arange(4, dtype=np.float32), 2, 3)
(22050, array([2., 3., 0.], dtype=float32))
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import numpy as np

from earengine.errors import ConfigError, ParameterError

__all__ = ["SR", "SR_MIN", "SR_MAX", "ClipSource", "n_samples", "check_sr", "check_clip_args", "slice_padded"]

SR = 44100
"""The sample rate every source delivers by default (Hz)."""

SR_MIN, SR_MAX = 8000, 384000
"""The sample rates (Hz) a source may deliver clips at."""


@runtime_checkable
class ClipSource(Protocol):
    """Anything that hands out mono clips by track and time.

    Attributes
    ----------
    sr : int > 0
        Sample rate of every clip (44100 unless asked otherwise).
    n_tracks : int > 0
        Number of tracks; tracks are numbered ``0 … n_tracks - 1``.
    track_names : list of str
        One name per track.
    """

    sr: int
    n_tracks: int
    track_names: list

    def clip(self, track: int, start_s: float, duration_s: float) -> np.ndarray:
        """Mono float32 audio ``(n_samples(duration_s, sr),)``; past the end it is zero."""
        ...

    def duration_s(self, track: int) -> float:
        """Length of ``track`` in seconds."""
        ...

    def describe(self) -> dict:
        """JSON-able description of the source, for checkpoints."""
        ...


def n_samples(duration_s: float, sr: int = SR) -> int:
    """Number of samples a clip of ``duration_s`` seconds has at ``sr`` (rounded to nearest).

    Examples
    --------
    >>> n_samples(4.0), n_samples(0.5, 22050)
    (176400, 11025)
    """
    return int(round(float(duration_s) * int(sr)))


def check_sr(sr: object) -> int:
    """``sr`` as an int, or a :class:`ConfigError` naming the range of sample rates a source serves.

    Examples
    --------
    >>> check_sr(44100.0)
    44100
    """
    try:
        value = float(sr)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"sr={sr!r} must be a sample rate in Hz, e.g. 44100") from None
    if not math.isfinite(value) or value != int(value) or not SR_MIN <= value <= SR_MAX:
        raise ConfigError(
            f"sr={sr!r} must be a whole number of Hz between {SR_MIN} and {SR_MAX}, e.g. 44100"
        )
    return int(value)


def check_clip_args(n_tracks: int, track: object, start_s: object, duration_s: object) -> tuple:
    """``(track, start_s, duration_s)`` as ``(int, float, float)`` once checked against a source of
    ``n_tracks`` tracks; a :class:`ParameterError` with a one-line reason otherwise.

    Examples
    --------
    >>> check_clip_args(4, 2, 1, 0.5)
    (2, 1.0, 0.5)
    """
    if isinstance(track, bool) or not isinstance(track, (int, np.integer)):
        raise ParameterError(f"track={track!r} must be an integer track index")
    if not 0 <= int(track) < n_tracks:
        raise ParameterError(f"track={track} must be in 0…{n_tracks - 1}")
    try:
        start, dur = float(start_s), float(duration_s)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ParameterError(f"start_s={start_s!r} and duration_s={duration_s!r} must be numbers") from None
    if not math.isfinite(start) or start < 0:
        raise ParameterError(f"start_s={start_s!r} must be a finite number of seconds >= 0")
    if not math.isfinite(dur) or dur <= 0:
        raise ParameterError(f"duration_s={duration_s!r} must be a finite number of seconds > 0")
    return int(track), start, dur


def slice_padded(audio: np.ndarray, first: int, count: int) -> np.ndarray:
    """``count`` float32 samples of ``audio`` from ``first``; zero where they run past its end.

    Examples
    --------
    >>> slice_padded(np.ones(3, np.float32), 2, 3)
    array([1., 0., 0.], dtype=float32)
    """
    out = np.zeros(count, dtype=np.float32)
    if first < audio.shape[0]:
        part = audio[first:first + count]
        out[: part.shape[0]] = part
    return out
