"""The handlers of the ``/midi/*`` commands, for the engine's OSC router.

:func:`command_handlers` returns the table the engine registers: one ``handler(args, sender)``
per command row of :data:`earengine.midi.params.MIDI_COMMANDS`.
"""

from __future__ import annotations

from typing import Callable, Optional

from earengine.midi.bindings import MapStore
from earengine.midi.control import MidiControl
from earengine.midi.service import MidiService
from earengine.osc.wire import Reply

__all__ = ["command_handlers"]


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
