"""The OSC wire format: encoding, decoding and the :class:`Reply` value, with no sockets.

Every part of earengine that speaks OSC (the server, the sonifier's senders, the activation
streams) encodes and decodes here. Encoding is small and exact, so replies carry only the tags
every host reads (``i``, ``f``, ``s``, ``b``); it runs 8-37 times faster than python-osc's
builder (``bench/osc_encode.py``). Decoding uses python-osc's parser.

Float arrays too big for one datagram travel in chunks, each ``<address> <head…> <start>
<count> <values…>`` (:class:`ArrayChunks`): the sonifier's ``/son/part`` and the activation
streams' ``/stream/act/<tap>`` are both such chunks.

>>> decode_packet(encode_message("/loop/gain", [-6.0]))
[(None, '/loop/gain', (-6.0,))]
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np

from earengine.errors import EarEngineError

__all__ = [
    "Address",
    "Reply",
    "OscDecodeError",
    "encode_message",
    "encode_bundle",
    "encode_floats",
    "encode_array",
    "ArrayChunks",
    "osc_string",
    "timetag",
    "bundle_time",
    "peek_address",
    "decode_packet",
    "MAX_UDP_PAYLOAD",
    "NTP_EPOCH_OFFSET",
]

#: Largest payload one IPv4 UDP datagram can carry.
MAX_UDP_PAYLOAD = 65507
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01

Address = tuple  # (host, port)

# ---------------------------------------------------------------------------------------------
# Encoding: small and exact, so replies carry only the tags every host reads (i, f, s, b).
# ---------------------------------------------------------------------------------------------
def osc_string(data: bytes) -> bytes:
    """An OSC string: the bytes, then 1 to 4 NULs to a multiple of 4.

    >>> osc_string(b"/son")
    b'/son\\x00\\x00\\x00\\x00'
    """
    return data + b"\x00" * (4 - len(data) % 4)


def _pad_blob(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def encode_message(address: str, args: Sequence[Any] = ()) -> bytes:
    """Encode one OSC message. ``bool`` goes as ``i`` (Pd and Max have no T/F), ``float`` as
    32-bit ``f``, ``int`` as ``i``, ``str`` as ``s``, ``bytes`` as ``b``.

    >>> encode_message("/x", (1,))
    b'/x\\x00\\x00,i\\x00\\x00\\x00\\x00\\x00\\x01'
    """
    tags = [","]
    payload = []
    for arg in args:
        if hasattr(arg, "item") and not isinstance(arg, (bytes, bytearray)):
            arg = arg.item()  # numpy scalars
        if isinstance(arg, bool):
            tags.append("i")
            payload.append(struct.pack(">i", int(arg)))
        elif isinstance(arg, int):
            tags.append("i")
            payload.append(struct.pack(">i", arg))
        elif isinstance(arg, float):
            tags.append("f")
            payload.append(struct.pack(">f", arg))
        elif isinstance(arg, str):
            tags.append("s")
            payload.append(osc_string(arg.encode("utf-8")))
        elif isinstance(arg, (bytes, bytearray)):
            tags.append("b")
            payload.append(struct.pack(">i", len(arg)) + _pad_blob(bytes(arg)))
        else:
            raise TypeError(f"cannot send {type(arg).__name__} over OSC")
    return osc_string(address.encode("utf-8")) + osc_string("".join(tags).encode()) + b"".join(payload)


def timetag(unix_s: Optional[float]) -> bytes:
    """An OSC/NTP timetag for a Unix time in seconds; ``None`` means immediately."""
    if unix_s is None:
        return struct.pack(">Q", 1)
    seconds = unix_s + NTP_EPOCH_OFFSET
    whole = int(seconds)
    return struct.pack(">II", whole, int((seconds - whole) * (1 << 32)) & 0xFFFFFFFF)


def encode_bundle(unix_s: Optional[float], messages: Iterable[bytes]) -> bytes:
    """Encode already-encoded messages into one bundle with a timetag."""
    parts = [b"#bundle\x00", timetag(unix_s)]
    for msg in messages:
        parts.append(struct.pack(">i", len(msg)))
        parts.append(msg)
    return b"".join(parts)


# ---------------------------------------------------------------------------------------------
# Float arrays, whole or in chunks: a few leading arguments, then the values, with no Python loop
# over the values.
# ---------------------------------------------------------------------------------------------
Head = Sequence[Union[int, str]]


def _floats(values: Any) -> np.ndarray:
    if not (isinstance(values, np.ndarray) and values.dtype.char == "f"):  # wider: may overflow
        with np.errstate(over="ignore"):  # beyond the float32 range goes as inf
            values = np.asarray(values).astype(np.float32)
    return np.asarray(values, dtype=">f4").reshape(-1)


def _encode_head(head: Head) -> tuple[str, bytes]:
    tags, payload = [], []
    for arg in head:
        if isinstance(arg, str):
            tags.append("s")
            payload.append(osc_string(arg.encode("utf-8")))
        else:
            tags.append("i")
            payload.append(struct.pack(">i", int(arg)))
    return "".join(tags), b"".join(payload)


def encode_floats(address: str, head: Head, values: Any) -> bytes:
    """One message: the ``head`` arguments (``str`` as ``s``, anything else as ``i``), then
    ``values`` as 32-bit floats (beyond the float32 range as inf).

    >>> decode_packet(encode_floats("/son/frame", ("run", 3), [0.5, 2.0]))
    [(None, '/son/frame', ('run', 3, 0.5, 2.0))]
    """
    values = _floats(values)
    tags, payload = _encode_head(head)
    return (osc_string(address.encode("utf-8")) + osc_string(("," + tags + "f" * values.size).encode())
            + payload + values.tobytes())


class ArrayChunks:
    """The chunks of one array: ``<address> <head…> <start> <count> <values…>``, each the
    ``count`` values from index ``start`` on, with the address and head encoded once.

    >>> chunks = ArrayChunks("/stream/act/enc.0", (7,))
    >>> decode_packet(chunks.encode(10, np.array([0.5, 2.0])))
    [(None, '/stream/act/enc.0', (7, 10, 2, 0.5, 2.0))]
    >>> chunks.size(2) == len(chunks.encode(10, np.zeros(2)))
    True
    >>> chunks.fit(chunks.size(5), 100), chunks.fit(chunks.size(5), 3), chunks.fit(chunks.size(1) - 1, 100)
    (5, 3, 0)
    """

    __slots__ = ("_address", "_tags", "_payload", "_fixed")

    def __init__(self, address: str, head: Head = ()) -> None:
        tags, payload = _encode_head(head)
        self._address = osc_string(address.encode("utf-8"))
        self._tags = ("," + tags + "ii").encode()
        self._payload = payload
        self._fixed = len(self._address) + len(payload) + 8

    def size(self, n: int) -> int:
        """Bytes of a chunk of ``n`` values."""
        return self._fixed + ((len(self._tags) + n) // 4 + 1) * 4 + 4 * n  # tags NUL-padded to 4

    def fit(self, room: int, left: int) -> int:
        """Most values (at most ``left``) whose chunk fits in ``room`` bytes; 0 when not one does."""
        n = min(left, max(0, (room - self.size(0)) // 5))  # each value: 4 bytes and its tag
        while n > 0 and self.size(n) > room:
            n -= 1
        while n < left and self.size(n + 1) <= room:
            n += 1
        return n

    def encode(self, start: int, values: Any) -> bytes:
        """The chunk of ``values`` (floats, as 32-bit) that starts at index ``start``."""
        values = _floats(values)
        n = values.size
        return (self._address + osc_string(self._tags + b"f" * n) + self._payload
                + struct.pack(">ii", int(start), n) + values.tobytes())


def encode_array(address: str, head: Head, start: int, values: Any) -> bytes:
    """One chunk of an array (see :class:`ArrayChunks`, which cuts a whole array).

    >>> decode_packet(encode_array("/son/part", ("run", 3), 0, [1.0]))
    [(None, '/son/part', ('run', 3, 0, 1, 1.0))]
    """
    return ArrayChunks(address, head).encode(start, values)


class OscDecodeError(EarEngineError, ValueError):
    """A datagram that is not a well-formed OSC packet."""


def bundle_time(data: bytes) -> Optional[float]:
    """The Unix time (s) of a bundle's own timetag, read without decoding the bundle; None for
    "immediately", for a plain message, or for a datagram too short to be a bundle.

    >>> bundle_time(encode_bundle(1_900_000_000.5, []))
    1900000000.5
    >>> bundle_time(encode_bundle(None, [])) is None
    True
    """
    if len(data) < 16 or not data.startswith(b"#bundle\x00"):
        return None
    (tag,) = struct.unpack_from(">Q", data, 8)
    if tag == 1:
        return None
    return tag / 4294967296.0 - NTP_EPOCH_OFFSET


def peek_address(data: bytes) -> str:
    """Best-effort OSC address at the start of a datagram, for answering bad packets."""
    if data.startswith(b"#bundle"):
        # the first element's address, if readable
        if len(data) > 20:
            return peek_address(data[20:])
        return "#bundle"
    end = data.find(b"\x00")
    head = data[: end if end >= 0 else 64][:200]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "?"
    return text if text.startswith("/") and text.isprintable() else "?"


def decode_packet(data: bytes) -> list[tuple[Optional[float], str, tuple]]:
    """Decode a datagram into ``(unix_time or None, address, args)`` triples.

    ``None`` means "now" (a plain message, an immediate or a past bundle time).

    Raises
    ------
    OscDecodeError
        The datagram is not valid OSC.
    """
    from pythonosc import osc_bundle, osc_message
    from pythonosc.parsing import osc_types

    out: list[tuple[Optional[float], str, tuple]] = []

    def walk(bundle: "osc_bundle.OscBundle") -> None:
        when = None if bundle.timestamp == osc_types.IMMEDIATELY else bundle.timestamp
        for content in bundle:
            if isinstance(content, osc_message.OscMessage):
                out.append((when, content.address, tuple(content.params)))
            else:
                walk(content)

    try:
        if data.startswith(b"#bundle\x00"):
            walk(osc_bundle.OscBundle(data))
        elif data.startswith(b"/"):
            msg = osc_message.OscMessage(data)
            out.append((None, msg.address, tuple(msg.params)))
        else:
            raise OscDecodeError("not an OSC message or bundle (must start with / or #bundle)")
    except OscDecodeError:
        raise
    except Exception as exc:  # python-osc raises several kinds on garbage
        raise OscDecodeError(f"malformed OSC packet: {exc}".splitlines()[0][:200]) from None
    return out



@dataclass(frozen=True)
class Reply:
    """A message to send: to ``dest`` if given, else to the sender's reply address."""

    address: str
    args: tuple = ()
    dest: Optional[Address] = None
