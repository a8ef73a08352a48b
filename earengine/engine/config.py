"""What an engine is asked to run: :class:`EngineConfig`, one frozen value, validated once.

``earengine run`` builds it from its options (:mod:`earengine.engine.commands`); tests and scripts
build it directly. The engine reads it and never changes it.

>>> config = EngineConfig(audio="offline", osc_port=0, allow=["10.0.0.2"], midi_in=["BCF2000"])
>>> config.allow, config.midi_in, config.reply_port
(('10.0.0.2',), ('BCF2000',), None)
>>> EngineConfig(reply_port=99999)
Traceback (most recent call last):
...
earengine.errors.ParameterError: reply_port=99999 (--reply-port) must be within [1, 65535]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Optional, Sequence

from earengine.errors import ParameterError
from earengine.midi.ports import BACKENDS as MIDI_BACKENDS
from earengine.synth.server import MODES as AUDIO_MODES

__all__ = ["EngineConfig", "DEVICES", "BESIDE_OSCQUERY"]

#: ``stream_ws_port`` that puts the streams' WebSocket beside OSCQuery: on its port + 1, or on a
#: free port when that one is taken (the engine's page learns which from HOST_INFO).
BESIDE_OSCQUERY = "auto"

#: Where the worker runs the ear.
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class EngineConfig:
    """Everything an :class:`~earengine.engine.Engine` is asked to run.

    Parameters
    ----------
    audio : {'auto', 'jack', 'portaudio', 'offline', 'null'}
        Audio mode (see :mod:`earengine.synth.server`).
    osc_host : str
        Interface OSC (and OSCQuery, and WebSocket streams) listen on; loopback by default.
    osc_port : int in [0, 65535]
        UDP port for OSC; 0 takes a free one.
    allow : sequence of str, optional
        OSC peers allowed to send (IP addresses); ``None`` lets every peer send.
    reply_port : int in [1, 65535], optional
        Default reply port for hosts that send and receive on different sockets.
    preset_dir : path-like, optional
        Where presets are saved (default: ``$EARENGINE_HOME/presets``).
    overrides : mapping of address to value
        Parameter values to apply before anything starts (``--set``); the registry checks them.
    max_datagram : int in [1, 65507], optional
        Largest OSC datagram the server accepts (default: the UDP maximum).
    ear : path-like, optional
        Ear checkpoint folder to dream with; ``None`` plays loops only, starting no worker.
    device : {'cpu', 'cuda'}
        Where the worker runs the ear.
    stream_ws_port : int in [0, 65535] or 'auto', optional
        Also stream activations to WebSocket receivers on this TCP port; ``'auto'``
        (:data:`BESIDE_OSCQUERY`, what ``earengine run`` asks for unless told otherwise): beside
        OSCQuery, on its port + 1 or a free one, none when OSCQuery is off.
    oscquery_port : int in [0, 65535], optional
        TCP port of the OSCQuery namespace; ``None`` serves none.
    zeroconf : bool
        Advertise OSCQuery with zeroconf.
    allow_origin : sequence of str
        Web pages, besides the engine's own, that may open its WebSockets (OSCQuery's, the
        streams'), as origins like ``http://192.168.1.20:8080`` (``--allow-origin``); any other
        page is refused (see :class:`earengine.wsio.Gate`).
    midi_in : sequence of str
        MIDI inputs to open by name or pattern (``virtual``: a port others connect to).
    midi_out : str, optional
        MIDI output for controller feedback, clock and notes, by name or pattern, or ``virtual``.
    midi_backend : {'auto', 'jack', 'alsa'}
    midi_map : str, optional
        Controller map to load at start (``bcf2000``, ``launch-control-xl`` or a saved one).
    input : bool
        Open the audio inputs (JACK capture ports ``earengine:input_1/2``, else the PortAudio
        input device) for listening and captures (:mod:`earengine.listen`).
    worker : str, optional
        ``HOST:PORT`` of a worker on another machine (``earengine worker --listen``) to dream with
        instead of a local worker process; ``ear`` and ``device`` are then the server's.
    secret_file : path-like, optional
        The keys both hosts hold (``earengine worker --new-secret``); required when ``worker``
        is beyond loopback.
    """

    audio: str = "auto"
    osc_host: str = "127.0.0.1"
    osc_port: int = 9000
    allow: Optional[tuple[str, ...]] = None
    reply_port: Optional[int] = None
    preset_dir: Optional[Path] = None
    overrides: Mapping[str, Any] = field(default_factory=dict, hash=False)
    max_datagram: Optional[int] = None
    ear: Optional[Path] = None
    device: str = "cpu"
    stream_ws_port: Optional[int | str] = None
    oscquery_port: Optional[int] = None
    zeroconf: bool = False
    allow_origin: tuple[str, ...] = ()
    midi_in: tuple[str, ...] = ()
    midi_out: Optional[str] = None
    midi_backend: str = "auto"
    midi_map: Optional[str] = None
    input: bool = False
    worker: Optional[str] = None
    secret_file: Optional[Path] = None

    def __post_init__(self) -> None:
        # here, not at module level: `earengine --help` reads this module and stays free of numpy,
        # which the OSC wire format imports
        from earengine.osc.wire import MAX_UDP_PAYLOAD
        from earengine.wsio import parse_origin

        _one_of("audio", self.audio, AUDIO_MODES)
        _one_of("device", self.device, DEVICES)
        _one_of("midi_backend", self.midi_backend, MIDI_BACKENDS)
        if not self.osc_host:
            raise ParameterError("osc_host='' must name an interface, e.g. 127.0.0.1 (--osc-host)")
        _port("osc_port", self.osc_port, low=0)
        _port("reply_port", self.reply_port, low=1)
        if self.stream_ws_port != BESIDE_OSCQUERY:
            _port("stream_ws_port", self.stream_ws_port, low=0)
        _port("oscquery_port", self.oscquery_port, low=0)
        if self.max_datagram is not None and not 0 < self.max_datagram <= MAX_UDP_PAYLOAD:
            raise ParameterError(f"max_datagram={self.max_datagram} must be within [1, {MAX_UDP_PAYLOAD}]")
        set_ = object.__setattr__  # frozen: normalise once, here
        if self.allow is not None:
            set_(self, "allow", _names("allow", self.allow))
        set_(self, "midi_in", _names("midi_in", self.midi_in))
        set_(self, "allow_origin", tuple(parse_origin(o) for o in _names("allow_origin", self.allow_origin)))
        set_(self, "overrides", MappingProxyType(dict(self.overrides)))
        if self.worker is not None:
            from earengine.worker.wire import parse_endpoint, refuse_open_listen

            host, port = parse_endpoint(self.worker, "--worker")
            if port == 0:
                raise ParameterError(f"--worker {self.worker}: port 0 names no worker; give the port it listens on")
            refuse_open_listen(host, self.secret_file or None, "--worker")
        for name in ("preset_dir", "ear", "secret_file"):  # a path, or None for '' as well
            value = getattr(self, name)
            set_(self, name, Path(os.fspath(value)) if value else None)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _one_of(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ParameterError(f"{name}={value!r} ({_flag(name)}) must be one of {', '.join(choices)}")


def _port(name: str, value: Optional[int], *, low: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 65535:
        raise ParameterError(f"{name}={value} ({_flag(name)}) must be within [{low}, 65535]")


def _names(name: str, value: Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
        raise ParameterError(f"{name}={value!r} must be a sequence of non-empty names")
    return tuple(value)
