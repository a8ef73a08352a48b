"""Presets: named sets of parameter values, stored as JSON, validated on load.

A preset file holds ``{"earengine_preset": 1, "name": ..., "version": ..., "values": {address: value}}``.
Writing is atomic (temp file + rename). Loading validates every value before any is applied,
warns once about unknown addresses, and gives missing ones their defaults, except those in
:data:`KEPT_UNLESS_GIVEN`: the controller map and the transport belong to the rig and the
moment, not to a sound, so a preset that does not name them leaves them as they are (and one
that names them sets them). Readings the engine sets itself (rows with ``access="r"``, such as
``/clock/peers``) are neither saved nor set. Names are plain words (letters, digits, ``-``,
``_``) so a name can never reach outside the preset folder.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from earengine import __version__
from earengine.errors import PresetError
from earengine.files import NamedJsonStore
from earengine.files import check_name as _check_name
from earengine.osc.wire import Reply
from earengine.params.registry import Registry
from earengine.resources import PRESETS

__all__ = ["Preset", "PresetStore", "SHIPPED_DIR", "KEPT_UNLESS_GIVEN", "NOT_CAPTURED", "check_name"]

log = logging.getLogger("earengine.presets")

#: Presets shipped with earengine (read-only).
SHIPPED_DIR = PRESETS
FORMAT = 1
#: Addresses a preset sets only when it names them. ``/midi/map``: loading a sound must not
#: unplug the controller (a preset that carries a map replaces it); ``/clock/playing``: nor stop
#: or start the transport, which under Link start/stop sync is the whole session's.
KEPT_UNLESS_GIVEN = ("/midi/map", "/clock/playing")
#: Addresses :meth:`Preset.capture` leaves out (besides the read-only rows): the transport
#: (saving a preset while playing must not make loading it start the transport).
NOT_CAPTURED = ("/clock/playing",)


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid preset name, else raise a one-line PresetError."""
    return _check_name(name, "preset")


@dataclass(frozen=True)
class Preset:
    """A named, immutable set of values; ``values`` is a tuple of ``(address, value)`` pairs."""

    name: str
    values: tuple

    @classmethod
    def capture(cls, name: str, registry: Registry) -> "Preset":
        """The registry's values now, but the readings (read-only rows) and
        :data:`NOT_CAPTURED`; an empty controller map is left out, so loading the preset later
        keeps whatever map is in use then."""
        values = {a: v for a, v in registry.snapshot().items()
                  if registry.spec(a).writable and a not in NOT_CAPTURED and not (a == "/midi/map" and not v)}
        return cls(check_name(name), tuple(sorted(values.items())))

    def to_dict(self) -> dict:
        return {"earengine_preset": FORMAT, "name": self.name, "version": __version__,
                "values": dict(self.values)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Preset":
        if not isinstance(data, Mapping) or not isinstance(data.get("values"), Mapping):
            raise PresetError("a preset must be a JSON object with a 'values' object")
        return cls(check_name(data.get("name", "")), tuple(sorted(data["values"].items())))

    def resolve(self, registry: Registry) -> tuple[dict, list[str]]:
        """Values to apply (defaults for missing addresses but those of
        :data:`KEPT_UNLESS_GIVEN`; never a read-only row) and the unknown addresses.

        Raises PresetError naming the first invalid value; nothing is applied by this call.
        """
        values = {spec.address: spec.default for spec in registry
                  if spec.writable and (spec.live or not registry.running) and spec.address not in KEPT_UNLESS_GIVEN}
        unknown = []
        for address, value in self.values:
            if address not in registry.specs:
                unknown.append(address)
                continue
            spec = registry.spec(address)
            if not spec.writable:
                continue  # a reading: a preset written by hand that names one changes nothing
            if registry.running and not spec.live:
                continue
            try:
                values[address] = spec.validate((value,))
            except ValueError as exc:
                raise PresetError(f"preset {self.name!r}: {exc}") from None
        return values, unknown


class PresetStore:
    """Presets in a user folder, falling back to the shipped ones (a
    :class:`~earengine.files.NamedJsonStore` of presets).

    Parameters
    ----------
    folder : path-like
        Where ``/preset/save`` writes; created on first save.
    shipped : path-like, optional
        Read-only presets shipped with earengine.
    """

    def __init__(self, folder: os.PathLike | str, *, shipped: Optional[os.PathLike | str] = SHIPPED_DIR) -> None:
        self.files = NamedJsonStore(folder, shipped=shipped, kind="preset", list_command="/preset/list",
                                    shape="a JSON object with a 'values' object")

    def names(self) -> list[str]:
        return self.files.names()

    def save(self, preset: Preset) -> Path:
        """Write atomically to ``<folder>/<name>.json``."""
        return self.files.write(preset.name, preset.to_dict())

    def read(self, name: str) -> Preset:
        return Preset.from_dict({**self.files.read(name), "name": name})

    def load(self, name: str, registry: Registry, *, source: str = "preset") -> list[str]:
        """Read, validate and apply a preset all-or-nothing; returns unknown addresses (warned once)."""
        preset = self.read(name)
        values, unknown = preset.resolve(registry)
        if unknown:
            log.warning("preset %r: ignoring unknown address(es) %s", name, ", ".join(unknown))
        registry.update(values, source=source)
        return unknown

    def handlers(self, registry: Registry) -> dict[str, Callable]:
        """Handlers of ``/preset/save``, ``/preset/load`` and ``/preset/list`` on ``registry``,
        for an OSC router (``handler(args, sender)``)."""

        def save(args: tuple, sender: tuple) -> None:
            self.save(Preset.capture(args[0], registry))

        def load(args: tuple, sender: tuple) -> None:
            self.load(args[0], registry, source="preset")

        def names(args: tuple, sender: tuple) -> list[Reply]:
            return [Reply("/preset/list.reply", tuple(self.names()))]

        return {"/preset/save": save, "/preset/load": load, "/preset/list": names}
