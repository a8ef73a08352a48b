"""The ``/loop/*`` rows of the loop player and the limiter's ceiling, declared once.

:data:`LOOP_PARAMS` and :data:`LOOP_COMMANDS` join the registry's rows in
:mod:`earengine.params.catalog`; the player (:mod:`earengine.synth.player`) binds them.
"""

from __future__ import annotations

from earengine.params.spec import ArgSpec, CommandSpec, ParamSpec
from earengine.units import SILENCE_DB

__all__ = ["LOOP_PARAMS", "LOOP_COMMANDS", "LIMITER_CEILING_DBFS"]

#: Peak the final limiter never lets through.
LIMITER_CEILING_DBFS = -0.3

_PATH = ArgSpec("path", "str")

LOOP_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("/loop/bars", "int", 2, min=1, max=64, unit="bars",
              doc="Length of dreamed loops in bars; loaded loops keep their own whole number of bars."),
    ParamSpec("/loop/xfade", "float", 50.0, min=0.0, max=4000.0, unit="ms",
              doc="Crossfade from the playing loop to the next one, starting on the bar line."),
    ParamSpec("/loop/gain", "float", -3.0, min=SILENCE_DB, max=6.0, unit="dB", ramp_ms=50.0,
              doc="Level of the loop player before the final limiter."),
    ParamSpec("/loop/mute", "bool", False, ramp_ms=20.0,
              doc="Silences the loop player (it keeps its place in the bar)."),
)

LOOP_COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("/loop/load", (_PATH,), later=True,
                doc="Load a WAV/FLAC/OGG file; it starts at the next bar line, fitted to whole bars."),
    CommandSpec("/loop/save", (_PATH,), later=True,
                doc="Write the loop that is playing to a WAV file."),
)
