"""The ``/midi/*`` rows, declared once.

:data:`MIDI_PARAMS` and :data:`MIDI_COMMANDS` join the registry's rows in
:mod:`earengine.params.catalog`; MIDI control, docs and OSCQuery follow them.

A MIDI map lives in the registry as ``/midi/map``: a JSON list of bindings. So presets carry it,
``/get /midi/map`` shows it, and learning a control is one more change that OSC listeners see.
"""

from __future__ import annotations

from earengine.params.spec import ArgSpec, CommandSpec, ParamSpec

__all__ = ["MIDI_PARAMS", "MIDI_COMMANDS"]

_P = ParamSpec
MIDI_PARAMS: tuple[ParamSpec, ...] = (
    _P("/midi/map", "str", "",
       doc="Controls bound to parameters and commands, as JSON (set by /midi/learn, /midi/load and presets; empty: none)."),
    _P("/midi/takeover", "enum", "pickup", choices=("pickup", "jump"),
       doc="pickup: a control acts only once it reaches the parameter's value, so nothing jumps; jump: it acts at once."),
    _P("/midi/feedback", "bool", True,
       doc="Send a mapped parameter's value back to its control whenever it changes from elsewhere (motor faders, LED rings)."),
)

_ADDRESS = ArgSpec("address", "str")
_NAME = ArgSpec("name", "str")

MIDI_COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("/midi/learn", (_ADDRESS, ArgSpec("value", "str", optional=True)), variadic=True,
                doc="Bind the next control that moves to a parameter or command: a CC (a pair 0-31 + 32-63 makes 14 bits), or a note for commands and switches; values after the address make a button that sets them (or passes them to the command)."),
    CommandSpec("/midi/forget", (_ADDRESS,), doc="Remove every binding of this address."),
    CommandSpec("/midi/cancel", (), doc="Stop waiting for a control to learn."),
    CommandSpec("/midi/clear", (), doc="Remove every binding."),
    CommandSpec("/midi/load", (_NAME,), later=True,
                doc="Replace the bindings with a controller map: a saved one or a shipped one (bcf2000, launch-control-xl)."),
    CommandSpec("/midi/save", (_NAME,), later=True,
                doc="Save the bindings as a controller map (letters, digits, - and _)."),
    CommandSpec("/midi/maps", (), reply="/midi/maps.reply", doc="Answers /midi/maps.reply with the map names."),
    CommandSpec("/midi/bindings", (), reply="/midi/bindings.reply",
                doc="Answers /midi/bindings.reply with <control> <address> pairs, e.g. 'cc 1/81' '/loop/gain'."),
    CommandSpec("/midi/ports", (), reply="/midi/ports.reply",
                doc="Answers /midi/ports.reply with the MIDI ports seen, each as 'in:<name>' or 'out:<name>', opened ones marked '*'."),
)
