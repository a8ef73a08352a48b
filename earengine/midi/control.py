"""MIDI control: messages move parameters and fire commands; changes go back to the controller.

:class:`MidiControl` binds controls to the registry through ``/midi/map``: a CC (7-bit, or a
14-bit pair: MSB on CC 0-31, LSB on that number + 32) moves a parameter through its row's own
scale (:meth:`~earengine.params.spec.ParamSpec.from_unit`: lin or log, ints, enums, switches), or
fires a command; notes trigger commands, flip switches, or pick a value from a range of keys (a
note chooses a target channel, a key sets the sonification root). Takeover (``/midi/takeover``)
keeps a fader from jumping a value; ``learn`` binds the next control that moves; every change of
a mapped parameter from anywhere else is sent back to its control (``/midi/feedback``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from earengine.errors import ConfigError, EarEngineError, ParameterError
from earengine.midi.bindings import MODES, Binding, map_json, parse_map, same_control
from earengine.midi.wire import CC, NOTE_OFF, NOTE_ON
from earengine.params.registry import Change, Registry, check_table, parse_text
from earengine.params.spec import ParamSpec

__all__ = ["MidiControl", "Way", "WAYS"]

log = logging.getLogger("earengine.midi")


@dataclass
class _State:
    """What one binding remembers between messages (the MIDI thread's, except ``picked``)."""

    picked: bool = False
    last_pos: Optional[float] = None
    msb: int = 0
    pressed: bool = False
    sent: Optional[tuple] = None  # the last feedback sent, to send nothing twice


def _pressed(state: _State, on: bool) -> bool:
    """Whether the control went down now (it was up): a button's press, not its hold."""
    was, state.pressed = state.pressed, on
    return on and not was


# -- what each mode does with a CC: ``raw`` of ``top`` (127, or 16383 for a 14-bit pair) -------------
def _cc_absolute(ctl: "MidiControl", b: Binding, state: _State, raw: int, top: int) -> None:
    pos = raw / top
    ctl._move(b, state, 1.0 - pos if b.invert else pos)


def _cc_toggle(ctl: "MidiControl", b: Binding, state: _State, raw: int, top: int) -> None:
    if _pressed(state, raw * 2 > top):
        ctl._set(b, not ctl.registry.get(b.address))


def _cc_momentary(ctl: "MidiControl", b: Binding, state: _State, raw: int, top: int) -> None:
    ctl._set(b, raw * 2 > top)


def _cc_trigger(ctl: "MidiControl", b: Binding, state: _State, raw: int, top: int) -> None:
    if _pressed(state, raw * 2 > top):
        ctl._fire(b)


# -- what each mode does with a key: ``velocity`` 0 is its release -----------------------------------
def _key_toggle(ctl: "MidiControl", b: Binding, note: int, velocity: int) -> None:
    if velocity:
        ctl._set(b, not ctl.registry.get(b.address))


def _key_momentary(ctl: "MidiControl", b: Binding, note: int, velocity: int) -> None:
    ctl._set(b, velocity > 0)


def _key_trigger(ctl: "MidiControl", b: Binding, note: int, velocity: int) -> None:
    if velocity:
        ctl._fire(b)


def _key_range(ctl: "MidiControl", b: Binding, note: int, velocity: int) -> None:
    if velocity:
        width = b.note_high - b.note
        ctl._set(b, ctl.registry.spec(b.address).from_unit((note - b.note) / width if width else 0.0))


def _key_pitch_class(ctl: "MidiControl", b: Binding, note: int, velocity: int) -> None:
    if velocity:
        choices = ctl.registry.spec(b.address).choices
        ctl._set(b, choices[(note - b.note) % len(choices)])


# -- what each mode sends back to its control when the value is ``value`` ----------------------------
def _show_switch(b: Binding, spec: ParamSpec, value: Any) -> list[tuple]:
    if b.cc is not None:
        return [(CC | (b.channel - 1), b.cc, 127 if value else 0)]
    return [(NOTE_ON | (b.channel - 1), b.note, 127 if value else 0)]


def _show_position(b: Binding, spec: ParamSpec, value: Any) -> list[tuple]:
    ch = b.channel - 1
    pos = min(1.0, max(0.0, spec.to_unit(value)))
    if b.invert:
        pos = 1.0 - pos
    if b.bits == 14:
        raw = int(round(pos * 16383))
        return [(CC | ch, b.cc, raw >> 7), (CC | ch, b.cc + 32, raw & 0x7F)]
    return [(CC | ch, b.cc, int(round(pos * 127)))]


def _show_nothing(b: Binding, spec: ParamSpec, value: Any) -> list[tuple]:
    return []  # a button that fires lights nothing: its light is the host's to set


def _light(b: Binding, lit: Optional[int]) -> list[tuple]:
    """The keys of a range, ``lit`` on and every other off."""
    return [(NOTE_ON | (b.channel - 1), n, 127 if n == lit else 0) for n in range(b.note, b.note_high + 1)]


def _show_range(b: Binding, spec: ParamSpec, value: Any) -> list[tuple]:
    width = b.note_high - b.note
    pos = spec.to_unit(value) if width else 0.0
    return _light(b, b.note + int(round(pos * width)))


def _show_pitch_class(b: Binding, spec: ParamSpec, value: Any) -> list[tuple]:
    try:
        index = spec.choices.index(value)
    except ValueError:
        return _light(b, None)
    keys = [n for n in range(b.note, b.note_high + 1) if (n - b.note) % len(spec.choices) == index]
    return _light(b, keys[0] if keys else None)


@dataclass(frozen=True)
class Way:
    """What one binding mode does: with a CC, with a key, and what it sends back.

    ``cc(control, binding, state, raw, top)``, ``key(control, binding, note, velocity)`` (None
    where the mode takes no such control) and ``show(binding, spec, value) -> messages``.
    """

    show: Callable[[Binding, ParamSpec, Any], list]
    cc: Optional[Callable[..., None]] = None
    key: Optional[Callable[..., None]] = None


def _check_ways(table: dict) -> dict[str, Way]:
    """``table`` after checking it has one way per mode of :data:`~earengine.midi.bindings.MODES`,
    and that each way takes the controls its mode's row allows, no more and no fewer."""
    ways = check_table("MIDI binding mode", tuple(MODES), table)
    for name, way in ways.items():
        controls = MODES[name].controls
        if (way.cc is not None) != ("cc" in controls) or (way.key is not None) != bool({"key", "keys"} & set(controls)):
            raise ConfigError(f"MIDI binding mode {name}: its way takes other controls than its row's {', '.join(controls)}")
    return ways


#: How each binding mode acts, by its name: checked at import against the rows in
#: :data:`~earengine.midi.bindings.MODES`, so a mode without its code fails there.
WAYS: dict[str, Way] = _check_ways({
    "absolute": Way(_show_position, cc=_cc_absolute),
    "toggle": Way(_show_switch, cc=_cc_toggle, key=_key_toggle),
    "momentary": Way(_show_switch, cc=_cc_momentary, key=_key_momentary),
    "trigger": Way(_show_nothing, cc=_cc_trigger, key=_key_trigger),
    "range": Way(_show_range, key=_key_range),
    "pitch_class": Way(_show_pitch_class, key=_key_pitch_class),
})


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
        #: how a control that moves takes over its parameter, by ``/midi/takeover``
        self._takeover = registry.choice_table("/midi/takeover", {"pickup": self._picks_up, "jump": self._jumps})
        registry.add_check("/midi/map", self._check_map)
        self._rebuild(parse_map(registry.get("/midi/map"), registry))
        self._subs = (registry.bind({"/midi/map": self._on_map, "/midi/feedback": self._on_feedback}),
                      registry.subscribe(self._on_mapped))

    def close(self) -> None:
        for sub in self._subs:
            sub.close()

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
            spec.check_writable()
            if len(values) > 1:
                raise ParameterError(f"/midi/learn {address} takes one value, got {len(values)}")
            if values:
                value = parse_text(spec, str(values[0]))
            elif spec.type == "str" or (spec.numeric and (spec.min is None or spec.max is None)):
                raise ParameterError(f"/midi/learn address={address} has no range a control could move through; give a value to set")
        else:
            raise ParameterError(f"/midi/learn address={address!r} is not a parameter or command; see 'earengine params'")
        self._learning = (address, value)

    def cancel(self) -> None:
        self._learning = None

    # -- registry → controller ------------------------------------------------------------------
    def _on_map(self, change: Change) -> None:
        self._rebuild(parse_map(change.value, self.registry))
        self.dump()

    def _on_feedback(self, change: Change) -> None:
        if change.value:
            self.dump()

    def _on_mapped(self, change: Change) -> None:
        """Any change of a mapped parameter: its controls lose their pick-up, and hear of it."""
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
        messages = WAYS[b.mode].show(b, self.registry.spec(b.address), value)
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

    # -- controller → registry ------------------------------------------------------------------
    def handle(self, message: Sequence[int], time_s: float = 0.0) -> None:
        """One complete message from an input. Never raises."""
        try:
            status = message[0]
            kind, ch = status & 0xF0, status & 0x0F
            if kind == CC and len(message) >= 3:
                self._on_cc(ch, message[1] & 0x7F, message[2] & 0x7F)
            elif kind == NOTE_ON and len(message) >= 3:
                self._on_note(ch, message[1] & 0x7F, message[2] & 0x7F)
            elif kind == NOTE_OFF and len(message) >= 3:
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
            WAYS[b.mode].cc(self, b, state, raw, top)

    def _move(self, b: Binding, state: _State, pos: float) -> None:
        spec = self.registry.spec(b.address)
        if not self._takeover[self.registry.get("/midi/takeover")](b, spec, state, pos):
            return  # not there yet: the value stays where it is
        state.last_pos = pos
        self._set(b, spec.from_unit(pos))

    def _picks_up(self, b: Binding, spec: ParamSpec, state: _State, pos: float) -> bool:
        """``pickup``: a control acts once it comes near the value, or crosses it."""
        if not spec.numeric or state.picked:
            return True
        here = spec.to_unit(self.registry.get(b.address))
        last, state.last_pos = state.last_pos, pos
        crossed = last is not None and (last - here) * (pos - here) <= 0
        if not (abs(pos - here) <= self.TOLERANCE or crossed):
            return False
        state.picked = True
        return True

    @staticmethod
    def _jumps(b: Binding, spec: ParamSpec, state: _State, pos: float) -> bool:
        """``jump``: a control acts at once."""
        return True

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
            WAYS[b.mode].key(self, b, note, velocity)

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
        keep = [x for x in self._bindings if x != replace and not same_control(x, b)]
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
