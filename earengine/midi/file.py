"""Standard MIDI files of a loop's notes (mido, imported when a file is written or read).

A :class:`~earengine.pattern.Pattern` becomes a type-1 file: a tempo track (tempo, meter) and
one track of notes, every note on at its step (``ticks_per_beat × step_beats × step``) and off
``length_steps`` later. :func:`read_pattern` reads such a file back onto the same steps.

Examples
--------
>>> import tempfile, os
>>> from earengine.pattern import Note, Pattern
>>> p = Pattern((Note(0, 57, 100, 1), Note(6, 64, 80, 1, 2.0)), steps_per_bar=16, bars=1)
>>> path = os.path.join(tempfile.mkdtemp(), "loop.mid")
>>> write_pattern(path, p, bpm=120.0)
>>> read_pattern(path, steps_per_bar=16) == p
True
"""

from __future__ import annotations

import os
from pathlib import Path

from earengine.errors import EarEngineError, ParameterError
from earengine.pattern import Note, Pattern

__all__ = ["write_pattern", "read_pattern", "TICKS_PER_BEAT", "MidiFileError"]

#: Resolution of written files: 480 ticks per quarter note (a 1/32 step is 60 ticks).
TICKS_PER_BEAT = 480


class MidiFileError(EarEngineError, OSError):
    """A MIDI file that cannot be written or read."""


def _mido():
    try:
        import mido
    except ImportError:  # pragma: no cover - a dependency
        raise MidiFileError("MIDI files need mido: pip install mido") from None
    return mido


def write_pattern(path: os.PathLike | str, pattern: Pattern, *, bpm: float) -> None:
    """Write ``pattern`` at ``bpm`` as a standard MIDI file (type 1, 480 ticks per beat).

    Raises
    ------
    MidiFileError
        The folder is missing or not writable; the message names the path.
    ParameterError
        ``bpm`` outside (0, 1000].
    """
    if not 0 < bpm <= 1000:
        raise ParameterError(f"bpm={bpm:g} must be within (0, 1000]")
    mido = _mido()
    path = Path(path)
    if not path.parent.is_dir():
        raise MidiFileError(f"path={str(path)!r} must be in an existing folder; {path.parent} is not one")
    f = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    meta = mido.MidiTrack()
    meta.append(mido.MetaMessage("track_name", name="earengine dream", time=0))
    meta.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    meta.append(mido.MetaMessage("time_signature", numerator=pattern.beats_per_bar, denominator=4, time=0))
    meta.append(mido.MetaMessage("end_of_track", time=int(round(pattern.beats * TICKS_PER_BEAT))))
    f.tracks.append(meta)
    step_ticks = pattern.step_beats * TICKS_PER_BEAT
    events = []
    for n in pattern.notes:
        on = int(round(n.step * step_ticks))
        off = int(round((n.step + n.length_steps) * step_ticks))
        events.append((off, 0, mido.Message("note_off", note=n.note, velocity=0, channel=n.channel - 1)))
        events.append((on, 1, mido.Message("note_on", note=n.note, velocity=n.velocity, channel=n.channel - 1)))
    events.sort(key=lambda e: (e[0], e[1]))  # offs before ons at the same tick: a repeated note restarts
    track = mido.MidiTrack()
    now = 0
    for tick, _, msg in events:
        track.append(msg.copy(time=tick - now))
        now = tick
    end = max(now, int(round(pattern.beats * TICKS_PER_BEAT)))
    track.append(mido.MetaMessage("end_of_track", time=end - now))
    f.tracks.append(track)
    try:
        f.save(str(path))
    except OSError as exc:
        raise MidiFileError(f"path={str(path)!r} cannot be written: {exc.strerror or exc}") from None


def read_pattern(path: os.PathLike | str, *, steps_per_bar: int) -> Pattern:
    """Read a file written by :func:`write_pattern` back onto a grid of ``steps_per_bar`` steps."""
    mido = _mido()
    try:
        f = mido.MidiFile(str(path))
    except (OSError, EOFError, ValueError) as exc:
        raise MidiFileError(f"path={str(path)!r} is not a readable MIDI file: {exc}") from None
    beats_per_bar, length_ticks = 4, 0
    for msg in f.tracks[0]:
        if msg.type == "time_signature":
            beats_per_bar = msg.numerator
    step_ticks = beats_per_bar / steps_per_bar * f.ticks_per_beat
    notes, held = [], {}
    for track in f.tracks[1:]:
        now = 0
        for msg in track:
            now += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                held[(msg.channel, msg.note)] = (now, msg.velocity)
            elif msg.type in ("note_off", "note_on") and (msg.channel, msg.note) in held:
                start, velocity = held.pop((msg.channel, msg.note))
                notes.append(Note(int(round(start / step_ticks)), msg.note, velocity, msg.channel + 1,
                                  round((now - start) / step_ticks, 6)))
        length_ticks = max(length_ticks, now)
    bars = max(1, int(round(length_ticks / (beats_per_bar * f.ticks_per_beat))))
    return Pattern(tuple(notes), steps_per_bar, bars, beats_per_bar)
