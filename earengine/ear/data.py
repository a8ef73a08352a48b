"""Training data for the ear: a built-in procedural music corpus and folders of audio files.

Two kinds of :class:`ClipSource` hand out mono float32 clips at 44.1 kHz, addressed by track
index and start time:

* :class:`SyntheticCorpus` — a seeded, procedurally generated corpus, so that training, the probe
  and the tests work offline.
* :class:`AudioFolder` — a folder of audio files (anything libsndfile reads: wav, flac, ogg, mp3,
  aiff, …), one file per track, mixed down to mono and resampled with a polyphase filter
  (:func:`scipy.signal.resample_poly`). Excerpts are decoded on demand, seeking in the file; whole
  tracks are kept in memory only up to a budget (``cache_mb``).

:func:`open_source` turns a command-line spec (``"synthetic"`` or a folder) into a source,
:func:`from_description` turns the dict that :meth:`ClipSource.describe` wrote into a checkpoint back
into one, and :func:`sample_batch` draws random clips from the training part or the held-out part of
every track (:class:`Split`: the last 20 % of each track, by time, is held out).

The synthetic corpus
--------------------
The ear is judged by a linear probe that names the track a held-out clip comes from, and a trained
ear has to beat the same network with random weights. Random convolutions already tell tracks apart
by a static timbre, key or loudness, so the corpus puts a track's identity into what it *plays over
time* and deals what it *sounds like* afresh in every section:

* **What belongs to a track** (its :class:`TrackSpec`): tempo, spread over 80–160 BPM by a
  golden-ratio sequence so no two tracks share one; 4/4 or 3/4 metre and swing; a home key and a
  mode (major, minor, dorian, mixolydian, phrygian, lydian, harmonic minor; the first 84 tracks all
  differ in (key, mode)); two chord progressions (A and B sections) and a harmonic rhythm; a drum
  pattern for A and another for B; two bass figures; a comping rhythm; two melodic motifs and how
  often they mutate; whether an arpeggio plays; a section form (e.g. AABA); and a palette of six of
  the eight shared timbres (two for bass, four for chords, melody and arpeggio), each varied a
  little for the track (spectral tilt, envelope times, FM index, chorus detune).
* **What each section deals afresh** (each section after the first, with probability
  ``section_variety``, 1 by default; otherwise it keeps the first section's sound): its key (the
  first section is in the home key, later ones modulate anywhere), which palette timbre plays which
  part, which of three shared drum kits plays, the balance of the parts (±1.5 dB) and the register
  of the chords. Registers are folded into fixed ranges whatever the key, and every track is
  normalised to the same RMS (peak ≤ 0.9).
* **Variation inside a track.** Sections of four or eight bars follow the form; drum fills lead into
  the next section and a crash marks it; some sections break the drums down for a while; melodies
  are two-bar motifs (a random walk in the scale, strong beats snapped to chord tones) repeated with
  random mutations, so no clip is an identical loop; onsets and velocities are humanised.

The sounds: a shared pool of eight timbres — pluck, pad, brass-like saw, square, organ, reed
(band-limited wavetables that move from a bright to a dark table: a cheap stand-in for a filter
sweep), electric piano and bell (two-operator FM) — with ADSR envelopes, vibrato and chorus; three
shared drum kits (pitch-swept sine kicks and toms, noise-and-tone snares, filtered-noise hats and
crash). With 4 s clips of the default corpus, a ridge classifier on each clip's mean log spectrum
(a stand-in for static sound) names the held-out clips' track about 30 % of the time (97 % with
``section_variety=0``), while one on onset-envelope autocorrelations (rhythm) names all of them.

Synthesis is numpy-vectorised: notes are rendered from band-limited wavetables (one table per
octave, so nothing aliases) with linear interpolation, identical notes within a track are rendered
once and reused, drums are one-shots placed at their onsets, and a convolution reverb (decaying
filtered noise) sits on a send. A track depends only on ``(seed, index, track_duration_s, sr)`` and
is bit-identical for the same values; it is generated the first time it is asked for and cached.

Examples
--------
>>> corpus = SyntheticCorpus(n_tracks=16, seed=0, track_duration_s=8.0)
>>> x = corpus.clip(3, 1.0, 0.5)
>>> x.dtype, x.shape
(dtype('float32'), (22050,))
>>> batch, tracks = sample_batch(corpus, batch_size=4, duration_s=0.25, split="heldout",
...                              rng=np.random.default_rng(0))
>>> batch.shape, tracks.dtype
((4, 11025), dtype('int64'))
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Protocol, Union, runtime_checkable

import numpy as np
from scipy import signal as sps

from earengine.errors import AudioFileError, ConfigError, ParameterError

__all__ = [
    "SR",
    "GENERATOR_VERSION",
    "AUDIO_EXTENSIONS",
    "ClipSource",
    "SyntheticCorpus",
    "TrackSpec",
    "AudioFolder",
    "Split",
    "open_source",
    "from_description",
    "sample_batch",
    "split_grid",
    "n_samples",
]

_log = logging.getLogger(__name__)

SR = 44100
"""The sample rate every source delivers by default (Hz)."""

GENERATOR_VERSION = 1
"""Bumped whenever the synthetic corpus would sound different for the same seed."""

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
     ".au", ".snd", ".caf", ".w64", ".rf64"}
)
"""File name endings an :class:`AudioFolder` tries to read; other files are ignored silently."""

_SR_MIN, _SR_MAX = 8000, 384000
_NATIVE_SR_MIN = 1000  # old telephony and toy files go down to a few kHz; below that is a broken header
_SPLITS = ("train", "heldout")


# --------------------------------------------------------------------------------------------
# The protocol and small shared helpers
# --------------------------------------------------------------------------------------------


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


def _check_sr(sr: object) -> int:
    try:
        value = float(sr)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"sr={sr!r} must be a sample rate in Hz, e.g. 44100") from None
    if not math.isfinite(value) or value != int(value) or not _SR_MIN <= value <= _SR_MAX:
        raise ConfigError(
            f"sr={sr!r} must be a whole number of Hz between {_SR_MIN} and {_SR_MAX}, e.g. 44100"
        )
    return int(value)


def _check_clip_args(n_tracks: int, track: object, start_s: object, duration_s: object) -> tuple:
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


def _slice_padded(audio: np.ndarray, first: int, count: int) -> np.ndarray:
    out = np.zeros(count, dtype=np.float32)
    if first < audio.shape[0]:
        part = audio[first:first + count]
        out[: part.shape[0]] = part
    return out


# --------------------------------------------------------------------------------------------
# Train / held-out split and batches
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Where each track is cut into a training part and a held-out part.

    The first ``1 - heldout_fraction`` of every track (by time) is for training, the rest is held
    out for the probe. Clips drawn from one part never reach into the other.

    Parameters
    ----------
    heldout_fraction : float in (0, 1)
        Share of each track, at its end, that is held out.

    Examples
    --------
    >>> Split().bounds(1000, "train"), Split().bounds(1000, "heldout")
    ((0, 800), (800, 1000))
    >>> Split.from_dict(Split(0.25).to_dict())
    Split(heldout_fraction=0.25)
    """

    heldout_fraction: float = 0.2

    def __post_init__(self) -> None:
        f = self.heldout_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 < float(f) < 1.0:
            raise ConfigError(f"heldout_fraction={f!r} must be a number strictly between 0 and 1, e.g. 0.2")
        object.__setattr__(self, "heldout_fraction", float(f))

    def bounds(self, n_total: int, split: str) -> tuple:
        """Sample range ``(first, end)`` of ``split`` (``"train"`` or ``"heldout"``) in a track of
        ``n_total`` samples; ``end`` is exclusive."""
        _check_split(split)
        cut = int(round(int(n_total) * (1.0 - self.heldout_fraction)))
        return (0, cut) if split == "train" else (cut, int(n_total))

    def to_dict(self) -> dict:
        return {"heldout_fraction": self.heldout_fraction}

    @classmethod
    def from_dict(cls, d: dict) -> "Split":
        unknown = set(d) - {"heldout_fraction"}
        if unknown:
            raise ConfigError(f"split keys={sorted(unknown)} must be only ['heldout_fraction']")
        return cls(**d)


def _check_split(split: object) -> str:
    if split not in _SPLITS:
        raise ConfigError(f"split={split!r} must be 'train' or 'heldout'")
    return str(split)


def _track_bounds(source: ClipSource, split: str, split_spec: Split) -> list:
    return [split_spec.bounds(n_samples(source.duration_s(t), source.sr), split)
            for t in range(source.n_tracks)]


def sample_batch(
    source: ClipSource,
    *,
    batch_size: int,
    duration_s: float,
    split: str,
    rng: np.random.Generator,
    split_spec: Optional[Split] = None,
) -> tuple:
    """Draw random clips from the training or the held-out part of the tracks.

    Tracks are drawn uniformly among those whose ``split`` part is at least ``duration_s`` long;
    the start is uniform (to the sample) within that part.

    Parameters
    ----------
    source : ClipSource
    batch_size : int > 0
    duration_s : float > 0
        Length of every clip.
    split : {"train", "heldout"}
    rng : numpy.random.Generator
        Seeded generator; the batch depends only on it and on the source.
    split_spec : Split, optional
        Where tracks are cut; ``Split()`` (last 20 % held out) by default.

    Returns
    -------
    audio : np.ndarray (batch_size, n_samples(duration_s, source.sr)) float32
    tracks : np.ndarray (batch_size,) int64
        The track of every clip.

    Raises
    ------
    ConfigError
        When no track's ``split`` part is long enough for ``duration_s``.
    """
    split_spec = split_spec if split_spec is not None else Split()
    split = _check_split(split)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be an integer >= 1")
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(f"rng={rng!r} must be a numpy.random.Generator, e.g. np.random.default_rng(0)")
    try:
        dur = float(duration_s)
    except (TypeError, ValueError):
        dur = float("nan")
    if not math.isfinite(dur) or dur <= 0:
        raise ConfigError(f"duration_s={duration_s!r} must be a finite number of seconds > 0")
    n = n_samples(dur, source.sr)
    bounds = _track_bounds(source, split, split_spec)
    eligible = np.array([t for t, (lo, hi) in enumerate(bounds) if hi - lo >= n], dtype=np.int64)
    if eligible.size == 0:
        longest = max(hi - lo for lo, hi in bounds) / source.sr
        raise ConfigError(
            f"duration_s={dur:g} must fit in the {split} part of at least one track; the longest "
            f"is {longest:.3g} s — use shorter clips or longer tracks"
        )
    tracks = eligible[rng.integers(0, eligible.size, size=int(batch_size))]
    audio = np.empty((int(batch_size), n), dtype=np.float32)
    for i, t in enumerate(tracks):
        lo, hi = bounds[int(t)]
        first = int(rng.integers(lo, hi - n + 1))
        audio[i] = source.clip(int(t), first / source.sr, dur)
    return audio, tracks.astype(np.int64)


def split_grid(
    source: ClipSource,
    *,
    duration_s: float,
    split: str,
    hop_s: Optional[float] = None,
    split_spec: Optional[Split] = None,
) -> list:
    """Evenly spaced clips covering the ``split`` part of every track, for a repeatable probe.

    Parameters
    ----------
    source : ClipSource
    duration_s : float > 0
    split : {"train", "heldout"}
    hop_s : float > 0, optional
        Distance between clip starts; ``duration_s`` (clips side by side) by default.
    split_spec : Split, optional

    Returns
    -------
    list of (track, start_s)
        Every clip lies wholly inside its track's ``split`` part; ``start_s`` is sample-exact.
    """
    split_spec = split_spec if split_spec is not None else Split()
    split = _check_split(split)
    dur = float(duration_s)
    hop = dur if hop_s is None else float(hop_s)
    if not (math.isfinite(dur) and dur > 0):
        raise ConfigError(f"duration_s={duration_s!r} must be a finite number of seconds > 0")
    if not (math.isfinite(hop) and hop > 0):
        raise ConfigError(f"hop_s={hop_s!r} must be a finite number of seconds > 0")
    n, hop_n = n_samples(dur, source.sr), max(1, n_samples(hop, source.sr))
    grid = []
    for t, (lo, hi) in enumerate(_track_bounds(source, split, split_spec)):
        for first in range(lo, hi - n + 1, hop_n):
            grid.append((t, first / source.sr))
    return grid


# --------------------------------------------------------------------------------------------
# A folder of audio files
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _FileTrack:
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
    skipped with one logged warning each (logger ``earengine.ear.data``) and listed in
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
        import soundfile as sf  # libsndfile is loaded only by those who read files

        self.sr = _check_sr(sr)
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
                    elif not _NATIVE_SR_MIN <= native_sr <= _SR_MAX:
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
        track, _, _ = _check_clip_args(self.n_tracks, track, 0.0, 1.0)
        return self._tracks[track].n_out / self.sr

    def clip(self, track: int, start_s: float, duration_s: float) -> np.ndarray:
        """Mono float32 ``(n_samples(duration_s, sr),)`` from ``start_s``; zero past the end.

        Raises
        ------
        AudioFileError
            The file changed or broke since the folder was opened.
        """
        track, start, dur = _check_clip_args(self.n_tracks, track, start_s, duration_s)
        first, count = n_samples(start, self.sr), n_samples(dur, self.sr)
        info = self._tracks[track]
        cached = self._cache.get(track)
        if cached is None and (self._cache_bytes + 4 * info.n_out) <= self.cache_mb * 2**20:
            cached = self._decode(info, 0, info.n_out)
            self._cache[track] = cached
            self._cache_bytes += cached.nbytes
        if cached is not None:
            return _slice_padded(cached, first, count)
        return _slice_padded(self._decode(info, first, count), 0, count)

    def _decode(self, info: _FileTrack, first: int, count: int) -> np.ndarray:
        """Output samples ``first … first+count`` (clipped to the track) of the resampled track."""
        import soundfile as sf

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


# --------------------------------------------------------------------------------------------
# Opening a source from a spec or a description
# --------------------------------------------------------------------------------------------


def open_source(spec: str, *, seed: int = 0, sr: int = SR) -> ClipSource:
    """Open a data source from a short spec.

    Parameters
    ----------
    spec : str
        ``"synthetic"`` (16 tracks of 60 s), ``"synthetic:N"`` (N tracks),
        ``"synthetic:N:V"`` (N tracks, ``section_variety=V``), or a folder of audio files.
    seed : int >= 0
        Seed of the synthetic corpus (unused for folders).
    sr : int
        Sample rate of the clips.

    Raises
    ------
    ConfigError, AudioFileError
        With a one-line reason.

    Examples
    --------
    >>> open_source("synthetic:20", seed=3).n_tracks
    20
    >>> open_source("synthetic:8:0.5").section_variety
    0.5
    """
    if not isinstance(spec, (str, Path)) or not str(spec).strip():
        raise ConfigError(f"data={spec!r} must be 'synthetic' or a folder of audio files")
    text = str(spec).strip()
    if text == "synthetic" or text.startswith("synthetic:"):
        fields = text.split(":")[1:]
        usage = (f"data={text!r} must be 'synthetic', 'synthetic:N' or 'synthetic:N:V' "
                 "(N tracks >= 1, section variety V in [0, 1])")
        if len(fields) > 2 or (fields and (not fields[0].isdigit() or int(fields[0]) < 1)):
            raise ConfigError(usage)
        variety = 1.0
        if len(fields) == 2:
            try:
                variety = float(fields[1])
            except ValueError:
                raise ConfigError(usage) from None
        n_tracks = int(fields[0]) if fields else 16
        return SyntheticCorpus(n_tracks=n_tracks, seed=seed, sr=sr, section_variety=variety)
    if not Path(text).expanduser().exists():
        raise AudioFileError(
            f"data={text!r} must be 'synthetic' or an existing folder of audio files; no such folder"
        )
    return AudioFolder(text, sr=sr)


def from_description(desc: dict) -> ClipSource:
    """Reopen the source that :meth:`describe` described (as stored in a checkpoint).

    Examples
    --------
    >>> c = SyntheticCorpus(n_tracks=3, seed=5, track_duration_s=4.0)
    >>> from_description(c.describe()).describe() == c.describe()
    True
    """
    if not isinstance(desc, dict) or "kind" not in desc:
        raise ConfigError(f"data description={desc!r} must be a dict with a 'kind'")
    kind = desc["kind"]
    if kind == "synthetic":
        version = desc.get("generator_version", GENERATOR_VERSION)
        if version != GENERATOR_VERSION:
            _log.warning(
                "synthetic corpus generator_version=%s differs from this one (%s); its audio differs",
                version, GENERATOR_VERSION,
            )
        return SyntheticCorpus(
            n_tracks=desc["n_tracks"], seed=desc["seed"],
            track_duration_s=desc["track_duration_s"], sr=desc.get("sr", SR),
            section_variety=desc.get("section_variety", 1.0),
        )
    if kind == "folder":
        return AudioFolder(desc["path"], sr=desc.get("sr", SR))
    raise ConfigError(f"data kind={kind!r} must be 'synthetic' or 'folder'")


# --------------------------------------------------------------------------------------------
# The synthetic corpus: musical material
# --------------------------------------------------------------------------------------------

_NOTE_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")

_MODES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
}
_MODE_NAMES = tuple(_MODES)

# Chord progressions as scale degrees (0 = tonic), read in the track's mode.
_PROGRESSIONS = (
    (0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 0, 4), (1, 4, 0, 0), (0, 3, 5, 4),
    (0, 2, 3, 4), (0, 5, 1, 4), (3, 4, 2, 5), (0, 0, 3, 3), (0, 6, 3, 0), (5, 4, 3, 4),
    (0, 2, 5, 3), (3, 0, 4, 5), (0, 4, 3, 3), (5, 5, 3, 4),
)

# Drum patterns, one character per sixteenth: k kick, s snare (g ghost), h hats (x closed,
# - soft closed, o open).
_DRUMS = {
    16: {
        "four_floor": ("x...x...x...x...", "....x.......x...", "-.o.-.o.-.o.-.o."),
        "rock": ("x.......x.x.....", "....x.......x...", "x.x.x.x.x.x.x.x."),
        "funk": ("x..x..x...x..x..", "....x..g.g..x..g", "x-x-x-x-x-x-x-x-"),
        "halftime": ("x.....x...x.....", "........x.......", "x.x.x.x.x.x.x.xo"),
        "breakbeat": ("x.x.......xx....", "....x..g.g..x..g", "x.x.x.x.x.x.x.x."),
        "dembow": ("x...x...x...x...", "...x..x....x..x.", "x.x.x.x.x.x.x.x."),
        "disco": ("x...x...x...x...", "....x.......x...", "x-o-x-o-x-o-x-o-"),
        "sparse": ("x.........x.....", "....x.......x...", "x...x...x...x..."),
    },
    12: {
        "waltz": ("x...........", "....x...x...", "x.x.x.x.x.x."),
        "six_eight": ("x.....x.....", "......x.....", "x.x.x.x.x.x."),
        "jazz_three": ("x.......x...", "....g...x..g", "x...x.xx..x."),
        "rolling": ("x..x..x.....", "......x..g..", "x-xx-xx-xx-x"),
    },
}

# Bass figures: (step, role, length in steps); roles r root, f fifth, t third, o octave,
# a approach to the next chord's root.
_BASS = {
    16: {
        "roots": ((0, "r", 4), (4, "r", 4), (8, "r", 4), (12, "r", 4)),
        "root_fifth": ((0, "r", 6), (6, "r", 2), (8, "f", 6), (14, "r", 2)),
        "octaves": tuple((i, "r" if i % 4 == 0 else "o", 2) for i in range(0, 16, 2)),
        "syncopated": ((0, "r", 3), (3, "r", 3), (6, "r", 2), (10, "f", 2), (12, "o", 2), (14, "r", 2)),
        "long": ((0, "r", 8), (8, "r", 6), (14, "a", 2)),
        "walking": ((0, "r", 4), (4, "t", 4), (8, "f", 4), (12, "a", 4)),
        "offbeat": ((2, "r", 2), (6, "r", 2), (10, "r", 2), (14, "o", 2)),
    },
    12: {
        "waltz": ((0, "r", 4), (4, "f", 4), (8, "f", 4)),
        "long": ((0, "r", 10), (10, "a", 2)),
        "rocking": ((0, "r", 3), (3, "f", 3), (6, "o", 3), (9, "f", 3)),
    },
}

# Comping rhythms: (step, length in steps); "pad" holds each chord for as long as it lasts.
_COMP = {
    16: {
        "pad": None,
        "offbeats": ((2, 2), (6, 2), (10, 2), (14, 2)),
        "pulse": tuple((i, 1.5) for i in range(0, 16, 2)),
        "charleston": ((0, 3), (3, 5), (10, 2), (12, 4)),
        "syncopated": ((0, 2), (3, 2), (6, 4), (11, 2), (14, 2)),
    },
    12: {
        "pad": None,
        "oom_pah": ((4, 3), (8, 3)),
        "pulse": tuple((i, 1.5) for i in range(0, 12, 2)),
    },
}

_FORMS = ("AABA", "ABAB", "AABB", "ABBA", "ABAA", "AAB")


@dataclass(frozen=True)
class TrackSpec:
    """The musical plan of one synthetic track (what the generator chose; no audio).

    Every field is JSON-able; :meth:`to_dict` / :meth:`from_dict` round-trip.
    """

    index: int
    name: str
    tempo_bpm: float
    key: int                    # pitch class of the tonic, 0 = C
    mode: str
    steps_per_bar: int          # sixteenths per bar: 16 (4/4) or 12 (3/4)
    swing: float                # delay of every second sixteenth, as a fraction of a sixteenth
    progression_a: tuple
    progression_b: tuple
    chords_per_bar: int
    drums_a: str
    drums_b: str
    bass: str
    bass_b: str
    comp: str
    form: str
    bars_per_section: int
    bass_timbres: tuple         # the bass plays one of these in each section
    timbres: tuple              # chords, melody and arpeggio are dealt from these in each section
    arp: str                    # where an arpeggio plays: "none", "B" (B sections) or "all"
    melody_density: float
    variation: float            # chance that a motif note mutates on a repeat

    @property
    def key_name(self) -> str:
        return _NOTE_NAMES[self.key]

    @property
    def meter(self) -> str:
        return "4/4" if self.steps_per_bar == 16 else "3/4"

    def to_dict(self) -> dict:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        for name in _TUPLE_FIELDS:
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrackSpec":
        d = dict(d)
        for name in _TUPLE_FIELDS:
            d[name] = tuple(d[name])
        return cls(**d)


_TUPLE_FIELDS = ("progression_a", "progression_b", "bass_timbres", "timbres")


def _track_spec(seed: int, index: int) -> TrackSpec:
    """Plan track ``index``: depends on ``(seed, index)`` only, never on the corpus size."""
    corpus = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED, 0]))
    key_order = corpus.permutation(12)
    mode_order = corpus.permutation(len(_MODE_NAMES))
    prog_order = corpus.permutation(len(_PROGRESSIONS))
    offset = corpus.random()
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED, 1, index]))

    # A golden-ratio sequence spreads tempi evenly and never repeats one.
    tempo = round(80.0 + 80.0 * ((offset + index * 0.6180339887498949) % 1.0), 1)
    # 12 keys and 7 modes: (key, mode) pairs stay distinct for the first 84 tracks.
    key = int(key_order[index % 12])
    mode = _MODE_NAMES[int(mode_order[index % len(_MODE_NAMES)])]
    steps = 12 if rng.random() < 0.2 else 16
    prog_a = _PROGRESSIONS[int(prog_order[index % len(_PROGRESSIONS)])]
    others = [p for p in _PROGRESSIONS if p != prog_a]
    prog_b = others[int(rng.integers(len(others)))]
    bar_s = 60.0 / tempo * steps / 4.0
    chords_per_bar = 2 if steps == 16 and tempo < 115 and rng.random() < 0.5 else 1
    drum_names = list(_DRUMS[steps])
    drums_a, drums_b = (drum_names[int(i)] for i in rng.choice(len(drum_names), 2, replace=False))
    bass_names = list(_BASS[steps])
    bass_a, bass_b = (bass_names[int(i)] for i in rng.choice(len(bass_names), 2, replace=False))
    comp_names = list(_COMP[steps])
    comp = comp_names[int(rng.integers(len(comp_names)))]
    swing = float(round(rng.uniform(0.12, 0.33), 3)) if rng.random() < 0.3 else 0.0
    form = _FORMS[int(rng.integers(len(_FORMS)))]
    bars_per_section = 8 if 8 * bar_s <= 16.0 else 4
    pool = list(_TIMBRES)
    order = [pool[int(i)] for i in rng.permutation(len(pool))]
    # The bell's inharmonic partials make mud below 100 Hz; it never plays bass.
    bass_timbres = tuple(name for name in order if name != "bell")[:2]
    timbres = tuple(name for name in order if name not in bass_timbres)[:4]
    arp = ("none", "B", "all")[int(rng.integers(3))]
    density = float(round(rng.uniform(0.25, 0.6), 3))
    variation = float(round(rng.uniform(0.08, 0.25), 3))
    name = f"t{index:02d}_{_NOTE_NAMES[key]}_{mode}_{tempo:g}bpm"
    return TrackSpec(
        index=index, name=name, tempo_bpm=float(tempo), key=key, mode=mode, steps_per_bar=steps,
        swing=swing, progression_a=tuple(int(d) for d in prog_a),
        progression_b=tuple(int(d) for d in prog_b), chords_per_bar=chords_per_bar,
        drums_a=drums_a, drums_b=drums_b, bass=bass_a, bass_b=bass_b, comp=comp,
        form=form, bars_per_section=bars_per_section, bass_timbres=bass_timbres, timbres=timbres,
        arp=arp, melody_density=density, variation=variation,
    )


# --------------------------------------------------------------------------------------------
# The synthetic corpus: sounds
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Timbre:
    kind: str                      # "table" (wavetables) or "fm" (two-operator FM)
    tilt: float = 1.0              # bright table: harmonic k has amplitude k**-tilt
    dark_tilt: float = 2.0         # the table the note settles into
    even: float = 1.0              # weight of even harmonics (0 = odd only)
    partials: tuple = ()           # explicit (harmonic, amplitude) pairs instead of a tilt
    bright_tau_s: float = 0.2
    detune_cents: float = 0.0      # a second, detuned oscillator (chorus); 0 = none
    attack_s: float = 0.005
    decay_s: float = 0.3
    sustain: float = 0.5
    release_s: float = 0.08
    vibrato_cents: float = 0.0
    vibrato_hz: float = 5.0
    fm_ratio: float = 1.0
    fm_index: float = 0.0
    fm_index_sustain: float = 0.0
    fm_tau_s: float = 0.2


_TIMBRES = {
    "pluck": _Timbre("table", tilt=0.9, dark_tilt=2.6, bright_tau_s=0.06, attack_s=0.002,
                     decay_s=0.35, sustain=0.0, release_s=0.06),
    "pad": _Timbre("table", tilt=1.3, dark_tilt=2.2, bright_tau_s=0.8, detune_cents=9.0,
                   attack_s=0.2, decay_s=1.0, sustain=0.8, release_s=0.35, vibrato_cents=4.0),
    "brass": _Timbre("table", tilt=1.0, dark_tilt=1.9, bright_tau_s=0.3, detune_cents=5.0,
                     attack_s=0.03, decay_s=0.4, sustain=0.7, release_s=0.1,
                     vibrato_cents=10.0, vibrato_hz=5.5),
    "square": _Timbre("table", tilt=1.0, dark_tilt=1.7, even=0.05, bright_tau_s=0.15,
                      attack_s=0.004, decay_s=0.2, sustain=0.6, release_s=0.05),
    "organ": _Timbre("table", partials=((1, 1.0), (2, 0.7), (3, 0.5), (4, 0.35), (6, 0.25), (8, 0.18)),
                     attack_s=0.008, decay_s=0.1, sustain=0.9, release_s=0.05),
    "reed": _Timbre("table", tilt=1.7, dark_tilt=2.4, even=0.3, bright_tau_s=0.25,
                    attack_s=0.025, decay_s=0.3, sustain=0.8, release_s=0.08,
                    vibrato_cents=7.0, vibrato_hz=4.8),
    "epiano": _Timbre("fm", fm_ratio=1.0, fm_index=2.2, fm_index_sustain=0.3, fm_tau_s=0.25,
                      attack_s=0.002, decay_s=1.1, sustain=0.12, release_s=0.15),
    "bell": _Timbre("fm", fm_ratio=3.5, fm_index=2.8, fm_index_sustain=0.4, fm_tau_s=0.5,
                    attack_s=0.002, decay_s=1.3, sustain=0.0, release_s=0.4),
}


def _vary_timbre(t: _Timbre, rng: np.random.Generator) -> _Timbre:
    """A per-track variant of a pool timbre: same instrument, a slightly different player."""
    time_scale = float(np.exp(rng.normal(0.0, 0.12)))
    tilt_shift = float(rng.normal(0.0, 0.08))
    return replace(
        t,
        tilt=max(0.5, t.tilt + tilt_shift),
        dark_tilt=max(0.8, t.dark_tilt + tilt_shift),
        bright_tau_s=t.bright_tau_s * float(np.exp(rng.normal(0.0, 0.25))),
        detune_cents=t.detune_cents * float(np.exp(rng.normal(0.0, 0.2))),
        attack_s=t.attack_s * time_scale,
        decay_s=t.decay_s * time_scale,
        release_s=t.release_s * time_scale,
        fm_index=t.fm_index * float(np.exp(rng.normal(0.0, 0.15))),
    )


_TABLE_N = 2048
_LEVEL_F0_HZ = 20.0


def _wavetable(amps: np.ndarray) -> np.ndarray:
    """One cycle from harmonic amplitudes (sine phases), peak 1, with a wrap-around guard sample."""
    spectrum = np.zeros(_TABLE_N // 2 + 1, dtype=np.complex128)
    spectrum[1:amps.size + 1] = -1j * amps
    table = np.fft.irfft(spectrum, n=_TABLE_N)
    table /= np.max(np.abs(table))
    return np.append(table, table[0]).astype(np.float32)


_SINE = _wavetable(np.array([1.0]))


_FRAC_BITS = 32 - int(math.log2(_TABLE_N))


def _phase(n: int, freq_hz: float, sr: int, offset_cycles: float = 0.0) -> np.ndarray:
    """Phase of a steady oscillator as 32-bit fixed point (one cycle = 2**32), wrapping for free."""
    inc = np.uint32(int(round(freq_hz / sr * 2**32)) % 2**32)
    start = np.uint32(int(round((offset_cycles % 1.0) * 2**32)) % 2**32)
    p = np.arange(n, dtype=np.uint32)
    p *= inc
    p += start
    return p


def _to_phase(cycles: np.ndarray) -> np.ndarray:
    """Float cycles (any sign) as a fixed-point phase offset."""
    return (cycles * np.float32(2**32)).astype(np.int64).astype(np.uint32)


def _lookup(table: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Linear-interpolated read of a ``_TABLE_N + 1`` table at a fixed-point ``phase``."""
    i = phase >> np.uint32(_FRAC_BITS)
    frac = (phase & np.uint32((1 << _FRAC_BITS) - 1)).astype(np.float32)
    frac *= np.float32(1.0 / (1 << _FRAC_BITS))
    a = table[i]
    i += np.uint32(1)
    b = table[i]
    b -= a
    b *= frac
    b += a
    return b


class _Voice:
    """Renders notes of one timbre, band-limited: one wavetable pair per octave of fundamental."""

    def __init__(self, timbre: _Timbre, sr: int) -> None:
        self.t = timbre
        self.sr = sr
        self._tables: dict = {}
        self._notes: dict = {}

    def _tables_for(self, f0_hz: float) -> tuple:
        level = max(0, math.ceil(math.log2(max(f0_hz, 1.0) / _LEVEL_F0_HZ)))
        if level not in self._tables:
            # Keep every harmonic below 0.45 * sr for the highest fundamental of this level.
            k_max = max(1, min(_TABLE_N // 2 - 1, int(0.45 * self.sr / (_LEVEL_F0_HZ * 2**level))))
            k = np.arange(1, k_max + 1, dtype=np.float64)
            if self.t.partials:
                amps = np.zeros(k_max)
                for h, a in self.t.partials:
                    if h <= k_max:
                        amps[h - 1] = a
                bright = dark = amps
            else:
                weight = np.where(k % 2 == 0, self.t.even, 1.0)
                bright = weight * k ** -self.t.tilt
                dark = weight * k ** -self.t.dark_tilt
            self._tables[level] = (_wavetable(bright), _wavetable(dark))
        return self._tables[level]

    def note(self, midi: int, gate_n: int, velocity: float) -> np.ndarray:
        """Unit-velocity-scaled note (velocity only shapes its brightness); cached per value."""
        vel_q = round(velocity * 4) / 4
        key = (midi, gate_n, vel_q)
        if key not in self._notes:
            self._notes[key] = self._render(midi, gate_n, max(0.25, vel_q))
        return self._notes[key]

    def _render(self, midi: int, gate_n: int, vel: float) -> np.ndarray:
        t, sr = self.t, self.sr
        f0 = 440.0 * 2.0 ** ((midi - 69) / 12.0)
        n = gate_n + int(4.0 * t.release_s * sr)
        if t.sustain == 0.0:  # percussive: nothing is left after a few decay times
            n = min(n, int((t.attack_s + 5.0 * t.decay_s) * sr))
        n = max(n, 64)
        time = np.arange(n, dtype=np.float32) / np.float32(sr)

        # Envelope, piece by piece, so that each exponential runs only where it matters.
        env = np.empty(n, dtype=np.float32)
        n_att = min(n, max(1, int(t.attack_s * sr)))
        env[:n_att] = time[:n_att] / np.float32(t.attack_s)
        env[n_att:] = np.exp(-(time[n_att:] - np.float32(t.attack_s)) / np.float32(t.decay_s))
        env[n_att:] *= np.float32(1.0 - t.sustain)
        env[n_att:] += np.float32(t.sustain)
        if gate_n < n:
            env[gate_n:] *= np.exp(-(time[gate_n:] - time[gate_n]) / np.float32(t.release_s))
        fade = min(256, n)
        env[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)

        # Fixed-point phase: exact, wraps by itself, and half the memory traffic of float64.
        phase = _phase(n, f0, sr)
        if t.vibrato_cents:
            # Vibrato fades in; its phase offset is the integral of the frequency deviation.
            depth = f0 * t.vibrato_cents * math.log(2.0) / 1200.0
            w = 2.0 * math.pi * t.vibrato_hz
            ramp = np.minimum(time / np.float32(0.4), np.float32(1.0))
            wobble = ramp * np.float32(depth / w) * (np.float32(1.0) - np.cos(np.float32(w) * time))
            phase += _to_phase(wobble)

        if t.kind == "fm":
            n_idx = min(n, int(7.0 * t.fm_tau_s * sr))
            index = np.full(n, t.fm_index_sustain / (2.0 * math.pi), dtype=np.float32)
            index[:n_idx] += np.float32((t.fm_index * vel - t.fm_index_sustain) / (2.0 * math.pi)) * np.exp(
                -time[:n_idx] / np.float32(t.fm_tau_s))
            index *= _lookup(_SINE, _phase(n, f0 * t.fm_ratio, sr))
            phase += _to_phase(index)
            out = _lookup(_SINE, phase)
        else:
            detune = 2.0 ** (t.detune_cents / 1200.0)
            bright, dark = self._tables_for(f0 * detune)
            out = _lookup(dark, phase)
            if bright is not dark:
                m = min(n, int(7.0 * t.bright_tau_s * sr))
                mix = np.float32(0.4 + 0.6 * vel) * np.exp(-time[:m] / np.float32(t.bright_tau_s))
                out[:m] += mix * (_lookup(bright, phase[:m]) - out[:m])
            if t.detune_cents:
                out += _lookup(dark, _phase(n, f0 * detune, sr, 0.37))
                out *= np.float32(0.5)
        out *= env
        return out


@dataclass(frozen=True)
class _Kit:
    kick_start_hz: float
    kick_end_hz: float
    kick_pitch_tau_s: float
    kick_decay_s: float
    kick_click: float
    snare_hz: float
    snare_decay_s: float
    snare_snap: float
    snare_band_hz: tuple
    hat_decay_s: float
    hat_cut_hz: float
    open_decay_s: float


_KITS = {
    "electro": _Kit(180.0, 48.0, 0.035, 0.35, 0.3, 200.0, 0.18, 0.7, (1500.0, 9000.0), 0.04, 8000.0, 0.3),
    "acoustic": _Kit(110.0, 55.0, 0.02, 0.22, 0.6, 190.0, 0.15, 0.55, (1000.0, 7000.0), 0.05, 6000.0, 0.35),
    "tight": _Kit(220.0, 60.0, 0.015, 0.15, 0.4, 240.0, 0.09, 0.8, (2000.0, 10000.0), 0.025, 9000.0, 0.2),
}


_KIT_NAMES = tuple(_KITS)


@functools.lru_cache(maxsize=16)
def _drum_shots(kit_name: str, sr: int) -> dict:
    """One-shot drum sounds of a shared kit, two takes each so repeated hits are not identical.

    The kits are the same for every track and seed (like a drum machine everyone owns), so they
    are made once per process.
    """
    kit = _KITS[kit_name]
    rng = np.random.default_rng(np.random.SeedSequence([0xD2, _KIT_NAMES.index(kit_name)]))
    hp_hat = sps.butter(2, min(kit.hat_cut_hz, 0.45 * sr), btype="highpass", fs=sr, output="sos")
    hp_crash = sps.butter(2, min(4000.0, 0.45 * sr), btype="highpass", fs=sr, output="sos")
    band = (kit.snare_band_hz[0], min(kit.snare_band_hz[1], 0.45 * sr))
    bp_snare = sps.butter(2, band, btype="bandpass", fs=sr, output="sos")
    k_start, k_end = kit.kick_start_hz, kit.kick_end_hz
    k_decay, s_decay, s_hz = kit.kick_decay_s, kit.snare_decay_s, kit.snare_hz
    h_decay, o_decay = kit.hat_decay_s, kit.open_decay_s

    def times(dur_s: float) -> np.ndarray:
        return np.arange(int(dur_s * sr)) / sr

    def noise(n: int) -> np.ndarray:
        return rng.standard_normal(n)

    def swept(t: np.ndarray, f_start: float, f_end: float, pitch_tau: float, decay: float) -> np.ndarray:
        f = f_end + (f_start - f_end) * np.exp(-t / pitch_tau)
        return np.sin(2.0 * np.pi * np.cumsum(f) / sr) * np.exp(-t / decay)

    def unit(x: np.ndarray) -> np.ndarray:
        fade = min(128, x.size)
        x = x.copy()
        x[-fade:] *= np.linspace(1.0, 0.0, fade)
        x = (x / np.max(np.abs(x))).astype(np.float32)
        x.setflags(write=False)
        return x

    shots: dict = {name: [] for name in ("kick", "snare", "hat", "open", "crash", "tom")}
    for _ in range(2):
        t = times(max(0.3, 5 * k_decay))
        click = sps.sosfilt(hp_hat, noise(t.size)) * np.exp(-t / 0.004) * kit.kick_click
        shots["kick"].append(unit(swept(t, k_start, k_end, kit.kick_pitch_tau_s, k_decay) + click))
        t = times(max(0.25, 5 * s_decay))
        tone = (np.sin(2 * np.pi * s_hz * t) + 0.5 * np.sin(2 * np.pi * 1.6 * s_hz * t)) * np.exp(-t / 0.06)
        rattle = sps.sosfilt(bp_snare, noise(t.size)) * np.exp(-t / s_decay)
        rattle /= np.max(np.abs(rattle))
        shots["snare"].append(unit((1 - kit.snare_snap) * tone + kit.snare_snap * 1.5 * rattle))
        t = times(6 * h_decay)
        shots["hat"].append(unit(sps.sosfilt(hp_hat, noise(t.size)) * np.exp(-t / h_decay)))
        t = times(5 * o_decay)
        shots["open"].append(unit(sps.sosfilt(hp_hat, noise(t.size)) * np.exp(-t / o_decay)))
        t = times(2.5)
        shots["crash"].append(unit(sps.sosfilt(hp_crash, noise(t.size)) * np.exp(-t / 0.7)))
    # Toms for fills: three pitches, low to high (a "take" picks the pitch).
    t = times(0.6)
    shots["tom"] = [unit(swept(t, 1.6 * f, f, 0.04, 0.2)) for f in (k_end * 2.2, k_end * 3.0, k_end * 4.0)]
    return shots


def _reverb_ir(rng: np.random.Generator, sr: int, *, length_s: float = 0.6,
               decay_s: float = 0.2) -> np.ndarray:
    """A small room: decaying noise, darker as it decays, with a short pre-delay."""
    t = np.arange(int(length_s * sr)) / sr
    ir = rng.standard_normal(t.size) * np.exp(-t / decay_s)
    ir = sps.sosfilt(sps.butter(1, min(5000.0, 0.45 * sr), btype="lowpass", fs=sr, output="sos"), ir)
    ir[: int(0.012 * sr)] = 0.0
    fade = int(0.1 * sr)
    ir[-fade:] *= np.linspace(1.0, 0.0, fade)
    return (ir / np.sqrt(np.sum(ir**2))).astype(np.float32)


# --------------------------------------------------------------------------------------------
# The synthetic corpus: arrangement and rendering
# --------------------------------------------------------------------------------------------


def _degree_midi(degree: int, tonic_midi: int, mode: tuple) -> int:
    return tonic_midi + 12 * (degree // 7) + mode[degree % 7]


def _fold(pc: int, low: int) -> int:
    """The pitch of pitch class ``pc`` in the octave starting at MIDI ``low``."""
    return low + (pc - low) % 12


def _motif(spec: TrackSpec, rng: np.random.Generator) -> list:
    """A two-bar melodic idea: [(step, length in steps, scale degree, accent)]."""
    spb = spec.steps_per_bar
    n = 2 * spb
    steps = np.arange(n)
    weight = np.where(steps % spb == 0, 1.0,
                      np.where(steps % 4 == 0, 0.8, np.where(steps % 2 == 0, 0.5, 0.22)))
    onsets = np.flatnonzero(rng.random(n) < np.clip(spec.melody_density * weight * 1.6, 0.0, 0.95))
    if onsets.size == 0 or onsets[0] != 0:
        onsets = np.concatenate([[0], onsets])
    notes = []
    degree = int(rng.choice([4, 7, 9]))
    for i, s in enumerate(onsets):
        nxt = onsets[i + 1] if i + 1 < onsets.size else n
        length = int(min(nxt - s, 8))
        if i:
            degree += int(rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3]))
            degree = int(np.clip(degree, 2, 13))
        notes.append((int(s), length, degree, float(weight[s])))
    return notes


def _snap_to_chord(degree: int, chord_root: int) -> int:
    """Nearest scale degree that is a tone of the triad on ``chord_root``."""
    for delta in (0, -1, 1, -2, 2):
        if (degree + delta - chord_root) % 7 in (0, 2, 4):
            return degree + delta
    return degree


class _Events:
    """Note events of one part, gathered before rendering: timbre, gain, onset (s), gate (samples),
    pitch, velocity."""

    def __init__(self) -> None:
        self.rows: list = []

    def add(self, timbre: str, gain: float, onset_s: float, gate_n: int, midi: int, velocity: float) -> None:
        self.rows.append((timbre, gain, onset_s, gate_n, midi, velocity))


def _render_track(
    spec: TrackSpec, seed: int, n_total: int, sr: int, section_variety: float
) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED, 2, spec.index]))
    spb = spec.steps_per_bar
    step_s = 60.0 / spec.tempo_bpm / 4.0
    bar_s = spb * step_s
    n_bars = int(math.ceil(n_total / sr / bar_s)) + 1
    mode = _MODES[spec.mode]

    def at(bar: int, step: float) -> float:
        s = bar * spb + step
        swing = spec.swing * step_s if (int(step) % 2 == 1 and float(step).is_integer()) else 0.0
        return s * step_s + swing

    def human(sd_s: float = 0.004) -> float:
        return float(rng.normal(0.0, sd_s))

    def vel(base: float) -> float:
        return float(np.clip(base * (1.0 + rng.normal(0.0, 0.08)), 0.05, 1.0))

    # Sections: the form repeats until the track is covered.
    sections = []
    bar = 0
    i = 0
    while bar < n_bars:
        label = spec.form[i % len(spec.form)]
        # What a section sounds like (key, instruments, kit, balance) may be dealt afresh; what it
        # plays (tempo, groove, progression, figures, motifs) belongs to the track.
        upper = [spec.timbres[int(j)] for j in rng.permutation(len(spec.timbres))]
        sound = {
            "key": int(rng.integers(12)),
            "timbres": {"bass": spec.bass_timbres[int(rng.integers(2))], "chords": upper[0],
                        "melody": upper[1], "arp": upper[2]},
            "kit": _KIT_NAMES[int(rng.integers(len(_KIT_NAMES)))],
            "gain_db": {role: float(rng.normal(0.0, 1.5))
                        for role in ("bass", "chords", "melody", "arp", "drums")},
            "chord_center": 60 + int(rng.integers(-3, 4)),
        }
        if i == 0:
            sound["key"] = spec.key
            home = sound
        elif rng.random() >= section_variety:
            sound = home
        sections.append({
            "label": label, "bar": bar, "bars": spec.bars_per_section, **sound,
            "fill": rng.random() < 0.75,
            "breakdown": i > 0 and rng.random() < 0.15,
            "intro": i == 0 and rng.random() < 0.5,
            "shift": int(rng.choice([0, 0, 0, 2, -1])) if i >= len(spec.form) else 0,
        })
        bar += spec.bars_per_section
        i += 1
    motifs = {"A": _motif(spec, rng), "B": _motif(spec, rng)}

    def chord_at(label: str, bar_in_section: int, step: float) -> tuple:
        """(current chord degree, next chord degree) at a step of a bar of a section."""
        prog = spec.progression_a if label == "A" else spec.progression_b
        slot = bar_in_section * spec.chords_per_bar + int(step * spec.chords_per_bar // spb)
        return prog[slot % len(prog)], prog[(slot + 1) % len(prog)]

    parts = {role: _Events() for role in ("bass", "chords", "melody", "arp")}
    drums: list = []  # (onset_s, kit, gain, shot name, take, velocity)

    def gate(steps: float, fraction: float) -> int:
        return max(1, int(steps * step_s * fraction * sr))

    for sec in sections:
        label = sec["label"]
        tonic_bass = _fold(sec["key"], 28)      # E1 … Eb2: registers stay put when the key moves
        tonic_mel = _fold(sec["key"], 55)       # G3 … Gb4
        timbre = sec["timbres"]
        gain = {role: float(10 ** (db / 20.0)) for role, db in sec["gain_db"].items()}
        kick, snare, hats = _DRUMS[spb][spec.drums_a if label == "A" else spec.drums_b]
        bass_fig = _BASS[spb][spec.bass if label == "A" else spec.bass_b]
        comp = _COMP[spb][spec.comp]

        def hit(onset_s: float, name: str, take: int, velocity: float) -> None:
            drums.append((onset_s + human(0.0025), sec["kit"], gain["drums"], name, take, velocity))

        for b in range(sec["bars"]):
            bar = sec["bar"] + b
            if bar >= n_bars:
                break
            fill_from = spb
            if b == sec["bars"] - 1 and sec["fill"]:
                fill_from = spb - (8 if spb == 16 and rng.random() < 0.4 else spb // 4)
            drums_on = not (sec["breakdown"] and b < sec["bars"] // 2)

            # Drums.
            if b == 0 and sec["bar"] > 0:
                hit(at(bar, 0), "crash", int(rng.integers(2)), vel(0.8))
            for s in range(fill_from):
                if drums_on and kick[s] == "x":
                    hit(at(bar, s), "kick", int(rng.integers(2)), vel(0.95 if s % 4 == 0 else 0.8))
                if drums_on and snare[s] in "xg":
                    hit(at(bar, s), "snare", int(rng.integers(2)), vel(0.9 if snare[s] == "x" else 0.3))
                if hats[s] != ".":
                    level = {"x": 0.75, "-": 0.4, "o": 0.6}[hats[s]] * (1.0 if s % 4 == 0 else 0.85)
                    hit(at(bar, s), "open" if hats[s] == "o" else "hat", int(rng.integers(2)), vel(level))
            toms = rng.random() < 0.5
            for j, s in enumerate(range(fill_from, spb)):
                if rng.random() < 0.15:
                    continue  # a gap makes the fill breathe
                ramp = vel(0.45 + 0.55 * j / max(1, spb - fill_from - 1))
                if toms:  # high tom down to low tom
                    hit(at(bar, s), "tom", 2 - min(2, 3 * j // (spb - fill_from)), ramp)
                else:
                    hit(at(bar, s), "snare", int(rng.integers(2)), ramp)

            # Bass.
            for s, role, length in bass_fig:
                cur, nxt = chord_at(label, b, s)
                if role == "a":
                    midi = _degree_midi(nxt, tonic_bass, mode) + int(rng.choice([-1, 2]))
                else:
                    midi = _degree_midi(cur + {"r": 0, "t": 2, "f": 4, "o": 7}[role], tonic_bass, mode)
                parts["bass"].add(timbre["bass"], gain["bass"], at(bar, s) + human(), gate(length, 0.85),
                                  midi, vel(0.9 if s == 0 else 0.75))

            # Chords: close voicings around the section's centre, so voices move little.
            hits = comp if comp is not None else tuple(
                (c * spb / spec.chords_per_bar, spb / spec.chords_per_bar) for c in range(spec.chords_per_bar)
            )
            for s, length in hits:
                cur, _ = chord_at(label, b, s)
                t0 = at(bar, s) + human()
                level = vel(0.7 if comp is None else 0.6)
                for d in (0, 2, 4):
                    midi = _fold((sec["key"] + mode[(cur + d) % 7]) % 12, sec["chord_center"] - 6)
                    parts["chords"].add(timbre["chords"], gain["chords"], t0,
                                        gate(length, 0.95 if comp is None else 0.7), midi, level)

            # Arpeggio: chord tones up and down over two octaves.
            if spec.arp == "all" or (spec.arp == "B" and label == "B"):
                rate = 2 if spec.tempo_bpm > 125 else 1
                for k, s in enumerate(range(0, spb, rate)):
                    cur, _ = chord_at(label, b, s)
                    ladder = (0, 2, 4, 7, 9, 7, 4, 2)
                    midi = _degree_midi(cur + ladder[k % len(ladder)], tonic_mel, mode)
                    parts["arp"].add(timbre["arp"], gain["arp"], at(bar, s) + human(), gate(rate, 0.6),
                                     midi, vel(0.55 if s % 4 else 0.7))

        # Melody: the section's two-bar motif, repeated with mutations.
        motif = motifs[label]
        reps = sec["bars"] // 2
        for r in range(reps):
            if sec["intro"] and r < reps // 2:
                continue
            for s, length, degree, accent in motif:
                if rng.random() < spec.variation * 0.5:
                    continue  # a dropped note
                if rng.random() < spec.variation:
                    degree += int(rng.choice([-2, -1, 1, 2]))
                b, s_in_bar = 2 * r + s // spb, s % spb
                if sec["bar"] + b >= n_bars:
                    continue
                cur, _ = chord_at(label, b, s_in_bar)
                degree += sec["shift"]
                if s_in_bar % 4 == 0:
                    degree = _snap_to_chord(degree, cur)
                if r == reps - 1 and s == motif[-1][0]:
                    degree = 7 if degree > 3 else 0  # a section's last note rests on the tonic
                midi = _degree_midi(int(np.clip(degree, 0, 16)), tonic_mel, mode)
                parts["melody"].add(timbre["melody"], gain["melody"], at(sec["bar"] + b, s_in_bar) + human(),
                                    gate(length, 0.85), midi, vel(0.55 + 0.4 * accent))

    # Render.
    tail = 3 * sr
    dry = np.zeros(n_total + tail, dtype=np.float32)
    send = np.zeros_like(dry)
    gains = {"bass": 0.55, "chords": 0.2, "melody": 0.38, "arp": 0.17}
    sends = {"bass": 0.0, "chords": 0.35, "melody": 0.3, "arp": 0.4}

    def place(buf: np.ndarray, onset_s: float, x: np.ndarray, scale: float) -> None:
        o = int(round(onset_s * sr))
        if o >= n_total or o + x.size <= 0:
            return
        lo = max(0, -o)
        hi = min(x.size, buf.size - o)
        buf[o + lo:o + hi] += np.float32(scale) * x[lo:hi]

    # One player per timbre (its per-track variant), whatever role it plays.
    players = {}
    for name in spec.bass_timbres + spec.timbres:
        players[name] = _Voice(_vary_timbre(_TIMBRES[name], rng), sr)
    for role, events in parts.items():
        for name, g, onset_s, gate_n, midi, v in events.rows:
            x = players[name].note(int(midi), int(gate_n), v)
            place(dry, onset_s, x, gains[role] * g * v)
            if sends[role]:
                place(send, onset_s, x, gains[role] * g * v * sends[role])

    drum_gain = {"kick": 0.9, "snare": 0.55, "hat": 0.22, "open": 0.2, "crash": 0.22, "tom": 0.5}
    for onset_s, kit, g, name, take, v in drums:
        takes = _drum_shots(kit, sr)[name]
        x = takes[take % len(takes)]
        place(dry, onset_s, x, drum_gain[name] * g * v)
        if name in ("snare", "tom"):
            place(send, onset_s, x, drum_gain[name] * g * v * 0.2)

    wet = sps.oaconvolve(send, _reverb_ir(rng, sr), mode="full")[: dry.size]
    mix = dry + wet.astype(np.float32)
    mix = mix[:n_total]
    # Equal loudness across tracks, unless a peak would pass 0.9.
    rms = float(np.sqrt(np.mean(mix.astype(np.float64) ** 2)))
    peak = float(np.max(np.abs(mix)))
    scale = min(0.12 / rms, 0.9 / peak) if rms > 0 else 0.0
    return (mix * scale).astype(np.float32)


class SyntheticCorpus:
    """A seeded, procedurally generated music corpus (see the module docstring for its design).

    Parameters
    ----------
    n_tracks : int >= 1
        Number of tracks; 16 by default.
    seed : int >= 0
        Everything (plans and audio) follows from it; the same seed gives bit-identical audio.
    track_duration_s : float in [1, 3600]
        Length of every track.
    sr : int in [8000, 384000]
        Sample rate, 44100 by default.
    section_variety : float in [0, 1]
        Chance that a section after the first deals its sound afresh (key, which palette timbre
        plays which part, drum kit, balance, chord register) instead of keeping the track's first
        one. 1 (the default) leaves a track's identity to what it plays; 0 gives every track one
        fixed sound, which a network with random weights already tells apart well.

    Attributes
    ----------
    specs : list of TrackSpec
        The musical plan of every track (tempo, key, mode, progressions, patterns, voices, …).
    """

    def __init__(
        self,
        n_tracks: int = 16,
        seed: int = 0,
        track_duration_s: float = 60.0,
        sr: int = SR,
        section_variety: float = 1.0,
    ) -> None:
        if isinstance(n_tracks, bool) or not isinstance(n_tracks, (int, np.integer)) or n_tracks < 1:
            raise ConfigError(f"n_tracks={n_tracks!r} must be an integer >= 1")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed={seed!r} must be an integer >= 0")
        try:
            dur = float(track_duration_s)
        except (TypeError, ValueError):
            dur = float("nan")
        if not math.isfinite(dur) or not 1.0 <= dur <= 3600.0:
            raise ConfigError(f"track_duration_s={track_duration_s!r} must be between 1 and 3600 seconds")
        if (isinstance(section_variety, bool) or not isinstance(section_variety, (int, float))
                or not 0.0 <= float(section_variety) <= 1.0):
            raise ConfigError(f"section_variety={section_variety!r} must be a number in [0, 1]")
        self.section_variety = float(section_variety)
        self.sr = _check_sr(sr)
        self.n_tracks = int(n_tracks)
        self.seed = int(seed)
        self.track_duration_s = dur
        self._n_total = n_samples(dur, self.sr)
        self.specs = [_track_spec(self.seed, i) for i in range(self.n_tracks)]
        self.track_names = [s.name for s in self.specs]
        self._audio: dict = {}

    def __repr__(self) -> str:
        return (f"SyntheticCorpus(n_tracks={self.n_tracks}, seed={self.seed}, "
                f"track_duration_s={self.track_duration_s:g}, sr={self.sr}, "
                f"section_variety={self.section_variety:g})")

    def duration_s(self, track: int) -> float:
        """Length of ``track`` in seconds (the same for every track)."""
        _check_clip_args(self.n_tracks, track, 0.0, 1.0)
        return self._n_total / self.sr

    def track(self, track: int) -> np.ndarray:
        """The whole of ``track`` (float32, read-only), generated on first use and cached."""
        track, _, _ = _check_clip_args(self.n_tracks, track, 0.0, 1.0)
        audio = self._audio.get(track)
        if audio is None:
            audio = _render_track(
                self.specs[track], self.seed, self._n_total, self.sr, self.section_variety
            )
            audio.setflags(write=False)
            self._audio[track] = audio
        return audio

    def clip(self, track: int, start_s: float, duration_s: float) -> np.ndarray:
        """Mono float32 ``(n_samples(duration_s, sr),)`` from ``start_s``; zero past the end."""
        track, start, dur = _check_clip_args(self.n_tracks, track, start_s, duration_s)
        return _slice_padded(self.track(track), n_samples(start, self.sr), n_samples(dur, self.sr))

    def describe(self) -> dict:
        """Everything needed to regenerate the corpus, plus a summary of each track's plan."""
        return {
            "kind": "synthetic",
            "generator_version": GENERATOR_VERSION,
            "seed": self.seed,
            "n_tracks": self.n_tracks,
            "track_duration_s": self.track_duration_s,
            "sr": self.sr,
            "section_variety": self.section_variety,
            "tracks": [
                {"name": s.name, "tempo_bpm": s.tempo_bpm, "key": s.key_name, "mode": s.mode,
                 "meter": s.meter}
                for s in self.specs
            ],
        }
