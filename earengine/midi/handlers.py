"""The handlers of the ``/midi/*`` commands and of ``/loop/save_midi``, for the engine's OSC router.

:func:`command_handlers` returns the table the engine registers: one ``handler(args, sender)``
per command row of :data:`earengine.midi.params.MIDI_COMMANDS`. :func:`loop_handlers` writes the
notes of the dreamed loop playing to a MIDI file (:mod:`earengine.midi.file`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from earengine.errors import EarEngineError
from earengine.midi.bindings import MapStore
from earengine.midi.control import MidiControl
from earengine.midi.file import write_pattern
from earengine.midi.service import MidiService
from earengine.osc.wire import Reply

if TYPE_CHECKING:
    from earengine.synth.player import LoopPlayer

__all__ = ["command_handlers", "loop_handlers"]


def command_handlers(control: MidiControl, store: MapStore,
                     service: Optional[MidiService] = None) -> dict[str, Callable]:
    """Handlers of the ``/midi/*`` command rows for an OSC router (``handler(args, sender)``)."""

    def load(args: tuple, sender: tuple) -> None:
        control.set_bindings(store.load(args[0], control.registry), source="osc")

    def bindings(args: tuple, sender: tuple) -> list:
        pairs: list = []
        for b in control.bindings:
            pairs += [b.control, b.address]
        return [Reply("/midi/bindings.reply", tuple(pairs))]

    return {
        "/midi/learn": lambda args, sender: control.learn(args[0], args[1:]),
        "/midi/forget": lambda args, sender: control.forget(args[0]) and None,
        "/midi/cancel": lambda args, sender: control.cancel(),
        "/midi/clear": lambda args, sender: control.clear(),
        "/midi/load": load,
        "/midi/save": lambda args, sender: store.save(args[0], control.bindings) and None,
        "/midi/maps": lambda args, sender: [Reply("/midi/maps.reply", tuple(store.names()))],
        "/midi/bindings": bindings,
        "/midi/ports": lambda args, sender: [Reply("/midi/ports.reply", tuple(service.ports() if service else ()))],
    }


def loop_handlers(player: LoopPlayer) -> dict[str, Callable]:
    """The handler of ``/loop/save_midi``: the notes of the loop playing (a dreamed loop made
    with ``/opt/param grid``) as a MIDI file at the clock's tempo."""

    def save_midi(args: tuple, sender: tuple) -> None:
        loop = player.current
        pattern = loop.meta.get("pattern") if loop is not None else None
        if pattern is None:
            raise EarEngineError("/loop/save_midi needs a dreamed loop with notes: set /opt/param grid "
                                 "and wait for its first loop")
        write_pattern(args[0], pattern, bpm=player.clock.bpm)

    return {"/loop/save_midi": save_midi}
