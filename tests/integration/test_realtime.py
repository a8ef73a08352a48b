"""The audio first, the engine's own threads next: on a real-time JACK server the engine's audio
thread runs at jackd's real-time priority, the engine's other threads just below it (above every
ordinary process, so none is set aside while it holds the lock pyo takes for every buffer), and
its children (the dreaming worker, the listener) at ordinary, niced priority."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from earengine.synth.server import THREAD_PRIORITY
from tests.helpers.engines import engine_process
from tests.helpers.jack import launch, stop
from tests.helpers.waits import wait_until

EAR = "models/ear-default"


def threads(pid: int) -> dict[int, tuple[int, int]]:
    """Each thread of ``pid``: (scheduling policy, real-time priority)."""
    out = {}
    for name in os.listdir(f"/proc/{pid}/task"):
        tid = int(name)
        try:
            out[tid] = (os.sched_getscheduler(tid), os.sched_getparam(tid).sched_priority)
        except OSError:  # gone meanwhile
            pass
    return out


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    kids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(name))
    return kids


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


@pytest.fixture
def realtime_jack(tmp_path):
    try:
        server, proc = launch(f"earengine-rt-{os.getpid()}-{uuid.uuid4().hex[:6]}", tmp_path / "jackd.log",
                              realtime=True)
    except RuntimeError as exc:
        pytest.skip(f"no real-time jackd here: {str(exc).splitlines()[0]}")
    try:
        yield server
    finally:
        stop(proc)


def test_the_engines_threads_run_just_below_its_audio_and_its_children_ordinary(realtime_jack):
    """(Listening from the start, as ``--set /listen/run=1`` asks, starts the listener too.)"""
    with engine_process(realtime_jack, ("--ear", EAR, "--input", "--set", "/listen/run=1"), ready_s=60) as eng:
        pid = eng.proc.pid
        if any("audio thread is not real-time" in line for line in eng.lines):
            pytest.skip("the system grants this jackd no real-time priority")
        audio = [prio for policy, prio in threads(pid).values() if policy == os.SCHED_FIFO]
        assert audio and min(audio) > THREAD_PRIORITY, "no audio thread above the engine's own"
        # the main thread raised itself before it started the others: they inherit it
        assert threads(pid)[pid] == (os.SCHED_RR, THREAD_PRIORITY)
        assert sum(1 for policy, _ in threads(pid).values() if policy == os.SCHED_RR) >= 5
        # every child ordinary, every thread; the worker and the listener niced as well
        spawned = lambda: [c for c in children(pid) if "spawn_main" in cmdline(c)]  # noqa: E731
        assert wait_until(lambda: len(spawned()) >= 2, 60.0), \
            f"no worker and listener processes: {[cmdline(c) for c in children(pid)]} {eng.lines[-8:]}"
        assert wait_until(lambda: all(os.getpriority(os.PRIO_PROCESS, c) > 0 for c in spawned()), 30.0), \
            "the worker or the listener is not niced"
        for child in children(pid):
            assert {policy for policy, _ in threads(child).values()} == {os.SCHED_OTHER}, cmdline(child)
