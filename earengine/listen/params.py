"""The rows of listening: ``/listen/*``, the streams' source and ``/loop/capture``, declared once.

:data:`LISTEN_PARAMS` and :data:`LISTEN_COMMANDS` join the registry's rows in
:mod:`earengine.params.catalog`; the engine's listening service (:mod:`earengine.listen.service`)
binds them. The level, the clip count and the input status are read-only: the engine writes them
a few times a second, a panel reads them with ``/get`` or follows them with ``/notify``.
"""

from __future__ import annotations

from earengine.params.spec import ArgSpec, CommandSpec, ParamSpec
from earengine.units import SILENCE_DB

__all__ = ["LISTEN_PARAMS", "LISTEN_COMMANDS", "SOURCES", "MAX_CAPTURE_BARS"]

#: What the streams show: the loop playing (its activations, dreamed) or the input as heard.
SOURCES = ("dream", "input")
#: The longest capture, in bars.
MAX_CAPTURE_BARS = 16

LISTEN_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("/listen/run", "bool", False,
              doc="Hear the input continuously (earengine run --input and an ear): the listener process "
                  "runs the ear on the last seconds heard and publishes their activations."),
    ParamSpec("/stream/source", "enum", "dream", choices=SOURCES,
              doc="What the streams show: dream (the loop playing, at its playhead) or input (the newest "
                  "input heard, each frame timetagged with when it was heard)."),
    ParamSpec("/listen/level_db", "float", SILENCE_DB, min=SILENCE_DB, max=0.0, unit="dB", access="r",
              doc="Input peak level over the last fifth of a second (dBFS), read-only: for a meter."),
    ParamSpec("/listen/clips", "int", 0, min=0, max=2**31 - 1, unit="clips", access="r",
              doc="Buffers of input that reached full scale since the engine started, read-only."),
    ParamSpec("/listen/status", "str", "no input (earengine run --input)", access="r",
              doc="One line on the input: off, which ports are connected, or that none is."),
)

LISTEN_COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("/loop/capture", (ArgSpec("bars", "int"),),
                doc=f"Record the next 1-{MAX_CAPTURE_BARS} whole bars of the input, from a bar line, and play "
                    "them as the loop (the dream goes on from them; /opt/reset input goes back to them)."),
)
