"""Where the WebSocket servers' own messages go: to debug, on ``earengine.websocket``.

The websockets library logs a client that vanishes in the middle of a frame (a closed browser
tab, a killed visualizer) as an internal error, with a traceback. For the engine that is a
receiver leaving, which it handles: the console stays plain, and debug logging still shows it.
"""

from __future__ import annotations

import logging

__all__ = ["websocket_log"]


class _Quiet(logging.LoggerAdapter):
    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:
        self.logger.log(logging.DEBUG, msg, *args, **kwargs)  # type: ignore[arg-type]


def websocket_log() -> logging.LoggerAdapter:
    """The logger to give ``websockets.sync.server.serve(logger=...)``."""
    return _Quiet(logging.getLogger("earengine.websocket"), {})
