"""The queue of slow commands: one worker thread that runs them in order, off the receive path.

Commands declared ``later`` in the registry (file I/O: loading a loop, saving a preset) run here,
so that the OSC dispatch thread never waits on a disk; ``/sync`` goes through the same queue, so
``/synced`` follows every earlier slow command. :class:`~earengine.control.osc.OscRouter` submits
to it; the engine owns it.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, Optional

from earengine.errors import EarEngineError

__all__ = ["JobQueue"]

log = logging.getLogger("earengine.osc")


#: Most slow commands waiting at once.
MAX_JOBS = 1024


class JobQueue:
    """One worker thread that runs slow commands (file I/O) in order, off the receive path.

    ``/sync`` goes through the same queue, so ``/synced`` follows every earlier slow command.
    A context manager; :meth:`drain` waits until everything queued so far has run (for tests).

    Parameters
    ----------
    name : str
        The worker thread's name.

    At most :data:`MAX_JOBS` wait; one more is refused with :class:`~earengine.errors.EarEngineError`
    (``busy``), which the router answers ``/fail``.

    >>> done = []
    >>> with JobQueue() as jobs:
    ...     jobs.submit(lambda: done.append(1))
    ...     jobs.submit(lambda: done.append(2))
    ...     jobs.drain()
    >>> done
    [1, 2]
    """

    def __init__(self, name: str = "earengine-jobs") -> None:
        self._queue: "queue.Queue[Optional[Callable[[], None]]]" = queue.Queue(maxsize=MAX_JOBS)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], None]) -> None:
        """Queue ``fn()`` to run after everything queued before it; never blocks."""
        try:
            self._queue.put_nowait(fn)
        except queue.Full:
            raise EarEngineError("busy: too many slow commands queued; try again") from None

    def _run(self) -> None:
        while True:
            fn = self._queue.get()
            try:
                if fn is None:
                    return
                fn()
            except Exception:
                log.exception("job failed")
            finally:
                self._queue.task_done()

    def drain(self) -> None:
        """Wait until every job queued so far has run."""
        self._queue.join()

    def close(self) -> None:
        """Run what is queued, then stop the thread (waits at most 5 s)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=5)

    def __enter__(self) -> "JobQueue":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
