"""MIDI control through real JACK MIDI ports.

A test "controller" — python-rtmidi JACK clients of the test's own, a virtual output the engine's
input connects to and a virtual input that receives the feedback — moves faders, while the
engine's :class:`MidiService` (its own JACK clients, found by port pattern) drives a registry.
Judged from the registry and from what arrives at the controller's input.
"""

from __future__ import annotations

import os
import time
from typing import Callable

import pytest

from earengine.control.midi import MidiControl, MidiService
from earengine.params import default_registry

pytestmark = pytest.mark.integration

rtmidi = pytest.importorskip("rtmidi", reason="python-rtmidi is needed: pip install python-rtmidi")


def wait_until(check: Callable[[], bool], timeout_s: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


class Controller:
    """A MIDI controller on JACK: ``send`` raw bytes, ``received`` what came back."""

    def __init__(self, name: str = "testctl") -> None:
        self.name = name
        self.out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name)
        self.out.open_virtual_port("out")
        self.inp = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, f"{name}fb")
        self.inp.open_virtual_port("in")
        self.received: list[tuple] = []

    def send(self, *data: int) -> None:
        self.out.send_message(list(data))

    def drain(self) -> list[tuple]:
        while True:
            item = self.inp.get_message()
            if not item:
                return self.received
            self.received.append(tuple(item[0]))

    def unplug(self) -> None:
        self.out.close_port()
        self.out.delete()

    def plug(self) -> None:
        self.out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, self.name)
        self.out.open_virtual_port("out")

    def close(self) -> None:
        for port in (self.out, self.inp):
            try:
                port.close_port()
                port.delete()
            except Exception:
                pass


@pytest.fixture
def rig(jack_server, monkeypatch):
    for key in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER"):
        monkeypatch.setenv(key, jack_server.env[key])
    ctl = Controller()
    reg = default_registry()
    lines: list[str] = []
    service = MidiService.open(["testctl:out"], "testctlfb:in", backend="jack", say=lines.append, check_s=0.1)
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
    ctl.send(0xB0, 7, 64)
    ctl.send(0xB0, 39, 0)  # the LSB right behind its MSB: a 14-bit pair
    assert wait_until(lambda: any(b.control == "cc14 1/7" for b in control.bindings))
    spec = reg.spec("/loop/xfade")

    def off_grid(lsb: int) -> float:  # how far a 14-bit value lies from every 7-bit one
        pos = ((64 << 7) | lsb) / 16383
        return min(abs(pos - k / 127) for k in range(128))

    lsb = max(range(128), key=off_grid)
    ctl.send(0xB0, 7, 64)
    ctl.send(0xB0, 39, lsb)
    expected = spec.from_unit(((64 << 7) | lsb) / 16383)
    assert wait_until(lambda: reg.get("/loop/xfade") == pytest.approx(expected))
    assert off_grid(lsb) > 0.4 / 127  # a value 7 bits cannot say


def test_takeover_and_feedback_on_the_output_port(rig):
    ctl, reg, control, service, _ = rig
    reg.set("/midi/map", '[{"address": "/loop/gain", "cc": 81}]')
    reg.set("/midi/takeover", "pickup")
    assert wait_until(lambda: (0xB0, 81, round(reg.spec("/loop/gain").to_unit(-3.0) * 127)) in ctl.drain())
    reg.set("/loop/gain", 0.0, source="osc")  # from OSC: the motor fader is told
    here = round(reg.spec("/loop/gain").to_unit(0.0) * 127)
    assert wait_until(lambda: (0xB0, 81, here) in ctl.drain())
    ctl.send(0xB0, 81, 20)  # far below: no jump
    ctl.send(0xB0, 81, 30)
    time.sleep(0.1)
    assert reg.get("/loop/gain") == 0.0
    ctl.send(0xB0, 81, here + 2)  # crossed the value: from now on it follows
    ctl.send(0xB0, 81, 100)
    assert wait_until(lambda: reg.get("/loop/gain") == pytest.approx(reg.spec("/loop/gain").from_unit(100 / 127)))
    ctl.received.clear()
    time.sleep(0.05)
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
    time.sleep(0.05)
    ctl.send(0xB0, 81, 0)
    assert wait_until(lambda: reg.get("/loop/gain") == -80.0)
    assert service.counts["failed"] == 0
