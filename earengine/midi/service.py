"""The MIDI service: the ports and the one thread that reads them.

:class:`MidiService` opens ports by name or pattern, or ports others connect to (``virtual``), on
JACK (the default on Linux when a server runs) or ALSA; polls them on one thread, reconnects
ports that disappear and come back, and hands clock messages to the clock and everything else
to :class:`~earengine.midi.control.MidiControl`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from earengine.midi.ports import resolve_backend
from earengine.midi.ports_jack import JackMidi
from earengine.midi.ports_rtmidi import MidiInput, MidiOutput
from earengine.midi.wire import CLOCK_STATUSES
from earengine.service import ThreadService

__all__ = ["MidiService"]

log = logging.getLogger("earengine.midi")


@dataclass
class MidiService(ThreadService):
    """The MIDI ports and the thread that reads them; a context manager.

    Parameters
    ----------
    inputs : sequence of ports
        :class:`MidiInput` (or :class:`MemoryInput`) objects.
    output : port, optional
        :class:`MidiOutput` for feedback and clock out.
    on_control : callable(message, time_s)
        Everything but clock messages (:class:`MidiControl.handle`).
    on_clock : callable(message, time_s, local_s), optional
        Clock, start, continue, stop, song position (:class:`~earengine.clock.midi_in.MidiClockIn.feed`);
        ``local_s`` is the time on the port's own time line, or None.
    poll_s : float > 0
        Sleep between reads. Times come from the ports, not from this thread, so it only sets
        the control latency.
    """

    inputs: Sequence[Any]
    output: Optional[Any] = None
    on_control: Callable[[tuple, float], None] = lambda message, time_s: None
    on_clock: Optional[Callable[[tuple, float, Optional[float]], None]] = None
    poll_s: float = 0.002
    check_s: float = 0.5
    closers: list = field(default_factory=list)
    counts: dict = field(default_factory=lambda: {"messages": 0, "clock": 0, "failed": 0})

    thread_name = "earengine-midi"

    def __post_init__(self) -> None:
        self._init_thread()

    @classmethod
    def open(cls, inputs: Sequence[str] = (), output: Optional[str] = None, *, backend: str = "auto",
             client: str = "earengine", say: Callable[[str], None] = lambda line: None,
             **kwargs: Any) -> "MidiService":
        """Ports from ``--midi-in`` patterns and a ``--midi-out`` pattern (``virtual``: a port
        others connect to). Ports not there yet are waited for."""
        backend = resolve_backend(backend)
        if backend == "jack":
            hub = JackMidi(inputs, output, client=f"{client}-midi", say=say)
            return cls(hub.inputs, hub.output, closers=[hub.close], **kwargs)
        ins = [MidiInput(spec, client=client, say=say) for spec in inputs]
        out = MidiOutput(output, client=client, say=say) if output is not None else None
        for port in ins + ([out] if out is not None else []):
            port.open()
        return cls(ins, out, **kwargs)

    @property
    def schedules(self) -> bool:
        """Whether the output places a message given a time on that time's frame."""
        return bool(getattr(self.output, "schedules", False))

    def send(self, message: bytes, at_s: Optional[float] = None) -> None:
        """Send one message; with ``at_s`` (monotonic seconds) at that time where the output
        can place it, else now."""
        if self.output is None:
            return
        if at_s is not None and self.schedules:
            self.output.send(message, at_s)
        else:
            self.output.send(message)

    def close(self) -> None:
        self._stop_thread()
        for port in list(self.inputs) + ([self.output] if self.output is not None else []):
            try:
                port.close_all()
            except Exception:
                log.debug("closing a MIDI port failed", exc_info=True)
        for closer in self.closers:
            try:
                closer()
            except Exception:
                log.debug("closing MIDI failed", exc_info=True)
        self.closers = []

    def ports(self) -> list[str]:
        """Every port seen, as ``in:<name>`` / ``out:<name>``, the open ones marked ``*``."""
        out: list[str] = []
        for kind, ports in (("in", list(self.inputs)), ("out", [self.output] if self.output else [])):
            seen: set = set()
            for port in ports:
                for name in port.available():
                    if name not in seen:
                        seen.add(name)
                        mark = "*" if any(p.connected == name for p in ports) else ""
                        out.append(f"{kind}:{name}{mark}")
                if port.connected and port.connected not in seen:
                    seen.add(port.connected)
                    out.append(f"{kind}:{port.connected}*")
        return out

    def pump(self) -> int:
        """Read every input once and hand the messages on; returns how many. Never raises."""
        n = 0
        for port in self.inputs:
            try:
                items = port.poll()
            except Exception:
                self.counts["failed"] += 1
                log.debug("MIDI read failed", exc_info=True)
                continue
            for item in items:
                message, when = item[0], item[1]
                local = item[2] if len(item) > 2 else None
                n += 1
                try:
                    if message[0] in CLOCK_STATUSES:
                        self.counts["clock"] += 1
                        if self.on_clock is not None:
                            self.on_clock(message, when, local)
                    else:
                        self.counts["messages"] += 1
                        self.on_control(message, when)
                except Exception:
                    self.counts["failed"] += 1
                    log.exception("MIDI message %r failed", message)
        return n

    def check(self) -> None:
        for port in list(self.inputs) + ([self.output] if self.output is not None else []):
            try:
                port.check()
            except Exception:
                log.debug("MIDI port check failed", exc_info=True)

    def _run(self) -> None:
        next_check = time.monotonic() + self.check_s
        while not self._stop.is_set():
            self.pump()
            now = time.monotonic()
            if now >= next_check:
                next_check = now + self.check_s
                self.check()
            self._stop.wait(self.poll_s)
