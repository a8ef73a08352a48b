"""The dream's rows, declared once: optimizer (``/opt/*``), target (``/target/*``), regularizers
(``/reg/*``) and the dream as notes and drum hits on the bar grid (``/grid/*``).

:data:`GRID_PARAMS` and :data:`GRID_COMMANDS` are concatenated into the registry's tables
(:mod:`earengine.params.catalog`). The musical vocabulary (keys, scales, note values) is the one
table of :mod:`earengine.music` that the sonifier uses too. No torch here: the engine process
validates these values at the boundary (:func:`install_checks`).
"""

from __future__ import annotations

from typing import Any

from earengine.errors import ParameterError
from earengine.music import DIVISIONS, NOTE_NAMES, SCALES, steps_per_bar
from earengine.params.spec import ArgSpec, CommandSpec, ParamSpec

__all__ = ["OPT_PARAMS", "OPT_COMMANDS", "TAPS", "DREAM_PARAMS", "GRID_PARAMS", "GRID_COMMANDS", "PARAMETERIZATIONS", "GRID_SCALES", "GRID_DIVISIONS", "MIX_ON_GRID", "install_checks"]

#: What the dream optimizes (``/opt/param``): the waveform, its 1/f-scaled spectrum, or notes on the grid.
PARAMETERIZATIONS = ("grid", "raw", "spectral")
#: Scales a grid can be in (every scale of the one table but ``off``).
GRID_SCALES = tuple(s for s in SCALES if s != "off")
#: Note values a grid step can be.
GRID_DIVISIONS = tuple(d for d in DIVISIONS if d != "off")

_P = ParamSpec

#: Every tap of the ear, from input to context (the architecture of Table 1 fixes them).
TAPS = ("scaleogram",) + tuple(f"enc.{i}" for i in range(8)) + tuple(f"ar.{i}" for i in range(9))



def _unit(address: str, default: float, doc: str) -> ParamSpec:
    return ParamSpec(address, "float", default, min=0.0, max=1.0, doc=doc)



#: The optimizer, the target and the regularizers of the dream.
OPT_PARAMS: tuple[ParamSpec, ...] = (
    # -- optimizer ------------------------------------------------------------------------
    ParamSpec("/opt/run", "bool", True, doc="Dream (1) or hold the loop as it is (0)."),
    ParamSpec("/opt/algorithm", "enum", "sgd", choices=("sgd", "adam"), doc="Optimizer of the loop."),
    ParamSpec("/opt/step", "enum", "adaptive", choices=("adaptive", "fixed"),
              doc="adaptive: a step that made the loop as heard score worse is taken back and the next is shorter, "
                  "a kept one makes the next longer; fixed: every step kept, at /opt/lr."),
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

OPT_COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("/target/set", (ArgSpec("spec", "str"),),
                doc="Replace the targets with one shorthand target: enc.5:12, enc.5:0-31, enc.5:12@40, ar.3, surprise."),
    CommandSpec("/target/add", (ArgSpec("spec", "str"), ArgSpec("weight", "float")),
                doc="Add a weighted shorthand target to the ones already set."),
    CommandSpec("/target/clear", (), doc="Drop the shorthand targets: the region target applies again."),
    CommandSpec("/opt/reset", (ArgSpec("kind", "enum", ("silence", "noise", "file", "current", "input")), ArgSpec("path", "str", optional=True)),
                later=True, doc="Restart the dream from silence, noise, a file (path), the current loop or the last /loop/capture."),
    CommandSpec("/reg/reference", (ArgSpec("path", "str", optional=True),), later=True,
                doc="Clip that /reg/mix pulls toward (no path: none)."),
)

#: Rows of the dream beyond the grid: the spectral parameterization's colour, and specificity.
DREAM_PARAMS: tuple[ParamSpec, ...] = (
    _P("/opt/spectral_decay", "float", 0.5, min=0.0, max=2.0,
       doc="spectral: coefficients scaled by 1/f to this power (0.5 pink, 1 brown, 0 white)."),
    _P("/target/specificity", "float", 0.0, min=0.0, max=10.0,
       doc="Penalty on the other channels of the target's tap: excite what was asked, not everything."),
)
GRID_PARAMS: tuple[ParamSpec, ...] = (
    _P("/grid/key", "enum", "A", choices=NOTE_NAMES, doc="Key (root) of the grid's notes."),
    _P("/grid/scale", "enum", "minor_pentatonic", choices=GRID_SCALES,
       doc="Scale of the grid's notes above /grid/key (the same table as /son/scale)."),
    _P("/grid/register", "int", 45, min=24, max=96, unit="MIDI",
       doc="Lowest note of the grid (MIDI number; 45 is A2): the first note of the scale at or above it."),
    _P("/grid/octaves", "int", 3, min=1, max=4, unit="oct", doc="Range of the grid's notes above its register."),
    _P("/grid/division", "enum", "1/16", choices=GRID_DIVISIONS,
       doc="Note value of one step of the grid; it must divide the bar (/clock/beats_per_bar)."),
    _P("/grid/voices", "int", 3, min=1, max=16, unit="notes",
       doc="Most notes sounding together on one step (stronger steps are scaled down to this)."),
    _P("/grid/sparsity", "float", 0.3, min=0.0, max=10.0,
       doc="Penalty on the mean note strength: higher leaves fewer, clearer notes."),
    _P("/grid/drums", "float", 0.5, min=0.0, max=1.0, doc="Level of the drum kit (kick, snare, hats); 0 leaves it out."),
    _P("/grid/brightness", "float", 0.5, min=0.0, max=1.0,
       doc="Starting brightness of the notes (harmonic roll-off); the dream may move it."),
    _P("/grid/attack_ms", "float", 5.0, min=2.0, max=50.0, unit="ms",
       doc="Starting attack of the notes; the dream may move it (never under 2 ms: no clicks)."),
    _P("/grid/decay_ms", "float", 250.0, min=30.0, max=800.0, scale="log", unit="ms",
       doc="Starting decay time of the notes; the dream may move it."),
    _P("/grid/transpose", "int", 2, min=0, max=7, unit="degrees",
       doc="Transform: each jittered copy is transposed by up to this many scale degrees."),
    _P("/grid/residual", "float", 0.0, min=0.0, max=1.0,
       doc="Weight of a raw waveform added to the grid for texture (0: pure notes)."),
    _P("/grid/midi_channel", "int", 1, min=1, max=16, doc="MIDI channel of the grid's notes on --midi-out and in MIDI files."),
    _P("/grid/drum_channel", "int", 10, min=1, max=16, doc="MIDI channel of the drum hits (General MIDI: 10)."),
    _P("/grid/note_steps", "float", 1.0, min=0.25, max=16.0, unit="steps", doc="Length of each MIDI note, in steps."),
    _P("/grid/threshold", "float", 0.5, min=0.01, max=0.99,
       doc="Share of the loop's strongest note a note needs to be sent as MIDI; its velocity follows the share above it."),
    _P("/grid/midi", "bool", True, doc="Send each new loop's notes on --midi-out on the bar grid."),
)

GRID_COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("/loop/save_midi", (ArgSpec("path", "str"),), later=True,
                doc="Write the notes of the loop that is playing (/opt/param grid) to a standard MIDI file."),
)


#: Why ``/reg/mix`` (and its reference clip) cannot act on a grid: the one sentence every refusal gives.
MIX_ON_GRID = ("/reg/mix pulls the waveform toward the reference clip after each step, and /opt/param grid "
               "renders its loop from notes, which no waveform can be written back into")


def install_checks(registry) -> None:
    """Checks across rows, at the boundary (``/fail`` over OSC, nothing changed): a division that
    does not divide the bar is refused whichever of ``/grid/division`` or ``/clock/beats_per_bar``
    changes; ``/reg/mix`` above 0 is refused with ``/opt/param grid``, whichever is set second.
    (``/reg/seam`` needs no check: it is a penalty on the rendered loop, a grid's too.)"""

    def division(value: Any) -> Any:
        steps_per_bar(value, beats_per_bar=registry.get("/clock/beats_per_bar"))
        return value

    def beats(value: Any) -> Any:
        if registry.get("/opt/param") == "grid":
            try:
                steps_per_bar(registry.get("/grid/division"), beats_per_bar=value)
            except ParameterError as exc:
                raise ParameterError(f"/clock/beats_per_bar={value}: {exc}") from None
        return value

    def mix(value: Any) -> Any:
        if value > 0 and registry.get("/opt/param") == "grid":
            raise ParameterError(f"/reg/mix={value}: {MIX_ON_GRID}; set /opt/param raw or spectral first")
        return value

    def param(value: Any) -> Any:
        if value == "grid" and registry.get("/reg/mix") > 0:
            raise ParameterError(f"/opt/param=grid: {MIX_ON_GRID}; set /reg/mix 0 first")
        return value

    registry.add_check("/grid/division", division)
    registry.add_check("/clock/beats_per_bar", beats)
    registry.add_check("/reg/mix", mix)
    registry.add_check("/opt/param", param)
