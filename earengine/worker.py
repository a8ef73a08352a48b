"""The worker process (torch, all the heavy work) and its supervisor in the engine process.

The worker loads the ear, runs the :class:`~earengine.optvis.dream.Dreamer` step after step, and
publishes every new loop with its step statistics through shared memory (:class:`LoopBuffer`, a
seqlock: the reader never waits and never sees half a loop). Parameter changes reach it through a
queue and apply at step boundaries.

:class:`DreamSupervisor` lives in the engine process and imports no torch. It starts the worker
with the ``spawn`` method, hands each new finite loop to the loop player (which swaps it in at
the next bar line, keeping its place in the bar cycle), and restarts the worker with the current
parameters when it dies, hangs or stops producing finite audio. The last good loop keeps playing
meanwhile.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from multiprocessing import shared_memory
from typing import Any, Callable, Mapping, Optional

import numpy as np

__all__ = ["LoopBuffer", "DreamSupervisor", "worker_main", "DREAM_NAMESPACES"]

log = logging.getLogger("earengine.worker")

#: Registry namespaces the worker follows (``/loop/bars`` and the tempo set the loop length).
DREAM_NAMESPACES = ("opt", "target", "reg", "grid")
DREAM_EXTRA = ("/loop/bars", "/clock/bpm", "/clock/beats_per_bar")
_HEADER = 16  # float64 slots: seq, n, step, loss, target, steps_per_s, bars, heartbeat, sr


class LoopBuffer:
    """The newest loop and its statistics in shared memory, written by one process, read by another.

    A seqlock: the writer makes the sequence number odd, writes, makes it even; a reader copies
    and keeps the copy only if the number was even and unchanged. Nobody blocks.

    Parameters
    ----------
    capacity : int > 0
        Most samples a loop may have.
    name : str, optional
        Attach to an existing block instead of creating one.
    """

    def __init__(self, capacity: int = 44100 * 64, *, name: Optional[str] = None) -> None:
        size = _HEADER * 8 + capacity * 4
        self._owner = name is None
        self.shm = shared_memory.SharedMemory(name=name, create=name is None, size=size)
        self.capacity = (self.shm.size - _HEADER * 8) // 4
        self.header = np.ndarray((_HEADER,), dtype=np.float64, buffer=self.shm.buf)
        self.data = np.ndarray((self.capacity,), dtype=np.float32, buffer=self.shm.buf, offset=_HEADER * 8)
        if self._owner:
            self.header[:] = 0

    @property
    def name(self) -> str:
        return self.shm.name

    def write(self, samples: np.ndarray, *, step: int, loss: float, target: float, steps_per_s: float,
              bars: int, sr: int) -> None:
        n = min(samples.size, self.capacity)
        seq = self.header[0]
        seq += int(seq) % 2  # a writer killed mid-write left it odd: start again from even
        self.header[0] = seq + 1  # odd: writing
        self.data[:n] = samples[:n]
        self.header[1:9] = (n, step, loss, target, steps_per_s, bars, time.time(), sr)
        self.header[0] = seq + 2  # even: done

    def beat(self) -> None:
        """Heartbeat without a new loop (paused, or a step that produced nothing new)."""
        self.header[7] = time.time()

    def read(self, after: float = -1) -> Optional[tuple[float, np.ndarray, dict]]:
        """``(seq, samples, stats)`` if a loop newer than ``after`` is there, else None."""
        seq = float(self.header[0])
        if seq <= after or seq == 0 or int(seq) % 2:
            return None
        head = self.header.copy()
        samples = self.data[: int(head[1])].copy()
        if float(self.header[0]) != seq:  # overwritten while copying: next time
            return None
        stats = {"step": int(head[2]), "loss": float(head[3]), "target": float(head[4]),
                 "steps_per_s": float(head[5]), "bars": int(head[6]), "time": float(head[7]), "sr": int(head[8])}
        return seq, samples, stats

    @property
    def heartbeat(self) -> float:
        return float(self.header[7])

    def close(self) -> None:
        del self.header, self.data
        self.shm.close()
        if self._owner:
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass


# ---------------------------------------------------------------------------------------------
# The worker process
# ---------------------------------------------------------------------------------------------
def worker_main(model: str, settings: dict, shm_name: str, inbox, outbox, device: str = "cpu",
                threads: int = 0) -> None:
    """Entry point of the worker process (spawned). Runs until it receives ``("stop",)``.

    ``threads`` 0 lets it take every core it may run on but one.

    Ctrl-C and SIGTERM sent to the whole process group are the engine's to act on: the worker
    ignores them and is stopped by its supervisor (or ends by itself when the engine is gone)."""
    _ignore_stop_signals()
    parent = os.getppid()
    import torch

    from earengine.ear.checkpoint import load_ear
    from earengine.optvis.dream import Dreamer

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
        shapes = {k: list(v) for k, v in loaded.ear.tap_shapes(n).items()}
        outbox.put(("ready", {"taps": list(loaded.ear.tap_names()), "shapes": shapes}))
    except Exception as exc:
        outbox.put(("error", f"worker cannot start: {exc}".splitlines()[0]))
        buf.close()
        return
    recent: list[float] = []
    publisher = None  # activations for the engine's streams, while it asks for them
    try:
        while True:
            if os.getppid() != parent:  # the engine was killed: nobody will ever read a loop
                return
            changes: dict = {}
            while True:  # drain: apply everything that arrived, at this step boundary
                try:
                    msg = inbox.get_nowait()
                except queue.Empty:
                    break
                if msg[0] == "stop":
                    return
                if msg[0] == "set":
                    changes.update(msg[1])
                elif msg[0] == "reset":
                    if changes:
                        dreamer.configure(changes)
                        changes = {}
                    dreamer.reset(msg[1], msg[2])
                elif msg[0] == "reference":
                    dreamer.set_reference(msg[1])
                elif msg[0] == "acts":  # the engine's streams want activations (name) or not (None)
                    publisher = _activation_publisher(publisher, msg[1])
            if changes:
                try:
                    dreamer.configure(changes)
                except Exception as exc:
                    outbox.put(("error", f"settings refused: {exc}".splitlines()[0]))
            if not dreamer.settings["/opt/run"]:
                buf.beat()
                time.sleep(0.05)
                continue
            stats = dreamer.step()
            recent = (recent + [stats.seconds])[-20:]
            samples = dreamer.waveform()
            if stats.finite and np.all(np.isfinite(samples)):
                if publisher is not None:  # before the loop: the engine pairs them by step
                    _publish_activations(publisher, dreamer, stats, outbox)
                _publish_pattern(dreamer, stats, outbox)
                buf.write(samples, step=stats.step, loss=stats.loss, target=stats.target,
                          steps_per_s=len(recent) / max(1e-9, sum(recent)), bars=dreamer.settings["/loop/bars"],
                          sr=dreamer.sr)
            else:
                buf.beat()
    finally:
        if publisher is not None:
            publisher.close()
        buf.close()


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _ignore_stop_signals() -> None:
    """In the worker: ignore Ctrl-C and SIGTERM for good (they arrive blocked, see _spawn)."""
    if threading.current_thread() is not threading.main_thread():  # run in a thread (a test): not ours
        return
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


def _activation_publisher(old, name: Optional[str]):
    from earengine.viz.frames import ActivationPublisher

    if old is not None:
        old.close()
    try:
        return ActivationPublisher(name) if name else None
    except FileNotFoundError:  # replaced by a larger one meanwhile: its name is on the way
        return None


def _publish_activations(publisher, dreamer, stats, outbox) -> None:
    try:
        need = publisher.publish(dreamer, step=stats.step, loss=stats.loss)
    except Exception as exc:  # streams are a view: never let them stop the dream
        if not getattr(publisher, "failed", False):
            publisher.failed = True
            outbox.put(("error", f"activations not published: {exc}".splitlines()[0]))
        return
    if need:
        outbox.put(("acts_need", need))


def _publish_pattern(dreamer, stats, outbox) -> None:
    """The loop's notes (grid only), before the loop: the engine pairs them by step."""
    try:
        pattern = dreamer.pattern()
    except Exception as exc:  # notes are a view of the loop: never let them stop the dream
        outbox.put(("error", f"notes not published: {exc}".splitlines()[0]))
        return
    if pattern is not None:
        outbox.put(("pattern", (stats.step, pattern.to_dict())))


def _followed(address: str) -> bool:
    """Whether the worker follows this registry address."""
    return address.split("/")[1] in DREAM_NAMESPACES or address in DREAM_EXTRA


def _acts_floats(shapes: Mapping[str, Any]) -> int:
    """float32 values one loop's activations and masks take, from the worker's tap shapes."""
    total = 0
    for shape in shapes.values():
        c, f = shape[0], (shape[1] if len(shape) == 3 else 1)
        total += int(np.prod(shape)) + c * f
    return total


# ---------------------------------------------------------------------------------------------
# Supervision, in the engine process
# ---------------------------------------------------------------------------------------------
class DreamSupervisor:
    """Starts, feeds, watches and restarts the worker; a context manager.

    Parameters
    ----------
    registry : Registry
        The worker follows its ``/opt``, ``/target``, ``/reg`` values and the loop length.
    model : path
        Ear checkpoint folder.
    deliver : callable(samples, stats)
        Called (on the supervisor's thread) with every new finite loop.
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
        self._seq = 0.0
        self._started_at = 0.0
        self._last_loop: Optional[np.ndarray] = None  # last loop delivered: a restarted worker goes on from it
        self._patterns: dict = {}  # step -> the notes of that step's loop (grid), until the loop arrives
        self._reference: Optional[np.ndarray] = None  # the /reg/reference clip, sent again on restart
        self._closing = False
        self._sub = None
        self._thread: Optional[threading.Thread] = None
        # activations for the streams: called with each new loop's ActivationSet before the loop
        # is delivered; the worker computes them only while wanted
        self.on_activations: Optional[Callable[[Any], None]] = None
        self.acts = None  # ActivationBuffer, made when first wanted
        self._want_acts = False
        self._acts_dirty = False

    def __enter__(self) -> "DreamSupervisor":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def settings(self) -> dict:
        return {k: v for k, v in self.registry.snapshot().items() if _followed(k)}

    def start(self) -> None:
        self._spawn()
        self._sub = self.registry.subscribe(self._on_change)
        self._thread = threading.Thread(target=self._watch, name="earengine-dream", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        self._inbox = self.ctx.Queue(maxsize=1000)
        self._outbox = self.ctx.Queue()
        self._process = self.ctx.Process(
            target=worker_main, name="earengine-worker",
            args=(self.model, self.settings(), self.buffer.name, self._inbox, self._outbox, self.device, self.threads),
            daemon=True)
        # Blocked in this thread while the worker starts, Ctrl-C and SIGTERM stay blocked in the
        # child (a signal mask survives fork and exec) until worker_main ignores them: a Ctrl-C
        # while it imports torch cannot print a traceback from it.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            self._process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        self._started_at = time.time()
        self.state = "starting"

    @property
    def pid(self) -> Optional[int]:
        return self._process.pid if self._process is not None else None

    def send(self, *msg: Any) -> None:
        """Hand a message to the worker without ever blocking (dropped, and said, if it is stuck)."""
        if msg[0] == "reference":
            self._reference = msg[1]
        try:
            self._inbox.put_nowait(msg)
        except (queue.Full, AttributeError, ValueError):
            log.warning("worker inbox full; %s dropped", msg[0])

    def stream_activations(self, on: bool) -> None:
        """Ask the worker to publish every loop's activations (streams have destinations) or to
        stop (they have none). Never blocks; applied on the supervisor's thread, the only one
        that touches the activation buffer."""
        self._want_acts = bool(on)
        self._acts_dirty = True

    def _apply_acts(self) -> None:
        self._acts_dirty = False
        if not self._want_acts:
            self.send("acts", None)
        elif self.info.get("shapes"):
            self._acts_buffer(_acts_floats(self.info["shapes"]))
            self.send("acts", self.acts.name)

    def _acts_buffer(self, floats: int) -> None:
        from earengine.viz.frames import ActivationBuffer

        if self.acts is not None and self.acts.capacity >= floats:
            return
        old, self.acts = self.acts, ActivationBuffer(int(floats * 1.25) + 1024)
        if old is not None:  # only this thread reads it: nobody holds a view into it now
            old.close()

    def _on_change(self, change) -> None:
        if _followed(change.address):
            self.send("set", {change.address: change.value})

    def _watch(self) -> None:
        while not self._closing:
            try:
                self._poll()
            except Exception:
                log.exception("dream supervisor")
            time.sleep(0.05)

    def _poll(self) -> None:
        if self._acts_dirty:
            self._apply_acts()
        while True:
            try:
                kind, payload = self._outbox.get_nowait()
            except (queue.Empty, OSError, ValueError):
                break
            if kind == "ready":
                self.info = payload
                self.state = "dreaming" if self.registry.get("/opt/run") else "paused"
                self.say(f"worker: ear loaded ({len(payload['taps'])} taps), dreaming on {self.device}")
                if self._want_acts:
                    self._apply_acts()
            elif kind == "pattern":  # the notes of the loop of that step, which follows
                step, notes = payload
                self._patterns = {**{k: v for k, v in self._patterns.items() if k > step - 64}, step: notes}
            elif kind == "acts_need":
                if self._want_acts:
                    self._acts_buffer(int(payload))
                    self.send("acts", self.acts.name)
            elif kind == "error":
                self.say(f"worker: {payload}")
                if payload.startswith("worker cannot start"):
                    self.state = "failed"
        got = self.buffer.read(self._seq)
        if got is not None:
            self._seq, samples, stats = got
            self.last = stats
            if np.all(np.isfinite(samples)) and samples.size > 1:
                stats["key"] = int(self._seq)
                notes = self._patterns.pop(stats["step"], None)
                if notes is not None:
                    from earengine.pattern import Pattern

                    stats["pattern"] = Pattern.from_dict(notes)
                if self.acts is not None and self.on_activations is not None:
                    found = self.acts.read(stats["step"], taps=self.info.get("taps", ()), key=int(self._seq))
                    if found is not None:
                        self.on_activations(found)
                self.loops += 1
                self._last_loop = samples
                self.deliver(samples, stats)
        if self.state in ("dreaming", "paused"):
            self.state = "dreaming" if self.registry.get("/opt/run") else "paused"
        alive = self._process is not None and self._process.is_alive()
        if self.state == "failed":
            return
        if not alive:
            self._restart("stopped unexpectedly")
        elif self.state == "dreaming" and time.time() - max(self.buffer.heartbeat, self._started_at) > self.hang_s:
            self._restart(f"silent for {self.hang_s:.0f} s")

    def _restart(self, why: str) -> None:
        self.restarts += 1
        self.state = "restarting"
        self.say(f"worker: {why}; restarting with the current parameters (the last loop keeps playing)")
        self._stop_process()
        self._spawn()
        # the same parameters also means the same reference clip, and the dream goes on from the
        # loop that is playing instead of starting again from silence
        if self._reference is not None:
            self.send("reference", self._reference)
        if self._last_loop is not None:
            self.send("reset", "current", self._last_loop)

    def _stop_process(self) -> None:
        if self._process is None:
            return
        if self._process.is_alive():
            self.send("stop")
            self._process.join(timeout=3)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(timeout=3)
        for q in (self._inbox, self._outbox):
            try:
                q.cancel_join_thread()
                q.close()
            except Exception:
                pass

    def close(self) -> None:
        self._closing = True
        if self._sub is not None:
            self._sub.close()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._stop_process()
        self.buffer.close()
        if self.acts is not None:
            self.acts.close()
