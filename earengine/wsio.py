"""What every WebSocket server of the engine shares (the activation streams, OSCQuery).

:func:`websocket_log` is where their own messages go: to debug, on ``earengine.websocket``. The
websockets library logs a client that vanishes in the middle of a frame (a closed browser tab, a
killed visualizer) as an internal error, with a traceback; for the engine that is a receiver
leaving, which it handles: the console stays plain, and debug logging still shows it.
:func:`cut_off` frees a sending thread blocked on a peer that never reads.
"""

from __future__ import annotations

import logging
import socket

__all__ = ["websocket_log", "cut_off"]


class _Quiet(logging.LoggerAdapter):
    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:
        self.logger.log(logging.DEBUG, msg, *args, **kwargs)  # type: ignore[arg-type]


def websocket_log() -> logging.LoggerAdapter:
    """The logger to give ``websockets.sync.server.serve(logger=...)``."""
    return _Quiet(logging.getLogger("earengine.websocket"), {})


def cut_off(conn) -> None:
    """Shut a WebSocket connection's socket, so that a send blocked on a peer that never reads
    returns at once (with an error its sending thread expects); harmless on a closed one."""
    try:
        conn.socket.shutdown(socket.SHUT_RDWR)
    except (OSError, AttributeError):
        pass
