"""A folder of audio files as a clip source: one track per file, mono, resampled on demand.

:class:`AudioFolder` reads anything libsndfile reads (wav, flac, ogg, mp3, aiff, …), one file per
track, mixed down to mono and resampled with a polyphase filter
(:func:`scipy.signal.resample_poly`). Excerpts are decoded on demand, seeking in the file; whole
tracks are kept in memory only up to a budget (``cache_mb``). The corpora of
:mod:`earengine.corpus` are such folders.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import soundfile as sf
from scipy import signal as sps

from earengine.corpus.clips import SR, SR_MAX, check_clip_args, check_sr, n_samples, slice_padded
from earengine.errors import AudioFileError, ConfigError

__all__ = ["AUDIO_EXTENSIONS", "AudioFolder"]

_log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
     ".au", ".snd", ".caf", ".w64", ".rf64"}
)
"""File name endings an :class:`AudioFolder` tries to read; other files are ignored silently."""

_NATIVE_SR_MIN = 1000  # old telephony and toy files go down to a few kHz; below that is a broken header


@dataclass(frozen=True)
class _FileTrack:
    """One readable file: where it is, its native rate and length, and its resampling ratio."""

    path: Path
    name: str
    native_sr: int
    native_frames: int
    up: int
    down: int
    n_out: int


def _one_line(exc: BaseException) -> str:
    # libsndfile's own message names the file again; its error string alone says what is wrong.
    text = getattr(exc, "error_string", None) or str(exc)
    return " ".join(str(text).split()) or type(exc).__name__


class AudioFolder:
    """A folder of audio files, one track per file, served as mono clips at ``sr``.

    Files are found recursively (hidden files and folders skipped) and sorted by their path inside
    the folder, which is also the track's name. Files whose ending is not in
    :data:`AUDIO_EXTENSIONS` are ignored; files with such an ending that libsndfile cannot read are
    skipped with one logged warning each (logger ``earengine.corpus.audio_folder``) and listed in
    :attr:`skipped`.

    Channels are averaged to mono; other sample rates are converted with
    :func:`scipy.signal.resample_poly` (Kaiser-windowed polyphase FIR). A clip is decoded on demand
    by seeking in the file, with enough context around it that it equals the same stretch of the
    whole file resampled at once. Whole decoded tracks are cached while their total stays under
    ``cache_mb``; beyond that, every clip is read from disk.

    Parameters
    ----------
    path : str or Path
        An existing folder.
    sr : int in [8000, 384000]
        Sample rate of the clips, 44100 by default.
    cache_mb : float >= 0
        Memory for whole decoded tracks (float32 at ``sr``), in MiB; 0 reads every clip from disk.

    Raises
    ------
    AudioFileError
        ``path`` is missing or not a folder, or holds no readable audio.
    ConfigError
        ``sr`` or ``cache_mb`` makes no sense.
    """

    def __init__(self, path: Union[str, Path], *, sr: int = SR, cache_mb: float = 512.0) -> None:
        self.sr = check_sr(sr)
        try:
            cache = float(cache_mb)
        except (TypeError, ValueError):
            cache = float("nan")
        if not math.isfinite(cache) or cache < 0:
            raise ConfigError(f"cache_mb={cache_mb!r} must be a finite number of MiB >= 0")
        root = Path(path).expanduser()
        if not root.exists():
            raise AudioFileError(
                f"path={str(path)!r} must be an existing folder of audio files; it does not exist"
            )
        if not root.is_dir():
            raise AudioFileError(
                f"path={str(path)!r} must be a folder of audio files, not a file; "
                "put the file in a folder of its own"
            )
        self.path = root.resolve()
        candidates = sorted(
            (p for p in self.path.rglob("*")
             if p.suffix.lower() in AUDIO_EXTENSIONS
             and not any(part.startswith(".") for part in p.relative_to(self.path).parts)
             and p.is_file()),
            key=lambda p: p.relative_to(self.path).as_posix(),
        )
        tracks: list = []
        skipped: list = []
        for p in candidates:
            name = p.relative_to(self.path).as_posix()
            try:
                with sf.SoundFile(str(p)) as f:
                    native_sr, frames = int(f.samplerate), int(f.frames)
                    if frames <= 0 or f.channels <= 0:
                        reason = "it holds no samples"
                    elif not _NATIVE_SR_MIN <= native_sr <= SR_MAX:
                        reason = f"its sample rate of {native_sr} Hz makes no sense"
                    else:
                        reason = ""
                        f.read(min(frames, 1024), dtype="float32", always_2d=True)
            except Exception as exc:  # libsndfile reports bad files with several exception types
                reason = f"not readable as audio ({_one_line(exc)})"
            if reason:
                skipped.append((name, reason))
                _log.warning("skipping %s: %s", p, reason)
                continue
            g = math.gcd(self.sr, native_sr)
            up, down = self.sr // g, native_sr // g
            tracks.append(_FileTrack(p, name, native_sr, frames, up, down, -(-frames * up // down)))
        if not tracks:
            found = (f"found {len(candidates)} audio file name(s), none readable"
                     if candidates else "found no files ending in .wav, .flac, .ogg, .mp3, …")
            raise AudioFileError(f"path={str(path)!r} must contain readable audio files; {found}")
        self._tracks = tracks
        self.skipped = tuple(skipped)
        self.n_tracks = len(tracks)
        self.track_names = [t.name for t in tracks]
        self.cache_mb = cache
        self._cache: dict = {}
        self._cache_bytes = 0

    def __repr__(self) -> str:
        return f"AudioFolder({str(self.path)!r}, sr={self.sr}, n_tracks={self.n_tracks})"

    def duration_s(self, track: int) -> float:
        """Length of ``track`` in seconds (after resampling)."""
        track, _, _ = check_clip_args(self.n_tracks, track, 0.0, 1.0)
        return self._tracks[track].n_out / self.sr

    def clip(self, track: int, start_s: float, duration_s: float) -> np.ndarray:
        """Mono float32 ``(n_samples(duration_s, sr),)`` from ``start_s``; zero past the end.

        Raises
        ------
        AudioFileError
            The file changed or broke since the folder was opened.
        """
        track, start, dur = check_clip_args(self.n_tracks, track, start_s, duration_s)
        first, count = n_samples(start, self.sr), n_samples(dur, self.sr)
        info = self._tracks[track]
        cached = self._cache.get(track)
        if cached is None and (self._cache_bytes + 4 * info.n_out) <= self.cache_mb * 2**20:
            cached = self._decode(info, 0, info.n_out)
            self._cache[track] = cached
            self._cache_bytes += cached.nbytes
        if cached is not None:
            return slice_padded(cached, first, count)
        return slice_padded(self._decode(info, first, count), 0, count)

    def _decode(self, info: _FileTrack, first: int, count: int) -> np.ndarray:
        """Output samples ``first … first+count`` (clipped to the track) of the resampled track."""
        end = min(first + count, info.n_out)
        if first >= end:
            return np.zeros(0, dtype=np.float32)
        up, down = info.up, info.down
        if up == down:
            lo, hi, skip = first, end, 0
        else:
            # resample_poly's filter reaches 10*max(up, down) samples of the upsampled signal either
            # side; reading that much more native audio makes the excerpt equal the whole-file
            # result. Starting on a multiple of `down` keeps the output grid aligned with it.
            margin = -(-10 * max(up, down) // up) + 2
            lo = max(0, first * down // up - margin) // down * down
            hi = min(info.native_frames, -(-end * down // up) + margin)
            skip = first - (lo // down) * up
        try:
            with sf.SoundFile(str(info.path)) as f:
                f.seek(lo)
                x = f.read(hi - lo, dtype="float32", always_2d=True)
        except Exception as exc:
            raise AudioFileError(
                f"file={str(info.path)!r} must stay readable while training; {_one_line(exc)}"
            ) from None
        x = x.mean(axis=1, dtype=np.float32) if x.shape[1] > 1 else x[:, 0]
        if up != down:
            x = sps.resample_poly(x, up, down).astype(np.float32, copy=False)
        return np.ascontiguousarray(x[skip:skip + (end - first)], dtype=np.float32)

    def describe(self) -> dict:
        """``{"kind": "folder", "path", "sr", "n_tracks", "tracks", "durations_s", "skipped"}``."""
        return {
            "kind": "folder",
            "path": str(self.path),
            "sr": self.sr,
            "n_tracks": self.n_tracks,
            "tracks": list(self.track_names),
            "durations_s": [round(t.n_out / self.sr, 6) for t in self._tracks],
            "skipped": [name for name, _ in self.skipped],
        }
