"""The engine's MIDI ports on JACK: one client (JACK-Client, imported lazily), a port per input
and an output.

Not python-rtmidi's JACK backend: rtmidi keeps Python's lock while it waits on the JACK server,
and in the engine process pyo's JACK callback needs that lock, so opening or connecting a port
would stall a synchronous JACK graph for its whole timeout. JACK-Client lets go of the lock, and
gives each event the frame it came on.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Callable, Optional, Sequence

from earengine.clock.grid import ArrivalClock
from earengine.errors import DeviceError
from earengine.midi.ports import match_port
from earengine.midi.wire import MidiParser

__all__ = ["JackMidi", "JackMidiInput", "JackMidiOutput"]

log = logging.getLogger("earengine.midi")


class _JackPort:
    """One MIDI port of :class:`JackMidi`, connected by pattern (or left for others to connect)."""

    def __init__(self, hub: "JackMidi", spec: str, port, kind: str) -> None:
        self.hub, self.port, self.kind = hub, port, kind
        self.spec = spec or "virtual"
        self.virtual = self.spec == "virtual" or self.spec.startswith("virtual:")
        self.connected: Optional[str] = port.name if self.virtual else None
        self.queue: deque = deque(maxlen=8192)
        self._waiting_said = False

    def available(self) -> list[str]:
        """Ports on the other side (sources for an input, destinations for an output)."""
        try:
            ports = self.hub.client.get_ports(is_midi=True, is_output=self.kind == "in", is_input=self.kind == "out")
        except Exception:
            return []
        own = f"{self.hub.client.name}:"
        return [p.name for p in ports if not p.name.startswith(own)]

    def open(self) -> bool:
        self.check()
        return self.connected is not None

    def check(self) -> None:
        """Connect when the port named by the pattern is there; notice when it has gone."""
        if self.virtual:
            return
        names = self.available()
        if self.connected is not None and self.connected not in names:
            self.hub.say(f"midi: {self.kind}put {self.connected} is gone; waiting for it to come back")
            self.connected, self._waiting_said = None, True
        if self.connected is not None:
            return
        name = match_port(self.spec, names)
        if name is None:
            if not self._waiting_said:
                self._waiting_said = True
                self.hub.say(f"midi: no {self.kind}put port matches {self.spec!r} (ports: {', '.join(names) or 'none'}); waiting for it")
            return
        try:
            if self.kind == "in":
                self.hub.client.connect(name, self.port)
            else:
                self.hub.client.connect(self.port, name)
        except Exception as exc:  # already connected by someone else is fine
            if not self.port.is_connected_to(name):
                log.warning("cannot connect MIDI %s to %s: %s", self.port.name, name, exc)
                return
        self.connected, self._waiting_said = name, False
        self.hub.say(f"midi: {self.kind}put connected to {name}")

    def close_all(self) -> None:
        pass  # the hub closes its client once


class JackMidiInput(_JackPort):
    """An input of :class:`JackMidi`: messages with the monotonic time of their own frame."""

    def __init__(self, hub: "JackMidi", spec: str, port) -> None:
        super().__init__(hub, spec, port, "in")
        self.parser = MidiParser()

    def poll(self, limit: int = 4096) -> list[tuple]:
        """``(message, monotonic time, time on JACK's frame line)`` for each message waiting."""
        out: list[tuple] = []
        q = self.queue
        offset = self.hub.arrival.offset or 0.0
        for _ in range(limit):
            try:
                local, data = q.popleft()
            except IndexError:
                break
            for message in self.parser.feed(data):
                out.append((message, local + offset, local))
        return out


class JackMidiOutput(_JackPort):
    """The output of :class:`JackMidi`: messages leave in the next cycle, or in the cycle and at
    the frame of the time they are given."""

    schedules = True

    def __init__(self, hub: "JackMidi", spec: str, port) -> None:
        super().__init__(hub, spec, port, "out")
        self.timed: deque = deque(maxlen=4096)
        self.sent = 0
        self.dropped = 0

    def send(self, message: bytes, at_s: Optional[float] = None) -> None:
        """Queue one complete message; ``at_s`` (monotonic seconds) places it on its frame."""
        data = bytes(message)
        if at_s is None:
            self.queue.append(data)
        else:
            self.timed.append((at_s, data))


class JackMidi:
    """The engine's MIDI ports on JACK: one client, a port per input and an output.

    JACK-Client (cffi) lets go of the Python lock while it waits on the server, so ports can be
    opened and connected while pyo's JACK callback — which needs that lock — keeps the audio
    going; a binding that holds the lock there stalls a synchronous JACK graph. The process
    callback only moves bytes between JACK's buffers and queues; each incoming event keeps the
    time of its own frame (cycle start, from the lower envelope of callback times, plus its
    offset), the same time line the audio clock uses.

    Parameters
    ----------
    inputs : sequence of str
        Patterns of ports to read (``virtual``: a port others connect to).
    output : str, optional
        Pattern of the port to write to.
    client : str
        JACK client name.
    """

    def __init__(self, inputs: Sequence[str], output: Optional[str], *, client: str = "earengine-midi",
                 say: Callable[[str], None] = lambda line: None) -> None:
        try:
            import jack
        except ImportError:
            raise DeviceError("MIDI on JACK needs the JACK-Client package: pip install JACK-Client") from None
        self.say = say
        try:
            self.client = jack.Client(client, no_start_server=True)
        except Exception as exc:
            raise DeviceError(f"cannot open MIDI on JACK ({exc}); is a JACK server running? try --midi-backend alsa") from None
        self.sr = self.client.samplerate
        self.arrival = ArrivalClock()
        self._last_f0 = 0
        self._wraps = 0
        self.inputs = []
        for i, spec in enumerate(inputs):
            port = self.client.midi_inports.register("in" if i == 0 else f"in_{i + 1}")
            self.inputs.append(JackMidiInput(self, spec, port))
        self.output = None
        if output is not None:
            self.output = JackMidiOutput(self, output, self.client.midi_outports.register("out"))
        self.counts = {"cycles": 0, "failed": 0, "dropped": 0}
        self.client.set_process_callback(self._process)
        self.client.set_shutdown_callback(self._shutdown)
        self.client.activate()
        for port in self.inputs + ([self.output] if self.output else []):
            if port.virtual:
                say(f"midi: {port.kind}put is the port {port.port.name}; connect to it")
            else:
                port.check()

    def _shutdown(self, status, reason) -> None:
        log.warning("JACK shut the MIDI client down: %s", reason)

    def _process(self, frames: int) -> None:
        # the JACK thread: bytes in and out, nothing that could wait
        try:
            f0 = self.client.last_frame_time
            t0 = self.arrival.update(f0 / self.sr, time.monotonic())
            self.counts["cycles"] += 1
            if f0 < self._last_f0:
                self._wraps += 1  # JACK's frame counter is 32 bits: it wraps after a day at 48 kHz
            self._last_f0 = f0
            f0 += self._wraps << 32
            for port in self.inputs:
                for offset, data in port.port.incoming_midi_events():
                    port.queue.append(((f0 + offset) / self.sr, bytes(data)))
            out = self.output
            if out is None:
                return
            out.port.clear_buffer()
            last = 0
            while out.queue:
                out.port.write_midi_event(0, out.queue.popleft())
                out.sent += 1
            timed = out.timed
            while timed:
                at_s, data = timed[0]
                offset = int(round((at_s - t0) * self.sr))
                if offset >= frames:
                    break  # a later cycle's
                timed.popleft()
                offset = min(frames - 1, max(last, offset))  # late ones go out now, in order
                out.port.write_midi_event(offset, data)
                out.sent += 1
                last = offset
        except Exception:
            self.counts["failed"] += 1  # a full buffer, a malformed message: drop, keep going

    def close(self) -> None:
        try:
            self.client.deactivate()
            self.client.close()
        except Exception:
            log.debug("closing the JACK MIDI client failed", exc_info=True)
