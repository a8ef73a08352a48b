"""Where the sound is: the loop's phase at a moment of the wall clock, for the streams.

:class:`Position` says which loop sounded at which phase at which time, so the phase at any
nearby moment follows, and carries that loop's activations; :class:`PlayerTracker` keeps one
current from the audio thread, through the loop player's public
:attr:`~earengine.synth.player.LoopPlayer.current` and
:attr:`~earengine.synth.player.LoopPlayer.phase`. The activations travel with their loop (its
``meta["acts"]``), so they change at the bar line where the player swaps the loop in: every frame
shows the loop heard, however many newer loops the worker has dreamed meanwhile.

>>> Position(time_s=100.0, phase=0.25, duration_s=4.0, key=3).at(101.0)
0.5
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Optional

if TYPE_CHECKING:
    from earengine.streams.activations import ActivationSet

__all__ = ["Position", "PlayerTracker"]


@dataclass(frozen=True)
class Position:
    """At wall-clock time ``time_s`` (``time.time()``) the loop ``key`` sounded at ``phase``.

    ``duration_s`` is the loop's length at the current tempo, so the phase at any nearby moment
    follows (:meth:`at`). ``acts`` are that loop's activations (None: it has none, such as a loop
    played from a file); they are what the position refers to, not part of its value, so
    :meth:`to_dict` leaves them out and equality ignores them. A ``live`` position is the input
    as heard (:mod:`earengine.listen`): ``acts`` cover the ``duration_s`` up to ``time_s``, when
    their last sample was heard, and the streams send their newest frame, timetagged with when it
    was heard, instead of a loop's frame ahead of the playhead.

    >>> p = Position(1.5, 0.75, 2.0, 9)
    >>> Position.from_dict(p.to_dict()) == p
    True
    """

    time_s: float
    phase: float
    duration_s: float
    key: Optional[int] = None
    acts: Optional["ActivationSet"] = field(default=None, compare=False, repr=False)
    live: bool = False

    def at(self, when_s: float) -> float:
        """Loop phase in [0, 1) at ``when_s``."""
        return (self.phase + (when_s - self.time_s) / max(1e-9, self.duration_s)) % 1.0

    def to_dict(self) -> dict:
        return {"time_s": self.time_s, "phase": self.phase, "duration_s": self.duration_s, "key": self.key,
                "live": self.live}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Position":
        return cls(float(data["time_s"]), float(data["phase"]), float(data["duration_s"]), data.get("key"),
                   live=bool(data.get("live", False)))


class PlayerTracker:
    """Where the loop player is, sampled on the audio thread once per buffer.

    A per-buffer callback of the audio server reads the playing loop's phase (the value its
    read position reached at the end of the last buffer) and stamps it with the wall clock plus
    the output latency: the moment that phase is heard. Calling the tracker returns the newest
    :class:`Position` (or None while nothing plays). One attribute store per buffer; no locks.

    Parameters
    ----------
    player : LoopPlayer
    audio : AudioServer
        Calls the tracker once per buffer.
    latency_s : float >= 0, optional
        From a phase reached to it being heard; by default one buffer on a sound card, 0 offline.
    """

    def __init__(self, player, audio, *, latency_s: Optional[float] = None) -> None:
        self.player, self.audio = player, audio
        if latency_s is None:
            latency_s = audio.buffersize / audio.sr if getattr(audio, "mode", "") in ("jack", "portaudio") else 0.0
        self.latency_s = float(latency_s)
        self.current: Optional[Position] = None
        audio.add_callback(self._on_buffer)

    def _on_buffer(self) -> None:
        player = self.player
        loop = player.current  # on the audio thread, as the player's swaps: loop and phase agree
        if loop is None:
            self.current = None
            return
        meta = loop.meta or {}
        self.current = Position(time.time() + self.latency_s, player.phase, loop.bars * player.clock.bar_s,
                                meta.get("key"), meta.get("acts"))

    def __call__(self) -> Optional[Position]:
        return self.current

    def close(self) -> None:
        self.audio.remove_callback(self._on_buffer)
