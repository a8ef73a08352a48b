"""MIDI ports, whatever the backend: picking a port by pattern, and picking the backend.

The backends: :mod:`earengine.midi.ports_jack` (JACK, through JACK-Client),
:mod:`earengine.midi.ports_rtmidi` (ALSA, through python-rtmidi) and
:mod:`earengine.midi.ports_memory` (no device, for tests). Every port has ``open``, ``check``
(reconnect when it went and came back), ``available`` and ``close_all``; an input has ``poll``,
an output ``send``.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
from typing import Optional, Sequence

from earengine.errors import ParameterError

__all__ = ["match_port", "resolve_backend", "BACKENDS"]


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
