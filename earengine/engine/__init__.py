"""The engine: the process that wires registry, audio, loop player, worker and transports together.

:mod:`earengine.engine.engine` holds :class:`Engine`; :mod:`earengine.engine.commands` the
``earengine run`` sub-command.
"""

from earengine.engine.engine import Engine

__all__ = ["Engine"]
