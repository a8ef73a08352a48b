"""MIDI ports with no device behind them, for tests: push bytes into an input, read what an
output was sent."""

from __future__ import annotations

import threading
import time
from typing import Iterable, Optional

from earengine.midi.wire import MidiParser

__all__ = ["MemoryInput", "MemoryOutput"]


class _MemoryPort:
    """A port with no device behind it: always open, never lost."""

    def __init__(self, name: str = "memory") -> None:
        self.spec = self.connected = name

    def open(self) -> bool:
        return True

    def check(self) -> None:
        pass

    def available(self) -> list[str]:
        return [self.spec]

    def close_all(self) -> None:
        pass


class MemoryInput(_MemoryPort):
    """An input with no device, for tests: :meth:`push` raw bytes, :meth:`poll` as a port."""

    def __init__(self, name: str = "memory") -> None:
        super().__init__(name)
        self.parser = MidiParser()
        self._queue: list = []
        self._lock = threading.Lock()

    def push(self, data: Iterable[int], time_s: Optional[float] = None) -> None:
        with self._lock:
            self._queue.append((list(data), time.monotonic() if time_s is None else time_s))

    def poll(self, limit: int = 4096) -> list[tuple[tuple, float]]:
        with self._lock:
            items, self._queue = self._queue, []
        return [(m, t) for data, t in items for m in self.parser.feed(data)]


class MemoryOutput(_MemoryPort):
    """An output with no device, for tests: what was sent is in :attr:`messages`."""

    def __init__(self, name: str = "memory") -> None:
        super().__init__(name)
        self.messages: list[bytes] = []

    def send(self, message: bytes) -> None:
        self.messages.append(bytes(message))
