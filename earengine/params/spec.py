"""Parameter and command specifications: one immutable row per control.

A :class:`ParamSpec` describes a value the engine holds (``/loop/gain``); a :class:`CommandSpec`
describes an action (``/loop/load <path>``). Both validate raw OSC-style argument tuples at the
boundary and say, in one line, what was wrong. Everything else — OSC routes, OSCQuery, MIDI maps,
presets, CLI overrides, docs — is derived from these rows.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Mapping, Optional, Sequence, TypeVar

from earengine.errors import ConfigError, ParameterError

__all__ = ["ParamSpec", "CommandSpec", "ArgSpec", "TYPES", "SCALES", "ACCESS", "row"]

#: Value types a parameter can hold, with their OSC type tags.
TYPES = {"float": "f", "int": "i", "bool": "i", "enum": "s", "str": "s"}
#: How a normalised control position (0..1, e.g. a MIDI CC) maps onto a numeric range.
SCALES = ("lin", "log")
#: Who may set a parameter: ``rw`` anyone (OSC, MIDI, presets, the command line); ``r`` only the
#: engine, which writes it as a reading (``/clock/peers``): others read it with /get or /notify.
ACCESS = ("rw", "r")

_ADDRESS = re.compile(r"^(/[a-z][a-z0-9_]*)+$")


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


#: The range of an OSC ``i`` argument: every int the engine takes must be one it can send back.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


def _coerce(kind: str, value: Any, name: str, choices: Sequence[str] = ()) -> Any:
    """Turn one raw argument into a value of ``kind``, or raise a one-line ParameterError."""
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParameterError(f"{name}={_describe(value)} must be a number")
        value = float(value)
        if not math.isfinite(value):
            raise ParameterError(f"{name}={_describe(value)} must be finite")
        return value
    if kind == "int":
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ParameterError(f"{name}={_describe(value)} must be finite")
            if value != int(value):
                raise ParameterError(f"{name}={_describe(value)} must be a whole number")
        elif not isinstance(value, int):
            raise ParameterError(f"{name}={_describe(value)} must be an integer")
        if not INT_MIN <= value <= INT_MAX:  # what an OSC int (and the answer that echoes it) holds
            raise ParameterError(f"{name}={_describe(value)} must fit in 32 bits ({INT_MIN} … {INT_MAX})")
        return int(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false", "on", "off"):
            return value.lower() in ("true", "on")
        raise ParameterError(f"{name}={_describe(value)} must be 0 or 1")
    if kind == "enum":
        if not isinstance(value, str) or value not in choices:
            raise ParameterError(f"{name}={_describe(value)} must be one of {', '.join(choices)}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ParameterError(f"{name}={_describe(value)} must be a string")
        if "\x00" in value:
            raise ParameterError(f"{name} must not contain NUL characters")
        return value
    raise ParameterError(f"{name}: unknown type {kind!r}")  # pragma: no cover - specs are checked


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of the engine.

    Parameters
    ----------
    address : str
        OSC address, which is also the parameter's name: ``/namespace/name``.
    type : {'float', 'int', 'bool', 'enum', 'str'}
        Value type.
    default : object
        Value at start; must itself validate.
    min, max : float or None
        Inclusive numeric range (numbers only).
    scale : {'lin', 'log'}
        How a normalised control (0..1, a MIDI CC) maps onto ``[min, max]``; ``log`` needs
        ``min > 0``.
    unit : str
        Unit shown in docs and OSCQuery (``dB``, ``ms``, ``BPM``, ``Hz``, …).
    choices : tuple of str
        Allowed values of an ``enum``.
    ramp_ms : float >= 0
        Smoothing time the audio side applies to changes (0: jump).
    live : bool
        Whether the value may change while the engine runs (else only at start).
    doc : str
        One line saying what it does.
    access : {'rw', 'r'}
        ``r``: a reading the engine sets itself; OSC, MIDI, presets and ``--set`` cannot set it
        (:meth:`check_writable`), while the engine's own :meth:`Registry.set
        <earengine.params.registry.Registry.set>` can.

    Examples
    --------
    >>> gain = ParamSpec("/loop/gain", "float", 0.0, min=-60.0, max=6.0, unit="dB", doc="Loop level.")
    >>> gain.validate((-6,))
    -6.0
    >>> ParamSpec.from_dict(gain.to_dict()) == gain
    True
    >>> ParamSpec("/clock/peers", "int", 0, min=0, access="r").check_writable()
    Traceback (most recent call last):
    ...
    earengine.errors.ParameterError: read-only: /clock/peers is set by the engine; read it with /get or /notify
    """

    address: str
    type: str
    default: Any
    min: Optional[float] = None
    max: Optional[float] = None
    scale: str = "lin"
    unit: str = ""
    choices: tuple = ()
    ramp_ms: float = 0.0
    live: bool = True
    doc: str = ""
    access: str = "rw"

    def __post_init__(self) -> None:
        if not _ADDRESS.match(self.address):
            raise ValueError(f"address={self.address!r} must look like /namespace/name")
        if self.type not in TYPES:
            raise ValueError(f"{self.address}: type={self.type!r} must be one of {', '.join(TYPES)}")
        if self.scale not in SCALES:
            raise ValueError(f"{self.address}: scale={self.scale!r} must be lin or log")
        if self.access not in ACCESS:
            raise ValueError(f"{self.address}: access={self.access!r} must be one of {', '.join(ACCESS)}")
        object.__setattr__(self, "choices", tuple(self.choices))
        if self.type == "enum" and not self.choices:
            raise ValueError(f"{self.address}: an enum needs choices")
        if self.scale == "log" and (self.min is None or self.min <= 0):
            raise ValueError(f"{self.address}: a log scale needs min > 0")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"{self.address}: min={self.min} must be <= max={self.max}")
        self.validate((self.default,))  # every default validates, by construction

    # -- derived facts --------------------------------------------------------------------
    @property
    def namespace(self) -> str:
        """First address component, e.g. ``loop`` for ``/loop/gain``."""
        return self.address.split("/")[1]

    @property
    def typetag(self) -> str:
        """OSC type tag of the value."""
        return TYPES[self.type]

    @property
    def numeric(self) -> bool:
        return self.type in ("float", "int")

    @property
    def writable(self) -> bool:
        """Whether anyone but the engine may set it (``access`` is ``rw``)."""
        return self.access == "rw"

    def check_writable(self) -> None:
        """Raise a one-line ParameterError, starting ``read-only``, when only the engine sets this
        row: the check of every path a user sets through (OSC, MIDI maps, ``--set``)."""
        if not self.writable:
            raise ParameterError(f"read-only: {self.address} is set by the engine; read it with /get or /notify")

    # -- validation -------------------------------------------------------------------------
    def validate(self, args: Sequence[Any]) -> Any:
        """Check raw arguments (as received over OSC) and return the value.

        Raises
        ------
        ParameterError
            With a one-line reason: wrong count, wrong type, NaN or inf, out of range,
            not a choice.
        """
        if len(args) != 1:
            raise ParameterError(f"{self.address} takes 1 value ({self.type}), got {len(args)}")
        value = _coerce(self.type, args[0], self.address, self.choices)
        if self.numeric:
            lo, hi = self.min, self.max
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise ParameterError(
                    f"{self.address}={_describe(value)} must be within [{_describe(lo)}, {_describe(hi)}]"
                    + (f" {self.unit}" if self.unit else "")
                )
        return value

    # -- normalised control (MIDI CC, faders) ---------------------------------------------
    def from_unit(self, position: float) -> Any:
        """Map a control position in [0, 1] onto a valid value, honouring the scale.

        >>> ParamSpec("/x/f", "float", 100.0, min=10.0, max=1000.0, scale="log").from_unit(0.5)
        100.0
        """
        position = min(1.0, max(0.0, float(position)))
        if self.type == "bool":
            return position >= 0.5
        if self.type == "enum":
            return self.choices[min(len(self.choices) - 1, int(position * len(self.choices)))]
        if not self.numeric or self.min is None or self.max is None:
            raise ParameterError(f"{self.address} has no range to map a control onto")
        if self.scale == "log":
            value = self.min * (self.max / self.min) ** position
        else:
            value = self.min + (self.max - self.min) * position
        value = min(self.max, max(self.min, value))
        return int(round(value)) if self.type == "int" else round(value, 12)

    def to_unit(self, value: Any) -> float:
        """Inverse of :meth:`from_unit`: where ``value`` sits in [0, 1]."""
        if self.type == "bool":
            return 1.0 if value else 0.0
        if self.type == "enum":
            return self.choices.index(value) / max(1, len(self.choices) - 1)
        if not self.numeric or self.min is None or self.max is None or self.max == self.min:
            return 0.0
        if self.scale == "log":
            return math.log(value / self.min) / math.log(self.max / self.min)
        return (value - self.min) / (self.max - self.min)

    # -- round trip -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["choices"] = list(self.choices)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ParamSpec":
        names = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if k == "choices" else v) for k, v in data.items() if k in names})


@dataclass(frozen=True)
class ArgSpec:
    """One argument of a command: a name, a type and an optional constraint."""

    name: str
    type: str
    choices: tuple = ()
    optional: bool = False

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "choices": list(self.choices), "optional": self.optional}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ArgSpec":
        return cls(data["name"], data["type"], tuple(data.get("choices", ())), bool(data.get("optional", False)))


@dataclass(frozen=True)
class CommandSpec:
    """An action addressed over OSC, such as ``/loop/load <path>``.

    What it answers follows one rule, scsynth's (:attr:`answers`): a command answers ``/done
    <address>`` once it has done its work; a query answers with its own ``reply`` instead; data
    that streams in (``silent``, as scsynth's ``/b_setn``) is as silent as a setting. Every
    refusal is answered ``/fail <address> <reason>``.

    Parameters
    ----------
    address : str
    args : tuple of ArgSpec
        Validated like parameter values.
    doc : str
    later : bool
        It completes later, off the OSC thread (file I/O); ``/done`` comes when it has.
    reply : str
        A query: the address of the answer it sends instead of ``/done`` (``<address>``: the
        parameter asked about).
    variadic : bool
        The last argument may repeat (e.g. several values).
    silent : bool
        Data sent many times a second (a frame of norms): nothing answers it but a refusal.

    Examples
    --------
    >>> CommandSpec("/loop/load", (ArgSpec("path", "str"),), later=True).answers
    '/done'
    >>> CommandSpec("/status", reply="/status.reply").answers
    '/status.reply'
    """

    address: str
    args: tuple = ()
    doc: str = ""
    later: bool = False
    reply: str = ""
    variadic: bool = False
    extra: dict = field(default_factory=dict, compare=False, hash=False)
    silent: bool = False

    def __post_init__(self) -> None:
        if not _ADDRESS.match(self.address):
            raise ValueError(f"address={self.address!r} must look like /namespace/name")
        if self.silent and (self.reply or self.later):
            raise ValueError(f"{self.address}: silent data neither replies nor completes later")
        object.__setattr__(self, "args", tuple(a if isinstance(a, ArgSpec) else ArgSpec(*a) for a in self.args))

    @property
    def answers(self) -> str:
        """What it answers on success: its ``reply`` (a query), ``/done`` (``/done <address>``),
        or ``""`` (``silent`` data). Derived here, sent by the OSC router, shown in the docs."""
        if self.reply:
            return self.reply
        return "" if self.silent else "/done"

    @property
    def namespace(self) -> str:
        return self.address.split("/")[1]

    @property
    def typetags(self) -> str:
        return "".join(TYPES[a.type] for a in self.args)

    def validate(self, args: Sequence[Any]) -> tuple:
        """Check raw arguments and return them coerced, or raise a one-line ParameterError."""
        required = sum(1 for a in self.args if not a.optional)
        if len(args) < required or (len(args) > len(self.args) and not self.variadic):
            want = " ".join(f"<{a.name}>" if not a.optional else f"[{a.name}]" for a in self.args)
            raise ParameterError(f"{self.address} takes {want or 'no arguments'}, got {len(args)} argument(s)")
        out = []
        for i, value in enumerate(args):
            spec = self.args[min(i, len(self.args) - 1)]
            out.append(_coerce(spec.type, value, f"{self.address} {spec.name}", spec.choices))
        return tuple(out)

    def to_dict(self) -> dict:
        return {
            "address": self.address,
            "args": [a.to_dict() for a in self.args],
            "doc": self.doc,
            "later": self.later,
            "reply": self.reply,
            "variadic": self.variadic,
            "silent": self.silent,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CommandSpec":
        return cls(
            data["address"],
            tuple(ArgSpec.from_dict(a) for a in data.get("args", ())),
            data.get("doc", ""),
            bool(data.get("later", False)),
            data.get("reply", ""),
            bool(data.get("variadic", False)),
            silent=bool(data.get("silent", False)),
        )


_Row = TypeVar("_Row", ParamSpec, CommandSpec)


def row(rows: Iterable[_Row], address: str) -> _Row:
    """The row of ``address`` in a table of rows (a feature's ``params`` module), for code that
    needs one row where no registry is at hand (a dispatch table checked at import).

    >>> row((ParamSpec("/a/b", "float", 1.0), ParamSpec("/a/c", "int", 2)), "/a/c").default
    2
    >>> row((), "/a/b")
    Traceback (most recent call last):
    ...
    earengine.errors.ConfigError: no row for /a/b in this table
    """
    for spec in rows:
        if spec.address == address:
            return spec
    raise ConfigError(f"no row for {address} in this table")
