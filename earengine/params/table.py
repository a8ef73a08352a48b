"""The rows: every parameter and command of earengine, declared once.

Add a capability by adding rows here (or by extending :data:`PARAMS` from its own module before the
registry is built); OSC routes, OSCQuery, MIDI, presets, the CLI and docs/osc.md follow.
"""

from __future__ import annotations

from earengine.control.params import CLOCK_PARAMS, CLOCK_SOURCES, MIDI_COMMANDS, MIDI_PARAMS
from earengine.control.osc_params import OSC_COMMANDS, OSC_PARAMS
from earengine.params.spec import ArgSpec, CommandSpec, ParamSpec
from earengine.control.stream_params import STREAM_COMMANDS, STREAM_PARAMS
from earengine.sonify.params import SON_COMMANDS, SON_PARAMS
from earengine.optvis.params import DREAM_PARAMS, GRID_COMMANDS, GRID_PARAMS, PARAMETERIZATIONS

__all__ = ["PARAMS", "COMMANDS", "LIMITER_CEILING_DBFS", "TAPS"]

#: Peak the final limiter never lets through.
LIMITER_CEILING_DBFS = -0.3

PARAMS: tuple[ParamSpec, ...] = (
    # -- clock ----------------------------------------------------------------------------
    ParamSpec("/clock/bpm", "float", 120.0, min=20.0, max=400.0, unit="BPM",
              doc="Tempo; loops are resampled to keep their bars. Follows Link or MIDI clock; under link, setting it sets the session's."),
    ParamSpec("/clock/beats_per_bar", "int", 4, min=1, max=32, unit="beats",
              doc="Beats in one bar; loops start on bar lines."),
    ParamSpec("/clock/source", "enum", "internal", choices=CLOCK_SOURCES,
              doc="Where tempo and bar lines come from: the engine, an Ableton Link session, or MIDI clock on the MIDI input."),
    # -- clock sources and MIDI (rows in earengine/control/params.py) ---------------------
    *CLOCK_PARAMS,
    *MIDI_PARAMS,
    # -- loop -----------------------------------------------------------------------------
    ParamSpec("/loop/bars", "int", 2, min=1, max=64, unit="bars",
              doc="Length of dreamed loops in bars; loaded loops keep their own whole number of bars."),
    ParamSpec("/loop/xfade", "float", 50.0, min=0.0, max=4000.0, unit="ms",
              doc="Crossfade from the playing loop to the next one, starting on the bar line."),
    ParamSpec("/loop/gain", "float", -3.0, min=-80.0, max=6.0, unit="dB", ramp_ms=50.0,
              doc="Level of the loop player before the final limiter."),
    ParamSpec("/loop/mute", "bool", False, ramp_ms=20.0,
              doc="Silences the loop player (it keeps its place in the bar)."),
    # -- sonification (rows in earengine/sonify/params.py) ------------------------------
    *SON_PARAMS,
)

#: Every tap of the ear, from input to context (the architecture of Table 1 fixes them).
TAPS = ("scaleogram",) + tuple(f"enc.{i}" for i in range(8)) + tuple(f"ar.{i}" for i in range(9))


def _unit(address: str, default: float, doc: str) -> ParamSpec:
    return ParamSpec(address, "float", default, min=0.0, max=1.0, doc=doc)


PARAMS += (
    # -- optimizer ------------------------------------------------------------------------
    ParamSpec("/opt/run", "bool", True, doc="Dream (1) or hold the loop as it is (0)."),
    ParamSpec("/opt/algorithm", "enum", "sgd", choices=("sgd", "adam"), doc="Optimizer of the loop."),
    ParamSpec("/opt/lr", "float", 2e-3, min=1e-6, max=1.0, scale="log", doc="Learning rate (per-sample step with /opt/grad_norm)."),
    ParamSpec("/opt/batch", "int", 2, min=1, max=16, unit="copies", doc="Jittered copies of the loop per step."),
    ParamSpec("/opt/context", "int", 1, min=0, max=4, unit="loops", doc="Repetitions of the loop heard before it (periodic context)."),
    ParamSpec("/opt/grad_norm", "bool", True, doc="Divide the gradient by its standard deviation."),
    ParamSpec("/opt/param", "enum", "grid", choices=PARAMETERIZATIONS,
              doc="What is optimized: notes and drum hits on the bar grid (/grid/*), the waveform, or its 1/f-scaled spectrum."),
    ParamSpec("/opt/seed", "int", 0, min=0, max=2**31 - 1, doc="Seed of every random choice of the dream."),
    # -- target ---------------------------------------------------------------------------
    ParamSpec("/target/spec", "str", "", doc="Shorthand targets, e.g. 'enc.5:12*1 + ar.3*0.5'; empty: the region below."),
    ParamSpec("/target/layer", "enum", "enc.5", choices=TAPS, doc="Tap of the region target."),
    _unit("/target/channel", 0.5, "Centre of the channel range, 0-1 of the tap's channels."),
    _unit("/target/channel_width", 0.1, "Width of the channel range, 0-1."),
    _unit("/target/pitch", 0.5, "Centre of the frequency range, 0-1 of the tap's rows (low to high)."),
    _unit("/target/pitch_width", 1.0, "Width of the frequency range, 0-1."),
    _unit("/target/time", 0.5, "Centre of the time range within the loop, 0-1 (circular)."),
    _unit("/target/time_width", 1.0, "Width of the time range within the loop, 0-1."),
    ParamSpec("/target/exponent", "float", 1.0, min=0.25, max=4.0, doc="Power of the region's mean activation (sign kept)."),
    # -- regularizers (0 = off) -----------------------------------------------------------
    _unit("/reg/time_shift", 1.0, "Random circular shift of each copy, as a fraction of the loop."),
    ParamSpec("/reg/pitch_cents", "float", 0.0, min=0.0, max=200.0, unit="cents", doc="Random pitch jitter of each copy."),
    ParamSpec("/reg/time_mask", "float", 0.0, min=0.0, max=0.5, doc="Width of a random time band masked in each copy's scaleogram."),
    ParamSpec("/reg/freq_mask", "float", 0.0, min=0.0, max=0.5, doc="Width of a random frequency band masked in each copy's scaleogram."),
    ParamSpec("/reg/grad_noise", "float", 0.0, min=0.0, max=2.0, doc="Gaussian noise added to the gradient, relative to its std."),
    ParamSpec("/reg/act_l1", "float", 0.0, min=0.0, max=10.0, doc="Penalty on the mean absolute activation of the target taps."),
    ParamSpec("/reg/denoise", "float", 0.0, min=0.0, max=10.0, doc="Penalty on spectral flatness (noisiness)."),
    ParamSpec("/reg/high_freq", "float", 0.0, min=0.0, max=10.0, doc="Penalty on the share of energy above sr/8 (about 5.5 kHz)."),
    ParamSpec("/reg/seam", "float", 0.0, min=0.0, max=1000.0, doc="Penalty on the jump from the loop's end to its start."),
    _unit("/reg/mix", 0.0, "After each step, mix this much of the reference clip back in."),
)

# -- activation streams (rows in earengine/control/stream_params.py) ----------------------
PARAMS += STREAM_PARAMS

# -- the dream's parameterizations and specificity (rows in earengine/optvis/params.py) -----
PARAMS += DREAM_PARAMS + GRID_PARAMS

_PATH = ArgSpec("path", "str")
_NAME = ArgSpec("name", "str")

COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("/target/set", (ArgSpec("spec", "str"),),
                doc="Replace the targets with one shorthand target: enc.5:12, enc.5:0-31, enc.5:12@40, ar.3, surprise."),
    CommandSpec("/target/add", (ArgSpec("spec", "str"), ArgSpec("weight", "float")),
                doc="Add a weighted shorthand target to the ones already set."),
    CommandSpec("/target/clear", (), doc="Drop the shorthand targets: the region target applies again."),
    CommandSpec("/opt/reset", (ArgSpec("kind", "enum", ("silence", "noise", "file", "current")), ArgSpec("path", "str", optional=True)),
                later=True, doc="Restart the dream from silence, noise, a file (path) or the current loop."),
    CommandSpec("/reg/reference", (ArgSpec("path", "str", optional=True),), later=True,
                doc="Clip that /reg/mix pulls toward (no path: none)."),
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
    # -- sonification (rows in earengine/sonify/params.py) ------------------------------
    *SON_COMMANDS,
    # -- MIDI (rows in earengine/control/params.py) --------------------------------------
    *MIDI_COMMANDS,
)

# -- activation streams (rows in earengine/control/stream_params.py) ----------------------
COMMANDS += STREAM_COMMANDS

# -- the grid's MIDI file (rows in earengine/optvis/params.py) ------------------------------
COMMANDS += GRID_COMMANDS

# -- the OSC server's own limits, and /counts (rows in earengine/control/osc_params.py) -----
PARAMS += OSC_PARAMS
COMMANDS += OSC_COMMANDS
