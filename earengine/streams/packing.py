"""Packing a stream frame into datagrams: OSC bundles of at most ``/stream/max_bytes`` each.

:class:`BundlePacker` gathers messages and chunked arrays (the chunks of
:class:`earengine.osc.wire.ArrayChunks`, ``<address> <frame> <start> <count> <values…>``) into
bundles that share one timetag, cutting each array to fill the room left in the bundle being
packed, so that a frame takes as few datagrams as it can.

>>> from earengine.osc.wire import decode_packet
>>> packer = BundlePacker(128, None)
>>> packer.add_array("/stream/act/enc.0", 7, np.arange(30.0))
>>> bundles = packer.finish()
>>> len(bundles), max(len(b) for b in bundles) <= 128
(3, True)
>>> [args[:3] for b in bundles for _, _, args in decode_packet(b)]
[(7, 0, 14), (7, 14, 14), (7, 28, 2)]
"""

from __future__ import annotations

import struct
from typing import Optional

import numpy as np

from earengine.errors import ParameterError
from earengine.osc.wire import ArrayChunks, timetag

__all__ = ["BundlePacker"]


class BundlePacker:
    """Packs messages and chunked arrays into OSC bundles of at most ``max_bytes`` each.

    Arrays are cut to fill the room left in the bundle being packed, so a frame takes as few
    datagrams as it can. Every bundle carries the same timetag.

    Parameters
    ----------
    max_bytes : int >= 128
        Largest datagram.
    when_s : float or None
        Unix time the bundles are for; None means "immediately".
    """

    HEADER = 16  # "#bundle\\0" + timetag
    MIN_CHUNK = 8  # fewer floats than this in the room left: start a new bundle instead

    def __init__(self, max_bytes: int, when_s: Optional[float]) -> None:
        self.max_bytes = int(max_bytes)
        self.head = b"#bundle\x00" + timetag(when_s)
        self.bundles: list[bytes] = []
        self._parts: list[bytes] = []
        self._size = self.HEADER

    def _flush(self) -> None:
        if self._parts:
            self.bundles.append(self.head + b"".join(self._parts))
        self._parts, self._size = [], self.HEADER

    def _room(self) -> int:
        return self.max_bytes - self._size - 4

    def add(self, message: bytes) -> None:
        """Add one encoded message (to the bundle being packed, or to a new one)."""
        if len(message) + 4 + self.HEADER > self.max_bytes:
            raise ParameterError(f"/stream/max_bytes={self.max_bytes} is too small for {len(message)}-byte messages")
        if len(message) > self._room():
            self._flush()
        self._parts.append(struct.pack(">i", len(message)) + message)
        self._size += 4 + len(message)

    def add_array(self, address: str, frame: int, values: np.ndarray) -> None:
        """Add ``values`` as ``<address> <frame> <start> <count> …`` chunks."""
        values = np.asarray(values, dtype=np.float32).reshape(-1)
        chunks = ArrayChunks(address, (int(frame),))
        start, total = 0, values.size
        while True:
            left = total - start
            n = chunks.fit(self._room(), left)
            if left > 0 and n < min(self.MIN_CHUNK, left):
                if not self._parts:
                    raise ParameterError(f"/stream/max_bytes={self.max_bytes} leaves no room for {address}")
                self._flush()
                continue
            self.add(chunks.encode(start, values[start:start + n]))
            start += n
            if start >= total:
                return

    def finish(self) -> list[bytes]:
        """The bundles packed, the last one included."""
        self._flush()
        return self.bundles
