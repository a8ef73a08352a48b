"""The engine: the process that wires registry, audio, loop player, worker and transports together.

- :class:`Engine` (``earengine.engine.engine``): everything the engine process runs, as a context
  manager;
- :class:`EngineConfig` (``earengine.engine.config``): the frozen, validated value it runs;
- ``earengine.engine.commands``: the ``earengine run`` sub-command, which builds one from its options.

Importing this package imports neither: ``earengine --help`` reaches the run command through it
and stays light; the names above load their module on first use.
"""

from __future__ import annotations

from earengine.lazy import lazy_exports

_LAZY = {
    "Engine": "earengine.engine.engine",
    "EngineConfig": "earengine.engine.config",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(globals(), _LAZY)
