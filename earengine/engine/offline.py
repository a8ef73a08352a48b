"""Offline rendering's one wait: audio rendered ahead of the clock must not start before there is
a loop to hear (``earengine run --audio offline``)."""

from __future__ import annotations

import time

__all__ = ["wait_for_first_loop"]


def wait_for_first_loop(engine) -> None:
    """Offline, wait (in wall time) until a loop is queued before rendering anything.

    Offline audio runs ahead of the clock, so without this ``--duration 10`` would be over in a
    second, before the dream had made its first loop: ten seconds of silence. The dream's first
    loop comes after the worker has loaded the ear and taken a step; a dream that makes none
    within the supervisor's hang time, or no dream and no loop, is said in one line."""
    engine.jobs.drain()  # a --loop or /loop/load given at the start
    if engine.player.current is not None or engine.player.pending:
        return
    if engine.dream is None:
        engine.say("offline: nothing to play (no --loop and no dream): the recording is silent")
        return
    engine.say("offline: waiting for the dream's first loop before rendering")
    deadline = time.monotonic() + engine.dream.hang_s
    while not engine.player.pending and engine.player.current is None:
        if engine.dream.state == "failed" or time.monotonic() > deadline:
            engine.say(f"offline: the dream made no loop ({engine.dream.state}): the recording is silent")
            return
        time.sleep(0.05)  # the supervisor delivers the worker's loops every 50 ms
        engine.jobs.drain()
