"""The engine process: registry, audio, loop player, OSC — wired together, scoped, never blocking.

:class:`Engine` is a context manager. Entering it starts the audio server, the loop player, the
slow-command queue and the OSC server; leaving it stops them in reverse order, always.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable, Optional

import numpy as np

from earengine.clock.control import ClockControl
from earengine.control.jobs import JobQueue
from earengine.control.osc import OscRouter, OscServer
from earengine.control.oscquery import OscQueryServer
from earengine.engine.config import BESIDE_OSCQUERY, EngineConfig
from earengine.engine.offline import wait_for_first_loop
from earengine.errors import EarEngineError, ParameterError
from earengine.files import user_dir
from earengine.listen.service import Listening
from earengine.midi.bindings import MapStore
from earengine.midi.control import MidiControl
from earengine.midi.handlers import command_handlers as midi_handlers, loop_handlers
from earengine.midi.notes import NoteOut
from earengine.midi.service import MidiService
from earengine.optvis.params import install_checks, TAPS
from earengine.optvis.targets import command_handlers as target_handlers, format_many, parse_many
from earengine.osc.wire import encode_message
from earengine.params import default_registry, Registry
from earengine.params.presets import PresetStore
from earengine.sonify.receiver import SonReceiver
from earengine.stops import ignore_stop_signals, ordinary_priority
from earengine.streams.hub import StreamHub
from earengine.streams.position import PlayerTracker
from earengine.streams.websocket import WebSocketStreams
from earengine.synth.bus import OutputBus
from earengine.synth.handlers import command_handlers as loop_file_handlers, load_loop
from earengine.synth.player import Loop, LoopPlayer
from earengine.synth.server import AudioServer
from earengine.synth.voices import GradientVoices
from earengine.viz.layout import read_cached_layout
from earengine.worker.supervisor import DreamSupervisor, refusals

__all__ = ["Engine", "default_preset_dir"]

log = logging.getLogger("earengine.engine")


def default_preset_dir() -> Path:
    """``$EARENGINE_HOME/presets``, else ``~/.local/share/earengine/presets``."""

    return user_dir("presets")


def _layout_child() -> None:
    """In the layout process, before it runs: a low, ordinary priority (not the engine threads'), and
    deaf to the Ctrl-C (or SIGTERM) sent to the whole process group (the engine stops it in order)."""
    ordinary_priority()
    os.nice(10)
    ignore_stop_signals()


class Engine:
    """Everything the engine process runs.

    Parameters
    ----------
    config : EngineConfig
        What to run: audio mode, OSC and OSCQuery ports, ear, MIDI ports, overrides (see
        :class:`~earengine.engine.config.EngineConfig`).
    registry : Registry, optional
        The parameters (default: a fresh :func:`~earengine.params.default_registry`).
    out : file-like, optional
        Where plain status lines go (default: stdout).
    """

    def __init__(self, config: EngineConfig, *, registry: Optional[Registry] = None,
                 out: Optional[IO[str]] = None) -> None:
        self.registry = registry or default_registry()
        self.config = config
        if config.overrides:
            self.registry.update(config.overrides, source="cli")
        self.presets = PresetStore(config.preset_dir or default_preset_dir())
        self.out = out or sys.stdout
        self.audio = None
        self.player = None
        self.voices = None
        self.sonify = None
        # streams, the layout and OSCQuery (earengine/streams/, control/oscquery.py)
        self.streams = None  # StreamHub
        self.oscquery = None  # OscQueryServer when --oscquery-port is given
        self.stream_ws = None  # WebSocketStreams when --stream-ws-port is given
        self._layout_job: Optional[threading.Thread] = None
        self._layout_proc = None
        self.midi = None  # MidiService when ports were asked for
        self.midi_control = None
        self.clock = None  # ClockControl: internal, Link or MIDI clock
        self.notes_out = None  # NoteOut: the dream's notes on --midi-out (earengine/midi/notes.py)
        self._transport_muted = False
        self.dream = None  # DreamSupervisor when an ear is given
        self.listening = None  # Listening (earengine/listen/) with --input
        self.jobs: Optional[JobQueue] = None
        self.router: Optional[OscRouter] = None
        self.osc: Optional[OscServer] = None
        self._closers: list[Callable[[], None]] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> "Engine":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def say(self, line: str) -> None:
        """One plain line on the console. If nobody reads it any more (``earengine run | head``),
        the main thread's next line ends the run quietly; other threads just stop saying."""
        try:
            self.out.write(line + "\n")
            self.out.flush()
        except (BrokenPipeError, ValueError):
            if threading.current_thread() is threading.main_thread():
                raise

    def start(self) -> None:
        self.audio = AudioServer(self.config.audio, inputs=2 if self.config.input else 0)
        self.say(self.audio.reason)
        self.audio.start()
        notice = self.audio.priority_notice()  # audio first: say so where the system does not grant it
        if notice:
            self.say(notice)
        self.audio.raise_threads()  # then the engine's own threads, above every ordinary one
        self._closers.append(self.audio.close)
        self.player = LoopPlayer(self.audio, self.registry, out=False)
        self._closers.append(self.player.close)
        self._start_sonify()
        # one limiter for everything that sounds: loops and gradient voices together
        self.bus = OutputBus(self.audio, [self.player.stereo, self.voices.stereo])
        self._closers.append(self.bus.close)
        self.jobs = JobQueue()
        self._closers.append(self.jobs.close)
        self._start_dream()
        self._start_listen()
        self._start_clock_midi()
        self.router = OscRouter(self.registry, status=self.status, jobs=self.jobs, reply_port=self.config.reply_port)
        self._closers.append(self.router.close)
        self._start_streams()
        self.router.count_sources.append(self.counts)
        for address, handler in self.command_handlers().items():
            self.router.on(address, handler)
        config = self.config
        kwargs = {"max_datagram": config.max_datagram} if config.max_datagram else {}
        self.osc = OscServer(self.router, host=config.osc_host, port=config.osc_port, allow=config.allow, **kwargs)
        self.osc.start()
        self._closers.append(self.osc.close)
        self._start_oscquery()
        self.registry.running = True
        self.audio.settle_heap()  # the collector never walks the start-up heap while pyo waits
        host, port = self.osc.address
        self.say(f"osc: listening on {host}:{port} (UDP); send /status for the state")

    def close(self) -> None:
        self.registry.running = False
        while self._closers:
            closer = self._closers.pop()
            try:
                closer()
            except Exception:
                log.exception("error while stopping")

    # -- dreaming ----------------------------------------------------------------------------
    def _start_dream(self) -> None:
        """The worker process that dreams loops through the ear (see earengine.worker)."""

        def check_targets(text: str) -> str:
            shapes = self.dream.info.get("shapes") if self.dream is not None else None
            return format_many(parse_many(text, taps=TAPS, shapes=shapes))

        self.registry.add_check("/target/spec", check_targets)

        install_checks(self.registry)  # a grid division must divide the bar
        if self.config.ear is None:
            return
        if self.config.worker is None and not (self.config.ear / "config.json").is_file():
            self.say(f"dream: no ear at {self.config.ear} (train one with 'earengine train'); playing loops only")
            return

        last_step = [None]

        def deliver(samples, stats) -> None:
            if stats.get("step") == last_step[0]:
                # The held loop again, sent with its activations because streams asked for them
                # (see earengine.worker.process): it only replaces itself, never a loop loaded meanwhile.
                current = self.player.current
                if current is None or current.source != "dream":
                    return
            last_step[0] = stats.get("step")
            pattern = stats.get("pattern")  # the loop's notes, with /opt/param grid
            # the loop's activations (while streams want them) go with it: the streams show them
            # from the bar line where it enters
            self.player.queue(Loop(samples, self.audio.sr, max(1, stats["bars"]), "dream",
                                   meta={"key": stats.get("key"), "pattern": pattern, "acts": stats.get("acts")}),
                              keep_phase=True)
            if self.notes_out is not None:
                self.notes_out.queue(pattern)

        if self.config.worker is not None:  # on another machine (earengine worker --listen there)
            from earengine.worker.remote_supervisor import RemoteSupervisor
            from earengine.worker.wire import parse_endpoint

            host, port = parse_endpoint(self.config.worker, "--worker")
            self.dream = RemoteSupervisor(self.registry, host, port, deliver=deliver, say=self.say,
                                          secret=self.config.secret_file,
                                          bar_clock=lambda: self.player.clock.bar_position,
                                          page=lambda: self.stream_ws is not None and self.stream_ws.count() > 0)
        else:
            self.dream = DreamSupervisor(self.registry, str(self.config.ear), deliver=deliver, say=self.say,
                                         device=self.config.device)
        self.dream.start()
        self._closers.append(self.dream.close)
        where = f"worker {self.config.worker}" if self.config.worker else f"ear {self.config.ear}"
        self.say(f"dream: {where}, target {self.target_description()}")

    def _start_listen(self) -> None:
        """The audio input, the ear listening to it in a process of its own, the meter and
        captures (see earengine.listen); without --input, their rows say what is missing."""
        if self.config.input and not self.audio.inputs:
            self.say(f"listen: --audio {self.audio.mode} has no input; run with JACK or a sound card to listen")
        if not self.audio.inputs:
            def refuse(value):
                if value and value != "dream":
                    raise ParameterError("needs the audio input: earengine run --input")
                return value

            self.registry.add_check("/listen/run", refuse)
            self.registry.add_check("/stream/source", refuse)
            return
        ear = self.config.ear
        model = str(ear) if ear is not None and (ear / "config.json").is_file() else None
        self.listening = Listening(self.registry, self.audio, self.player, model=model, say=self.say,
                                   on_captured=self._loop_loaded, notify=self._to_listeners)
        self._closers.append(self.listening.close)

    def _stream_position(self):
        """Where the streams cut their frames: the loop playing, or the input as heard
        (``/stream/source``)."""
        if self.listening is not None and self.registry.get("/stream/source") == "input":
            return self.listening.position()
        return self.tracker()

    def target_description(self) -> str:
        spec = self.registry.get("/target/spec")
        if spec:
            return spec
        g = self.registry.get
        return (f"{g('/target/layer')} channels {g('/target/channel'):.2f}±{g('/target/channel_width') / 2:.2f}")

    # -- sonification ------------------------------------------------------------------------
    def _start_sonify(self) -> None:
        """Gradient voices on the bar clock, and the /son/* frame handlers (see earengine.sonify)."""
        self.voices = GradientVoices(self.audio, self.registry, clock=self.player.clock, out=False)
        self._closers.append(self.voices.close)
        self.sonify = SonReceiver(self.registry, self.voices, notify=self._to_listeners, send=self._to_sender,
                                  seen=self._show_son)
        self._closers.append(self.sonify.close)

    def _to_sender(self, sender: Any, address: str, args: tuple) -> None:
        """Send a message to whoever sent an earlier one (``/son/pace`` to a training run)."""
        if self.router is not None and isinstance(sender, tuple) and sender and sender[0] != "midi":
            self.router.send(self.router.reply_dest(sender), address, args)

    def _to_listeners(self, address: str, args: tuple) -> None:
        """Send an event (``/son/nan``) to every ``/notify`` subscriber, and to the pages that
        receive the streams."""
        if self.router is not None:
            for dest in tuple(self.router.listeners):
                self.router.send(dest, address, args)
        if self.stream_ws is not None:
            self.stream_ws.broadcast([encode_message(address, args)], frame=False)

    def _show_son(self, run: str, step: int, norms, hz) -> None:
        """A sonified frame, for the pages that receive the streams: ``/son/seen <run> <step>
        <norms> <hz>``, each a blob of big-endian float32 per layer (NaN marks a silent layer)."""
        ws = self.stream_ws
        if ws is not None and ws.count() > 0:
            ws.broadcast([encode_message("/son/seen", (run, int(step), np.asarray(norms, ">f4").tobytes(),
                                                       np.asarray(hz, ">f4").tobytes()))], frame=False)

    # -- tempo and MIDI ----------------------------------------------------------------------
    def _start_clock_midi(self) -> None:
        """Clock sources (internal, Link, MIDI clock), MIDI ports and controls (see earengine.clock
        and earengine.midi)."""

        self.midi_maps = MapStore()
        if self.config.midi_in or self.config.midi_out is not None:
            self.midi = MidiService.open(self.config.midi_in, self.config.midi_out, backend=self.config.midi_backend, say=self.say)
            self._closers.append(self.midi.close)
        send = self.midi.send if self.midi is not None and self.midi.output is not None else None
        self.midi_control = MidiControl(self.registry, dispatch=self._midi_dispatch, send=send,
                                        on_learn=self._midi_learned)
        self._closers.append(self.midi_control.close)
        self.clock = ClockControl(self.registry, self.player.clock, midi_send=send,
                                  schedules=self.midi is not None and self.midi.schedules,
                                  on_transport=self._transport, say=self.say)
        self.clock.start()
        self._closers.append(self.clock.close)
        if send is not None:
            player = self.player
            self.notes_out = NoteOut(lambda: player.clock.timeline, send, origin_bar=lambda: player.origin_bar,
                                     beats_per_bar=lambda: player.clock.beats_per_bar,
                                     enabled=lambda: self.registry.get("/grid/midi"),
                                     lead_s=0.01 if self.midi.schedules else 0.0)
            self.notes_out.start()
            self._closers.append(self.notes_out.close)
        if self.midi is not None:
            self.midi.on_control = self.midi_control.handle
            self.midi.on_clock = self.clock.midi_in.feed
            self.midi.start()
        if self.registry.get("/clock/source") == "midi" and not self.config.midi_in:
            self.say("clock: /clock/source is midi but no --midi-in is open; the engine keeps its own tempo")
        if self.config.midi_map:
            self.midi_control.set_bindings(self.midi_maps.load(self.config.midi_map, self.registry), source="cli")
            self.say(f"midi: map {self.config.midi_map}, {len(self.midi_control.bindings)} bindings")

    def _midi_dispatch(self, address: str, args: tuple) -> None:
        """A command from a MIDI control, through the same router as OSC."""
        if self.router is None:
            return
        for reply in self.router.handle(address, args, ("midi", 0)):
            if reply.address == "/fail":
                log.info("midi: %s", " ".join(str(a) for a in reply.args))

    def _midi_learned(self, address: str, control: str) -> None:
        self.say(f"midi: {control} now moves {address}")
        self._to_listeners("/midi/learned", (address, control))

    def _transport(self, what: str) -> None:
        """Start, continue or stop from the clock, shown on ``/loop/mute``. The player itself
        silences loops when its clock stops and brings them back on its first bar line (from
        their first sample on start, in place on continue), to the sample."""
        if what == "stop":
            if not self.registry.get("/loop/mute"):
                self.registry.set("/loop/mute", True, source="transport")
                self._transport_muted = True
            return
        if self._transport_muted:
            self._transport_muted = False
            self.registry.set("/loop/mute", False, source="transport")

    # -- streams, the neuron layout, OSCQuery -------------------------------------------------
    def _start_streams(self) -> None:
        """Activation streams to visualizers, timed by the player, fed by the worker
        (see earengine.streams)."""
        self._watched = False  # do the streams have receivers?
        self.tracker = PlayerTracker(self.player, self.audio)
        self._closers.append(self.tracker.close)
        self.streams = StreamHub(self.registry, position=self._stream_position, on_demand=self._stream_demand,
                                 reply=lambda dest, address, args: self.router.send(dest, address, args))
        self._closers.append(self.streams.close)
        if self.listening is not None:  # the input's newest frame leaves as soon as it is heard
            self.listening.on_heard = self.streams.frame_ready
            self._closers.append(self.registry.bind({"/stream/source": lambda c: self._stream_demand(self._watched)}).close)
        if self.dream is not None:
            self._layout(compute=False)
        port = self.config.stream_ws_port
        if port == BESIDE_OSCQUERY:  # beside OSCQuery, where the engine's page finds it (HOST_INFO)
            if self.config.oscquery_port is None:
                return
            port = self.config.oscquery_port + 1 if 0 < self.config.oscquery_port < 65535 else 0
        if port is not None:
            try:
                ws = WebSocketStreams(self.streams, host=self.config.osc_host, port=port,
                                      allow_origins=self.config.allow_origin)
            except EarEngineError:
                if self.config.stream_ws_port != BESIDE_OSCQUERY:
                    raise
                ws = WebSocketStreams(self.streams, host=self.config.osc_host, port=0,
                                      allow_origins=self.config.allow_origin)
            self.stream_ws = ws
            self._closers.append(ws.close)
            self.say("streams: WebSocket receivers on ws://%s:%d" % ws.address)

    def _stream_demand(self, on: bool) -> None:
        """Someone looks (or nobody does any more): the worker publishes activations only while
        the streams have receivers and show the dream, not the input (``/stream/source``)."""
        self._watched, on = on, on and self.registry.get("/stream/source") != "input"
        if self.dream is not None:
            self.dream.stream_activations(on)
            if on:
                self._layout(compute=True)

    def _layout(self, *, compute: bool) -> None:
        """The ear's neuron layout for the streams: read from its cache, or computed once in a
        child process (torch stays out of this one), on a thread of its own."""
        if self._layout_job is not None or self.streams.layout is not None:
            return

        try:
            layout = read_cached_layout(self.config.ear)
        except EarEngineError:
            layout = None
        if layout is not None:
            self.streams.set_layout(layout)
            return
        if not compute:
            return

        def job() -> None:
            self.say(f"layout: laying out the neurons of {self.config.ear.name} once; it is cached for next time")
            cmd = [sys.executable, "-m", "earengine", "layout", "--model", str(self.config.ear), "--threads", "1"]
            try:
                self._layout_proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                                     text=True, preexec_fn=_layout_child)
                _, err = self._layout_proc.communicate()
                layout = read_cached_layout(self.config.ear) if self._layout_proc.returncode == 0 else None
            except (OSError, EarEngineError) as exc:
                layout, err = None, str(exc)
            if layout is None:
                if not self.registry.running:  # stopped with the engine: nothing to report
                    return
                lines = (err or "").strip().splitlines()
                self.say(f"layout: not available ({lines[-1] if lines else 'stopped'})")
                return
            self.streams.set_layout(layout)
            self.say(f"layout: {layout.positions.shape[0]} neurons, sent to every stream destination")

        def stop() -> None:
            if self._layout_proc is not None and self._layout_proc.poll() is None:
                self._layout_proc.kill()

        self._closers.append(stop)
        self._layout_job = threading.Thread(target=job, name="earengine-layout", daemon=True)
        self._layout_job.start()

    def _start_oscquery(self) -> None:
        """OSCQuery from the registry (see earengine.control.oscquery)."""
        if self.config.oscquery_port is None:
            return

        try:
            self.oscquery = OscQueryServer(self.registry, host=self.config.osc_host, port=self.config.oscquery_port,
                                           osc_port=self.osc.address[1], handle=self.router.handle,
                                           zeroconf=self.config.zeroconf, allow_origins=self.config.allow_origin)
        except EarEngineError as exc:  # discovery is a convenience: the engine runs without it
            self.say(f"oscquery: {exc}")
            return
        self._closers.append(self.oscquery.close)
        udp_send, oscquery = self.router.send, self.oscquery  # replies that come later reach a WebSocket too
        self.router.send = lambda dest, address, args: (oscquery.deliver(dest, address, args)
                                                        or udp_send(dest, address, args))
        host, port = self.oscquery.address
        if self.stream_ws is not None:  # a page the engine serves here may receive the streams
            self.stream_ws.gate.trust_page_port(port)
            self.oscquery.info["EARENGINE_STREAMS_PORT"] = self.stream_ws.address[1]
        self.say(f"oscquery: http://{host}:{port}/ (WebSocket LISTEN on the same port)"
                 + (", advertised as _oscjson._tcp" if self.config.zeroconf else ""))

    # -- commands ----------------------------------------------------------------------------
    def command_handlers(self) -> dict[str, Callable]:
        """Every command's handler, from the subsystem that owns it."""
        handlers = {
            **loop_file_handlers(self.player, on_loaded=self._loop_loaded),
            **loop_handlers(self.player),
            **self.presets.handlers(self.registry),
            **target_handlers(self.registry),
            **(self.dream.handlers(self.audio.sr) if self.dream is not None else refusals()),
        }
        if self.sonify is not None:
            handlers.update(self.sonify.handlers())
        handlers.update(self._listen_handlers(handlers["/opt/reset"]))
        if self.streams is not None:
            handlers.update(self.streams.handlers(self.router.reply_dest))
        if self.midi_control is not None:
            handlers.update(midi_handlers(self.midi_control, self.midi_maps, self.midi))
        return handlers

    def _listen_handlers(self, reset: Callable) -> dict[str, Callable]:
        """``/loop/capture``, and ``/opt/reset input`` (the dream from the last capture) before
        the dream's own kinds."""
        listening = self.listening

        def capture(args: tuple, sender: tuple) -> None:
            if listening is None:
                raise EarEngineError("/loop/capture needs the audio input: earengine run --input")
            listening.capture(int(args[0]))

        def reset_input(args: tuple, sender: tuple) -> None:
            if args[0] != "input" or self.dream is None:
                return reset(args, sender)
            if listening is None or listening.last_capture is None:
                raise EarEngineError("/opt/reset input needs a capture first: /loop/capture <bars> "
                                     "(with earengine run --input)")
            if len(args) > 1:
                raise ParameterError("/opt/reset input takes no path")
            self.dream.reset("input", listening.last_capture)

        return {"/loop/capture": capture, "/opt/reset": reset_input}

    def load_loop(self, path: str) -> None:
        """Read an audio file and play it from the next bar line (any thread but audio)."""
        load_loop(self.player, path, on_loaded=self._loop_loaded)

    def _loop_loaded(self, samples) -> None:
        if self.dream is not None:  # the dream goes on from the loaded loop
            self.dream.reset("file", samples)

    # -- status ------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """The engine's part of ``/counts``: xruns, worker restarts, sonified frames, streams,
        OSCQuery listeners (the OSC server adds its own)."""
        out = {"xruns": int(self.audio.xruns), "worker_restarts": self.dream.restarts if self.dream else 0}
        if hasattr(self.dream, "counts"):  # a remote worker: reconnects, refused peers and frames
            out.update(self.dream.counts())
        if self.sonify is not None:  # training runs heard: frames, refused ones, NaN/inf cues
            out.update({f"son_{k}": v for k, v in self.sonify.counts.items()})
        if self.streams is not None:
            out.update(self.streams.all_counts())
        if self.listening is not None:
            out.update(self.listening.counts())
        if self.oscquery is not None:
            out.update(self.oscquery.counts())
        return out

    def status(self) -> tuple:
        """Arguments of ``/status.reply``: worker, step, steps/s, loss, loops, bpm, bar, beat, xruns, settled.

        ``bar`` counts from 1 since the clock started and ``beat`` is the position within that bar,
        from 1.0 up to ``/clock/beats_per_bar`` + 1 (bar 8 beat 3.5: halfway through its third
        beat), as on the console's status line."""
        clock = self.player.clock
        if self.dream is None:
            worker, step, rate, loss, settled = "none", 0, 0.0, 0.0, 0.0
        else:
            last = self.dream.last
            worker, step, rate, loss = self.dream.state, last["step"], last["steps_per_s"], last["loss"]
            settled = last.get("settled", 0.0)  # 0 right after a new target, near 1 once it has settled
            if hasattr(self.dream, "where"):  # "dreaming, worker remote host:port, rtt N ms"
                worker = f"{worker}, {self.dream.where()}"
        bar, beat = divmod(float(clock.beat), clock.beats_per_bar)
        return (worker, int(step), float(rate), float(loss), int(self.player.loops_started), float(clock.bpm),
                int(bar) + 1, float(beat) + 1.0, int(self.audio.xruns), float(settled))

    def status_line(self) -> str:
        clock = self.player.clock
        bar = int(clock.bar_position)
        beat = int(clock.beat % clock.beats_per_bar) + 1
        loop = self.player.current
        if loop is None:
            what = "no loop yet (send /loop/load <path>)"
        else:
            what = f"loop {self.player.loops_started} {Path(loop.source).name or loop.source} ({loop.bars} bars)"
        source = self.registry.get("/clock/source")
        peers = f", peers {self.registry.get('/clock/peers')}" if source == "link" else ""
        stopped = "" if clock.playing else " (stopped)"
        line = (f"tempo {clock.bpm:.1f} BPM ({source}{peers}){stopped}, bar {bar + 1} beat {beat}, {what}, "
                f"xruns {self.audio.xruns}")
        if self.dream is not None:
            d = self.dream.last
            line += (f"; dream {self.dream.state}, step {d['step']}, {d['steps_per_s']:.2f} steps/s, "
                     f"loss {d['loss']:.4g}, target {d['target']:.4g}, settled {d.get('settled', 0.0):.0%}, "
                     f"loops made {self.dream.loops}")
            if hasattr(self.dream, "where"):
                line += f", {self.dream.where()}"
        return line

    def run(self, *, duration_s: Optional[float] = None, status_every_s: float = 5.0) -> None:
        """Serve until interrupted (or for ``duration_s``), printing a status line now and then.

        In offline mode the audio is rendered as fast as possible for ``duration_s``, from the
        first loop there is to hear (see :func:`earengine.engine.offline.wait_for_first_loop`)."""
        if self.audio.mode == "offline":
            if duration_s is None:
                raise ParameterError("--audio offline needs --duration")
            wait_for_first_loop(self)
            step = int(self.audio.sr * 0.1)
            for _ in range(int(duration_s / 0.1)):
                self.jobs.drain()
                self.audio.render(step)
            self.say(self.status_line())
            return
        end = None if duration_s is None else time.monotonic() + duration_s
        next_line = time.monotonic()
        while end is None or time.monotonic() < end:
            now = time.monotonic()
            if now >= next_line:
                self.say(self.status_line())
                next_line = now + status_every_s
            time.sleep(0.1 if end is None else max(0.0, min(0.1, end - now)))
