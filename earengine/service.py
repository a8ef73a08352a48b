"""A thread that runs until it is closed: the shape shared by the clock and MIDI services."""

from __future__ import annotations

import threading
from typing import Optional

__all__ = ["ThreadService"]


class ThreadService:
    """A daemon thread running ``self._run()`` between :meth:`start` and :meth:`close`; a context
    manager.

    ``_run`` loops until ``self._stop`` is set. Subclasses call :meth:`_init_thread` when they are
    made, :meth:`_start_thread` from ``start`` and :meth:`_stop_thread` first thing in ``close``,
    then release what else they hold.
    """

    thread_name = "earengine"
    _stop: threading.Event
    _thread: Optional[threading.Thread]

    def _init_thread(self) -> None:
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._start_thread()

    def close(self) -> None:
        self._stop_thread()

    def _run(self) -> None:
        raise NotImplementedError

    def _start_thread(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()

    def _stop_thread(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None
