"""The ``/son/*`` rows: the pitch-mapping instrument and the frame protocol, declared once.

:data:`SON_PARAMS` and :data:`SON_COMMANDS` are concatenated into the registry's tables
(:mod:`earengine.params.catalog`); the mapping's :class:`~earengine.sonify.mapping.Settings`, the
docs, OSCQuery and MIDI maps are derived from them.

Frames arrive as ``/son/frame <run> <step> <norms…>``. A frame whose message would not fit under
the datagram limit is sent in parts, ``/son/part <run> <step> <start> <count> <norms…>``: ``start``
is the index of the first layer in this part and ``count`` how many norms it carries (a check
against truncation); the frame is complete when parts have covered every layer the run declared
with ``/son/begin``. Norms are non-negative numbers; NaN and inf are legal values — they are what
the NaN cue is for — so the norms of these two commands are validated by :class:`FrameCommandSpec`,
which accepts non-finite numbers where the generic command validation would refuse them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Sequence

from earengine.errors import ParameterError
from earengine.music import DIVISIONS, NOTE_NAMES, SCALES  # one table of scales, shared with the dream's grid
from earengine.params.spec import ArgSpec, CommandSpec, ParamSpec
from earengine.units import SILENCE_DB

__all__ = [
    "SON_PARAMS",
    "SON_COMMANDS",
    "FrameCommandSpec",
    "WAVES",
    "MAX_RUNS",
    "MAX_LAYERS",
    "AUDIBLE_HZ",
]

#: Runs the engine sonifies at once; each gets its own timbre.
MAX_RUNS = 4
#: Most layers a run may declare (a frame of this many norms still fits in a few datagrams).
MAX_LAYERS = 4096
#: Every tone stays inside this band, whatever the norm or the settings.
AUDIBLE_HZ = (20.0, 16000.0)

#: Timbres; run k of the engine sounds with the k-th wave after ``/son/wave``.
WAVES = ("sine", "triangle", "square", "saw", "organ")

_P = ParamSpec
SON_PARAMS: tuple[ParamSpec, ...] = (
    _P("/son/curve", "enum", "log", choices=("seed", "linear", "log"),
       doc="Norm to pitch: seed = 200 Hz + 100 Hz per unit of norm (Perone 2019), linear in Hz, or log (equal steps per decade)."),
    _P("/son/base", "float", 220.0, min=20.0, max=4000.0, scale="log", unit="Hz",
       doc="Pitch of the lowest norm (linear and log curves)."),
    _P("/son/octaves", "float", 4.0, min=0.1, max=8.0, unit="oct",
       doc="Pitch range, in octaves above /son/base, that the norm range spans."),
    _P("/son/norm_min", "float", 1e-3, min=1e-12, max=1e6, scale="log",
       doc="Norm heard at the bottom of the range (when /son/window is 0)."),
    _P("/son/norm_max", "float", 1e5, min=1e-12, max=1e12, scale="log",
       doc="Norm heard at the top of the range (when /son/window is 0); larger norms stay at the top."),
    _P("/son/window", "int", 0, min=0, max=100000, unit="steps",
       doc="Normalise each layer over its last N finite norms (0: use the fixed /son/norm_min … /son/norm_max)."),
    _P("/son/scale", "enum", "pentatonic", choices=tuple(SCALES),
       doc="Snap pitches to this scale above /son/root (off: continuous pitch)."),
    _P("/son/root", "enum", "A", choices=NOTE_NAMES,
       doc="Root note of /son/scale."),
    _P("/son/register_spread", "float", 1.0, min=-4.0, max=4.0, unit="oct",
       doc="Register of the last layer above the first (layers in between evenly); negative puts later layers lower."),
    _P("/son/pan_spread", "float", 0.5, min=0.0, max=1.0,
       doc="Stereo spread of the layers: 0 all centred, 1 first layer hard left and last hard right."),
    _P("/son/loudness", "enum", "norm", choices=("flat", "norm", "change"),
       doc="Loudness of each tone: flat, from the norm, or from its change since the previous step."),
    _P("/son/voicing", "enum", "sequential", choices=("sequential", "simultaneous"),
       doc="sequential: one tone per layer, then a rest (as the seed); simultaneous: all layers as a chord."),
    _P("/son/step_ms", "float", 80.0, min=5.0, max=5000.0, scale="log", unit="ms",
       doc="Duration of one training step's sound when /son/division is off."),
    _P("/son/division", "enum", "off", choices=tuple(DIVISIONS),
       doc="Step length as a note value synced to the engine clock (off: use /son/step_ms)."),
    _P("/son/rest", "float", 0.25, min=0.0, max=0.9,
       doc="Fraction of each step that is silent, marking the step boundary."),
    _P("/son/hold", "bool", False,
       doc="On steps with no new frame, repeat the last one (1) or stay silent (0)."),
    _P("/son/wave", "enum", "sine", choices=WAVES,
       doc="Timbre of the first run; further runs take the next waves in the list."),
    _P("/son/gain", "float", -12.0, min=SILENCE_DB, max=0.0, unit="dB", ramp_ms=50.0,
       doc="Level of the sonification (all layers of a run together never exceed it)."),
    _P("/son/ramp", "float", 4.0, min=0.5, max=50.0, unit="ms",
       doc="Attack, release and glide time of every tone (no clicks)."),
    _P("/son/fmin", "float", 20.0, min=AUDIBLE_HZ[0], max=AUDIBLE_HZ[1], scale="log", unit="Hz",
       doc="No tone goes below this frequency."),
    _P("/son/fmax", "float", 16000.0, min=AUDIBLE_HZ[0], max=AUDIBLE_HZ[1], scale="log", unit="Hz",
       doc="No tone goes above this frequency."),
)


def _number(value: Any, name: str) -> float:
    """A norm: any number, NaN and inf included, but not a negative one or a non-number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError(f"{name}={value!r} must be a number (a gradient norm)")
    value = float(value)
    if value < 0.0:  # -inf included
        raise ParameterError(f"{name}={value:g} must be >= 0 (a norm), or NaN/inf to signal a bad gradient")
    return value


@dataclass(frozen=True)
class FrameCommandSpec(CommandSpec):
    """A command whose trailing, repeating arguments are gradient norms.

    The leading arguments are validated like any command's; every argument from index
    ``len(args) - 1`` on must be a non-negative number, NaN or inf, and there must be at least one.

    >>> from earengine.params.spec import row
    >>> spec = row(SON_COMMANDS, "/son/frame")
    >>> spec.validate(("a", 3, 0.5, float("inf")))
    ('a', 3, 0.5, inf)
    """

    def __eq__(self, other: object) -> bool:
        # The same row as a CommandSpec with the same fields: its dict form is a CommandSpec's,
        # only the validation of the norms differs.
        if not isinstance(other, CommandSpec):
            return NotImplemented
        return CommandSpec.to_dict(self) == CommandSpec.to_dict(other)

    __hash__ = CommandSpec.__hash__

    @cached_property
    def _head(self) -> CommandSpec:
        return CommandSpec(self.address, self.args[:-1])

    def validate(self, args: Sequence[Any]) -> tuple:
        head = self._head
        k = len(head.args)
        if len(args) <= k:
            want = " ".join(f"<{a.name}>" for a in head.args)
            raise ParameterError(f"{self.address} takes {want} <norms…>, got {len(args)} argument(s)")
        return head.validate(tuple(args[:k])) + tuple(
            _number(v, f"{self.address} norm {i}") for i, v in enumerate(args[k:])
        )


_RUN = ArgSpec("run", "str")
_STEP = ArgSpec("step", "int")
_NORMS = ArgSpec("norms", "float")

SON_COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("/son/begin", (_RUN, ArgSpec("layers", "int")), reply="/son/pace",
                doc=f"Open a run with this many layers (at most {MAX_RUNS} runs, {MAX_LAYERS} layers); reopening "
                    "resets it. Answers /son/pace <run> <step_ms>, and sends it again whenever the step length "
                    "changes: frames closer together than a step are never heard."),
    CommandSpec("/son/end", (_RUN,), doc="Close a run and silence it."),
    FrameCommandSpec("/son/frame", (_RUN, _STEP, _NORMS), variadic=True, silent=True,
                     doc="One step's gradient norms, one per layer (NaN or inf sound the NaN cue)."),
    FrameCommandSpec("/son/part", (_RUN, _STEP, ArgSpec("start", "int"), ArgSpec("count", "int"), _NORMS),
                     variadic=True, silent=True,
                     doc="Part of a frame too big for one datagram: count norms from layer start on."),
    CommandSpec("/son/nan", (_RUN, _STEP, ArgSpec("layer", "int")),
                doc="Sound the NaN cue for a layer; the engine also sends this to /notify listeners when a frame holds NaN or inf."),
    CommandSpec("/son/mute", (_RUN, ArgSpec("on", "bool")), doc="Silence one run (1) or let it sound again (0)."),
    CommandSpec("/son/solo", (_RUN, ArgSpec("on", "bool")), doc="While any run is soloed, only soloed runs sound."),
    CommandSpec("/son/runs", (), reply="/son/runs.reply", doc="Answers /son/runs.reply with the open runs' names."),
)
