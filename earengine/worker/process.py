"""The worker process: what runs in the spawned process (torch, the ear, the dream).

:func:`worker_main` loads the ear, runs the :class:`~earengine.optvis.dream.Dreamer` step after
step and publishes every new finite loop with its step statistics through shared memory
(:class:`~earengine.worker.loops.LoopBuffer`). Messages from the engine
(:mod:`earengine.worker.messages`) reach it through a queue and apply at step boundaries.

torch, the ear and the dreamer are imported inside :func:`worker_main`: the supervisor imports
this module to name the process's entry point, and the engine process must stay free of torch.
"""

from __future__ import annotations

import os
import queue
import time
from typing import Optional

import numpy as np

from earengine.stops import ignore_stop_signals
from earengine.streams.activations import ActivationPublisher
from earengine.worker.loops import LoopBuffer
from earengine.worker.messages import (
    ActivationsNeed,
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

__all__ = ["worker_main"]


def worker_main(model: str, settings: dict, shm_name: str, inbox, outbox, device: str = "cpu",
                threads: int = 0) -> None:
    """Entry point of the worker process (spawned). Runs until it receives :class:`Stop`.

    ``threads`` 0 lets it take every core it may run on but one.

    Ctrl-C and SIGTERM sent to the whole process group are the engine's to act on: the worker
    ignores them and is stopped by its supervisor (or ends by itself when the engine is gone)."""
    ignore_stop_signals()  # they arrive blocked, see the supervisor
    parent = os.getppid()
    import torch

    from earengine.ear.checkpoint import load_ear
    from earengine.optvis.dream import Dreamer, StepStats

    # Leave a core to the engine process: its audio thread must not wait for the ear, and OpenMP
    # threads spinning on an oversubscribed machine can make each step a hundred times slower.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    torch.set_num_threads(threads or max(1, cores - 1))
    buf = LoopBuffer(name=shm_name)
    try:
        loaded = load_ear(model, device=device)
        dreamer = Dreamer(loaded.ear, settings, stats=loaded.stats, cpc=loaded.cpc, device=device)
        # start from quiet noise: from exact silence the ear hears nothing to follow for a while
        dreamer.reset("noise")
        n = dreamer.n
        outbox.put(Ready(tuple(loaded.ear.tap_names()), loaded.ear.tap_shapes(n)))
    except Exception as exc:
        outbox.put(WorkerError(f"worker cannot start: {exc}".splitlines()[0], fatal=True))
        buf.close()
        return
    inbox_state = _Inbox(dreamer, outbox)
    recent: list[float] = []
    try:
        while True:
            if os.getppid() != parent:  # the engine was killed: nobody will ever read a loop
                return
            if not inbox_state.drain(inbox):
                return
            if not dreamer.settings["/opt/run"]:
                if inbox_state.asked and inbox_state.publisher is not None:
                    # Streams asked while the loop is held: the loop playing was dreamed before
                    # anyone wanted its activations. Send it again, with them, so every frame of
                    # the loop heard carries its activations, dreaming or not.
                    with torch.no_grad():
                        loss, score, _ = dreamer.clean()
                    held = StepStats(dreamer.step_count, float(loss), float(score), 0.0, True)
                    _publish(buf, inbox_state.publisher, dreamer, held, recent, outbox)
                inbox_state.asked = False
                buf.beat()
                time.sleep(0.05)
                continue
            inbox_state.asked = False  # a dreamed loop carries its activations anyway
            stats = dreamer.step()
            recent = (recent + [stats.seconds])[-20:]
            _publish(buf, inbox_state.publisher, dreamer, stats, recent, outbox)
    finally:
        if inbox_state.publisher is not None:
            inbox_state.publisher.close()
        buf.close()


def _publish(buf, publisher, dreamer, stats, recent: list, outbox) -> None:
    """The loop, its activations (while streams ask for them) and its notes, if it is finite."""
    samples = dreamer.waveform()
    if not (stats.finite and np.all(np.isfinite(samples))):
        buf.beat()
        return
    if publisher is not None:  # before the loop: the engine pairs them by step
        _publish_activations(publisher, dreamer, stats, outbox)
    _publish_pattern(dreamer, stats, outbox)
    buf.write(samples, step=stats.step, loss=stats.loss, target=stats.target,
              steps_per_s=len(recent) / max(1e-9, sum(recent)) if recent else 0.0,
              bars=dreamer.settings["/loop/bars"], sr=dreamer.sr)


class _Inbox:
    """The worker's side of its inbox: every message that arrived, applied at a step boundary."""

    def __init__(self, dreamer, outbox) -> None:
        self.dreamer = dreamer
        self.outbox = outbox
        self.publisher: Optional[ActivationPublisher] = None  # activations, while the engine asks for them
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
                self.outbox.put(WorkerError(f"settings refused: {exc}".splitlines()[0]))
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
        if self.publisher is not None:
            self.publisher.close()
        try:
            self.publisher = ActivationPublisher(msg.buffer) if msg.buffer else None
            self.asked = self.publisher is not None
        except FileNotFoundError:  # replaced by a larger one meanwhile: its name is on the way
            self.publisher = None


def _publish_activations(publisher: ActivationPublisher, dreamer, stats, outbox) -> None:
    try:
        need = publisher.publish(dreamer, step=stats.step, loss=stats.loss)
    except Exception as exc:  # streams are a view: never let them stop the dream
        if not getattr(publisher, "failed", False):
            publisher.failed = True
            outbox.put(WorkerError(f"activations not published: {exc}".splitlines()[0]))
        return
    if need:
        outbox.put(ActivationsNeed(int(need)))


def _publish_pattern(dreamer, stats, outbox) -> None:
    """The loop's notes (grid only), before the loop: the engine pairs them by step."""
    try:
        pattern = dreamer.pattern()
    except Exception as exc:  # notes are a view of the loop: never let them stop the dream
        outbox.put(WorkerError(f"notes not published: {exc}".splitlines()[0]))
        return
    if pattern is not None:
        outbox.put(Notes(stats.step, pattern.to_dict()))
