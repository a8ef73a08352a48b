"""MIDI bindings: which control moves which parameter or fires which command, and the maps.

A :class:`Binding` is one control (a CC, a 14-bit CC pair, a key or a range of keys on a channel)
bound to one address, with a mode saying how it acts. :func:`parse_map` reads and validates a
list of them against the registry's rows (``/midi/map`` holds that list as JSON), and
:class:`MapStore` keeps named controller maps as JSON files: the user's, then the shipped ones.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from earengine.errors import ParameterError, PresetError
from earengine.files import NamedJsonStore, user_dir
from earengine.params.registry import Registry
from earengine.params.spec import ParamSpec
from earengine.resources import MIDI_MAPS

__all__ = ["MODES", "Mode", "DEFAULT_MODES", "Binding", "check_binding", "parse_map", "map_json", "same_control", "MapStore",
           "SHIPPED_MAPS", "MAP_FORMAT", "default_map_dir"]

#: Maps shipped with earengine (read-only).
SHIPPED_MAPS = MIDI_MAPS
MAP_FORMAT = 1


def _has_range(b: "Binding", spec: ParamSpec) -> Optional[str]:
    if spec.type == "str" or (spec.numeric and (spec.min is None or spec.max is None)):
        return f"{b.address} has no range for a control to move through"
    return None


def _is_switch(b: "Binding", spec: ParamSpec) -> Optional[str]:
    if spec.type != "bool":
        return f"mode={b.mode} needs a switch (a bool parameter); {b.address} is {spec.type}"
    return None


def _has_choices(b: "Binding", spec: ParamSpec) -> Optional[str]:
    if spec.type != "enum":
        return f"mode={b.mode} needs an enum parameter; {b.address} is {spec.type}"
    return None


def _sets_its_value(b: "Binding", spec: ParamSpec) -> Optional[str]:
    if b.value is None:
        return f"mode={b.mode} on a parameter needs the value it sets"
    spec.validate((b.value,))  # says itself what is wrong with the value
    return None


@dataclass(frozen=True)
class Mode:
    """How a control acts on its address: one row of :data:`MODES`.

    Parameters
    ----------
    controls : tuple of {'cc', 'key', 'keys'}
        The controls that may carry it: a CC, one key, a range of keys (``note_high``).
    needs : callable(binding, spec) -> str or None
        What it needs of the parameter it moves: the reason it cannot move ``spec``, or None.
    commands : bool
        Whether it may fire a command.
    doc : str
    """

    controls: tuple
    needs: Callable[["Binding", ParamSpec], Optional[str]]
    commands: bool = False
    doc: str = ""


#: How a control acts on its address, by the name a binding's ``mode`` gives; what each does
#: with a message is :data:`earengine.midi.control.WAYS`, checked against these rows at import.
MODES: dict[str, Mode] = {
    "absolute": Mode(("cc",), _has_range, doc="a CC's position sets the value, through the row's scale"),
    "toggle": Mode(("cc", "key"), _is_switch, doc="each press flips a switch"),
    "momentary": Mode(("cc", "key"), _is_switch, doc="a switch is on while the control is held"),
    "trigger": Mode(("cc", "key"), _sets_its_value, commands=True,
                    doc="a press runs a command, or sets the binding's value"),
    "range": Mode(("keys",), _has_range, doc="a key's place in the range sets the value"),
    "pitch_class": Mode(("keys",), _has_choices,
                        doc="a key's pitch class picks one of an enum's choices (as /son/root)"),
}
#: The mode a binding gets when it names none, by its control.
DEFAULT_MODES = {"cc": "absolute", "key": "trigger", "keys": "range"}
_CONTROL_WORDS = {"cc": "a CC", "key": "a key", "keys": "a range of keys (note_high)"}


@dataclass(frozen=True)
class Binding:
    """One control bound to one address.

    Parameters
    ----------
    address : str
        A parameter or a command.
    channel : int in [1, 16]
    cc : int in [0, 127], optional
        Controller number (for ``bits=14``, the MSB's, 0-31; the LSB is ``cc + 32``).
    note : int in [0, 127], optional
        A key; with ``note_high`` the lowest of a range of keys.
    note_high : int, optional
    bits : {7, 14}
    mode : str
        ``absolute`` (a CC's position sets the value), ``toggle`` (each press flips a switch),
        ``momentary`` (on while held), ``trigger`` (a press runs a command, or sets ``value``),
        ``range`` (a key's place in the range sets the value), ``pitch_class`` (a key's pitch
        class picks one of an enum's choices, as ``/son/root``).
    value : object, optional
        What ``trigger`` sets, or the arguments it passes to a command (a list).
    invert : bool
        Top of the control is the bottom of the range.

    Examples
    --------
    >>> b = Binding("/loop/gain", channel=1, cc=81)
    >>> b.control, b.to_dict()
    ('cc 1/81', {'address': '/loop/gain', 'cc': 81})
    >>> Binding.from_dict(b.to_dict()) == b
    True
    """

    address: str
    channel: int = 1
    cc: Optional[int] = None
    note: Optional[int] = None
    note_high: Optional[int] = None
    bits: int = 7
    mode: str = ""
    value: Any = None
    invert: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.value, list):
            object.__setattr__(self, "value", tuple(self.value))
        if not self.mode:
            object.__setattr__(self, "mode", DEFAULT_MODES[self.kind])

    @property
    def kind(self) -> str:
        """Which control it is: ``cc``, ``key`` (one note) or ``keys`` (a range of notes)."""
        if self.cc is not None:
            return "cc"
        return "keys" if self.note_high is not None else "key"

    @property
    def control(self) -> str:
        """The control in words: ``cc 1/81``, ``cc14 1/7``, ``note 1/60``, ``notes 1/60-71``."""
        if self.cc is not None:
            return f"{'cc14' if self.bits == 14 else 'cc'} {self.channel}/{self.cc}"
        if self.note_high is not None:
            return f"notes {self.channel}/{self.note}-{self.note_high}"
        return f"note {self.channel}/{self.note}"

    @property
    def args(self) -> tuple:
        """The arguments ``value`` stands for: a tuple as it is, one value, or none."""
        if isinstance(self.value, tuple):
            return self.value
        return () if self.value is None else (self.value,)

    @property
    def tag(self) -> str:
        """The registry source of the changes this control makes."""
        return f"midi:{self.control}"

    def to_dict(self) -> dict:
        out: dict = {}
        defaults = Binding(self.address, cc=self.cc, note=self.note, note_high=self.note_high)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("address", "cc", "note", "note_high"):
                if value is not None:
                    out[f.name] = value
            elif value != getattr(defaults, f.name) and value is not None:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Binding":
        if not isinstance(data, Mapping):
            raise ParameterError(f"a MIDI binding must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ParameterError(f"MIDI binding key(s) {', '.join(unknown)} unknown; use {', '.join(sorted(names))}")
        if "address" not in data:
            raise ParameterError("a MIDI binding needs an address")
        try:
            return cls(**dict(data))
        except TypeError as exc:
            raise ParameterError(f"MIDI binding {dict(data)!r}: {exc}") from None


def _int_in(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ParameterError(f"{name}={value!r} must be an integer within [{lo}, {hi}]")


def check_binding(b: Binding, registry: Registry) -> Binding:
    """Validate a binding against the registry's rows; returns it or raises ParameterError."""
    where = f"MIDI binding of {b.address}"
    if not isinstance(b.address, str) or (b.address not in registry.specs and b.address not in registry.commands):
        raise ParameterError(f"{where}: address={b.address!r} is not a parameter or command; see 'earengine params'")
    _int_in(f"{where}: channel", b.channel, 1, 16)
    if (b.cc is None) == (b.note is None):
        raise ParameterError(f"{where}: give either cc or note")
    if b.bits not in (7, 14):
        raise ParameterError(f"{where}: bits={b.bits!r} must be 7 or 14")
    mode = MODES.get(b.mode) if isinstance(b.mode, str) else None
    if mode is None:
        raise ParameterError(f"{where}: mode={b.mode!r} must be one of {', '.join(MODES)}")
    if b.cc is not None:
        _int_in(f"{where}: cc", b.cc, 0, 31 if b.bits == 14 else 127)
        if b.note_high is not None:
            raise ParameterError(f"{where}: note_high is for a range of keys, not a cc")
    else:
        _int_in(f"{where}: note", b.note, 0, 127)
        if b.bits != 7:
            raise ParameterError(f"{where}: a note cannot be 14-bit")
        if b.note_high is not None:
            _int_in(f"{where}: note_high", b.note_high, b.note, 127)
    if b.kind not in mode.controls:
        fits = [name for name, m in MODES.items() if b.kind in m.controls]
        raise ParameterError(f"{where}: mode={b.mode} is for {' or '.join(_CONTROL_WORDS[c] for c in mode.controls)}, "
                             f"not {_CONTROL_WORDS[b.kind]}; use {', '.join(fits)}")
    if b.address in registry.commands:
        if not mode.commands:
            raise ParameterError(f"{where}: a command can only be fired by a mode that fires "
                                 f"({', '.join(name for name, m in MODES.items() if m.commands)})")
        registry.commands[b.address].validate(b.args)
        return b
    spec = registry.spec(b.address)
    try:
        spec.check_writable()
    except ParameterError as exc:
        raise ParameterError(f"{where}: {exc}") from None
    why = mode.needs(b, spec)
    if why is not None:
        raise ParameterError(f"{where}: {why}")
    return b


def parse_map(data: Any, registry: Registry) -> tuple[Binding, ...]:
    """Bindings from JSON text or already-parsed data (a list, or a map file's object)."""
    if isinstance(data, str):
        if not data.strip():
            return ()
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise ParameterError(f"/midi/map is not valid JSON: {str(exc).splitlines()[0]}") from None
    if isinstance(data, Mapping):
        data = data.get("bindings", ())
    if not isinstance(data, (list, tuple)):
        raise ParameterError("/midi/map must be a JSON list of bindings")
    out = tuple(check_binding(Binding.from_dict(item), registry) for item in data)
    seen: dict = {}
    for b in out:  # one control, one meaning
        key = (b.control, b.address)
        if key in seen:
            raise ParameterError(f"{b.control} is bound to {b.address} twice")
        seen[key] = b
    return out


def map_json(bindings: Sequence[Binding]) -> str:
    """The canonical ``/midi/map`` text of some bindings (compact, sorted keys)."""
    if not bindings:
        return ""
    return json.dumps([b.to_dict() for b in bindings], sort_keys=True, separators=(",", ":"))


def same_control(a: Binding, b: Binding) -> bool:
    """Whether two bindings listen to the same physical control (learning replaces it).

    >>> same_control(Binding("/loop/gain", cc=7, bits=14), Binding("/opt/lr", cc=39))
    True
    """
    if a.channel != b.channel:
        return False
    if a.cc is not None and b.cc is not None:
        nums = {a.cc} | ({a.cc + 32} if a.bits == 14 else set())
        return b.cc in nums or (b.bits == 14 and b.cc + 32 in nums)
    if a.note is not None and b.note is not None:
        a_hi = a.note_high if a.note_high is not None else a.note
        b_hi = b.note_high if b.note_high is not None else b.note
        return a.note <= b_hi and b.note <= a_hi
    return False


def default_map_dir() -> Path:
    """``$EARENGINE_HOME/midi``, else ``~/.local/share/earengine/midi``."""
    return user_dir("midi")


class MapStore:
    """Controller maps: JSON files in a user folder, falling back to the shipped ones (a
    :class:`~earengine.files.NamedJsonStore` of maps).

    A map file is ``{"earengine_midi_map": 1, "name": ..., "controller": ..., "ports": {"in": ...,
    "out": ...}, "bindings": [...]}``; loading validates every binding against the registry.
    """

    def __init__(self, folder: Optional[os.PathLike | str] = None, *,
                 shipped: Optional[os.PathLike | str] = SHIPPED_MAPS) -> None:
        self.files = NamedJsonStore(folder or default_map_dir(), shipped=shipped, kind="MIDI map",
                                    list_command="/midi/maps",
                                    shape=f'an object with "earengine_midi_map": {MAP_FORMAT}')

    def names(self) -> list[str]:
        return self.files.names()

    def read(self, name: str) -> dict:
        """The map file's object (not yet validated against a registry)."""
        data = self.files.read(name)
        if data.get("earengine_midi_map") != MAP_FORMAT:
            raise PresetError(f"MIDI map {name!r} ({self.files.path(name)}) must be {self.files.shape}")
        return data

    def load(self, name: str, registry: Registry) -> tuple[Binding, ...]:
        """Read and validate a map; raises PresetError naming the first bad binding."""
        try:
            return parse_map(self.read(name), registry)
        except ParameterError as exc:
            raise PresetError(f"MIDI map {name!r}: {exc}") from None

    def save(self, name: str, bindings: Sequence[Binding], *, controller: str = "") -> Path:
        return self.files.write(name, {"earengine_midi_map": MAP_FORMAT, "name": name, "controller": controller,
                                       "bindings": [b.to_dict() for b in bindings]})
