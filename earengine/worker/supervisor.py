"""The worker's supervisor, in the engine process: start, feed, watch, restart.

:class:`DreamSupervisor` imports no torch. It starts the worker
(:func:`~earengine.worker.process.worker_main`) with the ``spawn`` method, forwards the
registry's changes to it, hands each new finite loop to the loop player (which swaps it in at
the next bar line, keeping its place in the bar cycle), and restarts the worker with the current
parameters when it dies, hangs or stops producing finite audio. The last good loop keeps playing
meanwhile.

:meth:`DreamSupervisor.handlers` answers the commands that steer a running dream
(``/opt/reset``, ``/reg/reference``); :func:`refusals` answers them when no dream runs.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import threading
import time
from typing import Any, Callable, Mapping, Optional

import numpy as np

from earengine.audiofile import read_mono
from earengine.errors import EarEngineError, ParameterError
from earengine.optvis.params import MIX_ON_GRID
from earengine.pattern import Pattern
from earengine.stops import start_child, stop_child
from earengine.streams.activations import ActivationBuffer
from earengine.worker.loops import LoopBuffer
from earengine.worker.messages import (
    ActivationsNeed,
    FromWorker,
    Notes,
    Ready,
    Reference,
    Reset,
    Settings,
    Stop,
    StreamActivations,
    ToWorker,
    WorkerError,
)
from earengine.worker.process import worker_main

__all__ = ["DreamSupervisor", "DREAM_NAMESPACES", "DREAM_EXTRA", "DREAM_COMMANDS", "followed_addresses", "refusals"]

log = logging.getLogger("earengine.worker")

#: Registry namespaces the worker follows (``/loop/bars`` and the tempo set the loop length).
DREAM_NAMESPACES = ("opt", "target", "reg", "grid")
DREAM_EXTRA = ("/loop/bars", "/clock/bpm", "/clock/beats_per_bar")
#: Commands only a running dream answers (:meth:`DreamSupervisor.handlers`).
DREAM_COMMANDS = ("/opt/reset", "/reg/reference")


def followed_addresses(registry) -> tuple[str, ...]:
    """The registry's parameters the worker follows: its namespaces, and the loop length."""
    return tuple(s.address for s in registry if s.address.split("/")[1] in DREAM_NAMESPACES) + DREAM_EXTRA


def refusals() -> dict[str, Callable]:
    """Handlers of :data:`DREAM_COMMANDS` for an engine that does not dream: each answers that
    it needs one.

    >>> refusals()["/opt/reset"](("noise",), ())
    Traceback (most recent call last):
    ...
    earengine.errors.EarEngineError: /opt/reset needs a dreaming engine (earengine run --ear PATH)
    """

    def refuse(address: str) -> Callable:
        def handler(args: tuple, sender: tuple) -> None:
            raise EarEngineError(f"{address} needs a dreaming engine (earengine run --ear PATH)")

        return handler

    return {address: refuse(address) for address in DREAM_COMMANDS}


def _acts_floats(shapes: Mapping[str, Any]) -> int:
    """float32 values one loop's activations and masks take, from the worker's tap shapes."""
    total = 0
    for shape in shapes.values():
        c, f = shape[0], (shape[1] if len(shape) == 3 else 1)
        total += int(np.prod(shape)) + c * f
    return total


class DreamSupervisor:
    """Starts, feeds, watches and restarts the worker; a context manager.

    Parameters
    ----------
    registry : Registry
        The worker follows its ``/opt``, ``/target``, ``/reg``, ``/grid`` values and the loop length.
    model : path
        Ear checkpoint folder.
    deliver : callable(samples, stats)
        Called (on the supervisor's thread) with every new finite loop. ``stats`` holds the
        worker's statistics, ``key`` (the loop's sequence number), ``pattern`` (its notes, with
        ``/opt/param grid``) and, while streams want them, ``acts``: the loop's
        :class:`~earengine.streams.activations.ActivationSet`, to travel with it.
    say : callable(str)
        Console lines (worker started, restarted, errors).
    device : str
    hang_s : float > 0
        A worker silent this long while dreaming is considered hung and restarted.
    threads : int >= 0, optional
        Torch threads of the worker; None or 0 leaves the choice to the worker (all its cores but one).
    """

    def __init__(self, registry, model: str, *, deliver: Callable[[np.ndarray, dict], None],
                 say: Callable[[str], None] = print, device: str = "cpu", hang_s: float = 120.0,
                 threads: Optional[int] = None) -> None:
        self.registry = registry
        self.model = str(model)
        self.deliver = deliver
        self.say = say
        self.device = device
        self.hang_s = hang_s
        self.threads = threads or 0
        self.followed = followed_addresses(registry)
        self.ctx = mp.get_context("spawn")
        self.buffer = LoopBuffer()
        self.state = "starting"
        self.restarts = 0
        self.last: dict = {"step": 0, "loss": 0.0, "target": 0.0, "steps_per_s": 0.0}
        self.loops = 0
        self.info: dict = {}
        self._process = None
        self._inbox = None
        self._outbox = None
        self._seq = 0
        self._started_at = 0.0
        self._last_loop: Optional[np.ndarray] = None  # last loop delivered: a restarted worker goes on from it
        self._patterns: dict = {}  # step -> the notes of that step's loop (grid), until the loop arrives
        self._reference: Optional[np.ndarray] = None  # the /reg/reference clip, sent again on restart
        self._closing = False
        self._sub = None
        self._thread: Optional[threading.Thread] = None
        # activations for the streams, delivered with their loop; the worker computes them only
        # while wanted
        self.acts: Optional[ActivationBuffer] = None  # made when first wanted
        self._want_acts = False
        self._acts_dirty = False
        self._handlers: dict[type, Callable[[Any], None]] = {
            Ready: self._ready,
            Notes: self._notes,
            ActivationsNeed: self._acts_need,
            WorkerError: self._error,
        }

    def __enter__(self) -> "DreamSupervisor":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def settings(self) -> dict:
        values = self.registry.snapshot()
        return {k: values[k] for k in self.followed}

    def start(self) -> None:
        self._spawn()
        self._follow(self._watch, "earengine-dream")

    def _follow(self, run: Callable[[], None], name: str) -> None:
        """Forward each change of a followed parameter, and ``run`` on a thread of its own."""
        self._sub = self.registry.bind({address: self._forward for address in self.followed})
        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()

    def _unfollow(self) -> None:
        """Stop forwarding changes, and wait (a while) for :meth:`_follow`'s thread to end."""
        self._closing = True
        if self._sub is not None:
            self._sub.close()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _spawn(self) -> None:
        self._inbox = self.ctx.Queue(maxsize=1000)
        self._outbox = self.ctx.Queue()
        self._process = self.ctx.Process(
            target=worker_main, name="earengine-worker",
            args=(self.model, self.settings(), self.buffer.name, self._inbox, self._outbox, self.device, self.threads),
            daemon=True)
        start_child(self._process)  # worker_main ignores Ctrl-C and SIGTERM; the engine stops it
        self._started_at = time.time()
        self.state = "starting"

    @property
    def pid(self) -> Optional[int]:
        return self._process.pid if self._process is not None else None

    def send(self, msg: ToWorker) -> None:
        """Hand a message to the worker without ever blocking (dropped, and said, if it is stuck)."""
        try:
            self._inbox.put_nowait(msg)
        except (queue.Full, AttributeError, ValueError):
            log.warning("worker inbox full; %s dropped", type(msg).__name__)

    def reset(self, kind: str, samples: Optional[np.ndarray] = None) -> None:
        """Start the dream again from ``kind`` (``silence``, ``noise``, ``file``, ``current``)."""
        self.send(Reset(kind, samples))

    def reference(self, samples: Optional[np.ndarray]) -> None:
        """The clip ``/reg/reference`` mixes the dream toward (None: none); kept across restarts."""
        self._reference = samples
        self.send(Reference(samples))

    def handlers(self, sr: int) -> dict[str, Callable]:
        """Handlers of ``/opt/reset <kind> [path]`` and ``/reg/reference [path]`` for an OSC
        router (``handler(args, sender)``); audio files are read at ``sr``."""

        def reset(args: tuple, sender: tuple) -> None:
            kind = args[0]
            samples = None
            if kind == "file":
                if len(args) < 2:
                    raise ParameterError("/opt/reset file needs a path")
                samples = read_mono(args[1], sr=sr)
            elif len(args) > 1:
                raise ParameterError(f"/opt/reset {kind} takes no path")
            self.reset(kind, samples)

        def reference(args: tuple, sender: tuple) -> None:
            if args and self.registry.get("/opt/param") == "grid":
                raise ParameterError(f"/reg/reference: the clip is what /reg/mix pulls toward; {MIX_ON_GRID}")
            self.reference(read_mono(args[0], sr=sr) if args else None)

        return {"/opt/reset": reset, "/reg/reference": reference}

    def stream_activations(self, on: bool) -> None:
        """Ask the worker to publish every loop's activations (streams have destinations) or to
        stop (they have none). Never blocks; applied on the supervisor's thread, the only one
        that touches the activation buffer."""
        self._want_acts = bool(on)
        self._acts_dirty = True

    def _apply_acts(self) -> None:
        self._acts_dirty = False
        if not self._want_acts:
            self.send(StreamActivations(None))
        elif self.info.get("shapes"):
            self._acts_buffer(_acts_floats(self.info["shapes"]))
            self.send(StreamActivations(self.acts.name))

    def _acts_buffer(self, floats: int) -> None:
        if self.acts is not None and self.acts.capacity >= floats:
            return
        old, self.acts = self.acts, ActivationBuffer(int(floats * 1.25) + 1024)
        if old is not None:  # only this thread reads it: nobody holds a view into it now
            old.close()

    def _forward(self, change) -> None:
        self.send(Settings({change.address: change.value}))

    def _watch(self) -> None:
        while not self._closing:
            try:
                self._poll()
            except Exception:
                log.exception("dream supervisor")
            time.sleep(0.05)

    # -- what the worker says ------------------------------------------------------------------
    def _ready(self, msg: Ready) -> None:
        self.info = msg.info()
        self.state = "dreaming" if self.registry.get("/opt/run") else "paused"
        self.say(f"worker: ear loaded ({len(msg.taps)} taps), dreaming on {self.device}")
        if self._want_acts:
            self._apply_acts()

    def _notes(self, msg: Notes) -> None:
        """The notes of the loop of that step, which follows."""
        kept = {k: v for k, v in self._patterns.items() if k > msg.step - 64}
        self._patterns = {**kept, msg.step: msg.notes}

    def _acts_need(self, msg: ActivationsNeed) -> None:
        if self._want_acts:
            self._acts_buffer(msg.floats)
            self.send(StreamActivations(self.acts.name))

    def _error(self, msg: WorkerError) -> None:
        self.say(f"worker: {msg.text}")
        if msg.fatal:
            self.state = "failed"

    def _poll(self) -> None:
        if self._acts_dirty:
            self._apply_acts()
        while True:
            try:
                msg: FromWorker = self._outbox.get_nowait()
            except (queue.Empty, OSError, ValueError):
                break
            self._handlers[type(msg)](msg)
        got = self.buffer.read(self._seq)
        if got is not None:
            self._seq, samples, stats = got
            self.last = stats
            if np.all(np.isfinite(samples)) and samples.size > 1:
                self._deliver(samples, stats)
        if self.state in ("dreaming", "paused"):
            self.state = "dreaming" if self.registry.get("/opt/run") else "paused"
        alive = self._process is not None and self._process.is_alive()
        if self.state == "failed":
            return
        if not alive:
            self._restart("stopped unexpectedly")
        elif self.state == "dreaming" and time.time() - max(self.buffer.heartbeat, self._started_at) > self.hang_s:
            self._restart(f"silent for {self.hang_s:.0f} s")

    def _deliver(self, samples: np.ndarray, stats: dict) -> None:
        stats["key"] = int(self._seq)
        notes = self._patterns.pop(stats["step"], None)
        if notes is not None:
            stats["pattern"] = Pattern.from_dict(notes)
        if self.acts is not None:
            found = self.acts.read(stats["step"], taps=self.info.get("taps", ()), key=int(self._seq))
            if found is not None:
                stats["acts"] = found
        self.loops += 1
        self._last_loop = samples
        self.deliver(samples, stats)

    # -- restarts ------------------------------------------------------------------------------
    def _restart(self, why: str) -> None:
        self.restarts += 1
        self.state = "restarting"
        self.say(f"worker: {why}; restarting with the current parameters (the last loop keeps playing)")
        self._stop_process()
        self._spawn()
        # the same parameters also means the same reference clip, and the dream goes on from the
        # loop that is playing instead of starting again from silence
        if self._reference is not None:
            self.reference(self._reference)
        if self._last_loop is not None:
            self.reset("current", self._last_loop)

    def _stop_process(self) -> None:
        if self._process is None:
            return
        stop_child(self._process, (self._inbox, self._outbox), lambda: self.send(Stop()))

    def close(self) -> None:
        self._unfollow()
        self._stop_process()
        self.buffer.close()
        if self.acts is not None:
            self.acts.close()
