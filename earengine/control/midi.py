"""MIDI: ports, parsing, controls bound to parameters, and feedback to the controller.

The only module that imports ``rtmidi`` (python-rtmidi), lazily. Three layers:

- :class:`MidiParser` turns raw bytes into messages: running status, system realtime bytes in
  the middle of a message, sysex (dropped), stray data bytes — nothing it is given can make it
  raise.
- :class:`MidiControl` binds controls to the registry: a CC (7-bit, or a 14-bit pair: MSB on CC
  0-31, LSB on that number + 32) moves a parameter through its row's own scale
  (:meth:`~earengine.params.spec.ParamSpec.from_unit`: lin or log, ints, enums, switches), or fires
  a command; notes trigger commands, flip switches, or pick a value from a range of keys (a note
  chooses a target channel, a key sets the sonification root). Pick-up takeover keeps a fader
  from jumping a value; ``learn`` binds the next control that moves; every change of a mapped
  parameter from anywhere else is sent back to its control. The bindings are the registry value
  ``/midi/map`` (JSON), so presets carry them and OSC listeners see them change.
- :class:`MidiService` opens ports by name or pattern, or ports others connect to
  (``virtual``), polls them on one thread, reconnects ports that disappear and come back, and
  hands clock messages to the clock and everything else to :class:`MidiControl`.

On JACK (the default on Linux when a server runs) the ports belong to one JACK client made with
JACK-Client (:class:`JackMidi`), not with python-rtmidi's JACK backend: rtmidi keeps Python's
lock while it waits on the JACK server, and in the engine process pyo's JACK callback needs that
lock, so opening or connecting a port would stall a synchronous JACK graph for its whole timeout.
JACK-Client lets go of the lock, and gives each event the frame it came on. python-rtmidi serves
ALSA (``--midi-backend alsa``).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from earengine.control.clock import ArrivalClock
from earengine.control.service import ThreadService
from earengine.errors import DeviceError, EarEngineError, ParameterError, PresetError
from earengine.files import atomic_write_bytes, user_dir
from earengine.params.registry import Change, Registry
from earengine.resources import MIDI_MAPS

__all__ = [
    "MidiParser",
    "Binding",
    "MidiControl",
    "MapStore",
    "MidiService",
    "MidiInput",
    "MidiOutput",
    "JackMidi",
    "MemoryInput",
    "MemoryOutput",
    "parse_map",
    "map_json",
    "match_port",
    "CLOCK_STATUSES",
    "SHIPPED_MAPS",
    "command_handlers",
]

log = logging.getLogger("earengine.midi")

#: Maps shipped with earengine (read-only).
SHIPPED_MAPS = MIDI_MAPS
MAP_FORMAT = 1
#: System messages that belong to the clock: clock, start, continue, stop, song position.
CLOCK_STATUSES = frozenset((0xF8, 0xFA, 0xFB, 0xFC, 0xF2))
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_CC, _NOTE_ON, _NOTE_OFF = 0xB0, 0x90, 0x80
_DATA_BYTES = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}
_SYSTEM_BYTES = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0}
_MAX_SYSEX = 65536


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------
class MidiParser:
    """Raw MIDI bytes to complete messages (tuples of ints, status first).

    Examples
    --------
    >>> p = MidiParser()
    >>> p.feed([0xB0, 7, 100, 8, 50])            # the second CC uses running status
    [(176, 7, 100), (176, 8, 50)]
    >>> p.feed([0x90, 60, 0xF8, 100])            # a clock byte inside a note-on
    [(248,), (144, 60, 100)]
    >>> p.feed([0xF0, 1, 2, 3, 0xF7, 0xB1, 1, 2])  # sysex is dropped
    [(177, 1, 2)]
    """

    def __init__(self) -> None:
        self._status: Optional[int] = None  # running status (channel messages only)
        self._data: list[int] = []
        self._need = 0
        self._sysex = False
        self._sysex_len = 0
        self.dropped = 0

    def feed(self, data: Iterable[int]) -> list[tuple]:
        out: list[tuple] = []
        for byte in data:
            try:
                byte = int(byte) & 0xFF
            except (TypeError, ValueError):
                self.dropped += 1
                continue
            if byte >= 0xF8:  # realtime: may appear anywhere, touches nothing
                out.append((byte,))
            elif byte == 0xF0:
                self._sysex, self._sysex_len, self._status, self._data = True, 0, None, []
            elif byte == 0xF7:
                if self._sysex:
                    self._sysex = False
                    self.dropped += 1  # a whole sysex message: nothing here listens to one
            elif byte >= 0x80:
                if self._sysex:  # a status byte ends an unterminated sysex
                    self._sysex = False
                    self.dropped += 1
                if self._data:
                    self.dropped += 1  # the previous message was cut short
                self._data = []
                if byte >= 0xF0:
                    self._status = None  # system common cancels running status
                    need = _SYSTEM_BYTES.get(byte, 0)
                    if need == 0:
                        out.append((byte,))
                        self._need = 0
                    else:
                        self._need = need
                        self._data = [byte]
                else:
                    self._status = byte
                    self._need = _DATA_BYTES[byte & 0xF0]
            elif self._sysex:
                self._sysex_len += 1
                if self._sysex_len > _MAX_SYSEX:
                    self._sysex = False
            else:  # a data byte
                if not self._data:
                    if self._status is None:
                        self.dropped += 1  # no status to belong to
                        continue
                    self._data = [self._status]
                    self._need = _DATA_BYTES[self._status & 0xF0]
                self._data.append(byte)
                if len(self._data) - 1 >= self._need:
                    out.append(tuple(self._data))
                    self._data = []
        return out


# ---------------------------------------------------------------------------------------------
# Bindings
# ---------------------------------------------------------------------------------------------
MODES = ("absolute", "toggle", "momentary", "trigger", "range", "pitch_class")


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
            mode = "absolute" if self.cc is not None else ("range" if self.note_high is not None else "trigger")
            object.__setattr__(self, "mode", mode)

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
    if b.mode not in MODES:
        raise ParameterError(f"{where}: mode={b.mode!r} must be one of {', '.join(MODES)}")
    if b.cc is not None:
        _int_in(f"{where}: cc", b.cc, 0, 31 if b.bits == 14 else 127)
        if b.note_high is not None or b.mode in ("range", "pitch_class"):
            raise ParameterError(f"{where}: mode={b.mode} and note_high are for notes, not a cc")
    else:
        _int_in(f"{where}: note", b.note, 0, 127)
        if b.bits != 7 or b.mode == "absolute":
            raise ParameterError(f"{where}: a note cannot be mode=absolute or 14-bit; use trigger, toggle, momentary, range or pitch_class")
        if b.note_high is not None:
            _int_in(f"{where}: note_high", b.note_high, b.note, 127)
        if (b.mode in ("range", "pitch_class")) != (b.note_high is not None):
            raise ParameterError(f"{where}: mode={b.mode} needs note_high (a range of keys) exactly when range or pitch_class")
    if b.address in registry.commands:
        if b.mode != "trigger":
            raise ParameterError(f"{where}: a command can only be triggered (mode=trigger)")
        args = b.args
        registry.commands[b.address].validate(args)
        return b
    spec = registry.spec(b.address)
    if b.mode in ("toggle", "momentary") and spec.type != "bool":
        raise ParameterError(f"{where}: mode={b.mode} needs a switch (a bool parameter); {b.address} is {spec.type}")
    if b.mode == "trigger":
        if b.value is None:
            raise ParameterError(f"{where}: mode=trigger on a parameter needs the value it sets")
        spec.validate((b.value,))
    if b.mode == "pitch_class" and spec.type != "enum":
        raise ParameterError(f"{where}: mode=pitch_class needs an enum parameter; {b.address} is {spec.type}")
    if b.mode in ("absolute", "range"):
        if spec.type == "str" or (spec.numeric and (spec.min is None or spec.max is None)):
            raise ParameterError(f"{where}: {b.address} has no range for a control to move through")
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


def default_map_dir() -> Path:
    """``$EARENGINE_HOME/midi``, else ``~/.local/share/earengine/midi``."""
    return user_dir("midi")


class MapStore:
    """Controller maps: JSON files in a user folder, falling back to the shipped ones.

    A map file is ``{"earengine_midi_map": 1, "name": ..., "controller": ..., "ports": {"in": ...,
    "out": ...}, "bindings": [...]}``; loading validates every binding against the registry.
    """

    def __init__(self, folder: Optional[os.PathLike | str] = None, *,
                 shipped: Optional[os.PathLike | str] = SHIPPED_MAPS) -> None:
        self.folder = Path(folder).expanduser() if folder else default_map_dir()
        self.shipped = Path(shipped) if shipped else None

    def _dirs(self) -> list[Path]:
        return [d for d in (self.folder, self.shipped) if d is not None]

    @staticmethod
    def check_name(name: str) -> str:
        if not isinstance(name, str) or not _NAME.match(name):
            raise PresetError(f"MIDI map name={name!r} must be 1-64 letters, digits, '-' or '_' (no paths)")
        return name

    def names(self) -> list[str]:
        found: set = set()
        for d in self._dirs():
            if d.is_dir():
                found.update(p.stem for p in d.glob("*.json") if _NAME.match(p.stem))
        return sorted(found)

    def path(self, name: str) -> Path:
        self.check_name(name)
        for d in self._dirs():
            path = d / f"{name}.json"
            if path.is_file():
                return path
        raise PresetError(f"no MIDI map named {name!r}; /midi/maps shows the names")

    def read(self, name: str) -> dict:
        """The map file's object (not yet validated against a registry)."""
        path = self.path(name)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise PresetError(f"MIDI map {name!r} ({path}) is not valid JSON: {str(exc).splitlines()[0]}") from None
        if not isinstance(data, Mapping) or data.get("earengine_midi_map") != MAP_FORMAT:
            raise PresetError(f"MIDI map {name!r} ({path}) must be an object with \"earengine_midi_map\": {MAP_FORMAT}")
        return dict(data)

    def load(self, name: str, registry: Registry) -> tuple[Binding, ...]:
        """Read and validate a map; raises PresetError naming the first bad binding."""
        try:
            return parse_map(self.read(name), registry)
        except ParameterError as exc:
            raise PresetError(f"MIDI map {name!r}: {exc}") from None

    def save(self, name: str, bindings: Sequence[Binding], *, controller: str = "") -> Path:
        self.check_name(name)
        data = {"earengine_midi_map": MAP_FORMAT, "name": name, "controller": controller,
                "bindings": [b.to_dict() for b in bindings]}
        path = self.folder / f"{name}.json"
        try:
            atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
        except OSError as exc:
            raise PresetError(f"cannot write MIDI map {name!r} in {self.folder}: {exc.strerror or exc}") from None
        return path


# ---------------------------------------------------------------------------------------------
# Control: messages → registry, registry → feedback
# ---------------------------------------------------------------------------------------------
@dataclass
class _State:
    """What one binding remembers between messages (the MIDI thread's, except ``picked``)."""

    picked: bool = False
    last_pos: Optional[float] = None
    msb: int = 0
    pressed: bool = False
    sent: Optional[tuple] = None  # the last feedback sent, to send nothing twice


class MidiControl:
    """Controls bound to the registry through ``/midi/map``, with learn, takeover and feedback.

    Parameters
    ----------
    registry : Registry
    dispatch : callable(address, args), optional
        Runs a command (the engine passes its OSC router's handler).
    send : callable(bytes), optional
        MIDI output for feedback.
    on_learn : callable(address, control), optional
        Told when ``learn`` has bound a control.

    Examples
    --------
    >>> from earengine.params import default_registry
    >>> reg = default_registry()
    >>> ctl = MidiControl(reg)
    >>> reg.set("/midi/map", '[{"address": "/loop/gain", "cc": 81}]')
    '[{"address":"/loop/gain","cc":81}]'
    >>> reg.set("/midi/takeover", "jump")
    'jump'
    >>> ctl.handle((0xB0, 81, 127), 0.0)
    >>> reg.get("/loop/gain")     # the top of the fader is the top of the row's range
    6.0
    """

    TOLERANCE = 2.0 / 127.0  # how near a control must come to a value to pick it up
    LEARN_FINE_S = 0.25  # an LSB this soon after a learned MSB makes the binding 14-bit

    def __init__(self, registry: Registry, *, dispatch: Optional[Callable[[str, tuple], Any]] = None,
                 send: Optional[Callable[[bytes], None]] = None,
                 on_learn: Optional[Callable[[str, str], None]] = None,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self.dispatch = dispatch
        self.send = send
        self.on_learn = on_learn
        self._now = now
        self.counts = {"handled": 0, "unmapped": 0, "ignored": 0, "failed": 0, "feedback": 0}
        self._bindings: tuple[Binding, ...] = ()
        self._cc: dict = {}
        self._notes: dict = {}
        self._by_address: dict = {}
        self._state: dict = {}
        self._learning: Optional[str] = None
        self._learned: Optional[tuple[Binding, float]] = None
        self._seen: dict = {}  # last value of every CC, to tell a move from a repeat
        self._send_lock = threading.Lock()
        registry.add_check("/midi/map", self._check_map)
        self._rebuild(parse_map(registry.get("/midi/map"), registry))
        self._sub = registry.subscribe(self._on_change)

    def close(self) -> None:
        self._sub.close()

    # -- the map ------------------------------------------------------------------------------
    def _check_map(self, text: str) -> str:
        return map_json(parse_map(text, self.registry))

    @property
    def bindings(self) -> tuple[Binding, ...]:
        return self._bindings

    def _rebuild(self, bindings: tuple[Binding, ...]) -> None:
        cc: dict = {}
        notes: dict = {}
        by_address: dict = {}
        for b in bindings:
            ch = b.channel - 1
            if b.cc is not None:
                cc.setdefault((ch, b.cc), []).append((b, "msb" if b.bits == 14 else "cc"))
                if b.bits == 14:
                    cc.setdefault((ch, b.cc + 32), []).append((b, "lsb"))
            else:
                for n in range(b.note, (b.note_high if b.note_high is not None else b.note) + 1):
                    notes.setdefault((ch, n), []).append(b)
            by_address.setdefault(b.address, []).append(b)
            self._state.setdefault(b, _State())
        # one assignment each: the MIDI thread sees the old tables or the new ones, never half
        self._cc, self._notes, self._by_address, self._bindings = cc, notes, by_address, bindings
        for b in list(self._state):
            if b not in by_address.get(b.address, ()):
                del self._state[b]

    def set_bindings(self, bindings: Sequence[Binding], *, source: str = "midi") -> None:
        self.registry.set("/midi/map", map_json(tuple(bindings)), source=source)

    def forget(self, address: str) -> int:
        """Remove every binding of ``address``; returns how many there were."""
        keep = tuple(b for b in self._bindings if b.address != address)
        gone = len(self._bindings) - len(keep)
        if gone:
            self.set_bindings(keep)
        return gone

    def clear(self) -> None:
        self.set_bindings(())

    def learn(self, address: str, values: Sequence[Any] = ()) -> None:
        """Bind the next control that moves to ``address``.

        With ``values`` (text, as typed after the address) the control becomes a button that
        sets that value, or passes those arguments to the command.
        """
        value: Any = None
        if address in self.registry.commands:
            command = self.registry.commands[address]
            args = tuple(_typed(command.args[min(i, len(command.args) - 1)].type, v) for i, v in enumerate(values))
            try:
                command.validate(args)
            except ParameterError as exc:
                raise ParameterError(f"/midi/learn {address}: {exc}; give its arguments after the address") from None
            value = args or None
        elif address in self.registry.specs:
            spec = self.registry.spec(address)
            if len(values) > 1:
                raise ParameterError(f"/midi/learn {address} takes one value, got {len(values)}")
            if values:
                from earengine.params.registry import parse_text

                value = parse_text(spec, str(values[0]))
            elif spec.type == "str" or (spec.numeric and (spec.min is None or spec.max is None)):
                raise ParameterError(f"/midi/learn address={address} has no range a control could move through; give a value to set")
        else:
            raise ParameterError(f"/midi/learn address={address!r} is not a parameter or command; see 'earengine params'")
        self._learning = (address, value)

    def cancel(self) -> None:
        self._learning = None

    # -- registry → controller ------------------------------------------------------------------
    def _on_change(self, change: Change) -> None:
        if change.address == "/midi/map":
            self._rebuild(parse_map(change.value, self.registry))
            self.dump()
            return
        if change.address == "/midi/feedback" and change.value:
            self.dump()
            return
        for b in self._by_address.get(change.address, ()):
            own = change.source == b.tag
            if not own:
                self._state[b].picked = False  # the value moved away from under the control
            # A fader or knob that moved is where it is: telling it would fight the hand. A key or
            # button cannot know what it switched on (its light is the host's to set), so it is
            # told even when it made the change itself.
            if self.registry.get("/midi/feedback") and (not own or b.mode != "absolute"):
                self._feedback(b, change.value)

    def dump(self) -> None:
        """Send every mapped value to its control (motor faders and rings go to their places)."""
        if self.send is None or not self.registry.get("/midi/feedback"):
            return
        for b in self._bindings:
            if b.address in self.registry.specs:
                self._feedback(b, self.registry.get(b.address), force=True)

    def _feedback(self, b: Binding, value: Any, *, force: bool = False) -> None:
        if self.send is None or b.address not in self.registry.specs:
            return
        spec = self.registry.spec(b.address)
        ch = b.channel - 1
        messages: list[tuple] = []
        if b.cc is not None:
            if b.mode in ("toggle", "momentary"):
                messages = [(_CC | ch, b.cc, 127 if value else 0)]
            elif b.mode == "absolute":
                pos = min(1.0, max(0.0, spec.to_unit(value)))
                if b.invert:
                    pos = 1.0 - pos
                if b.bits == 14:
                    raw = int(round(pos * 16383))
                    messages = [(_CC | ch, b.cc, raw >> 7), (_CC | ch, b.cc + 32, raw & 0x7F)]
                else:
                    messages = [(_CC | ch, b.cc, int(round(pos * 127)))]
        elif b.mode in ("toggle", "momentary"):
            messages = [(_NOTE_ON | ch, b.note, 127 if value else 0)]
        elif b.mode in ("range", "pitch_class"):
            lit = self._note_for(b, spec, value)
            messages = [(_NOTE_ON | ch, n, 127 if n == lit else 0) for n in range(b.note, b.note_high + 1)]
        state = self._state.get(b)
        key = tuple(messages)
        if not messages or (state is not None and state.sent == key and not force):
            return
        if state is not None:
            state.sent = key
        with self._send_lock:  # one writer at a time into the port's ring buffer
            for m in messages:
                try:
                    self.send(bytes(m))
                    self.counts["feedback"] += 1
                except Exception:
                    log.debug("MIDI feedback failed", exc_info=True)
                    return

    @staticmethod
    def _note_for(b: Binding, spec, value: Any) -> Optional[int]:
        if b.mode == "pitch_class":
            try:
                index = spec.choices.index(value)
            except ValueError:
                return None
            for n in range(b.note, b.note_high + 1):
                if (n - b.note) % len(spec.choices) == index:
                    return n
            return None
        width = b.note_high - b.note
        pos = spec.to_unit(value) if width else 0.0
        return b.note + int(round(pos * width))

    # -- controller → registry ------------------------------------------------------------------
    def handle(self, message: Sequence[int], time_s: float = 0.0) -> None:
        """One complete message from an input. Never raises."""
        try:
            status = message[0]
            kind, ch = status & 0xF0, status & 0x0F
            if kind == _CC and len(message) >= 3:
                self._on_cc(ch, message[1] & 0x7F, message[2] & 0x7F)
            elif kind == _NOTE_ON and len(message) >= 3:
                self._on_note(ch, message[1] & 0x7F, message[2] & 0x7F)
            elif kind == _NOTE_OFF and len(message) >= 3:
                self._on_note(ch, message[1] & 0x7F, 0)
            else:
                self.counts["ignored"] += 1
        except Exception:
            self.counts["failed"] += 1
            log.exception("MIDI message %r failed", tuple(message))

    def _on_cc(self, ch: int, number: int, value: int) -> None:
        previous = self._seen.get((ch, number))
        self._seen[(ch, number)] = value
        if self._learning is not None or self._learned is not None:
            if self._learn_cc(ch, number, value, previous):
                return
        targets = self._cc.get((ch, number))
        if not targets:
            self.counts["unmapped"] += 1
            return
        for b, role in targets:
            state = self._state[b]
            if role == "msb":
                state.msb = value
                raw, top = value << 7, 16383
            elif role == "lsb":
                raw, top = (state.msb << 7) | value, 16383
            else:
                raw, top = value, 127
            self.counts["handled"] += 1
            if b.mode == "trigger":
                on = raw * 2 > top
                if on and not state.pressed:
                    self._fire(b)
                state.pressed = on
            elif b.mode == "toggle":
                on = raw * 2 > top
                if on and not state.pressed:
                    self._set(b, not self.registry.get(b.address))
                state.pressed = on
            elif b.mode == "momentary":
                self._set(b, raw * 2 > top)
            else:
                pos = raw / top
                self._move(b, state, 1.0 - pos if b.invert else pos)

    def _move(self, b: Binding, state: _State, pos: float) -> None:
        spec = self.registry.spec(b.address)
        if spec.numeric and self.registry.get("/midi/takeover") == "pickup" and not state.picked:
            here = spec.to_unit(self.registry.get(b.address))
            last, state.last_pos = state.last_pos, pos
            crossed = last is not None and (last - here) * (pos - here) <= 0
            if not (abs(pos - here) <= self.TOLERANCE or crossed):
                return  # not there yet: the value stays where it is
            state.picked = True
        state.last_pos = pos
        self._set(b, spec.from_unit(pos))

    def _set(self, b: Binding, value: Any) -> None:
        try:
            self.registry.set(b.address, value, source=b.tag)
        except EarEngineError as exc:
            self.counts["failed"] += 1
            log.info("MIDI %s: %s", b.control, exc)

    def _fire(self, b: Binding) -> None:
        if b.address in self.registry.specs:
            self._set(b, b.value)
            return
        if self.dispatch is None:
            return
        args = b.args
        try:
            self.dispatch(b.address, tuple(args))
        except Exception:
            self.counts["failed"] += 1
            log.exception("MIDI %s: %s failed", b.control, b.address)

    def _on_note(self, ch: int, note: int, velocity: int) -> None:
        if velocity and self._learning is not None:
            address, value = self._learning
            if address in self.registry.commands or value is not None:
                self._bind(Binding(address, channel=ch + 1, note=note, mode="trigger", value=value))
                return
            if self.registry.spec(address).type == "bool":
                self._bind(Binding(address, channel=ch + 1, note=note, mode="toggle"))
                return
        targets = self._notes.get((ch, note))
        if not targets:
            self.counts["unmapped"] += 1
            return
        for b in targets:
            self.counts["handled"] += 1
            if b.mode == "momentary":
                self._set(b, velocity > 0)
            elif not velocity:
                continue
            elif b.mode == "trigger":
                self._fire(b)
            elif b.mode == "toggle":
                self._set(b, not self.registry.get(b.address))
            elif b.mode == "range":
                spec = self.registry.spec(b.address)
                width = b.note_high - b.note
                self._set(b, spec.from_unit((note - b.note) / width if width else 0.0))
            elif b.mode == "pitch_class":
                spec = self.registry.spec(b.address)
                self._set(b, spec.choices[(note - b.note) % len(spec.choices)])

    # -- learning ---------------------------------------------------------------------------------
    def _learn_cc(self, ch: int, number: int, value: int, previous: Optional[int]) -> bool:
        """True when the message was taken by learning."""
        learned = self._learned
        if learned is not None:
            b, when = learned
            self._learned = None
            if (b.cc is not None and b.bits == 7 and ch == b.channel - 1 and number == b.cc + 32
                    and self._now() - when <= self.LEARN_FINE_S):
                self._bind(Binding(b.address, channel=b.channel, cc=b.cc, bits=14, mode=b.mode), replace=b)
                return True
        if self._learning is None or previous == value:
            return False  # a repeat is not a move
        address, fixed = self._learning
        if address in self.registry.commands or fixed is not None:
            mode = "trigger"
        else:
            mode = "toggle" if self.registry.spec(address).type == "bool" else "absolute"
        b = Binding(address, channel=ch + 1, cc=number, mode=mode, value=fixed)
        self._bind(b)
        if number < 32 and mode == "absolute":
            self._learned = (b, self._now())
        return True

    def _bind(self, b: Binding, *, replace: Optional[Binding] = None) -> None:
        self._learning = None
        keep = [x for x in self._bindings if x != replace and not _same_control(x, b)]
        try:
            self.set_bindings(tuple(keep) + (b,), source="midi-learn")
        except EarEngineError as exc:
            log.warning("cannot learn %s for %s: %s", b.control, b.address, exc)
            return
        # the control is where it is: it acts from its next move, no pick-up needed
        self._state.setdefault(b, _State()).picked = True
        if self.on_learn is not None:
            try:
                self.on_learn(b.address, b.control)
            except Exception:
                log.exception("learn callback failed")


def _typed(kind: str, text: Any) -> Any:
    """An argument typed as text (``/midi/learn /opt/reset noise``) in its command's type."""
    if not isinstance(text, str):
        return text
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        return text  # validation says what is wrong with it
    return text


def _same_control(a: Binding, b: Binding) -> bool:
    """Whether two bindings listen to the same physical control (learning replaces it)."""
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


# ---------------------------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------------------------
def match_port(pattern: str, names: Sequence[str]) -> Optional[str]:
    """The first port name that ``pattern`` picks: exact, then a glob (``*``, ``?``, ``[``), then a
    case-insensitive substring.

    >>> match_port("BCF", ["Midi Through:0", "BCF2000:BCF2000 MIDI 1"])
    'BCF2000:BCF2000 MIDI 1'
    >>> match_port("*clock*", ["jack_midi_clock:mclk_out"])
    'jack_midi_clock:mclk_out'
    """
    if pattern in names:
        return pattern
    if any(c in pattern for c in "*?["):
        for name in names:
            if fnmatch.fnmatchcase(name.lower(), pattern.lower()):
                return name
        return None
    low = pattern.lower()
    for name in names:
        if low in name.lower():
            return name
    return None


def _jack_running() -> bool:
    if shutil.which("jack_lsp") is None:
        return False
    env = dict(os.environ, JACK_NO_START_SERVER="1")
    try:
        return subprocess.run(["jack_lsp"], env=env, capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


BACKENDS = ("auto", "jack", "alsa")


def resolve_backend(backend: str) -> str:
    """``jack`` or ``alsa`` for ``backend``; ``auto`` takes JACK when a server answers."""
    if backend not in BACKENDS:
        raise ParameterError(f"--midi-backend={backend} must be one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    return "jack" if _jack_running() else "alsa"


def _rtmidi_alsa():
    """python-rtmidi and its ALSA API (JACK MIDI goes through :class:`JackMidi` instead)."""
    try:
        import rtmidi
    except ImportError:
        raise DeviceError("ALSA MIDI needs python-rtmidi: pip install python-rtmidi") from None
    if rtmidi.API_LINUX_ALSA not in rtmidi.get_compiled_api():
        raise DeviceError("this python-rtmidi has no ALSA support; try --midi-backend jack with a JACK server running")
    return rtmidi, rtmidi.API_LINUX_ALSA


class _Port:
    """An ALSA port opened by pattern or as a virtual port, reopened when it goes and comes back."""

    kind = "in"

    def __init__(self, spec: str, *, client: str = "earengine",
                 say: Callable[[str], None] = lambda line: None) -> None:
        self.spec = spec or "virtual"
        self.client = f"{client}-midi-{self.kind}"
        self.say = say
        self.virtual = self.spec == "virtual" or self.spec.startswith("virtual:")
        self.port_name = (self.spec.partition(":")[2] or self.kind) if self.virtual else ""
        self.connected: Optional[str] = None
        self._rt = None
        self._waiting_said = False

    def _new(self):
        raise NotImplementedError

    def available(self) -> list[str]:
        """Ports on the other side (sources for an input, destinations for an output), ours left out."""
        rt = self._rt or self._probe()
        try:
            names = list(rt.get_ports())
        except Exception:
            return []
        return [n for n in names if not n.startswith(f"{self.client.rsplit('-', 1)[0]}-")]

    def _probe(self):
        if getattr(self, "_probe_rt", None) is None:
            self._probe_rt = self._new()
        return self._probe_rt

    def open(self) -> bool:
        """Open (or reopen) the port; True when it is open and connected."""
        try:
            if self.virtual:
                if self._rt is None:
                    rt = self._new()
                    rt.open_virtual_port(self.port_name)
                    self._rt = rt
                    self.connected = f"{self.client}:{self.port_name}"
                    self.say(f"midi: {self.kind}put is the virtual port {self.connected}; connect to it")
                return True
            names = self.available()
            name = match_port(self.spec, names)
            if name is None:
                if not self._waiting_said:
                    self._waiting_said = True
                    seen = ", ".join(names) or "none"
                    self.say(f"midi: no {self.kind}put port matches {self.spec!r} (ports: {seen}); waiting for it")
                return False
            self.close()
            rt = self._new()
            rt.open_port(list(rt.get_ports()).index(name), f"{self.kind}")
            self._rt, self.connected, self._waiting_said = rt, name, False
            self.say(f"midi: {self.kind}put connected to {name}")
            return True
        except (DeviceError, EarEngineError):
            raise
        except Exception as exc:
            log.warning("cannot open MIDI %sput %r: %s", self.kind, self.spec, exc)
            return False

    def check(self) -> None:
        """Reconnect when the port has gone (and come back). Off the real-time path."""
        if self.virtual:
            if self._rt is None:
                self.open()
            return
        if self.connected is not None and self.connected not in self.available():
            self.say(f"midi: {self.kind}put {self.connected} is gone; waiting for it to come back")
            self.close()
            self._waiting_said = True
        if self.connected is None:
            self.open()

    def close(self) -> None:
        rt, self._rt, self.connected = self._rt, None, None
        if rt is not None:
            try:
                rt.close_port()
                rt.delete()
            except Exception:
                pass

    def close_all(self) -> None:
        self.close()
        probe = getattr(self, "_probe_rt", None)
        self._probe_rt = None
        if probe is not None:
            try:
                probe.delete()
            except Exception:
                pass


class MidiInput(_Port):
    """An rtmidi input (ALSA); :meth:`poll` drains it with each message's monotonic time.

    rtmidi stamps each message with the time since the previous one, taken when it arrived
    however late we read it; summed, they are the port's own time line, which
    :class:`~earengine.control.clock.ArrivalClock` maps onto ``time.monotonic``.
    """

    kind = "in"

    def __init__(self, spec: str, **kwargs: Any) -> None:
        super().__init__(spec, **kwargs)
        self.parser = MidiParser()
        self.arrival = ArrivalClock()
        self._local = 0.0

    def _new(self):
        rtmidi, api = _rtmidi_alsa()
        try:
            rt = rtmidi.MidiIn(api, self.client, queue_size_limit=4096)
        except Exception as exc:
            raise DeviceError(f"cannot open ALSA MIDI input: {exc}; check that ALSA's sequencer (/dev/snd/seq) "
                              "is there, or use --midi-backend jack") from None
        rt.ignore_types(sysex=False, timing=False, active_sense=True)
        return rt

    def open(self) -> bool:
        ok = super().open()
        if ok:
            self.arrival.reset()
            self.parser = MidiParser()
            self._local = 0.0
        return ok

    def poll(self, limit: int = 4096) -> list[tuple[tuple, float]]:
        rt = self._rt
        out: list[tuple[tuple, float]] = []
        if rt is None:
            return out
        for _ in range(limit):
            try:
                item = rt.get_message()
            except Exception:
                break
            if not item:
                break
            data, delta = item
            self._local += max(0.0, float(delta))
            when = self.arrival.update(self._local, time.monotonic())
            for message in self.parser.feed(data):
                out.append((message, when, self._local))
        return out


class MidiOutput(_Port):
    """An rtmidi output (ALSA); :meth:`send` is thread-safe and never raises."""

    kind = "out"

    def __init__(self, spec: str, **kwargs: Any) -> None:
        super().__init__(spec, **kwargs)
        self._lock = threading.Lock()
        self.sent = 0
        self.dropped = 0

    def _new(self):
        rtmidi, api = _rtmidi_alsa()
        try:
            return rtmidi.MidiOut(api, self.client)
        except Exception as exc:
            raise DeviceError(f"cannot open ALSA MIDI output: {exc}; check that ALSA's sequencer (/dev/snd/seq) "
                              "is there, or use --midi-backend jack") from None

    def send(self, message: bytes) -> None:
        rt = self._rt
        if rt is None:
            self.dropped += 1
            return
        with self._lock:  # rtmidi's JACK ring buffer takes one writer at a time
            try:
                rt.send_message(list(message))
                self.sent += 1
            except Exception:
                self.dropped += 1


class _JackPort:
    """One MIDI port of :class:`JackMidi`, connected by pattern (or left for others to connect)."""

    def __init__(self, hub: "JackMidi", spec: str, port, kind: str) -> None:
        self.hub, self.port, self.kind = hub, port, kind
        self.spec = spec or "virtual"
        self.virtual = self.spec == "virtual" or self.spec.startswith("virtual:")
        self.connected: Optional[str] = port.name if self.virtual else None
        self.queue: deque = deque(maxlen=8192)
        self._waiting_said = False

    def available(self) -> list[str]:
        """Ports on the other side (sources for an input, destinations for an output)."""
        try:
            ports = self.hub.client.get_ports(is_midi=True, is_output=self.kind == "in", is_input=self.kind == "out")
        except Exception:
            return []
        own = f"{self.hub.client.name}:"
        return [p.name for p in ports if not p.name.startswith(own)]

    def open(self) -> bool:
        self.check()
        return self.connected is not None

    def check(self) -> None:
        """Connect when the port named by the pattern is there; notice when it has gone."""
        if self.virtual:
            return
        names = self.available()
        if self.connected is not None and self.connected not in names:
            self.hub.say(f"midi: {self.kind}put {self.connected} is gone; waiting for it to come back")
            self.connected, self._waiting_said = None, True
        if self.connected is not None:
            return
        name = match_port(self.spec, names)
        if name is None:
            if not self._waiting_said:
                self._waiting_said = True
                self.hub.say(f"midi: no {self.kind}put port matches {self.spec!r} (ports: {', '.join(names) or 'none'}); waiting for it")
            return
        try:
            if self.kind == "in":
                self.hub.client.connect(name, self.port)
            else:
                self.hub.client.connect(self.port, name)
        except Exception as exc:  # already connected by someone else is fine
            if not self.port.is_connected_to(name):
                log.warning("cannot connect MIDI %s to %s: %s", self.port.name, name, exc)
                return
        self.connected, self._waiting_said = name, False
        self.hub.say(f"midi: {self.kind}put connected to {name}")

    def close_all(self) -> None:
        pass  # the hub closes its client once


class JackMidiInput(_JackPort):
    """An input of :class:`JackMidi`: messages with the monotonic time of their own frame."""

    def __init__(self, hub: "JackMidi", spec: str, port) -> None:
        super().__init__(hub, spec, port, "in")
        self.parser = MidiParser()

    def poll(self, limit: int = 4096) -> list[tuple]:
        """``(message, monotonic time, time on JACK's frame line)`` for each message waiting."""
        out: list[tuple] = []
        q = self.queue
        offset = self.hub.arrival.offset or 0.0
        for _ in range(limit):
            try:
                local, data = q.popleft()
            except IndexError:
                break
            for message in self.parser.feed(data):
                out.append((message, local + offset, local))
        return out


class JackMidiOutput(_JackPort):
    """The output of :class:`JackMidi`: messages leave in the next cycle, or in the cycle and at
    the frame of the time they are given."""

    schedules = True

    def __init__(self, hub: "JackMidi", spec: str, port) -> None:
        super().__init__(hub, spec, port, "out")
        self.timed: deque = deque(maxlen=4096)
        self.sent = 0
        self.dropped = 0

    def send(self, message: bytes, at_s: Optional[float] = None) -> None:
        """Queue one complete message; ``at_s`` (monotonic seconds) places it on its frame."""
        data = bytes(message)
        if at_s is None:
            self.queue.append(data)
        else:
            self.timed.append((at_s, data))


class JackMidi:
    """The engine's MIDI ports on JACK: one client, a port per input and an output.

    JACK-Client (cffi) lets go of the Python lock while it waits on the server, so ports can be
    opened and connected while pyo's JACK callback — which needs that lock — keeps the audio
    going; a binding that holds the lock there stalls a synchronous JACK graph. The process
    callback only moves bytes between JACK's buffers and queues; each incoming event keeps the
    time of its own frame (cycle start, from the lower envelope of callback times, plus its
    offset), the same time line the audio clock uses.

    Parameters
    ----------
    inputs : sequence of str
        Patterns of ports to read (``virtual``: a port others connect to).
    output : str, optional
        Pattern of the port to write to.
    client : str
        JACK client name.
    """

    def __init__(self, inputs: Sequence[str], output: Optional[str], *, client: str = "earengine-midi",
                 say: Callable[[str], None] = lambda line: None) -> None:
        try:
            import jack
        except ImportError:
            raise DeviceError("MIDI on JACK needs the JACK-Client package: pip install JACK-Client") from None
        self.say = say
        try:
            self.client = jack.Client(client, no_start_server=True)
        except Exception as exc:
            raise DeviceError(f"cannot open MIDI on JACK ({exc}); is a JACK server running? try --midi-backend alsa") from None
        self.sr = self.client.samplerate
        self.arrival = ArrivalClock()
        self._last_f0 = 0
        self._wraps = 0
        self.inputs = []
        for i, spec in enumerate(inputs):
            port = self.client.midi_inports.register("in" if i == 0 else f"in_{i + 1}")
            self.inputs.append(JackMidiInput(self, spec, port))
        self.output = None
        if output is not None:
            self.output = JackMidiOutput(self, output, self.client.midi_outports.register("out"))
        self.counts = {"cycles": 0, "failed": 0, "dropped": 0}
        self.client.set_process_callback(self._process)
        self.client.set_shutdown_callback(self._shutdown)
        self.client.activate()
        for port in self.inputs + ([self.output] if self.output else []):
            if port.virtual:
                say(f"midi: {port.kind}put is the port {port.port.name}; connect to it")
            else:
                port.check()

    def _shutdown(self, status, reason) -> None:
        log.warning("JACK shut the MIDI client down: %s", reason)

    def _process(self, frames: int) -> None:
        # the JACK thread: bytes in and out, nothing that could wait
        try:
            f0 = self.client.last_frame_time
            t0 = self.arrival.update(f0 / self.sr, time.monotonic())
            self.counts["cycles"] += 1
            if f0 < self._last_f0:
                self._wraps += 1  # JACK's frame counter is 32 bits: it wraps after a day at 48 kHz
            self._last_f0 = f0
            f0 += self._wraps << 32
            for port in self.inputs:
                for offset, data in port.port.incoming_midi_events():
                    port.queue.append(((f0 + offset) / self.sr, bytes(data)))
            out = self.output
            if out is None:
                return
            out.port.clear_buffer()
            last = 0
            while out.queue:
                out.port.write_midi_event(0, out.queue.popleft())
                out.sent += 1
            timed = out.timed
            while timed:
                at_s, data = timed[0]
                offset = int(round((at_s - t0) * self.sr))
                if offset >= frames:
                    break  # a later cycle's
                timed.popleft()
                offset = min(frames - 1, max(last, offset))  # late ones go out now, in order
                out.port.write_midi_event(offset, data)
                out.sent += 1
                last = offset
        except Exception:
            self.counts["failed"] += 1  # a full buffer, a malformed message: drop, keep going

    def close(self) -> None:
        try:
            self.client.deactivate()
            self.client.close()
        except Exception:
            log.debug("closing the JACK MIDI client failed", exc_info=True)


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


@dataclass
class MidiService(ThreadService):
    """The MIDI ports and the thread that reads them; a context manager.

    Parameters
    ----------
    inputs : sequence of ports
        :class:`MidiInput` (or :class:`MemoryInput`) objects.
    output : port, optional
        :class:`MidiOutput` for feedback and clock out.
    on_control : callable(message, time_s)
        Everything but clock messages (:class:`MidiControl.handle`).
    on_clock : callable(message, time_s, local_s), optional
        Clock, start, continue, stop, song position (:class:`~earengine.control.clock.MidiClockIn.feed`);
        ``local_s`` is the time on the port's own time line, or None.
    poll_s : float > 0
        Sleep between reads. Times come from the ports, not from this thread, so it only sets
        the control latency.
    """

    inputs: Sequence[Any]
    output: Optional[Any] = None
    on_control: Callable[[tuple, float], None] = lambda message, time_s: None
    on_clock: Optional[Callable[[tuple, float, Optional[float]], None]] = None
    poll_s: float = 0.002
    check_s: float = 0.5
    closers: list = field(default_factory=list)
    counts: dict = field(default_factory=lambda: {"messages": 0, "clock": 0, "failed": 0})

    thread_name = "earengine-midi"

    def __post_init__(self) -> None:
        self._init_thread()

    @classmethod
    def open(cls, inputs: Sequence[str] = (), output: Optional[str] = None, *, backend: str = "auto",
             client: str = "earengine", say: Callable[[str], None] = lambda line: None,
             **kwargs: Any) -> "MidiService":
        """Ports from ``--midi-in`` patterns and a ``--midi-out`` pattern (``virtual``: a port
        others connect to). Ports not there yet are waited for."""
        backend = resolve_backend(backend)
        if backend == "jack":
            hub = JackMidi(inputs, output, client=f"{client}-midi", say=say)
            return cls(hub.inputs, hub.output, closers=[hub.close], **kwargs)
        ins = [MidiInput(spec, client=client, say=say) for spec in inputs]
        out = MidiOutput(output, client=client, say=say) if output is not None else None
        for port in ins + ([out] if out is not None else []):
            port.open()
        return cls(ins, out, **kwargs)

    @property
    def schedules(self) -> bool:
        """Whether the output places a message given a time on that time's frame."""
        return bool(getattr(self.output, "schedules", False))

    def send(self, message: bytes, at_s: Optional[float] = None) -> None:
        """Send one message; with ``at_s`` (monotonic seconds) at that time where the output
        can place it, else now."""
        if self.output is None:
            return
        if at_s is not None and self.schedules:
            self.output.send(message, at_s)
        else:
            self.output.send(message)

    def close(self) -> None:
        self._stop_thread()
        for port in list(self.inputs) + ([self.output] if self.output is not None else []):
            try:
                port.close_all()
            except Exception:
                log.debug("closing a MIDI port failed", exc_info=True)
        for closer in self.closers:
            try:
                closer()
            except Exception:
                log.debug("closing MIDI failed", exc_info=True)
        self.closers = []

    def ports(self) -> list[str]:
        """Every port seen, as ``in:<name>`` / ``out:<name>``, the open ones marked ``*``."""
        out: list[str] = []
        for kind, ports in (("in", list(self.inputs)), ("out", [self.output] if self.output else [])):
            seen: set = set()
            for port in ports:
                for name in port.available():
                    if name not in seen:
                        seen.add(name)
                        mark = "*" if any(p.connected == name for p in ports) else ""
                        out.append(f"{kind}:{name}{mark}")
                if port.connected and port.connected not in seen:
                    seen.add(port.connected)
                    out.append(f"{kind}:{port.connected}*")
        return out

    def pump(self) -> int:
        """Read every input once and hand the messages on; returns how many. Never raises."""
        n = 0
        for port in self.inputs:
            try:
                items = port.poll()
            except Exception:
                self.counts["failed"] += 1
                log.debug("MIDI read failed", exc_info=True)
                continue
            for item in items:
                message, when = item[0], item[1]
                local = item[2] if len(item) > 2 else None
                n += 1
                try:
                    if message[0] in CLOCK_STATUSES:
                        self.counts["clock"] += 1
                        if self.on_clock is not None:
                            self.on_clock(message, when, local)
                    else:
                        self.counts["messages"] += 1
                        self.on_control(message, when)
                except Exception:
                    self.counts["failed"] += 1
                    log.exception("MIDI message %r failed", message)
        return n

    def check(self) -> None:
        for port in list(self.inputs) + ([self.output] if self.output is not None else []):
            try:
                port.check()
            except Exception:
                log.debug("MIDI port check failed", exc_info=True)

    def _run(self) -> None:
        next_check = time.monotonic() + self.check_s
        while not self._stop.is_set():
            self.pump()
            now = time.monotonic()
            if now >= next_check:
                next_check = now + self.check_s
                self.check()
            self._stop.wait(self.poll_s)


# ---------------------------------------------------------------------------------------------
# The /midi/* commands
# ---------------------------------------------------------------------------------------------
def command_handlers(control: MidiControl, store: MapStore,
                     service: Optional[MidiService] = None) -> dict[str, Callable]:
    """Handlers of the ``/midi/*`` command rows for an OSC router (``handler(args, sender)``)."""
    from earengine.osc.wire import Reply

    def load(args: tuple, sender: tuple) -> None:
        control.set_bindings(store.load(args[0], control.registry), source="osc")

    def bindings(args: tuple, sender: tuple) -> list:
        pairs: list = []
        for b in control.bindings:
            pairs += [b.control, b.address]
        return [Reply("/midi/bindings.reply", tuple(pairs))]

    return {
        "/midi/learn": lambda args, sender: control.learn(args[0], args[1:]),
        "/midi/forget": lambda args, sender: control.forget(args[0]) and None,
        "/midi/cancel": lambda args, sender: control.cancel(),
        "/midi/clear": lambda args, sender: control.clear(),
        "/midi/load": load,
        "/midi/save": lambda args, sender: store.save(args[0], control.bindings) and None,
        "/midi/maps": lambda args, sender: [Reply("/midi/maps.reply", tuple(store.names()))],
        "/midi/bindings": bindings,
        "/midi/ports": lambda args, sender: [Reply("/midi/ports.reply", tuple(service.ports() if service else ()))],
    }
