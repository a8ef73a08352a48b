"""The listener process: the ear on the last seconds of the input, over and over (spawned).

:func:`listener_main` loads the ear, then, while ``/listen/run`` is on, takes the newest
receptive field of input from the :class:`~earengine.listen.ring.InputRing` each time at least
one scaleogram hop has come in, runs the ear on it and publishes every tap's activation over
that window to an :class:`~earengine.streams.activations.ActivationBuffer` (the set's ``loss``
slot carries the wall-clock time the window's last sample was heard). It runs niced, on one torch
thread: the audio and the dreaming worker come first. torch is imported inside the function, so
the engine process, which names this entry point, stays free of it.

Messages (plain tuples): in ``("run", bool)``, ``("acts", buffer name)``, ``("stop",)``; out
``("ready", taps, window_s, floats)``, ``("forwards", [ms, …])`` (how long the ear's forwards took,
about once a second) and ``("error", text, fatal)``.
"""

from __future__ import annotations

import os
import queue
import time

import numpy as np

from earengine.listen.ring import InputRing
from earengine.stops import ignore_stop_signals
from earengine.streams.activations import ActivationBuffer

__all__ = ["listener_main", "NICE", "MAX_WINDOW_S"]

#: How much nicer than the engine the listener runs.
NICE = 10
#: The longest window heard at once, whatever the ear's receptive field.
MAX_WINDOW_S = 6.0
#: Seconds between two reports of the forwards' times.
REPORT_S = 1.0


def listener_main(model: str, ring_name: str, inbox, outbox, threads: int = 1) -> None:
    """Entry point of the listener process. Runs until told to stop or the engine is gone."""
    ignore_stop_signals()
    try:
        os.nice(NICE)
    except OSError:
        pass
    parent = os.getppid()
    import torch

    from earengine.ear.checkpoint import load_ear
    from earengine.streams.frames import as_3d

    torch.set_num_threads(max(1, int(threads)))
    ring = InputRing(name=ring_name)
    acts = None
    try:
        ear = load_ear(model).ear
        sr = int(ear.scaleogram.config.sr)
        hop = int(ear.hop_length)
        n_window = min(int(ear.receptive_field_frames()) * hop, int(MAX_WINDOW_S * sr))
        taps = tuple(ear.tap_names())
        with torch.no_grad():
            probe = ear(torch.zeros(1, n_window))
        floats = sum(int(np.prod(a.shape)) for a in probe.values())
        outbox.put(("ready", taps, n_window / sr, floats))
    except Exception as exc:
        outbox.put(("error", f"listener cannot start: {exc}".splitlines()[0], True))
        ring.close()
        return
    run, count, last_head = False, 0, -(1 << 62)
    took: list[float] = []
    report_at = time.monotonic() + REPORT_S
    try:
        while os.getppid() == parent:
            while True:
                try:
                    msg = inbox.get_nowait()
                except queue.Empty:
                    break
                if msg[0] == "stop":
                    return
                if msg[0] == "run":
                    run = bool(msg[1])
                elif msg[0] == "acts":
                    if acts is not None:
                        acts.close()
                    acts = ActivationBuffer(name=msg[1])
            if not run or acts is None:
                time.sleep(0.05)
                continue
            state = ring.state()
            rate = state.sr
            if state.head - last_head < hop * rate / sr:
                time.sleep(0.004)  # less than a hop is new: nothing more to hear yet
                continue
            n_in = int(round(n_window * rate / sr))
            x = ring.span(max(0, state.head - n_in), state.head)
            if x is None:
                continue
            if x.size < n_in:
                x = np.concatenate([np.zeros(n_in - x.size, np.float32), x])
            if rate != sr:  # the ear hears at its own rate
                x = np.interp(np.arange(n_window) * (rate / sr), np.arange(n_in), x).astype(np.float32)
            t0 = time.perf_counter()
            with torch.no_grad():
                out = ear(torch.from_numpy(np.ascontiguousarray(x))[None, :])
            took.append((time.perf_counter() - t0) * 1000.0)
            if time.monotonic() >= report_at:
                report_at = time.monotonic() + REPORT_S
                outbox.put(("forwards", took))
                took = []
            window = {t: as_3d(a[0].float().numpy()) for t, a in out.items()}
            if not acts.write(count, state.time_s, window, {}, taps=taps):
                outbox.put(("error", "listener: activations do not fit their buffer", False))
                time.sleep(0.5)
                continue
            count += 1
            last_head = state.head
    finally:
        if acts is not None:
            acts.close()
        ring.close()
