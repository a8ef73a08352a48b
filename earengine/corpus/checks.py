"""What makes a track worth training on: long enough, not a copy, not one short loop repeated.

The loop test listens rather than trusting a list: a track made of one cycle played again and
again is, at the lag of that cycle, nearly identical to itself for its whole length. Music that
repeats a chorus is identical to itself only in places. So the track's short-time spectrum
(log band energies, about 10 frames a second) is compared with itself at every lag between
``min_cycle_s`` and half the track, and the track is a repeated loop when, at some lag, even
the least similar tenth of its frames match the frames one lag later.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> sr = 8000
>>> cycle = rng.standard_normal(15 * sr) * np.repeat(rng.random(150), sr // 10)
>>> looped = repeated_cycle_s(np.tile(cycle, 5), sr)
>>> round(looped)
15
>>> fresh = rng.standard_normal(75 * sr) * np.repeat(rng.random(750), sr // 10)
>>> repeated_cycle_s(fresh, sr) is None
True
"""

from __future__ import annotations

import hashlib
from typing import Optional

import numpy as np

__all__ = ["band_energies", "repeated_cycle_s", "audio_sha256", "MIN_TRACK_S"]

#: Shorter tracks are jingles and stingers, not music to learn from.
MIN_TRACK_S = 60.0


def band_energies(x: np.ndarray, sr: int, *, frame_s: float = 0.1, n_bands: int = 40) -> np.ndarray:
    """Log energies of ``n_bands`` log-spaced bands (50 Hz to ``sr/2``) per ``frame_s`` frame.

    Returns
    -------
    np.ndarray, shape (n_frames, n_bands), float32, less the track's mean spectrum, each frame then
        standardised (zero mean, unit norm)
    """
    n = max(64, int(round(frame_s * sr)))
    frames = len(x) // n
    if frames < 2:
        return np.zeros((frames, n_bands), dtype=np.float32)
    spec = np.abs(np.fft.rfft(x[: frames * n].reshape(frames, n) * np.hanning(n), axis=1)) ** 2
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    edges = np.geomspace(50.0, sr / 2, n_bands + 1)
    idx = np.clip(np.searchsorted(edges, freqs) - 1, 0, n_bands - 1)
    bands = np.zeros((frames, n_bands))
    np.add.at(bands.T, idx, spec.T)
    f = np.log(bands + 1e-8)
    # The track's average spectrum (and each band's width) is the same in every frame: what
    # tells frames apart is how they differ from it.
    f -= f.mean(axis=0, keepdims=True)
    f -= f.mean(axis=1, keepdims=True)
    f /= np.linalg.norm(f, axis=1, keepdims=True) + 1e-9
    return f.astype(np.float32)


def repeated_cycle_s(
    x: np.ndarray, sr: int, *, min_cycle_s: float = 4.0, similarity: float = 0.9, frame_s: float = 0.1
) -> Optional[float]:
    """The length of the cycle ``x`` repeats throughout, in seconds, or None when it does not.

    Parameters
    ----------
    x : np.ndarray, shape (n,)
        Mono audio.
    sr : int > 0
    min_cycle_s : float > 0
        Shorter periodicities (a bar, a beat) are how music is made, not a loop to reject.
    similarity : float in (0, 1)
        Cosine similarity the least similar 10 % of frames must reach at the cycle's lag.
    frame_s : float > 0
    """
    f = band_energies(np.asarray(x, dtype=np.float64), sr, frame_s=frame_s)
    lo = max(1, int(round(min_cycle_s / frame_s)))
    for lag in range(lo, len(f) // 2 + 1):
        sims = np.einsum("ij,ij->i", f[:-lag], f[lag:])
        # The 10th percentile, not the minimum: a re-encoded loop may smear a frame at its seams.
        if float(np.quantile(sims, 0.1)) >= similarity:
            return lag * frame_s  # the shortest such lag is the cycle (its multiples match too)
    return None


def audio_sha256(x: np.ndarray) -> str:
    """sha256 of the audio as 16-bit PCM: equal for exact duplicates however they were encoded."""
    pcm = np.clip(np.round(np.asarray(x, dtype=np.float64) * 32767), -32768, 32767).astype("<i2")
    return hashlib.sha256(pcm.tobytes()).hexdigest()
