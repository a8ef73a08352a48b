"""MIDI control through real JACK MIDI ports.

A test "controller" — a JACK client of the test's own with an output the engine's input connects
to and an input that receives the feedback — moves faders, while the engine's
:class:`MidiService` (its own JACK client, finding the controller by port pattern) drives a
registry.
Judged from the registry and from what arrives at the controller's input. Keys mapped to actions
are played into a whole ``earengine run`` process and judged from what it answers over OSC.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Callable

import pytest

from earengine.midi.control import MidiControl
from earengine.midi.service import MidiService
from earengine.params import default_registry
from tests.helpers.waits import wait_until as _wait_until

pytestmark = pytest.mark.integration

jack = pytest.importorskip("jack", reason="the JACK-Client package is needed: pip install JACK-Client")


def wait_until(check: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """The shared poll, every 10 ms; the deadline only bounds a failure."""
    return _wait_until(check, timeout_s, step_s=0.01)


class Controller:
    """A MIDI controller on JACK (JACK-Client): ``send`` raw bytes, ``received`` what came back.

    JACK-Client lets go of Python's lock while it waits on the server; a client that holds it
    there (python-rtmidi's JACK backend) would stall the synchronous graph while this process
    also runs a JACK callback in Python, as the engine's MIDI does.
    """

    def __init__(self, name: str = "testctl") -> None:
        self.name = name
        self.pending: deque = deque()
        self.received: list[tuple] = []
        self.cycles = 0  # JACK cycles this client has run
        self.client = None
        self.plug()

    def plug(self) -> None:
        client = jack.Client(self.name, use_exact_name=True, no_start_server=True)
        out = client.midi_outports.register("out")
        inp = client.midi_inports.register("in")

        def process(frames: int) -> None:
            out.clear_buffer()
            while self.pending:
                out.write_midi_event(0, self.pending.popleft())
            for _, data in inp.incoming_midi_events():
                self.received.append(tuple(bytes(data)))
            self.cycles += 1

        client.set_process_callback(process)
        client.activate()
        self.client = client

    def send(self, *data: int) -> None:
        """Send one event, in a JACK cycle of its own: returns once a cycle has taken it."""
        self.send_together(data)

    def send_together(self, *events: tuple) -> None:
        """Send events in one JACK cycle, back to back (as a controller sends a 14-bit pair)."""
        self.pending.extend([bytes(data) for data in events])  # at once: one cycle takes them all
        assert _wait_until(lambda: not self.pending, 10.0, step_s=0.001), "the controller's JACK cycles stopped"

    def wait_cycles(self, n: int) -> None:
        """Wait until this client has run ``n`` more JACK cycles."""
        until = self.cycles + n
        assert _wait_until(lambda: self.cycles >= until, 10.0, step_s=0.001), "the controller's JACK cycles stopped"

    def drain(self) -> list[tuple]:
        return self.received

    def unplug(self) -> None:
        client, self.client = self.client, None
        client.deactivate()
        client.close()

    def close(self) -> None:
        if self.client is not None:
            self.unplug()


@pytest.fixture
def rig(jack_server, monkeypatch):
    for key in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER"):
        monkeypatch.setenv(key, jack_server.env[key])
    ctl = Controller()
    reg = default_registry()
    lines: list[str] = []
    service = MidiService.open(["testctl:out"], "testctl:in", backend="jack", say=lines.append, check_s=0.1)
    control = MidiControl(reg, send=service.send)
    service.on_control = control.handle
    service.start()
    assert wait_until(lambda: service.inputs[0].connected and service.output.connected), lines
    reg.set("/midi/takeover", "jump")
    yield ctl, reg, control, service, lines
    service.close()
    control.close()
    ctl.close()


def test_cc_moves_parameters_with_their_scaling(rig):
    ctl, reg, control, service, _ = rig
    reg.set("/midi/map", '[{"address": "/loop/gain", "cc": 81}, {"address": "/opt/lr", "cc": 1},'
                         ' {"address": "/son/root", "cc": 2}, {"address": "/loop/mute", "cc": 65}]')
    ctl.send(0xB0, 81, 127)
    ctl.send(0xB0, 1, 64)
    ctl.send(0xB0, 2, 127)
    ctl.send(0xB0, 65, 127)
    assert wait_until(lambda: reg.get("/loop/mute") is True)
    assert reg.get("/loop/gain") == 6.0
    assert reg.get("/opt/lr") == pytest.approx(1e-6 * 1e6 ** (64 / 127))
    assert reg.get("/son/root") == "B"


def test_learn_binds_and_fourteen_bits_resolve(rig):
    ctl, reg, control, service, _ = rig
    control.learn("/son/base")
    ctl.send(0xB3, 5, 10)
    assert wait_until(lambda: [b.control for b in control.bindings] == ["cc 4/5"])
    ctl.send(0xB3, 5, 127)
    assert wait_until(lambda: reg.get("/son/base") == 4000.0)
    control.learn("/loop/xfade")
    ctl.send_together((0xB0, 7, 64), (0xB0, 39, 0))  # the LSB right behind its MSB: a 14-bit pair
    assert wait_until(lambda: any(b.control == "cc14 1/7" for b in control.bindings))
    spec = reg.spec("/loop/xfade")

    def off_grid(lsb: int) -> float:  # how far a 14-bit value lies from every 7-bit one
        pos = ((64 << 7) | lsb) / 16383
        return min(abs(pos - k / 127) for k in range(128))

    lsb = max(range(128), key=off_grid)
    ctl.send_together((0xB0, 7, 64), (0xB0, 39, lsb))
    expected = spec.from_unit(((64 << 7) | lsb) / 16383)
    assert wait_until(lambda: reg.get("/loop/xfade") == pytest.approx(expected))
    assert off_grid(lsb) > 0.4 / 127  # a value 7 bits cannot say


def test_takeover_and_feedback_on_the_output_port(rig, jack_clock):
    ctl, reg, control, service, _ = rig
    reg.set("/midi/map", '[{"address": "/loop/gain", "cc": 81}]')
    reg.set("/midi/takeover", "pickup")
    assert wait_until(lambda: (0xB0, 81, round(reg.spec("/loop/gain").to_unit(-3.0) * 127)) in ctl.drain())
    reg.set("/loop/gain", 0.0, source="osc")  # from OSC: the motor fader is told
    here = round(reg.spec("/loop/gain").to_unit(0.0) * 127)
    assert wait_until(lambda: (0xB0, 81, here) in ctl.drain())
    ctl.send(0xB0, 81, 20)  # far below: no jump
    ctl.send(0xB0, 81, 30)
    jack_clock.sleep_s(0.1)
    assert reg.get("/loop/gain") == 0.0
    ctl.send(0xB0, 81, here + 2)  # crossed the value: from now on it follows
    ctl.send(0xB0, 81, 100)
    assert wait_until(lambda: reg.get("/loop/gain") == pytest.approx(reg.spec("/loop/gain").from_unit(100 / 127)))
    ctl.received.clear()
    jack_clock.sleep_s(0.05)
    assert (0xB0, 81, 100) not in ctl.drain()  # the fader that moved is not echoed


def test_bad_input_and_a_port_that_goes_and_comes_back(rig):
    ctl, reg, control, service, lines = rig
    reg.set("/midi/map", '[{"address": "/loop/gain", "cc": 81}]')
    ctl.send(0xB0, 81, 0)
    ctl.send(81, 127)  # running status: the same CC again
    for junk in ((0xF0, 1, 2, 3, 0xF7), (0xB0,), (0x40, 0x40), (0xB5, 99, 1), (0xF8,), (0xFE,), (0xC0, 5)):
        ctl.send(*junk)
    assert wait_until(lambda: reg.get("/loop/gain") == 6.0)
    ctl.unplug()
    assert wait_until(lambda: service.inputs[0].connected is None)
    assert any("gone" in line for line in lines)
    ctl.plug()
    assert wait_until(lambda: service.inputs[0].connected == "testctl:out")
    ctl.wait_cycles(2)  # the new connection is in the graph
    ctl.send(0xB0, 81, 0)
    assert wait_until(lambda: reg.get("/loop/gain") == -80.0)
    assert service.counts["failed"] == 0


def test_notes_on_the_engines_jack_input_select_the_target_and_the_root(jack_server, monkeypatch, tmp_path):
    """``earengine run`` as a process, its MIDI input on the test's controller: keys pick the
    target channel (a range of keys across the channels), the target layer (one key, one value)
    and the sonification root (pitch class), a key toggles the loop's mute and lights; all read
    back from the engine over OSC."""
    from tests.helpers.engines import Engine

    for key in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER"):
        monkeypatch.setenv(key, jack_server.env[key])
    ctl = Controller("notectl")
    engine = None
    try:
        engine = Engine(jack_server.env, ["--midi-in", "notectl:out", "--midi-out", "notectl:in"])
        engine.send("/midi/map", json.dumps([
            {"address": "/target/channel", "note": 48, "note_high": 56},
            {"address": "/target/layer", "note": 40, "value": "ar.2"},
            {"address": "/son/root", "note": 60, "note_high": 71, "mode": "pitch_class"},
            {"address": "/loop/mute", "note": 38, "mode": "toggle"},
        ]))
        assert wait_until(lambda: engine.get("/midi/map") != "", 10.0), engine.output()
        # the engine found the controller by name and connected to it, both ways
        assert wait_until(lambda: all("earengine" in jack_server.run("jack_lsp", "-c", port).stdout
                                      for port in ("notectl:out", "notectl:in")), 5.0), engine.output()
        ctl.send(0x90, 52, 100)  # the middle key of the range: the middle channel
        ctl.send(0x80, 52, 0)
        ctl.send(0x90, 40, 1)  # however softly
        ctl.send(0x90, 67, 90)  # G
        ctl.send(0x90, 38, 90)  # toggle on ...
        ctl.send(0x90, 38, 0)  # ... a release (velocity 0) changes nothing
        assert wait_until(lambda: engine.get("/loop/mute") == 1, 10.0), engine.output()  # the last sent
        assert engine.get("/son/root") == "G"
        assert engine.get("/target/channel") == pytest.approx(0.5)
        assert engine.get("/target/layer") == "ar.2"
        assert wait_until(lambda: (0x90, 38, 127) in ctl.drain(), 10.0)  # the key's light follows
        ctl.send(0x90, 70, 64)  # A#
        ctl.send(0x90, 49, 64)  # the lowest key but one: one step across the channels
        assert wait_until(lambda: engine.get("/target/channel") == pytest.approx(1 / 8), 10.0)
        assert engine.get("/son/root") == "A#"
    finally:
        if engine is not None:
            engine.close()
        ctl.close()


def test_virtual_ports_are_there_for_others_to_connect_to(jack_server, monkeypatch):
    for key in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER"):
        monkeypatch.setenv(key, jack_server.env[key])
    ctl = Controller("virtctl")
    reg = default_registry()
    lines: list[str] = []
    service = MidiService.open(["virtual"], "virtual", backend="jack", client="virt", say=lines.append)
    control = MidiControl(reg, send=service.send)
    service.on_control = control.handle
    service.start()
    try:
        assert {"virt-midi:in", "virt-midi:out"} <= set(jack_server.ports())
        assert any("virt-midi:in" in line and "connect to it" in line for line in lines), lines
        ctl.client.connect("virtctl:out", "virt-midi:in")  # the other side makes the connections
        ctl.client.connect("virt-midi:out", "virtctl:in")
        reg.set("/midi/takeover", "jump")
        reg.set("/midi/map", '[{"address": "/loop/gain", "cc": 81}]')
        ctl.send(0xB0, 81, 127)
        assert wait_until(lambda: reg.get("/loop/gain") == 6.0)
        reg.set("/loop/gain", -80.0, source="osc")
        assert wait_until(lambda: (0xB0, 81, 0) in ctl.drain())
    finally:
        service.close()
        control.close()
        ctl.close()
