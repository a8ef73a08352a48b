"""The handlers of the ``/loop/load`` and ``/loop/save`` commands, for the engine's OSC router.

:func:`command_handlers` returns one ``handler(args, sender)`` per command: load an audio file
into the loop player (it plays from the next bar line), or write the loop as heard now to a WAV
file. ``/loop/save_midi`` writes a MIDI file and lives with MIDI (:mod:`earengine.midi.handlers`).
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from earengine.audiofile import read_mono, write_wav
from earengine.errors import EarEngineError
from earengine.synth.player import LoopPlayer

__all__ = ["command_handlers", "load_loop"]


def load_loop(player: LoopPlayer, path: str, *,
              on_loaded: Optional[Callable[[np.ndarray], None]] = None) -> None:
    """Read an audio file at the player's rate and play it from the next bar line (any thread but audio);
    ``on_loaded(samples)`` is then called with what was read (the engine restarts its dream
    from it)."""
    samples = read_mono(path, sr=player.sr)
    player.queue(player.make_loop(samples, sr=player.sr, source=str(path)))
    if on_loaded is not None:
        on_loaded(samples)


def command_handlers(player: LoopPlayer, *,
                     on_loaded: Optional[Callable[[np.ndarray], None]] = None) -> dict[str, Callable]:
    """Handlers of ``/loop/load`` and ``/loop/save`` for an OSC router (``handler(args, sender)``)."""

    def load(args: tuple, sender: tuple) -> None:
        load_loop(player, args[0], on_loaded=on_loaded)

    def save(args: tuple, sender: tuple) -> None:
        heard = player.heard()
        if heard is None:
            raise EarEngineError("no loop is playing; load one with /loop/load first")
        write_wav(args[0], heard, sr=player.sr)

    return {"/loop/load": load, "/loop/save": save}
