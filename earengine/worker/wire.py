"""The remote worker's wire: ZeroMQ frames with CURVE keys, msgpack bodies, checked before use.

The engine (a ZeroMQ ``DEALER``) connects to the worker server (a ``ROUTER``); ZeroMQ reconnects by
itself, with backoff, and CURVE encrypts every frame and authenticates both ends: the engine knows
the server's public key, the server lets in one client key only. Both keys come from one secret
file that both hosts hold (:func:`new_secret`, :func:`read_secret`).

Every frame is one msgpack map with ``v`` (the schema version, :data:`VERSION`) and ``t`` (its
type); nothing else is ever unpacked (no pickle, no msgpack extension types). :func:`decode`
checks the version, the type, every field's type and every size before anything uses it, and
raises :class:`WireError` (``why`` is ``"size"`` or ``"type"``) otherwise.

========== =========== ============================================================================
type       direction   fields (type, limit)
========== =========== ============================================================================
hello      engine→w    (none): sent on each connection until ``ready`` answers
ping       engine→w    ``t0`` float: answered by ``pong`` with the same ``t0``
settings   engine→w    ``values`` map of address (str ≤ 128) → bool, int, float or str (≤ 4096);
                       at most 512 entries
reset      engine→w    ``kind`` str ≤ 16; ``samples`` bin of float32 LE ≤ :data:`MAX_SAMPLES`, or nil
reference  engine→w    ``samples`` bin of float32 LE ≤ :data:`MAX_SAMPLES`, or nil
streams    engine→w    what the streams show (a :class:`StreamView`): ``on`` bool (they have
                       receivers); ``layers`` list of tap str ≤ 64 (≤ 64 taps); ``reduce`` str, one
                       of ``/stream/reduce``'s choices; ``fps`` float in [1, 60]; ``page`` bool (a
                       page draws the loop's scaleogram whole)
want       engine→w    ``after`` int ≥ 0: send the newest loop newer than loop ``after`` (now, or
                       when it is made; with its activations while streams are on); one ``want``
                       asks for one loop
ready      w→engine    ``session`` str ≤ 64 (new each time the worker starts); ``taps`` list of
                       str ≤ 64 (≤ 64 taps); ``shapes`` map tap → list of 1 to 4 ints ≥ 0
pong       w→engine    ``t0`` float; ``session`` str; ``state`` str ≤ 32; ``stats`` map (step
                       int, loss, target, steps_per_s, settled float); ``counts`` map str → int (≤ 16)
loop       w→engine    ``seq`` int ≥ 1; ``samples`` bin float32 LE, 2 to :data:`MAX_SAMPLES`;
                       ``stats`` map (step, bars, sr int; loss, target, steps_per_s, settled float);
                       ``notes`` map (a :class:`~earengine.pattern.Pattern`) or nil; ``acts`` nil
                       or map tap → [c, f, rows, t, bin of c·rows·t finite float16 LE] (see
                       below); ``mask`` map tap → [c, f, bin of c·f uint8] or nil; activations
                       ≤ :data:`MAX_ACT_VALUES` values together
error      w→engine    ``text`` str ≤ 1000; ``fatal`` bool
========== =========== ============================================================================

A loop's activations carry only what the streams show (:func:`pack_acts`, by
:data:`WIRE_REDUCTIONS`): the taps of ``/stream/layers`` (and the scaleogram whole while a page
draws it); each tap's ``c`` channels and ``f`` frequency rows, of which ``rows`` cross: ``f``, or
1 (their mean) when ``/stream/reduce`` is ``channel``; and ``t`` time steps: the tap's own, or,
where it has more steps over the loop than the streams send frames (``/stream/fps`` × the loop's
seconds) and the reduction averages over a frame anyway, that many, each the mean of the steps
it covers. :func:`decode` gives each tap back as a ``(c, f, t)`` float32 array (the mean repeated
over the ``f`` rows when ``rows`` is 1, without copying), which the streams cut frames from
unchanged; the engine refuses a loop whose taps or ``(c, f)`` are not those its worker said it has
in ``ready``.

A frame over :data:`MAX_FRAME` bytes never reaches :func:`decode`: ZeroMQ drops the peer that
sends it (``MAXMSGSIZE``), which then reconnects.

>>> frame = encode("want", after=3)
>>> decode(frame, TO_WORKER)
('want', {'after': 3})
>>> decode(b"\\x92\\x01\\x02", TO_WORKER)
Traceback (most recent call last):
...
earengine.worker.wire.WireError: a frame must be a map with v and t, not list
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np

from earengine.errors import EarEngineError, ParameterError
from earengine.params.registry import check_choices
from earengine.params.spec import row
from earengine.streams.params import MAX_FPS, REDUCE, STREAM_PARAMS

__all__ = [
    "VERSION", "MAX_FRAME", "MAX_SAMPLES", "MAX_ACT_VALUES", "TO_WORKER", "FROM_WORKER", "WireError",
    "encode", "decode", "Secret", "new_secret", "read_secret", "parse_endpoint", "is_loopback", "refuse_open_listen",
    "floats_to_bytes", "bytes_to_floats", "StreamView", "WireReduction", "WIRE_REDUCTIONS", "pack_acts",
]

#: 2: ``streams`` says what the streams show; a loop's activations are reduced to it.
VERSION = 2
#: Most samples a loop, a reset or a reference may have (64 bars at 20 BPM would be more; a
#: loop buffer holds 44100 × 64).
MAX_SAMPLES = 44100 * 64
#: Most activation values one loop's set may carry.
MAX_ACT_VALUES = 24_000_000
#: Largest frame ZeroMQ accepts from a peer, in bytes.
MAX_FRAME = MAX_SAMPLES * 4 + MAX_ACT_VALUES * 2 + (1 << 20)

_MAX_STR = 4096
_MAX_KEY = 128
_MAX_ENTRIES = 512
_MAX_TAPS = 64


class WireError(EarEngineError, ValueError):
    """A frame refused; ``why`` is ``"size"`` or ``"type"``."""

    def __init__(self, text: str, why: str = "type") -> None:
        super().__init__(text)
        self.why = why


# -- field checks ---------------------------------------------------------------------------------
def _type(value: Any, kinds: tuple, name: str) -> Any:
    if isinstance(value, bool) and bool not in kinds:
        raise WireError(f"{name} must be {'/'.join(k.__name__ for k in kinds)}, not bool")
    if not isinstance(value, kinds):
        raise WireError(f"{name} must be {'/'.join(k.__name__ for k in kinds)}, not {type(value).__name__}")
    return value


def _str(limit: int) -> Callable:
    def check(value: Any, name: str) -> str:
        _type(value, (str,), name)
        if len(value) > limit:
            raise WireError(f"{name} has {len(value)} characters; at most {limit}", "size")
        return value

    return check


def _float(value: Any, name: str) -> float:
    _type(value, (int, float), name)
    return float(value)


def _int(low: int = 0) -> Callable:
    def check(value: Any, name: str) -> int:
        _type(value, (int,), name)
        if value < low:
            raise WireError(f"{name}={value} must be >= {low}")
        return value

    return check


def _bool(value: Any, name: str) -> bool:
    return _type(value, (bool,), name)


def _samples(low: int, allow_none: bool) -> Callable:
    def check(value: Any, name: str) -> Optional[np.ndarray]:
        if value is None and allow_none:
            return None
        _type(value, (bytes,), name)
        if len(value) % 4:
            raise WireError(f"{name} has {len(value)} bytes, not a whole number of float32")
        n = len(value) // 4
        if not low <= n <= MAX_SAMPLES:
            raise WireError(f"{name} has {n} samples; {low} to {MAX_SAMPLES}", "size")
        samples = bytes_to_floats(value)
        if not np.all(np.isfinite(samples)):
            raise WireError(f"{name} holds NaN or infinity")
        return samples

    return check


def _map(value: Any, name: str, limit: int = _MAX_ENTRIES) -> dict:
    _type(value, (dict,), name)
    if len(value) > limit:
        raise WireError(f"{name} has {len(value)} entries; at most {limit}", "size")
    return value


def _values(value: Any, name: str) -> dict:
    out = {}
    for k, v in _map(value, name).items():
        _str(_MAX_KEY)(k, f"{name} key")
        if isinstance(v, str):
            _str(_MAX_STR)(v, f"{name}[{k}]")
        else:
            _type(v, (bool, int, float), f"{name}[{k}]")
            if isinstance(v, float) and not math.isfinite(v):
                raise WireError(f"{name}[{k}]={v} must be finite")
        out[k] = v
    return out


def _stats(ints: tuple, floats: tuple) -> Callable:
    def check(value: Any, name: str) -> dict:
        value = _map(value, name, 16)
        out = {}
        for k in ints:
            out[k] = _int(0)(value.get(k), f"{name}.{k}")
        for k in floats:
            out[k] = _float(value.get(k), f"{name}.{k}")
        return out

    return check


def _taps(value: Any, name: str) -> list:
    _type(value, (list,), name)
    if len(value) > _MAX_TAPS:
        raise WireError(f"{name} has {len(value)} taps; at most {_MAX_TAPS}", "size")
    return [_str(64)(t, name) for t in value]


def _shapes(value: Any, name: str) -> dict:
    out = {}
    for tap, shape in _map(value, name, _MAX_TAPS).items():
        _str(64)(tap, f"{name} key")
        _type(shape, (list,), f"{name}[{tap}]")
        if not 1 <= len(shape) <= 4:
            raise WireError(f"{name}[{tap}] has {len(shape)} dimensions; 1 to 4", "size")
        out[tap] = [_int(0)(d, f"{name}[{tap}]") for d in shape]
    return out


def _notes(value: Any, name: str) -> Optional[dict]:
    if value is None:
        return None
    from earengine.pattern import Pattern

    _map(value, name, 64)
    try:
        Pattern.from_dict(value)
    except Exception as exc:
        raise WireError(f"{name} is no pattern: {exc}".splitlines()[0]) from None
    return value


def _acts(value: Any, name: str) -> Optional[dict]:
    if value is None:
        return None
    out, total = {}, 0
    for tap, entry in _map(value, name, _MAX_TAPS).items():
        _str(64)(tap, f"{name} key")
        _type(entry, (list,), f"{name}[{tap}]")
        if len(entry) != 5:
            raise WireError(f"{name}[{tap}] must be [c, f, rows, t, values]")
        c, f, rows, t = (_int(1)(d, f"{name}[{tap}]") for d in entry[:4])
        if rows not in (1, f):
            raise WireError(f"{name}[{tap}] rows={rows} must be 1 or f={f}")
        if c * f > MAX_ACT_VALUES:
            raise WireError(f"{name}[{tap}] has {c}x{f} neurons; at most {MAX_ACT_VALUES}", "size")
        total += c * rows * t
        if total > MAX_ACT_VALUES:
            raise WireError(f"{name} has over {MAX_ACT_VALUES} values", "size")
        data = _type(entry[4], (bytes,), f"{name}[{tap}] values")
        if len(data) != c * rows * t * 2:
            raise WireError(f"{name}[{tap}] has {len(data)} bytes for {c}x{rows}x{t} float16", "size")
        a = np.frombuffer(data, "<f2").astype(np.float32).reshape(c, rows, t)
        if not np.all(np.isfinite(a)):
            raise WireError(f"{name}[{tap}] holds NaN or infinity")
        out[tap] = np.broadcast_to(a, (c, f, t)) if rows != f else a
    return out


def _mask(value: Any, name: str) -> dict:
    out = {}
    for tap, entry in _map(value, name, _MAX_TAPS).items():
        _str(64)(tap, f"{name} key")
        _type(entry, (list,), f"{name}[{tap}]")
        if len(entry) != 3:
            raise WireError(f"{name}[{tap}] must be [c, f, values]")
        c, f = (_int(1)(d, f"{name}[{tap}]") for d in entry[:2])
        data = _type(entry[2], (bytes,), f"{name}[{tap}] values")
        if c * f > MAX_ACT_VALUES or len(data) != c * f:
            raise WireError(f"{name}[{tap}] has {len(data)} bytes for {c}x{f}", "size")
        out[tap] = np.frombuffer(data, np.uint8).reshape(c, f) > 0
    return out


def _choice(choices: tuple) -> Callable:
    def check(value: Any, name: str) -> str:
        if _str(64)(value, name) not in choices:
            raise WireError(f"{name}={value[:64]!r} must be one of {', '.join(choices)}")
        return value

    return check


def _bounded(low: float, high: float) -> Callable:
    def check(value: Any, name: str) -> float:
        value = _float(value, name)
        if not low <= value <= high:
            raise WireError(f"{name}={value} must be in [{low:g}, {high:g}]")
        return value

    return check


def _optional(check: Callable) -> Callable:
    return lambda value, name: None if value is None else check(value, name)


#: Each type's fields and their checks, by direction (the schema above, as code).
TO_WORKER: dict[str, dict[str, Callable]] = {
    "hello": {},
    "ping": {"t0": _float},
    "settings": {"values": _values},
    "reset": {"kind": _str(16), "samples": _samples(1, True)},
    "reference": {"samples": _samples(1, True)},
    "streams": {"on": _bool, "layers": _taps, "reduce": _choice(REDUCE), "fps": _bounded(1.0, MAX_FPS),
                "page": _bool},
    "want": {"after": _int(0)},
}
FROM_WORKER: dict[str, dict[str, Callable]] = {
    "ready": {"session": _str(64), "taps": _taps, "shapes": _shapes},
    "pong": {"t0": _float, "session": _str(64), "state": _str(32),
             "stats": _stats(("step",), ("loss", "target", "steps_per_s", "settled")),
             "counts": lambda v, n: {k: _int(0)(x, n) for k, x in _map(v, n, 16).items() if _str(64)(k, n)}},
    "loop": {"seq": _int(1), "samples": _samples(2, False),
             "stats": _stats(("step", "bars", "sr"), ("loss", "target", "steps_per_s", "settled")),
             "notes": _notes, "acts": _acts, "mask": _optional(_mask)},
    "error": {"text": _str(1000), "fatal": _bool},
}


def encode(type_: str, /, **fields: Any) -> bytes:
    """One frame: ``{"v": VERSION, "t": type_, **fields}`` in msgpack."""
    import msgpack

    return msgpack.packb({"v": VERSION, "t": type_, **fields}, use_bin_type=True)


def decode(frame: bytes, schema: Mapping[str, Mapping[str, Callable]]) -> tuple[str, dict]:
    """``(type, fields)`` of a frame, every field checked against ``schema`` (:data:`TO_WORKER`
    or :data:`FROM_WORKER`); raises :class:`WireError` and uses nothing otherwise."""
    import msgpack

    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise WireError(f"a frame must be bytes, not {type(frame).__name__}")
    if len(frame) > MAX_FRAME:
        raise WireError(f"a frame of {len(frame)} bytes is over {MAX_FRAME}", "size")
    try:
        body = msgpack.unpackb(bytes(frame), raw=False, strict_map_key=True, use_list=True,
                               max_bin_len=MAX_FRAME, max_str_len=1 << 20, max_array_len=1 << 16,
                               max_map_len=1 << 16, max_ext_len=0)
    except ValueError as exc:
        # an extension type (none is allowed) is refused by a zero length limit: a type error
        why = "size" if "exceeds max" in str(exc) and "ext" not in str(exc) else "type"
        raise WireError(f"not msgpack: {exc}".splitlines()[0], why) from None
    except Exception as exc:  # msgpack's own errors (truncated, extra data, bad bytes)
        raise WireError(f"not msgpack: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    if not isinstance(body, dict) or "v" not in body or "t" not in body:
        raise WireError(f"a frame must be a map with v and t, not {type(body).__name__}")
    if body["v"] != VERSION:
        raise WireError(f"schema version {body['v']!r}; this end speaks {VERSION}")
    kind = body["t"]
    if not isinstance(kind, str) or kind not in schema:
        raise WireError(f"unknown frame type {str(kind)[:40]!r}")
    fields = schema[kind]
    extra = set(body) - set(fields) - {"v", "t"}
    if extra:
        raise WireError(f"{kind} has unknown fields: {', '.join(sorted(map(str, extra)))[:200]}")
    return kind, {name: check(body.get(name), f"{kind}.{name}") for name, check in fields.items()}


def floats_to_bytes(samples: np.ndarray) -> bytes:
    return np.ascontiguousarray(samples, dtype="<f4").tobytes()


def bytes_to_floats(data: bytes) -> np.ndarray:
    return np.frombuffer(data, "<f4").astype(np.float32)


# -- what the streams show, and a loop's activations reduced to it ------------------------------
@dataclass(frozen=True)
class StreamView:
    """What the engine's streams show now: the ``streams`` frame's fields.

    >>> view = StreamView(True, ("enc.0",), "channel", 30.0, False)
    >>> StreamView.from_fields(view.to_fields()) == view
    True
    """

    on: bool = False
    layers: tuple[str, ...] = ()
    reduce: str = "channel"
    fps: float = 30.0
    page: bool = False

    def to_fields(self) -> dict:
        return {"on": self.on, "layers": list(self.layers), "reduce": self.reduce, "fps": float(self.fps),
                "page": self.page}

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> "StreamView":
        return cls(bool(fields["on"]), tuple(fields["layers"]), str(fields["reduce"]), float(fields["fps"]),
                   bool(fields["page"]))


@dataclass(frozen=True)
class WireReduction:
    """How one ``/stream/reduce`` choice lets a tap's activation shrink before it crosses.

    Attributes
    ----------
    rows_mean : bool
        The frames average over frequency: one row (the mean) crosses instead of ``f``.
    time_mean : bool
        The frames average over the steps they span: a tap with more steps over the loop than
        frames sends that many (each the mean of its steps); otherwise every step crosses.
    """

    rows_mean: bool
    time_mean: bool


#: ``/stream/reduce`` choice -> its :class:`WireReduction` (checked against the row); ``raw``
#: shows every neuron at one step, so every value crosses.
WIRE_REDUCTIONS: dict[str, WireReduction] = check_choices(row(STREAM_PARAMS, "/stream/reduce"), {
    "raw": WireReduction(rows_mean=False, time_mean=False),
    "channel": WireReduction(rows_mean=True, time_mean=True),
    "channel_freq": WireReduction(rows_mean=False, time_mean=True),
})

#: Time columns the page's loop scaleogram draws at most (as
#: :data:`earengine.streams.websocket.SCALEOGRAM_COLUMNS`).
PAGE_COLUMNS = 256
_F16_MAX = float(np.finfo(np.float16).max)


def _time_bins(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` ``(c, rows, t)`` averaged down to ``n`` time steps (each the mean of those it covers)."""
    t = a.shape[-1]
    if t <= n:
        return a
    edges = np.linspace(0, t, n + 1).astype(int)
    return np.add.reduceat(a, edges[:-1], axis=-1) / np.diff(edges)


def pack_acts(acts: Mapping[str, np.ndarray], view: StreamView, *, loop_s: float) -> dict:
    """A loop's activations as the ``loop`` frame's ``acts``: only what ``view`` shows.

    Parameters
    ----------
    acts : dict of str -> ndarray, each (channels, freq, time) or (channels, time)
        Every tap's activation over the loop.
    view : StreamView
    loop_s : float > 0
        The loop's length in seconds (frames per loop: ``view.fps * loop_s``).

    >>> a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    >>> packed = pack_acts({"enc.0": a, "enc.1": a}, StreamView(True, ("enc.0",), "channel", 30.0), loop_s=2.0)
    >>> list(packed), packed["enc.0"][:4]
    (['enc.0'], [2, 3, 1, 4])
    """
    how = WIRE_REDUCTIONS[view.reduce]
    frames = max(1, int(math.ceil(view.fps * loop_s)))
    out = {}
    for tap, a in acts.items():
        page = view.page and tap == "scaleogram"
        if tap not in view.layers and not page:
            continue
        a = np.asarray(a, dtype=np.float32)
        a = a[:, None, :] if a.ndim == 2 else a
        c, f, _ = a.shape
        rows_mean = how.rows_mean and not page
        if rows_mean:
            a = a.mean(axis=1, keepdims=True)
        if how.time_mean:
            a = _time_bins(a, max(frames, PAGE_COLUMNS) if page else frames)
        a = np.clip(a, -_F16_MAX, _F16_MAX).astype("<f2")
        out[tap] = [int(c), int(f), int(a.shape[1]), int(a.shape[2]), a.tobytes()]
    return out


# -- endpoints ------------------------------------------------------------------------------------
def parse_endpoint(text: str, option: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as ``(host, port)``; port 0 only where listening.

    >>> parse_endpoint("10.0.0.2:5555", "--worker")
    ('10.0.0.2', 5555)
    >>> parse_endpoint("gpu-box", "--worker")
    Traceback (most recent call last):
    ...
    earengine.errors.ParameterError: --worker gpu-box must be HOST:PORT, e.g. 192.168.1.20:5555
    """
    host, sep, port = str(text).rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ParameterError(f"{option} {text} must be HOST:PORT, e.g. 192.168.1.20:5555")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True when ``host`` names this machine only (127.x, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except (OSError, ValueError):
            return False


def refuse_open_listen(host: str, secret_file: Optional[str], option: str) -> None:
    """Beyond loopback, keys are required: raise one line saying so."""
    if secret_file is None and not is_loopback(host):
        raise ParameterError(f"{option} {host} reaches beyond this machine: give --secret-file F to both ends "
                             f"(write one with: earengine worker --new-secret F)")


# -- the secret file ------------------------------------------------------------------------------
_KEYS = ("server_public", "server_secret", "client_public", "client_secret")


@dataclass(frozen=True, repr=False)
class Secret:
    """The key material both hosts share: the server's and the client's CURVE key pairs (z85)."""

    server_public: bytes
    server_secret: bytes
    client_public: bytes
    client_secret: bytes

    def __repr__(self) -> str:  # never print a secret key
        return f"Secret(server_public={self.server_public.decode()!r}, client_public={self.client_public.decode()!r})"


def new_secret(path: os.PathLike | str) -> Secret:
    """Write fresh keys to ``path`` (which must not exist yet), readable by its owner only."""
    import zmq

    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    secret = Secret(server_public, server_secret, client_public, client_secret)
    body = {"earengine_worker_secret": VERSION, **{k: getattr(secret, k).decode("ascii") for k in _KEYS}}
    try:
        fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ParameterError(f"--new-secret {path}: the file exists; keep it, or remove it first") from None
    except OSError as exc:
        raise ParameterError(f"--new-secret {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as f:
        json.dump(body, f, indent=1)
        f.write("\n")
    return secret


def read_secret(path: os.PathLike | str) -> Secret:
    """The keys in ``path``, refused with one line if others may read it or it is not one."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
        text = p.read_text()
    except OSError as exc:
        raise ParameterError(f"--secret-file {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise ParameterError(f"--secret-file {path} may be read by others (mode {mode & 0o777:o}): chmod 600 it")
    try:
        body = json.loads(text)
        keys = {k: body[k].encode("ascii") for k in _KEYS}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ParameterError(f"--secret-file {path} is not a worker secret (write one with earengine worker "
                             f"--new-secret FILE)") from None
    if not all(len(v) == 40 for v in keys.values()):
        raise ParameterError(f"--secret-file {path}: each key must be 40 characters of z85")
    return Secret(**keys)
