"""The registry: current values of every parameter, one thread-safe way to change them.

``Registry.set`` validates, records and notifies. Subscribers are called on the setter's thread
after the lock is released; they must not block (hand work to a queue). A failing subscriber is
logged and never undoes or blocks a change.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

from earengine.errors import ConfigError, ParameterError, UnknownAddressError
from earengine.params.spec import CommandSpec, ParamSpec

__all__ = ["Registry", "Change", "Subscription", "check_choices", "check_table", "parse_text"]

log = logging.getLogger("earengine.params")


@dataclass(frozen=True)
class Change:
    """One recorded change: what, to what, from whom, and when (monotonic seconds)."""

    address: str
    value: Any
    previous: Any
    source: Optional[str]
    version: int
    time_s: float


Subscriber = Callable[[Change], None]


class Subscription:
    """Handle returned by :meth:`Registry.subscribe`; a context manager that unsubscribes."""

    def __init__(self, registry: "Registry", fn: Subscriber) -> None:
        self._registry, self.fn = registry, fn

    def close(self) -> None:
        self._registry._unsubscribe(self.fn)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_choices(spec: ParamSpec, table: Mapping[str, Any]) -> dict[str, Any]:
    """``table`` as a dict, after checking it has exactly one entry per choice of ``spec``.

    For dispatch tables built where no registry is at hand (module level, the worker).

    Raises
    ------
    ConfigError
        A choice has no entry, or an entry is not a choice.
    """
    if not spec.choices:
        raise ConfigError(f"{spec.address} has no choices to dispatch on")
    return check_table(spec.address, spec.choices, table)


def check_table(label: str, choices: Sequence[str], table: Mapping[str, Any]) -> dict[str, Any]:
    """``table`` as a dict, after checking it has exactly one entry per one of ``choices`` (of a
    command's argument, or a parser's kinds); ``label`` names them in the error.

    >>> check_table("target kind", ("layer", "neuron"), {"layer": 1})
    Traceback (most recent call last):
    ...
    earengine.errors.ConfigError: target kind: no entry for choice neuron
    """
    missing = [c for c in choices if c not in table]
    extra = [k for k in table if k not in choices]
    if missing:
        raise ConfigError(f"{label}: no entry for choice {', '.join(missing)}")
    if extra:
        raise ConfigError(f"{label}: {', '.join(map(str, extra))} is not a choice")
    return dict(table)


def parse_text(spec: ParamSpec, text: str) -> Any:
    """Parse a value typed on a command line (``--set /clock/bpm=128``) and validate it; a
    read-only row is refused (:meth:`~earengine.params.spec.ParamSpec.check_writable`)."""
    spec.check_writable()
    raw: Any = text
    if spec.type == "float":
        try:
            raw = float(text)
        except ValueError:
            raise ParameterError(f"{spec.address}={text!r} must be a number") from None
    elif spec.type == "int":
        try:
            raw = int(text)
        except ValueError:
            raise ParameterError(f"{spec.address}={text!r} must be an integer") from None
    elif spec.type == "bool" and text in ("0", "1"):
        raw = int(text)
    return spec.validate((raw,))


class Registry:
    """Every parameter's current value, validated, versioned and observable.

    Parameters
    ----------
    params : iterable of ParamSpec
        The rows; addresses must be unique.
    commands : iterable of CommandSpec
        Actions that share the OSC address space (validated elsewhere, listed here so that one
        place knows every address).

    Examples
    --------
    >>> from earengine.params.catalog import PARAMS, COMMANDS
    >>> reg = Registry(PARAMS, COMMANDS)
    >>> reg.set("/clock/bpm", 128)
    128.0
    >>> reg.get("/clock/bpm")
    128.0
    """

    def __init__(self, params: Iterable[ParamSpec], commands: Iterable[CommandSpec] = ()) -> None:
        self.specs: dict[str, ParamSpec] = {}
        for spec in params:
            if spec.address in self.specs:
                raise ValueError(f"duplicate parameter address {spec.address}")
            self.specs[spec.address] = spec
        self.commands: dict[str, CommandSpec] = {}
        for cmd in commands:
            if cmd.address in self.specs or cmd.address in self.commands:
                raise ValueError(f"duplicate address {cmd.address}")
            self.commands[cmd.address] = cmd
        self._values = {a: s.default for a, s in self.specs.items()}
        self._lock = threading.RLock()
        self._subscribers: tuple[Subscriber, ...] = ()
        self.version = 0
        self.running = False  # when True, parameters with live=False refuse changes
        self._checks: dict[str, Callable[[Any], Any]] = {}

    # -- lookup -----------------------------------------------------------------------------
    def spec(self, address: str) -> ParamSpec:
        try:
            return self.specs[address]
        except KeyError:
            raise UnknownAddressError(f"{address} is not a parameter; see 'earengine params'") from None

    def __contains__(self, address: object) -> bool:
        return address in self.specs

    def __iter__(self) -> Iterator[ParamSpec]:
        return iter(self.specs.values())

    def namespaces(self) -> list[str]:
        seen: dict[str, None] = {}
        for address in list(self.specs) + list(self.commands):
            seen.setdefault(address.split("/")[1], None)
        return list(seen)

    def get(self, address: str) -> Any:
        self.spec(address)
        with self._lock:
            return self._values[address]

    def snapshot(self) -> dict[str, Any]:
        """All current values, as a plain dict (a copy)."""
        with self._lock:
            return dict(self._values)

    # -- change -----------------------------------------------------------------------------
    def add_check(self, address: str, fn: Callable[[Any], Any]) -> None:
        """Extra validation for one parameter beyond its row (e.g. a target against the ear's
        taps): ``fn(value)`` returns the value to store or raises ParameterError."""
        self.spec(address)
        self._checks[address] = fn

    def _validate(self, spec: ParamSpec, args: Sequence[Any]) -> Any:
        value = spec.validate(args)
        check = self._checks.get(spec.address)
        return check(value) if check is not None else value

    def _check_live(self, spec: ParamSpec) -> None:
        if self.running and not spec.live:
            raise ParameterError(f"{spec.address} can only be set at start (earengine run --set {spec.address}=…)")

    def set(self, address: str, value: Any, *, source: Optional[str] = None) -> Any:
        """Validate and apply one value; returns the value as stored.

        Raises ``UnknownAddressError`` or ``ParameterError`` and changes nothing on bad input.
        """
        return self.set_args(address, (value,), source=source)

    def set_args(self, address: str, args: Sequence[Any], *, source: Optional[str] = None) -> Any:
        """Like :meth:`set`, from raw OSC arguments (count is checked too)."""
        spec = self.spec(address)
        value = self._validate(spec, args)
        self._check_live(spec)
        changes = self._apply({address: value}, source)
        self._notify(changes)
        return value

    def update(self, values: Mapping[str, Any], *, source: Optional[str] = None) -> list[Change]:
        """Apply several values all-or-nothing: every value is validated before any is set."""
        checked = {}
        for address, value in values.items():
            spec = self.spec(address)
            checked[address] = self._validate(spec, (value,))
            self._check_live(spec)
        changes = self._apply(checked, source)
        self._notify(changes)
        return changes

    def _apply(self, values: Mapping[str, Any], source: Optional[str]) -> list[Change]:
        changes = []
        now = time.monotonic()
        with self._lock:
            for address, value in values.items():
                previous = self._values[address]
                if previous == value and type(previous) is type(value):
                    continue
                self._values[address] = value
                self.version += 1
                changes.append(Change(address, value, previous, source, self.version, now))
        return changes

    def _notify(self, changes: Sequence[Change]) -> None:
        subscribers = self._subscribers
        for change in changes:
            for fn in subscribers:
                try:
                    fn(change)
                except Exception:  # a subscriber never breaks a change
                    log.exception("subscriber %r failed on %s", fn, change.address)

    # -- observers --------------------------------------------------------------------------
    def subscribe(self, fn: Subscriber) -> Subscription:
        """Call ``fn(change)`` after every change; returns a handle that unsubscribes."""
        with self._lock:
            self._subscribers = self._subscribers + (fn,)
        return Subscription(self, fn)

    def bind(self, handlers: Mapping[str, Callable[[Change], None]]) -> Subscription:
        """Call ``handlers[change.address](change)`` after every change of a bound parameter.

        The one way a consumer reacts to named parameters: a table, not a chain of address
        tests, so that an address that is not a parameter fails here, at start-up, instead of
        never matching. Returns the subscription, a context manager.

        Raises
        ------
        UnknownAddressError
            A key of ``handlers`` is not a parameter.

        >>> from earengine.params.spec import ParamSpec
        >>> reg = Registry([ParamSpec("/loop/gain", "float", 0.0, min=-80.0, max=6.0)])
        >>> seen = []
        >>> sub = reg.bind({"/loop/gain": lambda change: seen.append(change.value)})
        >>> _ = reg.set("/loop/gain", -6.0)
        >>> seen
        [-6.0]
        >>> reg.bind({"/loop/gian": print})
        Traceback (most recent call last):
        ...
        earengine.errors.UnknownAddressError: /loop/gian is not a parameter; see 'earengine params'
        """
        table = dict(handlers)
        for address in table:
            self.spec(address)

        def dispatch(change: Change) -> None:
            handler = table.get(change.address)
            if handler is not None:
                handler(change)

        dispatch.__qualname__ = f"bind({', '.join(sorted(table))[:80]})"
        return self.subscribe(dispatch)

    def choice_table(self, address: str, table: Mapping[str, Any]) -> dict[str, Any]:
        """Check that ``table`` has one entry for every choice of the enum ``address``, and no
        other; returns it as a dict. Consumers dispatch a choice through such a table, so a
        choice added to a row without its entry fails at start-up, not by falling into an
        ``else``.

        >>> from earengine.params.spec import ParamSpec
        >>> reg = Registry([ParamSpec("/son/curve", "enum", "log", choices=("lin", "log"))])
        >>> sorted(reg.choice_table("/son/curve", {"lin": 1, "log": 2}))
        ['lin', 'log']
        >>> reg.choice_table("/son/curve", {"lin": 1})
        Traceback (most recent call last):
        ...
        earengine.errors.ConfigError: /son/curve: no entry for choice log
        """
        return check_choices(self.spec(address), table)

    def _unsubscribe(self, fn: Subscriber) -> None:
        with self._lock:
            self._subscribers = tuple(f for f in self._subscribers if f is not fn)
