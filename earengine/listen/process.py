"""The listener process: the ear on the last seconds of the input, over and over (spawned).

:func:`listener_main` loads the ear, then, while ``/listen/run`` is on, hears the input in the
:class:`~earengine.listen.ring.InputRing` each time a whole scaleogram hop has come in, on the
ear's hop grid (counted from the ring's first sample): a
:class:`~earengine.listen.streaming.StreamingEar` computes only what that hop changes and gives
every tap over the newest 16 hops, which go to an
:class:`~earengine.streams.activations.ActivationBuffer` (the set's ``loss`` slot carries the
wall-clock time the hop's last sample was heard). Hops that came while it worked are heard
together by the next one (the streams' live frame spans them). It runs niced, on one torch
thread: the audio and the dreaming worker come first. torch is imported inside the function, so
the engine process, which names this entry point, stays free of it.

Messages (plain tuples): in ``("run", bool)``, ``("acts", buffer name)``, ``("stop",)``; out
``("ready", taps, window_s, floats)``, ``("forwards", [ms, …])`` (how long each hop's hearing took,
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

__all__ = ["listener_main", "NICE"]

#: How much nicer than the engine the listener runs.
NICE = 10
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
    from earengine.listen.streaming import StreamingEar
    from earengine.streams.frames import as_3d

    torch.set_num_threads(max(1, int(threads)))
    ring = InputRing(name=ring_name)
    acts = None
    try:
        streaming = StreamingEar(load_ear(model).ear)
        sr, hop = int(streaming.ear.scaleogram.config.sr), streaming.hop
        taps = streaming.taps
        probe = streaming.hear(torch.zeros(1, streaming.tail_samples), 0,
                               lambda n: torch.zeros(1, n))
        floats = sum(int(np.prod(a.shape)) for a in probe.values())
        streaming = StreamingEar(streaming.ear)  # forget the probe's silence
        outbox.put(("ready", taps, streaming.window_s, floats))
    except Exception as exc:
        outbox.put(("error", f"listener cannot start: {exc}".splitlines()[0], True))
        ring.close()
        return
    run, count, last_k = False, 0, -1
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
            k = int(state.head * sr // state.sr) // hop  # the newest whole hop of the ear's grid
            if k <= last_k:
                time.sleep(0.004)  # no new hop yet: nothing more to hear
                continue
            t0 = time.perf_counter()
            x = _read(ring, state, k * hop, streaming.tail_samples, sr)
            out = None if x is None else streaming.hear(x, k, lambda n: _read(ring, state, k * hop, n, sr))
            if out is None:
                last_k = k
                continue
            took.append((time.perf_counter() - t0) * 1000.0)
            if time.monotonic() >= report_at:
                report_at = time.monotonic() + REPORT_S
                outbox.put(("forwards", took))
                took = []
            window = {t: as_3d(a[0].float().numpy()) for t, a in out.items()}
            heard = state.time_s - (state.head - k * hop * state.sr / sr) / state.sr  # when sample k·hop came
            if not acts.write(count, heard, window, {}, taps=taps):
                outbox.put(("error", "listener: activations do not fit their buffer", False))
                time.sleep(0.5)
                continue
            count += 1
            last_k = k
    finally:
        if acts is not None:
            acts.close()
        ring.close()



def _read(ring: InputRing, state, end: int, n: int, sr: int):
    """:meth:`InputRing.at_rate` as a (1, n) tensor, or None."""
    import torch

    got = ring.at_rate(state, end, n, sr)
    return None if got is None else torch.from_numpy(got)[None, :]
