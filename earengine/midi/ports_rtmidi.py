"""MIDI ports on ALSA through python-rtmidi, the only module that imports ``rtmidi`` (lazily).

Used for ``--midi-backend alsa``; on JACK the ports are :mod:`earengine.midi.ports_jack`'s,
because rtmidi keeps Python's lock while it waits on the JACK server.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Optional

from earengine.clock.grid import ArrivalClock
from earengine.errors import DeviceError, EarEngineError
from earengine.midi.ports import match_port
from earengine.midi.wire import MidiParser

__all__ = ["MidiInput", "MidiOutput"]

log = logging.getLogger("earengine.midi")


def _rtmidi_alsa():
    """python-rtmidi and its ALSA API (JACK MIDI goes through :class:`JackMidi` instead)."""
    try:
        import rtmidi
    except ImportError:
        raise DeviceError("ALSA MIDI needs python-rtmidi: pip install python-rtmidi") from None
    if rtmidi.API_LINUX_ALSA not in rtmidi.get_compiled_api():
        raise DeviceError("this python-rtmidi has no ALSA support; try --midi-backend jack with a JACK server running")
    return rtmidi, rtmidi.API_LINUX_ALSA


class _Port:
    """An ALSA port opened by pattern or as a virtual port, reopened when it goes and comes back."""

    kind = "in"

    def __init__(self, spec: str, *, client: str = "earengine",
                 say: Callable[[str], None] = lambda line: None) -> None:
        self.spec = spec or "virtual"
        self.client = f"{client}-midi-{self.kind}"
        self.say = say
        self.virtual = self.spec == "virtual" or self.spec.startswith("virtual:")
        self.port_name = (self.spec.partition(":")[2] or self.kind) if self.virtual else ""
        self.connected: Optional[str] = None
        self._rt = None
        self._waiting_said = False

    def _new(self):
        raise NotImplementedError

    def available(self) -> list[str]:
        """Ports on the other side (sources for an input, destinations for an output), ours left out."""
        rt = self._rt or self._probe()
        try:
            names = list(rt.get_ports())
        except Exception:
            return []
        return [n for n in names if not n.startswith(f"{self.client.rsplit('-', 1)[0]}-")]

    def _probe(self):
        if getattr(self, "_probe_rt", None) is None:
            self._probe_rt = self._new()
        return self._probe_rt

    def open(self) -> bool:
        """Open (or reopen) the port; True when it is open and connected."""
        try:
            if self.virtual:
                if self._rt is None:
                    rt = self._new()
                    rt.open_virtual_port(self.port_name)
                    self._rt = rt
                    self.connected = f"{self.client}:{self.port_name}"
                    self.say(f"midi: {self.kind}put is the virtual port {self.connected}; connect to it")
                return True
            names = self.available()
            name = match_port(self.spec, names)
            if name is None:
                if not self._waiting_said:
                    self._waiting_said = True
                    seen = ", ".join(names) or "none"
                    self.say(f"midi: no {self.kind}put port matches {self.spec!r} (ports: {seen}); waiting for it")
                return False
            self.close()
            rt = self._new()
            rt.open_port(list(rt.get_ports()).index(name), f"{self.kind}")
            self._rt, self.connected, self._waiting_said = rt, name, False
            self.say(f"midi: {self.kind}put connected to {name}")
            return True
        except (DeviceError, EarEngineError):
            raise
        except Exception as exc:
            log.warning("cannot open MIDI %sput %r: %s", self.kind, self.spec, exc)
            return False

    def check(self) -> None:
        """Reconnect when the port has gone (and come back). Off the real-time path."""
        if self.virtual:
            if self._rt is None:
                self.open()
            return
        if self.connected is not None and self.connected not in self.available():
            self.say(f"midi: {self.kind}put {self.connected} is gone; waiting for it to come back")
            self.close()
            self._waiting_said = True
        if self.connected is None:
            self.open()

    def close(self) -> None:
        rt, self._rt, self.connected = self._rt, None, None
        if rt is not None:
            try:
                rt.close_port()
                rt.delete()
            except Exception:
                pass

    def close_all(self) -> None:
        self.close()
        probe = getattr(self, "_probe_rt", None)
        self._probe_rt = None
        if probe is not None:
            try:
                probe.delete()
            except Exception:
                pass


class MidiInput(_Port):
    """An rtmidi input (ALSA); :meth:`poll` drains it with each message's monotonic time.

    rtmidi stamps each message with the time since the previous one, taken when it arrived
    however late we read it; summed, they are the port's own time line, which
    :class:`~earengine.clock.grid.ArrivalClock` maps onto ``time.monotonic``.
    """

    kind = "in"

    def __init__(self, spec: str, **kwargs: Any) -> None:
        super().__init__(spec, **kwargs)
        self.parser = MidiParser()
        self.arrival = ArrivalClock()
        self._local = 0.0

    def _new(self):
        rtmidi, api = _rtmidi_alsa()
        try:
            rt = rtmidi.MidiIn(api, self.client, queue_size_limit=4096)
        except Exception as exc:
            raise DeviceError(f"cannot open ALSA MIDI input: {exc}; check that ALSA's sequencer (/dev/snd/seq) "
                              "is there, or use --midi-backend jack") from None
        rt.ignore_types(sysex=False, timing=False, active_sense=True)
        return rt

    def open(self) -> bool:
        ok = super().open()
        if ok:
            self.arrival.reset()
            self.parser = MidiParser()
            self._local = 0.0
        return ok

    def poll(self, limit: int = 4096) -> list[tuple[tuple, float]]:
        rt = self._rt
        out: list[tuple[tuple, float]] = []
        if rt is None:
            return out
        for _ in range(limit):
            try:
                item = rt.get_message()
            except Exception:
                break
            if not item:
                break
            data, delta = item
            self._local += max(0.0, float(delta))
            when = self.arrival.update(self._local, time.monotonic())
            for message in self.parser.feed(data):
                out.append((message, when, self._local))
        return out


class MidiOutput(_Port):
    """An rtmidi output (ALSA); :meth:`send` is thread-safe and never raises."""

    kind = "out"

    def __init__(self, spec: str, **kwargs: Any) -> None:
        super().__init__(spec, **kwargs)
        self._lock = threading.Lock()
        self.sent = 0
        self.dropped = 0

    def _new(self):
        rtmidi, api = _rtmidi_alsa()
        try:
            return rtmidi.MidiOut(api, self.client)
        except Exception as exc:
            raise DeviceError(f"cannot open ALSA MIDI output: {exc}; check that ALSA's sequencer (/dev/snd/seq) "
                              "is there, or use --midi-backend jack") from None

    def send(self, message: bytes) -> None:
        rt = self._rt
        if rt is None:
            self.dropped += 1
            return
        with self._lock:  # rtmidi's JACK ring buffer takes one writer at a time
            try:
                rt.send_message(list(message))
                self.sent += 1
            except Exception:
                self.dropped += 1
