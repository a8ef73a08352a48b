"""Clean stops for every command: Ctrl-C, SIGTERM and a closed pipe end in one plain line at most.

:func:`stop_signals` turns the first SIGINT or SIGTERM into ``KeyboardInterrupt`` (so ``with``
blocks close what they opened, in order) and then ignores both until the command has finished
stopping: a second Ctrl-C cannot cut a stop short and leave ports or shared memory behind.
:func:`quiet_stdout` is what to do when the reader of our output went away
(``earengine params --json | head``): nothing more is written, and nothing is said.
:func:`start_child` and :func:`stop_child` start and stop the engine's helper processes (the
dreaming worker, the listener) so that a stop signal reaches them only through the engine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Callable, Iterable, Iterator, Optional

__all__ = ["STOP_SIGNALS", "stop_signals", "ignore_stop_signals", "ordinary_priority", "start_child", "stop_child",
           "quiet_stdout"]

#: The signals that ask a command to stop.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def ignore_stop_signals() -> None:
    """In a child the engine stops in order (the worker, the layout process): ignore Ctrl-C and
    SIGTERM sent to the whole process group, for good, and unblock them (a child may be started
    with them blocked). Does nothing outside the main thread (a test running the child's body)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def ordinary_priority() -> Optional[tuple]:
    """This thread back to the system's ordinary scheduling, where it ran above it (the engine's
    threads run real-time below the audio: :meth:`~earengine.synth.server.AudioServer.raise_threads`);
    a child of the engine calls it first (the layout process), as fork and exec keep a thread's
    scheduling. Returns the (policy, param) it left, to take back; None where it was ordinary."""
    with contextlib.suppress(OSError, AttributeError):  # AttributeError: not Linux
        policy = os.sched_getscheduler(0)
        if policy != os.SCHED_OTHER:
            left = (policy, os.sched_getparam(0))
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            return left
    return None


def start_child(process) -> None:
    """Start a ``multiprocessing`` process with Ctrl-C and SIGTERM blocked in this thread while it
    starts: they stay blocked in the child (a signal mask survives fork and exec) until it calls
    :func:`ignore_stop_signals`, so a Ctrl-C while it imports torch cannot print a traceback
    from it. The thread starts it at ordinary priority (a niced worker never inherits the
    engine's real-time threads' priority), then takes its own back."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    left = ordinary_priority()
    try:
        process.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        if left is not None:
            with contextlib.suppress(OSError):
                os.sched_setscheduler(0, *left)


def stop_child(process, queues: Iterable, ask: Callable[[], None], *, wait_s: float = 3.0) -> None:
    """Stop a child started by :func:`start_child`: ``ask()`` it (its stop message), wait
    ``wait_s``, then kill it; close its ``queues`` without waiting for what they still hold."""
    if process.is_alive():
        ask()
        process.join(timeout=wait_s)
        if process.is_alive():
            process.kill()
            process.join(timeout=wait_s)
    for q in queues:
        try:
            q.cancel_join_thread()
            q.close()
        except Exception:
            pass


def _stop(signum: int, frame: object) -> None:
    for sig in STOP_SIGNALS:  # from here on, the stop runs to its end
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise ``KeyboardInterrupt`` once; the handlers of
    before are back afterwards. A SIGINT ignored on entry (a job started in the background) stays
    ignored. Outside the main thread this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        if before[sig] is not signal.SIG_IGN or sig == signal.SIGTERM:
            signal.signal(sig, _stop)
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def quiet_stdout() -> None:
    """Point stdout at /dev/null: the pipe it wrote to is closed, and Python's own flush at exit
    must not fail a second time (this is the recipe of Python's documentation on SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real stdout (captured in tests)
        pass
