"""A TCP relay on loopback that behaves like a venue's Wi-Fi: delay, a rate cap, and cuts.

The remote worker's tests and ``bench/remote_worker.py`` put it between the engine and
``earengine worker --listen``:

>>> relay = Relay(9, delay_s=0.025, bits_per_s=20e6)  # doctest: +SKIP
>>> relay.cut()  # every connection dropped, new ones closed at once  # doctest: +SKIP
>>> relay.restore()  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Optional

__all__ = ["Relay"]


class Relay:
    """Relays TCP connections from a port of its own to ``127.0.0.1:target_port``; a context
    manager.

    Each direction is paced at ``bits_per_s`` (chunks leave one after the other at that rate),
    then held ``delay_s`` (so the round trip gains ``2 * delay_s``). :meth:`cut` drops every
    connection (both ends see it close) and, until :meth:`restore`, closes each new one as soon
    as it arrives: the link is gone, as when a Wi-Fi access point goes down.

    Attributes
    ----------
    port : int
        Where it listens.
    bytes : dict
        Bytes relayed ``up`` (to the target) and ``down`` (from it).
    connections : int
        Connections relayed (a reconnect adds one).
    """

    def __init__(self, target_port: int, *, delay_s: float = 0.0, bits_per_s: float = 0.0) -> None:
        self.target_port = target_port
        self.delay_s = delay_s
        self.bits_per_s = bits_per_s
        self.bytes = {"up": 0, "down": 0}
        self.connections = 0
        self.port = 0
        self.cut_at: Optional[float] = None  # monotonic, while cut
        self.restored_at: Optional[float] = None  # monotonic, the last restore
        self._writers: set = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relay", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the relay did not start")

    def __enter__(self) -> "Relay":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def cut(self) -> None:
        """Drop every connection now, and refuse new ones until :meth:`restore`."""
        done = threading.Event()

        def drop() -> None:
            self.cut_at = time.monotonic()
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()
            done.set()

        self._loop.call_soon_threadsafe(drop)
        done.wait(5)

    def restore(self) -> None:
        """Let connections through again."""
        done = threading.Event()

        def back() -> None:
            self.cut_at = None
            self.restored_at = time.monotonic()
            done.set()

        self._loop.call_soon_threadsafe(back)
        done.wait(5)

    async def _client(self, reader, writer) -> None:
        if self.cut_at is not None:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        if self.cut_at is not None:  # cut while connecting
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self.connections += 1
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer, "up"), self._pipe(up_reader, writer, "down"),
                             return_exceptions=True)
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _pipe(self, reader, writer, way: str) -> None:
        queue: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        busy_until = 0.0

        async def deliver() -> None:
            while True:
                at, data = await queue.get()
                if data is None:
                    writer.transport.abort()
                    return
                wait = at - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        task = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(16384)
                if not data:
                    break
                self.bytes[way] += len(data)
                # serialised at the link's rate, then in flight for delay_s
                depart = max(loop.time(), busy_until)
                if self.bits_per_s > 0:
                    depart += len(data) * 8 / self.bits_per_s
                busy_until = depart
                queue.put_nowait((depart + self.delay_s, data))
        except (ConnectionError, OSError):
            pass
        finally:
            queue.put_nowait((0.0, None))
            try:
                await task
            except (ConnectionError, OSError):
                pass

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
