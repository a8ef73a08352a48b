"""The ``/stream/*`` rows: activation streams to visualizers, declared once.

:data:`STREAM_PARAMS` and :data:`STREAM_COMMANDS` are concatenated into the registry's tables
(:mod:`earengine.params.catalog`); the stream sender (:mod:`earengine.streams.hub`), OSCQuery
and docs/osc.md are derived from them. The addresses the engine *sends* on a stream are listed in
:data:`STREAM_OUT` so that patches can be checked against them as well.

What a stream destination receives, frame by frame (a frame is one tick of ``/stream/fps``), each
datagram at most ``/stream/max_bytes`` long, in bundles whose timetag is the moment the frame
sounds::

    /stream/phase <frame> <phase>                      loop phase 0..1 at that moment
    /stream/step <frame> <step> <loss>                 optimizer step and loss of the loop heard
    /stream/act/<tap> <frame> <start> <count> v…      activations, chunked: values start…start+count-1

and, when it changes, to each new destination and every few seconds::

    /stream/shape <tap> <values> <channels> <freq>     what one frame of a tap holds
    /stream/mask/<tap> <frame> <start> <count> m…      1 where the dream's target reads, else 0
    /stream/layout/<tap> <frame> <start> <count> x y…  the neuron layout (see earengine.viz.layout)

and, over WebSocket only (to the engine's web page and other bulk receivers)::

    /stream/loop/scaleogram <step> <freq> <time> <blob>  the playing loop's scaleogram, once per loop
    /son/seen <run> <step> <norms blob> <hz blob>         a sonified training step: norms and pitches
    /son/nan <run> <step> <layer>                        the NaN cue, as /notify subscribers get it
"""

from __future__ import annotations

from earengine.params.spec import ArgSpec, CommandSpec, ParamSpec

__all__ = ["STREAM_PARAMS", "STREAM_COMMANDS", "STREAM_OUT", "REDUCE", "MAX_FPS"]

#: How a tap's activation at the sounding moment is reduced before it is sent.
REDUCE = ("raw", "channel", "channel_freq")
#: The highest frame rate a stream runs at.
MAX_FPS = 60.0

_P = ParamSpec
STREAM_PARAMS: tuple[ParamSpec, ...] = (
    _P("/stream/layers", "str", "all",
       doc="Taps to stream: 'all' or names separated by spaces or commas (scaleogram enc.0-7 ar.0-8)."),
    _P("/stream/reduce", "enum", "channel", choices=REDUCE,
       doc="raw: every neuron (channel x frequency) at the step sounding; channel_freq: the same, averaged "
           "over the steps the frame spans; channel: averaged over frequency too."),
    _P("/stream/fps", "float", 30.0, min=1.0, max=MAX_FPS, unit="Hz",
       doc="Frames per second sent to every destination."),
    _P("/stream/max_bytes", "int", 1400, min=128, max=65507, unit="bytes",
       doc="Largest datagram a stream sends; arrays are split as <frame> <start> <count> values."),
    _P("/stream/lookahead_ms", "float", 30.0, min=0.0, max=2000.0, unit="ms",
       doc="Frames leave this long before they sound; their bundle timetag is when they sound."),
    _P("/stream/run", "bool", True,
       doc="Send frames (1) or hold every stream (0; destinations are kept)."),
)

_DEST = ArgSpec("dest", "str")
STREAM_COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("/stream/add", (_DEST,), later=True,
                doc="Stream to host:port over UDP; it gets the shapes, the target mask and the layout first."),
    CommandSpec("/stream/remove", (_DEST,),
                doc="Stop streaming to host:port ('all': to every destination)."),
    CommandSpec("/stream/list", (), reply="/stream/list.reply",
                doc="Answers /stream/list.reply with every destination as host:port."),
    CommandSpec("/stream/layout", (ArgSpec("dest", "str", optional=True),), later=True,
                doc="Send the neuron layout to every destination (or to host:port)."),
)

#: Addresses the engine sends on streams; ``<tap>`` stands for a tap name.
STREAM_OUT: tuple[str, ...] = (
    "/stream/phase",
    "/stream/step",
    "/stream/shape",
    "/stream/act/<tap>",
    "/stream/mask/<tap>",
    "/stream/layout/<tap>",
    "/stream/dropped",
    "/stream/list.reply",
)
