"""The ``/clock/*`` additions and the ``/midi/*`` rows, declared once.

:data:`CLOCK_PARAMS`, :data:`MIDI_PARAMS` and :data:`MIDI_COMMANDS` are concatenated into the
registry's tables (:mod:`earengine.params.table`); the clock sources (:mod:`earengine.control.clock`),
MIDI control (:mod:`earengine.control.midi`), docs and OSCQuery follow them.

A MIDI map lives in the registry as ``/midi/map``: a JSON list of bindings. So presets carry it,
``/get /midi/map`` shows it, and learning a control is one more change that OSC listeners see.
"""

from __future__ import annotations

from earengine.params.spec import ArgSpec, CommandSpec, ParamSpec

__all__ = ["CLOCK_SOURCES", "CLOCK_PARAMS", "MIDI_PARAMS", "MIDI_COMMANDS"]

#: Where tempo and bar lines come from (the choices of ``/clock/source``).
CLOCK_SOURCES = ("internal", "link", "midi")

_P = ParamSpec
CLOCK_PARAMS: tuple[ParamSpec, ...] = (
    _P("/clock/offset_ms", "float", 0.0, min=-250.0, max=250.0, unit="ms",
       doc="Play the bar grid this much early to make up for output latency, so what is heard lines up with Link and MIDI peers."),
    _P("/clock/playing", "bool", True,
       doc="Transport: 0 stops (loops fall silent, no bar lines), 1 starts again from bar 1; follows MIDI start/stop, and Link with /clock/link_start_stop."),
    _P("/clock/peers", "int", 0, min=0, max=100000, unit="peers",
       doc="Other peers in the Link session (set by the engine; read it with /get or /notify)."),
    _P("/clock/link_start_stop", "bool", False,
       doc="Share start and stop with the Link session (Live's Start Stop Sync)."),
    _P("/clock/midi_out", "bool", False,
       doc="Send MIDI clock (24 per quarter note, start, stop) to the MIDI output while the engine is the master (internal or link)."),
)

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
