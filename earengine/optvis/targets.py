"""Target shorthand, checked without torch (the engine process validates it at the boundary).

``enc.5:12`` (a channel), ``enc.5:0-31`` (channels), ``enc.5:12@40`` (one neuron), ``ar.3`` (a whole
layer), ``surprise``; several joined with ``+``, each with an optional ``*weight``:
``enc.5:12*1 + ar.3*0.5``.

:func:`command_handlers` gives the ``/target/set``, ``/target/add`` and ``/target/clear`` commands
as edits of ``/target/spec`` in the registry (which checks the result).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

from earengine.errors import ParameterError
from earengine.params.registry import Registry

__all__ = ["KINDS", "Target", "parse_one", "parse_many", "format_many", "command_handlers"]

_SPEC = re.compile(r"^(?P<tap>scaleogram|enc\.\d+|ar\.\d+)(?::(?P<a>\d+)(?:-(?P<b>\d+))?(?:@(?P<row>\d+))?)?$")


#: What a target can be: a whole tap, a range of its channels, one neuron, or the ear's surprise.
KINDS = ("layer", "channels", "neuron", "surprise")


@dataclass(frozen=True)
class Target:
    """One parsed target: ``kind`` is layer, channels, neuron or surprise."""

    kind: str
    tap: str = ""
    first: int = 0
    last: int = 0
    row: int = 0

    def __str__(self) -> str:
        if self.kind == "surprise":
            return "surprise"
        if self.kind == "layer":
            return self.tap
        if self.kind == "neuron":
            return f"{self.tap}:{self.first}@{self.row}"
        return f"{self.tap}:{self.first}" if self.first == self.last else f"{self.tap}:{self.first}-{self.last}"


def parse_one(spec: str, *, taps: Sequence[str], shapes: Optional[Mapping[str, tuple]] = None) -> Target:
    """Parse one shorthand target; ``shapes`` (per-example tap shapes) bounds channels and rows.

    >>> str(parse_one("enc.5:0-31", taps=("enc.5",)))
    'enc.5:0-31'
    >>> parse_one("enc.9:1", taps=("scaleogram", "enc.5"))
    Traceback (most recent call last):
    ...
    earengine.errors.ParameterError: target 'enc.9:1': tap enc.9 must be one of scaleogram, enc.5
    """
    text = spec.strip()
    if text == "surprise":
        return Target("surprise")
    m = _SPEC.match(text)
    if not m:
        raise ParameterError(f"target {spec!r} must look like enc.5:12, enc.5:0-31, enc.5:12@40, ar.3 or surprise")
    tap = m.group("tap")
    if tap not in taps:
        raise ParameterError(f"target {spec!r}: tap {tap} must be one of {', '.join(taps)}")
    shape = shapes.get(tap) if shapes else None
    if m.group("a") is None:
        return Target("layer", tap)
    first = int(m.group("a"))
    last = int(m.group("b")) if m.group("b") is not None else first
    if last < first:
        raise ParameterError(f"target {spec!r}: channel range {first}-{last} must be increasing")
    if shape is not None and last >= shape[0]:
        raise ParameterError(f"target {spec!r}: {tap} has channels 0-{shape[0] - 1}")
    if m.group("row") is None:
        return Target("channels", tap, first, last)
    row = int(m.group("row"))
    if first != last:
        raise ParameterError(f"target {spec!r}: a neuron is one channel at one row, e.g. {tap}:{first}@{row}")
    rows = shape[1] if shape is not None and len(shape) == 3 else (1 if shape is not None else None)
    if rows is not None and row >= rows:
        raise ParameterError(f"target {spec!r}: {tap} has rows 0-{rows - 1}")
    return Target("neuron", tap, first, last, row)


def parse_many(text: str, *, taps: Sequence[str], shapes: Optional[Mapping[str, tuple]] = None) -> list[tuple[Target, float]]:
    """``"enc.5:12*1 + ar.3*0.5"`` → ``[(Target, weight), …]``; ``""`` → ``[]``."""
    out = []
    for part in filter(None, (p.strip() for p in text.split("+"))):
        spec, _, weight = part.partition("*")
        try:
            w = float(weight) if weight.strip() else 1.0
        except ValueError:
            raise ParameterError(f"target weight {weight.strip()!r} must be a number") from None
        if not math.isfinite(w):
            raise ParameterError(f"target weight {weight.strip()!r} must be finite")
        out.append((parse_one(spec, taps=taps, shapes=shapes), w))
    return out


def format_many(parts: Sequence[tuple[Target, float]]) -> str:
    return " + ".join(f"{t}*{w:g}" for t, w in parts)


def command_handlers(registry: Registry) -> dict[str, Callable]:
    """Handlers of ``/target/set``, ``/target/add`` and ``/target/clear`` for an OSC router
    (``handler(args, sender)``): each sets ``/target/spec``.

    >>> from earengine.params import default_registry
    >>> registry = default_registry()
    >>> table = command_handlers(registry)
    >>> table["/target/set"](("enc.5:12",), ()); table["/target/add"](("ar.3", 0.5), ())
    >>> registry.get("/target/spec")
    'enc.5:12 + ar.3*0.5'
    """

    def set_(args: tuple, sender: tuple) -> None:
        registry.set("/target/spec", args[0], source="osc")

    def add(args: tuple, sender: tuple) -> None:
        spec, weight = args
        current = registry.get("/target/spec")
        part = f"{spec}*{weight:g}"
        registry.set("/target/spec", f"{current} + {part}" if current else part, source="osc")

    def clear(args: tuple, sender: tuple) -> None:
        registry.set("/target/spec", "", source="osc")

    return {"/target/set": set_, "/target/add": add, "/target/clear": clear}
