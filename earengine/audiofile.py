"""Reading and writing audio files at the boundary: validated, mono, resampled, atomic.

Used by the loop player (``/loop/load``, ``/loop/save``) and by offline renders. Nothing here
runs on an audio thread.
"""

from __future__ import annotations

import os
from math import gcd
from pathlib import Path
from typing import Union

import numpy as np

from earengine.errors import AudioFileError

__all__ = ["read_mono", "write_wav", "resample"]

PathLike = Union[str, os.PathLike]
#: Longest loop we accept from a file, in seconds (a loop, not an album).
MAX_LOOP_S = 600.0


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling of a 1-D signal from ``sr_in`` to ``sr_out`` Hz."""
    if sr_in == sr_out:
        return x
    from scipy.signal import resample_poly

    g = gcd(int(sr_in), int(sr_out))
    return resample_poly(x, sr_out // g, sr_in // g).astype(np.float32)


def read_mono(path: PathLike, *, sr: int = 44100, max_s: float = MAX_LOOP_S) -> np.ndarray:
    """Read any file libsndfile reads (WAV, FLAC, OGG, …) as mono float32 at ``sr`` Hz.

    Parameters
    ----------
    path : str or path-like
    sr : int > 0
        Target sample rate in Hz.
    max_s : float > 0
        Longest duration accepted, in seconds.

    Returns
    -------
    np.ndarray, shape (n,), float32, finite, within [-1, 1]

    Raises
    ------
    AudioFileError
        One line naming the file: missing, not audio, empty, too long, or not finite.
    """
    import soundfile as sf

    p = Path(path).expanduser()
    if not p.is_file():
        raise AudioFileError(f"path={str(path)!r} is not a file")
    try:
        info = sf.info(str(p))
        if info.frames / info.samplerate > max_s:
            raise AudioFileError(f"{p.name} lasts {info.frames / info.samplerate:.0f} s; loops must be under {max_s:.0f} s")
        data, file_sr = sf.read(str(p), dtype="float32", always_2d=True)
    except AudioFileError:
        raise
    except Exception as exc:  # soundfile raises RuntimeError / LibsndfileError on non-audio
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AudioFileError(f"{p.name} is not a readable audio file ({reason})") from None
    if data.shape[0] == 0:
        raise AudioFileError(f"{p.name} holds no samples")
    mono = data.mean(axis=1)
    if not np.all(np.isfinite(mono)):
        raise AudioFileError(f"{p.name} contains NaN or infinite samples")
    mono = resample(mono, int(file_sr), int(sr))
    return np.clip(mono, -1.0, 1.0).astype(np.float32)


def write_wav(path: PathLike, x: np.ndarray, *, sr: int = 44100) -> Path:
    """Write float audio to a 32-bit float WAV atomically (a partial file never appears).

    Raises
    ------
    AudioFileError
        The folder does not exist or cannot be written.
    """
    import soundfile as sf

    p = Path(path).expanduser()
    if p.suffix.lower() != ".wav":
        raise AudioFileError(f"path={str(path)!r} must end in .wav")
    if not p.parent.is_dir():
        raise AudioFileError(f"folder {str(p.parent)!r} does not exist")
    from earengine.files import temp_beside

    tmp = None
    try:
        fd, tmp = temp_beside(p, suffix=".wav")  # the mode of a plain open(): the umask holds
        os.close(fd)
        sf.write(tmp, np.asarray(x, dtype=np.float32), sr, subtype="FLOAT")
        os.replace(tmp, p)
    except (OSError, RuntimeError) as exc:  # soundfile raises LibsndfileError (a RuntimeError)
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise AudioFileError(f"cannot write {p}: {getattr(exc, 'strerror', None) or exc}") from None
    return p
