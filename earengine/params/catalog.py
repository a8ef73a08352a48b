"""The catalog: every row earengine declares, gathered in one order.

Each feature declares its rows beside the code that reads them (``earengine/<feature>/params.py``,
modules that import only :mod:`earengine.params.spec` and the foundation); this module only
concatenates them, so OSC routes, OSCQuery, MIDI, presets, the CLI and docs/osc.md see one
table. A new parameter is a row in its feature's module; a new feature adds its tuple here.
"""

from __future__ import annotations

from earengine.clock.params import CLOCK_PARAMS
from earengine.control.params import COUNTS_COMMANDS, OSC_COMMANDS, OSC_PARAMS
from earengine.listen.params import LISTEN_COMMANDS, LISTEN_PARAMS
from earengine.midi.params import MIDI_COMMANDS, MIDI_PARAMS
from earengine.optvis.params import DREAM_PARAMS, GRID_COMMANDS, GRID_PARAMS, OPT_COMMANDS, OPT_PARAMS
from earengine.params.spec import ArgSpec, CommandSpec, ParamSpec
from earengine.sonify.params import SON_COMMANDS, SON_PARAMS
from earengine.streams.params import STREAM_COMMANDS, STREAM_PARAMS
from earengine.synth.params import LOOP_COMMANDS, LOOP_PARAMS

__all__ = ["PARAMS", "COMMANDS", "PRESET_COMMANDS"]

_NAME = ArgSpec("name", "str")

#: The registry's own commands: presets of every parameter.
PRESET_COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("/preset/save", (_NAME,), later=True,
                doc="Save every parameter under a name (letters, digits, - and _)."),
    CommandSpec("/preset/load", (_NAME,), later=True,
                doc="Load a saved or shipped preset; every value is validated first."),
    CommandSpec("/preset/list", (), reply="/preset/list.reply",
                doc="Answers /preset/list.reply with the preset names."),
)

PARAMS: tuple[ParamSpec, ...] = (
    CLOCK_PARAMS + MIDI_PARAMS + LOOP_PARAMS + SON_PARAMS + OPT_PARAMS + STREAM_PARAMS
    + DREAM_PARAMS + GRID_PARAMS + OSC_PARAMS + LISTEN_PARAMS
)

COMMANDS: tuple[CommandSpec, ...] = (
    OPT_COMMANDS + LOOP_COMMANDS + PRESET_COMMANDS + OSC_COMMANDS + SON_COMMANDS
    + MIDI_COMMANDS + STREAM_COMMANDS + GRID_COMMANDS + COUNTS_COMMANDS + LISTEN_COMMANDS
)
