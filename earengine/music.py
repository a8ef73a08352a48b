"""Music theory, one table: scales, note names, note values — shared by every part that plays notes.

The sonifier snaps gradient tones to :data:`SCALES` (``/son/scale``, ``/son/root``) and the dream's
``grid`` parameterization puts its notes on the same scales (``/grid/scale``, ``/grid/key``), so a
scale added here is offered by both. Pure Python, no imports beyond the standard library.

Examples
--------
>>> scale_notes("A", "minor_pentatonic", lowest_midi=57, count=6)
(57, 60, 62, 64, 67, 69)
>>> steps_per_bar("1/16", beats_per_bar=4)
16
>>> midi_to_hz(69)
440.0
"""

from __future__ import annotations

from fractions import Fraction

from earengine.errors import ParameterError

__all__ = ["SCALES", "NOTE_NAMES", "DIVISIONS", "scale_notes", "steps_per_bar", "midi_to_hz"]

#: Pitch classes of each scale, in semitones above the root; ``off`` keeps pitch continuous.
SCALES: dict[str, tuple[int, ...]] = {
    "off": (),
    "chromatic": tuple(range(12)),
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "pentatonic": (0, 2, 4, 7, 9),
    "minor_pentatonic": (0, 3, 5, 7, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "whole_tone": (0, 2, 4, 6, 8, 10),
    "blues": (0, 3, 5, 6, 7, 10),
}
#: Pitch-class names, sharps only; the index is the pitch class (C = 0).
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
#: Note values as a fraction of a whole note (four beats), or ``off`` (no grid).
DIVISIONS = {"off": 0.0, "1/1": 1.0, "1/2": 0.5, "1/4": 0.25, "1/8": 0.125, "1/16": 0.0625, "1/32": 0.03125}


def midi_to_hz(note: float) -> float:
    """Equal-tempered frequency of a MIDI note number (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


def scale_notes(key: str, scale: str, *, lowest_midi: int, count: int) -> tuple[int, ...]:
    """The ``count`` MIDI notes of ``scale`` on ``key``, from the first at or above ``lowest_midi``.

    Parameters
    ----------
    key : str
        One of :data:`NOTE_NAMES`.
    scale : str
        One of :data:`SCALES` but ``off``.
    lowest_midi : int in [0, 127]
    count : int > 0

    Raises
    ------
    ParameterError
        An unknown key or scale, or notes that would leave MIDI's 0-127.
    """
    if key not in NOTE_NAMES:
        raise ParameterError(f"key={key!r} must be one of {', '.join(NOTE_NAMES)}")
    classes = SCALES.get(scale, ())
    if not classes:
        raise ParameterError(f"scale={scale!r} must be one of {', '.join(s for s in SCALES if s != 'off')}")
    root = NOTE_NAMES.index(key)
    allowed = {(root + c) % 12 for c in classes}
    notes: list[int] = []
    note = int(lowest_midi)
    while len(notes) < count:
        if note > 127:
            raise ParameterError(f"count={count} notes of {key} {scale} from MIDI {lowest_midi} must stay "
                                 "within MIDI 127; lower the register or use fewer notes")
        if note % 12 in allowed:
            notes.append(note)
        note += 1
    return tuple(notes)


def steps_per_bar(division: str, *, beats_per_bar: int) -> int:
    """How many steps of note value ``division`` fill a bar of quarter-note beats.

    Raises
    ------
    ParameterError
        An unknown division, or one that does not divide the bar (a half note in 3/4).
    """
    if division not in DIVISIONS or DIVISIONS[division] <= 0:
        raise ParameterError(f"division={division!r} must be one of {', '.join(d for d in DIVISIONS if d != 'off')}")
    steps = Fraction(beats_per_bar, 4) / Fraction(division)
    if steps.denominator != 1:
        raise ParameterError(f"division={division} must divide the bar of {beats_per_bar} beats "
                             f"({float(steps):g} steps); choose a shorter note value")
    return int(steps)
