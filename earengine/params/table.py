"""The rows: every parameter and command of earengine, declared once.

Add a capability by adding rows here (or by extending :data:`PARAMS` from its own module before the
registry is built); OSC routes, OSCQuery, MIDI, presets, the CLI and docs/osc.md follow.
"""

from __future__ import annotations

from earengine.params.spec import ArgSpec, CommandSpec, ParamSpec

__all__ = ["PARAMS", "COMMANDS", "LIMITER_CEILING_DBFS"]

#: Peak the final limiter never lets through.
LIMITER_CEILING_DBFS = -0.3

PARAMS: tuple[ParamSpec, ...] = (
    # -- clock ----------------------------------------------------------------------------
    ParamSpec("/clock/bpm", "float", 120.0, min=20.0, max=400.0, unit="BPM",
              doc="Tempo of the internal clock; loops are resampled to keep their bars."),
    ParamSpec("/clock/beats_per_bar", "int", 4, min=1, max=32, unit="beats",
              doc="Beats in one bar; loops start on bar lines."),
    ParamSpec("/clock/source", "enum", "internal", choices=("internal",),
              doc="Where tempo and bar lines come from."),
    # -- loop -----------------------------------------------------------------------------
    ParamSpec("/loop/bars", "int", 2, min=1, max=64, unit="bars",
              doc="Length of dreamed loops in bars; loaded loops keep their own whole number of bars."),
    ParamSpec("/loop/xfade", "float", 50.0, min=0.0, max=4000.0, unit="ms",
              doc="Crossfade from the playing loop to the next one, starting on the bar line."),
    ParamSpec("/loop/gain", "float", -3.0, min=-80.0, max=6.0, unit="dB", ramp_ms=50.0,
              doc="Level of the loop player before the final limiter."),
    ParamSpec("/loop/mute", "bool", False, ramp_ms=20.0,
              doc="Silences the loop player (it keeps its place in the bar)."),
)

_PATH = ArgSpec("path", "str")
_NAME = ArgSpec("name", "str")

COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("/loop/load", (_PATH,), later=True,
                doc="Load a WAV/FLAC/OGG file; it starts at the next bar line, fitted to whole bars."),
    CommandSpec("/loop/save", (_PATH,), later=True,
                doc="Write the loop that is playing to a WAV file."),
    CommandSpec("/preset/save", (_NAME,), later=True,
                doc="Save every parameter under a name (letters, digits, - and _)."),
    CommandSpec("/preset/load", (_NAME,), later=True,
                doc="Load a saved or shipped preset; every value is validated first."),
    CommandSpec("/preset/list", (), reply="/preset/list.reply",
                doc="Answers /preset/list.reply with the preset names."),
    CommandSpec("/get", (ArgSpec("address", "str"),),
                doc="Answers with the message that would set the parameter: <address> <value>."),
    CommandSpec("/status", (), reply="/status.reply",
                doc="Answers /status.reply <worker> <step> <steps_per_s> <loss> <loops> <bpm> <beat> <xruns>."),
    CommandSpec("/notify", (ArgSpec("on", "bool"),),
                doc="1 subscribes the sender to /changed <address> <value>; 0 unsubscribes."),
    CommandSpec("/sync", (ArgSpec("id", "int"),), reply="/synced",
                doc="Answers /synced <id> once every message before it has been handled."),
    CommandSpec("/reply/port", (ArgSpec("port", "int"),),
                doc="Send replies for this sender's address to this UDP port (0: back to the sending port)."),
)
