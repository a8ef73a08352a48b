"""The worker process: what runs in the spawned process (torch, the ear, the dream).

:func:`worker_main` loads the ear, runs the :class:`~earengine.optvis.dream.Dreamer` step after
step (:func:`dream`) and publishes every new finite loop with its step statistics through an
:class:`Outlet`: locally (:class:`SharedOutlet`) through shared memory
(:class:`~earengine.worker.loops.LoopBuffer`), on another machine over the network
(:class:`earengine.worker.remote.WireOutlet`). Messages from the engine
(:mod:`earengine.worker.messages`) reach it through a queue and apply at step boundaries.

torch, the ear and the dreamer are imported inside :func:`worker_main`: the supervisor imports
this module to name the process's entry point, and the engine process must stay free of torch.
"""

from __future__ import annotations

import os
import queue
import time
from typing import Callable, Optional

import numpy as np

from earengine.stops import ignore_stop_signals
from earengine.streams.activations import ActivationPublisher
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

__all__ = ["worker_main", "load_dreamer", "dream", "Outlet", "SharedOutlet"]

#: How much nicer than the engine the worker runs (as the listener does: earengine.listen.process).
NICE = 10


def worker_main(model: str, settings: dict, shm_name: str, inbox, outbox, device: str = "cpu",
                threads: int = 0) -> None:
    """Entry point of the worker process (spawned). Runs until it receives :class:`Stop`.

    ``threads`` 0 lets it take every core it may run on but one.

    Ctrl-C and SIGTERM sent to the whole process group are the engine's to act on: the worker
    ignores them and is stopped by its supervisor (or ends by itself when the engine is gone)."""
    ignore_stop_signals()  # they arrive blocked, see the supervisor
    try:
        os.nice(NICE)  # the audio comes first
    except OSError:
        pass
    parent = os.getppid()
    outlet = SharedOutlet(LoopBuffer(name=shm_name), outbox)
    try:
        dreamer = load_dreamer(model, settings, outlet, device=device, threads=threads)
        if dreamer is not None:
            # the engine was killed: nobody will ever read a loop
            dream(dreamer, inbox, outlet, alive=lambda: os.getppid() == parent)
    finally:
        outlet.close()


def load_dreamer(model: str, settings: dict, outlet: "Outlet", *, device: str = "cpu", threads: int = 0):
    """The ear loaded and a :class:`~earengine.optvis.dream.Dreamer` made with ``settings``,
    starting from quiet noise; :class:`Ready` said through ``outlet``. None (and a fatal
    :class:`WorkerError` said) when it cannot start."""
    import torch

    from earengine.ear.checkpoint import load_ear
    from earengine.optvis.dream import Dreamer

    # Leave a core to the engine process: its audio thread must not wait for the ear, and OpenMP
    # threads spinning on an oversubscribed machine can make each step a hundred times slower.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    torch.set_num_threads(threads or max(1, cores - 1))
    try:
        loaded = load_ear(model, device=device)
        dreamer = Dreamer(loaded.ear, settings, stats=loaded.stats, cpc=loaded.cpc, device=device)
        # start from quiet noise: from exact silence the ear hears nothing to follow for a while
        dreamer.reset("noise")
        outlet.say(Ready(tuple(loaded.ear.tap_names()), loaded.ear.tap_shapes(dreamer.n)))
    except Exception as exc:
        outlet.say(WorkerError(f"worker cannot start: {exc}".splitlines()[0], fatal=True))
        return None
    return dreamer


class Outlet:
    """Where the dream publishes: the newest loop, heartbeats, messages for the engine, and
    the activations the streams ask for. :class:`SharedOutlet` is the local worker's (shared
    memory and a queue); :class:`earengine.worker.remote.WireOutlet` sends over the network.
    """

    def say(self, msg: FromWorker) -> None:
        """A message for the supervisor (:class:`Ready`, :class:`Notes`, :class:`WorkerError` …)."""
        raise NotImplementedError

    def loop(self, samples: np.ndarray, *, step: int, loss: float, target: float, steps_per_s: float,
             bars: int, sr: int, settled: float = 0.0) -> None:
        """A new finite loop and its step statistics (its notes and activations came just before;
        ``settled``: how settled the dream is, 0 … 1)."""
        raise NotImplementedError

    def beat(self) -> None:
        """Alive, without a new loop."""

    def stream(self, msg: StreamActivations) -> bool:
        """The engine asks for activations (or stops asking); True when they are published now."""
        return False

    def activations(self, dreamer, stats) -> None:
        """Publish the activations of the dreamer's current loop (only called while streamed)."""

    def close(self) -> None:
        pass


class SharedOutlet(Outlet):
    """The local worker's outlet: loops in a :class:`LoopBuffer`, activations in the engine's
    :class:`~earengine.streams.activations.ActivationBuffer`, messages on the outbox queue."""

    def __init__(self, buffer: LoopBuffer, outbox) -> None:
        self.buffer = buffer
        self.outbox = outbox
        self.publisher: Optional[ActivationPublisher] = None  # activations, while the engine asks for them

    def say(self, msg: FromWorker) -> None:
        self.outbox.put(msg)

    def loop(self, samples: np.ndarray, **stats) -> None:
        self.buffer.write(samples, **stats)

    def beat(self) -> None:
        self.buffer.beat()

    def stream(self, msg: StreamActivations) -> bool:
        if self.publisher is not None:
            self.publisher.close()
        try:
            self.publisher = ActivationPublisher(msg.buffer) if msg.buffer else None
        except FileNotFoundError:  # replaced by a larger one meanwhile: its name is on the way
            self.publisher = None
        return self.publisher is not None

    def activations(self, dreamer, stats) -> None:
        if self.publisher is None:
            return
        try:
            need = self.publisher.publish(dreamer, step=stats.step, loss=stats.loss)
        except Exception as exc:  # streams are a view: never let them stop the dream
            if not getattr(self.publisher, "failed", False):
                self.publisher.failed = True
                self.say(WorkerError(f"activations not published: {exc}".splitlines()[0]))
            return
        if need:
            self.say(ActivationsNeed(int(need)))

    def close(self) -> None:
        if self.publisher is not None:
            self.publisher.close()
        self.buffer.close()


def dream(dreamer, inbox, outlet: Outlet, *, alive: Callable[[], bool] = lambda: True) -> None:
    """Step the dream and publish each new finite loop through ``outlet`` until :class:`Stop`
    arrives on ``inbox`` (anything with ``get_nowait``) or ``alive()`` turns False."""
    import torch

    from earengine.optvis.dream import StepStats

    inbox_state = _Inbox(dreamer, outlet)
    recent: list[float] = []
    while True:
        if not alive():
            return
        if not inbox_state.drain(inbox):
            return
        if not dreamer.settings["/opt/run"]:
            if inbox_state.asked and inbox_state.streaming:
                # Streams asked while the loop is held: the loop playing was dreamed before
                # anyone wanted its activations. Send it again, with them, so every frame of
                # the loop heard carries its activations, dreaming or not.
                with torch.no_grad():
                    loss, score, _ = dreamer.clean()
                held = StepStats(dreamer.step_count, float(loss), float(score), 0.0, True, dreamer.control.settled)
                _publish(outlet, inbox_state.streaming, dreamer, held, recent)
            inbox_state.asked = False
            outlet.beat()
            time.sleep(0.05)
            continue
        inbox_state.asked = False  # a dreamed loop carries its activations anyway
        stats = dreamer.step()
        recent = (recent + [stats.seconds])[-20:]
        _publish(outlet, inbox_state.streaming, dreamer, stats, recent)


def _publish(outlet: Outlet, streaming: bool, dreamer, stats, recent: list) -> None:
    """The loop, its activations (while streams ask for them) and its notes, if it is finite."""
    samples = dreamer.heard()  # the loop kept, never a step the next one takes back
    if not (stats.finite and np.all(np.isfinite(samples))):
        outlet.beat()
        return
    if streaming:  # before the loop: the engine pairs them by step
        outlet.activations(dreamer, stats)
    _publish_pattern(dreamer, stats, outlet)
    outlet.loop(samples, step=stats.step, loss=stats.loss, target=stats.target,
                steps_per_s=len(recent) / max(1e-9, sum(recent)) if recent else 0.0,
                bars=dreamer.settings["/loop/bars"], sr=dreamer.sr, settled=stats.settled)


class _Inbox:
    """The worker's side of its inbox: every message that arrived, applied at a step boundary."""

    def __init__(self, dreamer, outlet: Outlet) -> None:
        self.dreamer = dreamer
        self.outlet = outlet
        self.streaming = False  # activations are published, while the engine asks for them
        self.asked = False  # the engine has just asked for activations
        self._changes: dict = {}
        self._handlers = {
            Settings: self._settings,
            Reset: self._reset,
            Reference: self._reference,
            StreamActivations: self._stream,
        }

    def drain(self, inbox) -> bool:
        """Apply everything that arrived; False when told to stop."""
        self._changes = {}
        while True:
            try:
                msg: ToWorker = inbox.get_nowait()
            except queue.Empty:
                break
            if isinstance(msg, Stop):
                return False
            self._handlers[type(msg)](msg)
        if self._changes:
            try:
                self.dreamer.configure(self._changes)
            except Exception as exc:
                self.outlet.say(WorkerError(f"settings refused: {exc}".splitlines()[0]))
        return True

    def _settings(self, msg: Settings) -> None:
        self._changes.update(msg.values)

    def _reset(self, msg: Reset) -> None:
        if self._changes:  # what came before the reset applies to it
            self.dreamer.configure(self._changes)
            self._changes = {}
        self.dreamer.reset(msg.kind, msg.samples)

    def _reference(self, msg: Reference) -> None:
        self.dreamer.set_reference(msg.samples)

    def _stream(self, msg: StreamActivations) -> None:
        self.streaming = self.outlet.stream(msg)
        self.asked = self.streaming


def _publish_pattern(dreamer, stats, outlet: Outlet) -> None:
    """The loop's notes (grid only), before the loop: the engine pairs them by step."""
    try:
        pattern = dreamer.heard_pattern()
    except Exception as exc:  # notes are a view of the loop: never let them stop the dream
        outlet.say(WorkerError(f"notes not published: {exc}".splitlines()[0]))
        return
    if pattern is not None:
        outlet.say(Notes(stats.step, pattern.to_dict()))
