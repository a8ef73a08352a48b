"""The engine: the process that wires registry, audio, loop player, worker and transports together.

- :class:`Engine` (``earengine.engine.engine``): everything the engine process runs, as a context
  manager;
- :class:`EngineConfig` (``earengine.engine.config``): the frozen, validated value it runs;
- ``earengine.engine.commands``: the ``earengine run`` sub-command, which builds one from its options.

Importing this package imports neither: ``earengine --help`` reaches the run command through it
and stays light; the names above load their module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Engine": "earengine.engine.engine",
    "EngineConfig": "earengine.engine.config",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'earengine.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
