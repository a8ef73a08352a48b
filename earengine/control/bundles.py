"""Bundles timetagged in the future: a scheduler thread, bounded as scsynth's is.

:class:`Scheduler` runs callables at Unix times on its own thread, so that nobody sleeps in the
receive path. :class:`FutureBundles` is the OSC server's door to it: a bundle due further ahead
than ``/osc/horizon_s`` is refused, and so is one that arrives while ``/osc/sched_max`` bundles
(or :data:`~earengine.control.params.SCHED_MAX_BYTES` bytes) already wait, so that no peer can
make the engine hold an unbounded backlog. Each refusal is counted and answered
``/fail #bundle <reason>``, at most :data:`~earengine.control.params.FAIL_PER_S` times a second.
The bounds are read from the registry for every bundle (see :mod:`earengine.control.params`).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Any, Callable, MutableMapping, Optional

from earengine.control.params import FAIL_PER_S, OSC_PARAMS, SCHED_MAX_BYTES
from earengine.errors import UnknownAddressError
from earengine.osc.wire import Address
from earengine.params.registry import Registry
from earengine.params.spec import row

__all__ = ["Scheduler", "FutureBundles"]

log = logging.getLogger("earengine.osc")


class Scheduler:
    """Runs callables at Unix times on its own thread, holding at most a given number of them
    and of bytes: :meth:`at` says False instead of growing. :meth:`close` drops what still waits.

    >>> ran = []
    >>> sched = Scheduler()
    >>> sched.at(time.time() + 0.01, lambda: ran.append("late"))
    True
    >>> sched.at(time.time(), lambda: ran.append("now"))
    True
    >>> sched.at(time.time() + 60, print, max_items=1)  # one already waits
    False
    >>> time.sleep(0.2); sched.close(); ran
    ['now', 'late']
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, Callable[[], None]]] = []
        self._cv = threading.Condition()
        self._seq = itertools.count()
        self._bytes = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="earengine-osc-sched", daemon=True)
        self._thread.start()

    def __len__(self) -> int:
        return len(self._heap)

    @property
    def held_bytes(self) -> int:
        return self._bytes

    def at(self, unix_s: float, fn: Callable[[], None], *, size: int = 0, max_items: Optional[int] = None,
           max_bytes: Optional[int] = None) -> bool:
        """Run ``fn`` at ``unix_s``; False (and nothing held) if that would pass a bound."""
        with self._cv:
            if max_items is not None and len(self._heap) >= max_items:
                return False
            if max_bytes is not None and self._bytes + size > max_bytes:
                return False
            heapq.heappush(self._heap, (unix_s, next(self._seq), size, fn))
            self._bytes += size
            self._cv.notify()
        return True

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._closed and (not self._heap or self._heap[0][0] > time.time()):
                    timeout = None if not self._heap else max(0.0, self._heap[0][0] - time.time())
                    self._cv.wait(timeout)
                if self._closed:
                    self._heap.clear()
                    return
                _, _, size, fn = heapq.heappop(self._heap)
                self._bytes -= size
            try:
                fn()
            except Exception:
                log.exception("scheduled OSC message failed")

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=2)


class FutureBundles:
    """Holds bundles until their time, within the bounds the registry sets; refuses the rest.

    Parameters
    ----------
    registry : Registry
        Where ``/osc/horizon_s`` and ``/osc/sched_max`` are read, for every bundle (a registry
        without them gives their rows' defaults).
    send : callable(dest, address, args)
        How a refusal's ``/fail #bundle <reason>`` leaves.
    counts : dict of str to int, optional
        Where to count (the server's counts): ``scheduled``, ``refused_far`` (beyond the
        horizon), ``refused_full`` (beyond ``/osc/sched_max`` or the byte bound) and
        ``fail_unsent`` (refusals counted but not answered, by the rate limit).

    >>> from earengine.control.params import OSC_PARAMS
    >>> sent = []
    >>> future = FutureBundles(Registry(OSC_PARAMS), send=lambda *message: sent.append(message))
    >>> future.refusal(3600.0)
    'timetag 3600 s ahead must be within /osc/horizon_s=60 s of now'
    >>> future.refuse(("127.0.0.1", 9), future.refusal(7200.0)); sent[0][:2]
    (('127.0.0.1', 9), '/fail')
    >>> future.hold(time.time() + 30, print, size=64), len(future), future.counts["scheduled"]
    (None, 1, 1)
    >>> future.close()
    """

    def __init__(self, registry: Registry, *, send: Callable[[Address, str, tuple], None],
                 counts: Optional[MutableMapping[str, int]] = None) -> None:
        self.registry = registry
        self.send = send
        self.counts = counts if counts is not None else {}
        for name in ("scheduled", "refused_far", "refused_full", "fail_unsent"):
            self.counts.setdefault(name, 0)
        self._fail_tokens = float(FAIL_PER_S)
        self._fail_at = time.monotonic()
        self._scheduler = Scheduler()

    def __len__(self) -> int:
        """Bundles waiting now."""
        return len(self._scheduler)

    def close(self) -> None:
        """Stop the scheduler; what still waits never runs."""
        self._scheduler.close()

    def limit(self, address: str) -> Any:
        """A bound from the registry (its row's default in a registry without it)."""
        try:
            return self.registry.get(address)
        except UnknownAddressError:
            return row(OSC_PARAMS, address).default

    def refusal(self, ahead_s: float) -> Optional[str]:
        """Why a bundle due ``ahead_s`` from now cannot wait (counted), or None: it can, for all
        we know before it is decoded."""
        horizon = float(self.limit("/osc/horizon_s"))
        if ahead_s > horizon:
            self.counts["refused_far"] += 1
            return f"timetag {ahead_s:.6g} s ahead must be within /osc/horizon_s={horizon:g} s of now"
        held, most = len(self._scheduler), int(self.limit("/osc/sched_max"))
        if held >= most:
            self.counts["refused_full"] += 1
            return (f"scheduler full: {held} bundles wait, as many as /osc/sched_max={most} allows; "
                    "send bundles closer to their time")
        return None

    def hold(self, unix_s: float, fn: Callable[[], None], *, size: int, now_s: Optional[float] = None) -> Optional[str]:
        """Run ``fn`` at ``unix_s`` if the bounds allow it (None), else say why not (counted)."""
        why = self.refusal(unix_s - (time.time() if now_s is None else now_s))
        if why is not None:
            return why
        if self._scheduler.at(unix_s, fn, size=size, max_items=int(self.limit("/osc/sched_max")),
                              max_bytes=SCHED_MAX_BYTES):
            self.counts["scheduled"] += 1
            return None
        self.counts["refused_full"] += 1
        return (f"scheduler full: {len(self._scheduler)} bundles of {self._scheduler.held_bytes} bytes wait, "
                f"as many bytes as it holds ({SCHED_MAX_BYTES}); send bundles closer to their time")

    def refuse(self, dest: Address, why: str) -> None:
        """Answer ``/fail #bundle <why>``, at most FAIL_PER_S times a second (the rest are counted)."""
        now = time.monotonic()
        self._fail_tokens = min(float(FAIL_PER_S), self._fail_tokens + (now - self._fail_at) * FAIL_PER_S)
        self._fail_at = now
        if self._fail_tokens < 1.0:
            self.counts["fail_unsent"] += 1
            return
        self._fail_tokens -= 1.0
        self.send(dest, "/fail", ("#bundle", why))
