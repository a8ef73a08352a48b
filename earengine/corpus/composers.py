"""The composer corpus: scores from music21's corpus, rendered on one piano through FluidSynth.

Every composer's works are played by the same General MIDI piano (program 0 of
``fluid-soundfont-gm``) at the same loudness, so timbre and level are no cue: telling the
composers apart means hearing their music. A work (a quartet with its movements, a chorale, a
madrigal) goes whole into the training or the held-out part, about a quarter of each composer's
rendered time held out, chosen by a hash of the work's name so the split never changes.

Examples
--------
>>> work_of("beethoven/opus18no1/movement2.mxl")
'beethoven/opus18no1'
>>> work_of("bach/bwv66.6.mxl")
'bach/bwv66.6'
>>> sorted(split_works({"a": 60.0, "b": 60.0, "c": 60.0, "d": 60.0}).values())
['heldout', 'train', 'train', 'train']
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Iterable, Mapping, Optional

import numpy as np
import soundfile as sf

from earengine.audiofile import resample
from earengine.corpus.debian import MissingToolError, require_tools
from earengine.corpus.manifest import SR, Manifest, write_flac
from earengine.errors import ConfigError
from earengine.progress import Progress
from earengine.units import db_to_gain

__all__ = [
    "DEFAULT_COMPOSERS", "SOUNDFONTS", "work_of", "split_works", "render_score", "build_composers",
]

DEFAULT_COMPOSERS = ("bach", "beethoven", "mozart", "haydn", "monteverdi")
#: General MIDI soundfonts we look for, first found wins (Debian's fluid-soundfont-gm).
SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2")
HELDOUT_FRACTION = 0.25
#: Every render is scaled to this RMS level (dBFS), so loudness tells no composer.
LEVEL_DB = -20.0
_PIANO = 0
_SCORE_LICENSE = ("composition in the public domain; encoding from the music21 corpus "
                  "(music21, BSD-3-Clause); rendered with FluidR3_GM (MIT)")


def work_of(corpus_path: str) -> str:
    """The work a score belongs to: its folder for a movement, the score itself otherwise."""
    p = Path(corpus_path)
    if p.stem.startswith("movement") and len(p.parts) >= 2:
        return p.parent.as_posix()
    return p.with_suffix("").as_posix()


def _hash(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


def split_works(durations_s: Mapping[str, float], heldout_fraction: float = HELDOUT_FRACTION) -> dict:
    """``{work: "train" | "heldout"}``: works in hash order held out until ``heldout_fraction`` of
    the time is; at least one work on each side when there are two or more."""
    works = sorted(durations_s, key=_hash)
    total = float(sum(durations_s.values()))
    out, held = {}, 0.0
    for i, w in enumerate(works):
        if held < heldout_fraction * total and i < len(works) - 1:
            out[w] = "heldout"
            held += durations_s[w]
        else:
            out[w] = "train"
    return out


def _soundfont() -> str:
    for path in SOUNDFONTS:
        if Path(path).is_file():
            return path
    raise MissingToolError(
        "a General MIDI soundfont must be installed to render the composers (apt-get install "
        "fluid-soundfont-gm); on another system, train on your own music with --data DIR"
    )


def _all_piano(midi_in: Path, midi_out: Path) -> None:
    """Rewrite a MIDI file so every part plays program 0 (piano) on a melodic channel."""
    import mido

    mid = mido.MidiFile(str(midi_in))
    used = sorted({m.channel for t in mid.tracks for m in t if hasattr(m, "channel")})
    free = [c for c in range(16) if c != 9 and c not in used]
    remap = {9: free[0]} if 9 in used and free else {}
    for track in mid.tracks:
        kept, carry = [], 0
        for m in track:
            if m.type == "program_change":
                carry += m.time  # keep the timing of what follows
                continue
            m = m.copy(time=m.time + carry)
            carry = 0
            if hasattr(m, "channel") and m.channel in remap:
                m = m.copy(channel=remap[m.channel])
            kept.append(m)
        track[:] = kept
    first = mido.MidiTrack(
        [mido.Message("program_change", channel=remap.get(c, c), program=_PIANO, time=0) for c in used])
    if mid.type == 0:  # one track: make it two, the programs first
        mid.type = 1
    mid.tracks.insert(0, first)
    mid.save(str(midi_out))


def render_score(score_or_path, *, soundfont: Optional[str] = None) -> np.ndarray:
    """Render a music21 score (or a corpus path) on piano: mono float32 at 44.1 kHz, at
    :data:`LEVEL_DB` RMS.

    Raises
    ------
    MissingToolError
        fluidsynth or the soundfont is missing.
    """
    require_tools("fluidsynth", hint=" (apt-get install fluidsynth fluid-soundfont-gm)")
    soundfont = soundfont or _soundfont()
    if isinstance(score_or_path, (str, Path)):
        from music21 import corpus

        score = corpus.parse(str(score_or_path))
    else:
        score = score_or_path
    with tempfile.TemporaryDirectory(prefix="earengine-render-") as tmp:
        raw, piano, wav = Path(tmp, "raw.mid"), Path(tmp, "piano.mid"), Path(tmp, "out.wav")
        score.write("midi", fp=str(raw))
        _all_piano(raw, piano)
        done = subprocess.run(
            ["fluidsynth", "-ni", "-q", "-F", str(wav), "-r", str(SR), "-g", "0.5", "-T", "wav",
             soundfont, str(piano)],
            capture_output=True, text=True, check=False)
        if done.returncode != 0 or not wav.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ConfigError(f"fluidsynth failed with status {done.returncode}: {last}")
        x, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    x = resample(x.mean(axis=1), int(sr), SR)
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0
    if rms > 0:
        x = x * (db_to_gain(LEVEL_DB) / rms)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


class _TooSlow(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise _TooSlow in the main thread after ``seconds`` (music21 takes minutes over a few
    huge scores; their time is better spent on others). No limit off the main thread."""
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def ring(signum, frame):
        raise _TooSlow()

    before = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)


def _scores(composer: str) -> list:
    from music21 import corpus

    paths = corpus.getComposer(composer)
    if not paths:
        raise ConfigError(f"composer={composer!r} must be one with scores in music21's corpus, "
                          f"e.g. {', '.join(DEFAULT_COMPOSERS)}")
    by_stem: dict = {}
    for p in paths:  # a score in several encodings (.krn and .mxl): take one, .mxl first
        key = p.with_suffix("").as_posix()
        if key not in by_stem or p.suffix == ".mxl":
            by_stem[key] = p
    # Names as music21 gives them: the path under its corpus folder, e.g. "bach/bwv66.6.mxl".
    named = [(p, "/".join(p.parts[len(p.parts) - p.parts[::-1].index("corpus"):])) for p in by_stem.values()]
    # A seeded order of the names, not of the paths: the same scores on every machine, wherever
    # music21 is installed.
    return sorted(named, key=lambda pn: _hash(pn[1]))


def build_composers(
    folder: Path,
    composers: Iterable[str] = DEFAULT_COMPOSERS,
    *,
    minutes: float = 24.0,
    score_limit_s: float = 90.0,
    stream: Optional[IO[str]] = None,
) -> Manifest:
    """Build (or resume) the composer corpus in ``folder``: about ``minutes`` of rendered music per
    composer, labelled, every work assigned to the training or the held-out part. A score that
    takes longer than ``score_limit_s`` to read and render is left out, with its reason.

    Raises
    ------
    MissingToolError
        fluidsynth, the soundfont or music21 is missing (one line naming it).
    """
    stream = stream if stream is not None else sys.stderr
    if not minutes > 0:
        raise ConfigError(f"minutes={minutes!r} must be > 0")
    if importlib.util.find_spec("music21") is None:
        raise MissingToolError("music21 must be installed to build the composer corpus "
                               "(pip install music21); on another system, use --data DIR")
    require_tools("fluidsynth", hint=" (apt-get install fluidsynth fluid-soundfont-gm)")
    soundfont = _soundfont()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = Manifest.load(folder, "composers")
    composers = list(composers)
    for composer in composers:
        source = f"music21:{composer}"
        info = manifest.sources.setdefault(source, {"kind": "music21-corpus", "label": composer,
                                                    "soundfont": Path(soundfont).name, "complete": False})
        if info.get("complete"):
            continue
        have = sum(t["duration_s"] for t in manifest.tracks if t["label"] == composer)
        scores = _scores(composer)
        with Progress(len(scores), f"corpus: {composer}", stream=stream) as progress:
            for path, name in scores:
                # enough music, and at least two works, so that one can be held out
                if have >= 60 * minutes and len(_works(manifest, composer)) >= 2:
                    break
                if not manifest.decided(source, name):
                    have += _add_render(manifest, folder, composer, path, name, soundfont, score_limit_s, stream)
                progress.update(1, minutes=round(have / 60, 1))
        info["complete"] = True
        manifest.save(folder)
    _assign_splits(manifest)
    manifest.save(folder)
    print(f"corpus: composers: {len(manifest.tracks)} renders, {manifest.total_s() / 3600:.2f} h, "
          f"{len(composers)} composers; {folder}", file=stream)
    return manifest


def _add_render(manifest: Manifest, folder: Path, composer: str, path, name: str, soundfont: str,
                score_limit_s: float, stream) -> float:
    """Render one score into the corpus; its duration in seconds (0 when it was left out)."""
    source = f"music21:{composer}"
    try:
        with _time_limit(score_limit_s):
            x = render_score(path, soundfont=soundfont)
    except MissingToolError:
        raise
    except Exception as exc:  # music21 raises many kinds on scores it cannot read
        reason = (f"took over {score_limit_s:g} s to read and render" if isinstance(exc, _TooSlow)
                  else " ".join(str(exc).split())[:200] or type(exc).__name__)
        print(f"corpus: left out {composer}: {name}: {reason}", file=stream)
        manifest.add_skipped({"source": source, "file": name, "reason": reason})
        manifest.save(folder)
        return 0.0
    out = f"{composer}/{Path(name).with_suffix('').as_posix().replace('/', '_')}.flac"
    write_flac(folder / out, x)
    manifest.add_track({
        "out": out, "source": source, "file": name, "title": Path(name).stem,
        "work": work_of(name), "label": composer, "duration_s": round(len(x) / SR, 3),
        "sr": SR, "license": _SCORE_LICENSE, "copyright": "public domain",
        "sha256": hashlib.sha256((folder / out).read_bytes()).hexdigest(),
    })
    manifest.save(folder)
    return len(x) / SR


def _works(manifest: Manifest, composer: str) -> set:
    return {t["work"] for t in manifest.tracks if t["label"] == composer}


def _assign_splits(manifest: Manifest) -> None:
    for composer in {t["label"] for t in manifest.tracks}:
        works: dict = {}
        for t in manifest.tracks:
            if t["label"] == composer:
                works[t["work"]] = works.get(t["work"], 0.0) + t["duration_s"]
        split = split_works(works)
        for t in manifest.tracks:
            if t["label"] == composer:
                t["split"] = split[t["work"]]
