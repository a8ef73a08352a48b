"""The ``/clock/*`` rows: tempo, bar lines, the source they come from, transport, declared once.

:data:`CLOCK_PARAMS` joins the registry's rows in :mod:`earengine.params.catalog`; the bar grid
(:mod:`earengine.clock.grid`), the clock sources and OSCQuery follow them.
"""

from __future__ import annotations

from earengine.params.spec import ParamSpec

__all__ = ["CLOCK_SOURCES", "CLOCK_PARAMS"]

#: Where tempo and bar lines come from (the choices of ``/clock/source``).
CLOCK_SOURCES = ("internal", "link", "midi")

_P = ParamSpec
CLOCK_PARAMS: tuple[ParamSpec, ...] = (
    _P("/clock/bpm", "float", 120.0, min=20.0, max=400.0, unit="BPM",
              doc="Tempo; loops are resampled to keep their bars. Follows Link or MIDI clock; under link, setting it sets the session's."),
    _P("/clock/beats_per_bar", "int", 4, min=1, max=32, unit="beats",
              doc="Beats in one bar; loops start on bar lines."),
    _P("/clock/source", "enum", "internal", choices=CLOCK_SOURCES,
              doc="Where tempo and bar lines come from: the engine, an Ableton Link session, or MIDI clock on the MIDI input."),
    _P("/clock/offset_ms", "float", 0.0, min=-250.0, max=250.0, unit="ms",
       doc="Play the bar grid this much early to make up for output latency, so what is heard lines up with Link and MIDI peers."),
    _P("/clock/playing", "bool", True,
       doc="Transport: 0 stops (loops fall silent, no bar lines), 1 starts again from bar 1; follows MIDI start/stop, and Link with /clock/link_start_stop."),
    _P("/clock/peers", "int", 0, min=0, max=100000, unit="peers", access="r",
       doc="Other peers in the Link session, as the engine counts them; read it with /get or /notify."),
    _P("/clock/link_start_stop", "bool", False,
       doc="Share start and stop with the Link session (Live's Start Stop Sync)."),
    _P("/clock/midi_out", "bool", False,
       doc="Send MIDI clock (24 per quarter note, start, stop) to the MIDI output while the engine is the master (internal or link)."),
)
