"""A loop's notes on the bar grid: an immutable value that crosses processes and round-trips.

The dream's ``grid`` parameterization reads its notes out as a :class:`Pattern`; the worker hands it
to the engine as a plain dict (:meth:`Pattern.to_dict`), the engine plays it on its MIDI output on
the bar grid (:mod:`earengine.midi.notes`) and writes it as a standard MIDI file
(:mod:`earengine.midi.file`). No torch, no MIDI library here.

Examples
--------
>>> p = Pattern((Note(0, 57, 100, 1), Note(4, 60, 64, 1)), steps_per_bar=16, bars=1, beats_per_bar=4)
>>> p.steps, p.step_beats
(16, 0.25)
>>> Pattern.from_dict(p.to_dict()) == p
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from earengine.errors import ParameterError

__all__ = ["Note", "Pattern", "DRUM_NOTES"]

#: General MIDI drum notes of the grid's kit (kick, snare, closed hat), played on the drum channel.
DRUM_NOTES = {"kick": 36, "snare": 38, "hat": 42}


@dataclass(frozen=True)
class Note:
    """One note of a pattern: on at ``step`` for ``length_steps`` steps.

    Parameters
    ----------
    step : int >= 0
        Step of the loop the note starts on.
    note : int in [0, 127]
        MIDI note number.
    velocity : int in [1, 127]
    channel : int in [1, 16]
        MIDI channel, counted from 1 as hosts show it.
    length_steps : float > 0
        How long the note is held, in steps.
    """

    step: int
    note: int
    velocity: int
    channel: int
    length_steps: float = 1.0

    def __post_init__(self) -> None:
        if not (0 <= self.note <= 127 and 1 <= self.velocity <= 127 and 1 <= self.channel <= 16
                and self.step >= 0 and self.length_steps > 0):
            raise ParameterError(f"note {self} must have note 0-127, velocity 1-127, channel 1-16, "
                                 "step >= 0 and a positive length")

    def to_list(self) -> list:
        return [self.step, self.note, self.velocity, self.channel, self.length_steps]


@dataclass(frozen=True)
class Pattern:
    """The notes of one loop on a grid of ``steps_per_bar`` steps per bar, ``bars`` bars long."""

    notes: tuple
    steps_per_bar: int
    bars: int
    beats_per_bar: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "notes", tuple(sorted(self.notes, key=lambda n: (n.step, n.channel, n.note))))
        if self.steps_per_bar < 1 or self.bars < 1 or self.beats_per_bar < 1:
            raise ParameterError(f"pattern steps_per_bar={self.steps_per_bar}, bars={self.bars} and "
                                 f"beats_per_bar={self.beats_per_bar} must be >= 1")
        for n in self.notes:
            if n.step >= self.steps:
                raise ParameterError(f"note step={n.step} must be < {self.steps}, the steps of the loop")

    @property
    def steps(self) -> int:
        """Steps in the whole loop."""
        return self.steps_per_bar * self.bars

    @property
    def step_beats(self) -> float:
        """Length of one step in beats."""
        return self.beats_per_bar / self.steps_per_bar

    @property
    def beats(self) -> float:
        """Length of the loop in beats."""
        return float(self.beats_per_bar * self.bars)

    def to_dict(self) -> dict:
        return {"notes": [n.to_list() for n in self.notes], "steps_per_bar": self.steps_per_bar,
                "bars": self.bars, "beats_per_bar": self.beats_per_bar}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Pattern":
        notes = tuple(Note(int(s), int(n), int(v), int(c), float(length)) for s, n, v, c, length in data["notes"])
        return cls(notes, int(data["steps_per_bar"]), int(data["bars"]), int(data.get("beats_per_bar", 4)))
