"""``earengine run``: start the engine, configured by its options (see :class:`EngineConfig`)."""

from __future__ import annotations

import argparse
import logging

from earengine.clock.params import CLOCK_SOURCES
from earengine.engine.config import BESIDE_OSCQUERY, DEVICES, EngineConfig
from earengine.midi.ports import BACKENDS as MIDI_BACKENDS
from earengine.params import default_registry, parse_sets
from earengine.resources import DEFAULT_EAR
from earengine.synth.server import MODES


def config_from_args(args: argparse.Namespace) -> EngineConfig:
    """The :class:`EngineConfig` that ``earengine run``'s options ask for (validated there)."""
    overrides = parse_sets(default_registry(), args.set or [])
    if args.clock:
        overrides["/clock/source"] = args.clock
    allow = [a.strip() for a in args.osc_allow.split(",") if a.strip()] if args.osc_allow else None
    return EngineConfig(
        audio=args.audio, osc_host=args.osc_host, osc_port=args.osc_port, allow=allow, reply_port=args.reply_port,
        preset_dir=args.preset_dir, overrides=overrides, ear=None if args.no_dream else args.ear,
        device=args.device,
        stream_ws_port=None if args.no_stream_ws else (BESIDE_OSCQUERY if args.stream_ws_port is None else args.stream_ws_port),
        oscquery_port=None if args.no_oscquery else args.oscquery_port, zeroconf=not args.no_zeroconf,
        allow_origin=args.allow_origin or (),
        midi_in=args.midi_in or (), midi_out=args.midi_out, midi_backend=args.midi_backend, midi_map=args.midi_map,
        input=args.input,
        worker=args.worker, secret_file=args.secret_file)


def _run(args: argparse.Namespace) -> int:
    from earengine.engine.engine import Engine  # here: `earengine --help` stays free of numpy

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    config = config_from_args(args)
    # Ctrl-C and SIGTERM end the engine cleanly: earengine.cli.main turns the first into
    # KeyboardInterrupt and ignores the next ones until everything below is closed
    try:  # Ctrl-C (or SIGTERM) while starting, running or loading: the same clean stop
        with Engine(config) as engine:
            try:
                if args.preset:
                    engine.presets.load(args.preset, engine.registry, source="cli")
                if args.loop:
                    engine.load_loop(args.loop)
                if args.record:
                    engine.audio.record(args.record)
                engine.run(duration_s=args.duration, status_every_s=args.status_every)
            finally:
                if args.record:
                    engine.audio.stop_recording()
    except KeyboardInterrupt:
        print("stopping", flush=True)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the engine (audio, OSC control, loop player)")
    p.add_argument("--audio", default="auto", choices=MODES, help="audio output (default: auto)")
    p.add_argument("--osc-host", default="127.0.0.1", help="interface for OSC (default: 127.0.0.1 only)")
    p.add_argument("--osc-port", type=int, default=9000, help="UDP port for OSC (default: 9000)")
    p.add_argument("--osc-allow", default="", help="comma-separated peer IPs allowed to send OSC")
    p.add_argument("--reply-port", type=int, default=None,
                   help="default UDP port for replies (hosts that receive on another socket: Max, TouchDesigner)")
    p.add_argument("--ear", default=str(DEFAULT_EAR),
                   help="ear checkpoint folder to dream with (default: the shipped one, models/ear-default)")
    p.add_argument("--device", default="cpu", choices=DEVICES, help="where the worker runs the ear")
    p.add_argument("--no-dream", action="store_true", help="play loops only; start no worker")
    p.add_argument("--input", action="store_true",
                   help="open the audio inputs (JACK: earengine:input_1/2; else the PortAudio input device) "
                        "to listen to (/listen/run 1) and capture from (/loop/capture <bars>)")
    p.add_argument("--worker", default=None, metavar="HOST:PORT",
                   help="dream with a worker on another machine (earengine worker --listen there) instead of here")
    p.add_argument("--secret-file", default=None, metavar="FILE",
                   help="the keys both hosts hold (earengine worker --new-secret; needed beyond loopback)")
    p.add_argument("--preset-dir", default=None, help="where presets are saved")
    p.add_argument("--preset", default=None, help="load this preset at start")
    p.add_argument("--loop", default=None, help="audio file to play from the first bar")
    p.add_argument("--set", action="append", metavar="ADDRESS=VALUE", help="set a parameter at start (repeatable)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--record", default=None, help="also write the output to this WAV file")
    p.add_argument("--status-every", type=float, default=5.0, help="seconds between status lines")
    # -- tempo and MIDI (earengine/clock/, earengine/midi/) ----------------------------------
    p.add_argument("--clock", default=None, choices=CLOCK_SOURCES,
                   help="where tempo and bar lines come from (default: internal; sets /clock/source)")
    p.add_argument("--midi-in", action="append", metavar="PORT",
                   help="MIDI input by name or pattern, e.g. 'BCF2000' or '*clock*'; 'virtual' makes a port to connect to (repeatable)")
    p.add_argument("--midi-out", default=None, metavar="PORT",
                   help="MIDI output for controller feedback and clock out, by name or pattern, or 'virtual'")
    p.add_argument("--midi-backend", default="auto", choices=MIDI_BACKENDS,
                   help="MIDI system (default: JACK when a JACK server runs, else ALSA)")
    p.add_argument("--midi-map", default=None, metavar="NAME",
                   help="controller map to load at start: bcf2000, launch-control-xl, or one saved with /midi/save")
    # -- streams and OSCQuery (earengine/streams/, control/oscquery.py) -----------------------
    p.add_argument("--stream-ws-port", type=int, default=None, metavar="PORT",
                   help="TCP port of the streams' WebSocket, which the web page draws the ear from "
                        "(default: the OSCQuery port + 1, or a free one when that is taken)")
    p.add_argument("--no-stream-ws", action="store_true", help="serve no activation streams over WebSocket")
    p.add_argument("--oscquery-port", type=int, default=9001, metavar="PORT",
                   help="TCP port of the OSCQuery namespace (HTTP + WebSocket; default 9001)")
    p.add_argument("--no-oscquery", action="store_true", help="serve no OSCQuery namespace")
    p.add_argument("--no-zeroconf", action="store_true", help="do not advertise OSCQuery with zeroconf")
    p.add_argument("--allow-origin", action="append", metavar="URL",
                   help="a web page, besides the engine's own, that may open its WebSockets, e.g. "
                        "http://192.168.1.20:8080 (repeatable; other pages are refused)")
    p.set_defaults(func=_run)

