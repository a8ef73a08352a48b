"""MIDI control without a device: parsing, scaling through the rows, 14-bit, takeover, learn,
notes, feedback, and the maps (shipped ones validated against the registry)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from earengine.midi.bindings import Binding, MapStore, map_json, parse_map
from earengine.midi.control import MidiControl
from earengine.midi.handlers import command_handlers
from earengine.midi.params import MIDI_COMMANDS
from earengine.midi.ports import match_port
from earengine.midi.ports_memory import MemoryInput, MemoryOutput
from earengine.midi.service import MidiService
from earengine.midi.wire import MidiParser
from earengine.errors import ParameterError, PresetError
from earengine.params import default_registry
from earengine.params.presets import Preset, PresetStore

CC = 0xB0


def control(bindings, *, takeover="jump", feedback=True):
    reg = default_registry()
    sent: list[bytes] = []
    fired: list = []
    ctl = MidiControl(reg, send=sent.append, dispatch=lambda a, args: fired.append((a, args)))
    reg.set("/midi/takeover", takeover)
    reg.set("/midi/feedback", feedback)
    reg.set("/midi/map", json.dumps(bindings))
    sent.clear()
    return reg, ctl, sent, fired


# -- parsing ------------------------------------------------------------------------------------
def test_parser_survives_every_kind_of_bad_input():
    rng = np.random.default_rng(6)
    p = MidiParser()
    for _ in range(200):  # garbage never raises and never yields a malformed message
        for msg in p.feed(rng.integers(0, 256, size=int(rng.integers(1, 40))).tolist()):
            status = msg[0]
            assert 0x80 <= status <= 0xFF
            assert all(0 <= b < 0x80 for b in msg[1:])
    p = MidiParser()
    assert p.feed([0x40, 0x7F]) == []  # data with no status to belong to
    assert p.feed([0xF0] + [1] * 100 + [0xB2, 7, 9]) == [(0xB2, 7, 9)]  # unterminated sysex, then a CC
    assert p.feed([0xF2, 0x10, 0x01]) == [(0xF2, 0x10, 0x01)]  # song position
    assert p.feed([0x10]) == []  # system common cancelled running status
    assert p.feed(["x", None, 0xB0, 1, 2]) == [(0xB0, 1, 2)]


# -- CC → parameter, through the row's scale ------------------------------------------------------
def test_cc_scales_lin_log_int_enum_and_switches():
    reg, ctl, _, _ = control([
        {"address": "/loop/gain", "cc": 1},           # lin, -80 .. 6 dB
        {"address": "/opt/lr", "cc": 2},              # log, 1e-6 .. 1
        {"address": "/loop/bars", "cc": 3},           # int, 1 .. 64
        {"address": "/son/scale", "cc": 4},           # enum
        {"address": "/loop/mute", "cc": 5},           # switch
        {"address": "/loop/xfade", "cc": 6, "invert": True},
    ])
    ctl.handle((CC, 1, 0))
    assert reg.get("/loop/gain") == -80.0
    ctl.handle((CC, 1, 127))
    assert reg.get("/loop/gain") == 6.0
    ctl.handle((CC, 2, 64))  # the middle of a log range is the geometric mean
    assert reg.get("/opt/lr") == pytest.approx(1e-6 * 1e6 ** (64 / 127), rel=1e-9)
    ctl.handle((CC, 3, 127))
    assert reg.get("/loop/bars") == 64 and isinstance(reg.get("/loop/bars"), int)
    ctl.handle((CC, 3, 63))
    assert reg.get("/loop/bars") == round(1 + 63 * 63 / 127)
    choices = reg.spec("/son/scale").choices
    ctl.handle((CC, 4, 0))
    assert reg.get("/son/scale") == choices[0]
    ctl.handle((CC, 4, 127))
    assert reg.get("/son/scale") == choices[-1]
    ctl.handle((CC, 5, 127))
    assert reg.get("/loop/mute") is True
    ctl.handle((CC, 5, 0))
    assert reg.get("/loop/mute") is False
    ctl.handle((CC, 6, 127))  # inverted: the top is the bottom
    assert reg.get("/loop/xfade") == 0.0
    assert ctl.counts["failed"] == 0


def test_unknown_ccs_other_channels_and_junk_change_nothing():
    reg, ctl, _, _ = control([{"address": "/loop/gain", "cc": 7}])
    before = reg.snapshot()
    for msg in ((CC, 8, 100), (CC | 1, 7, 100), (0xE0, 0, 64), (0xC0, 3), (CC,), (), (0xF0, 1), (CC, 7)):
        ctl.handle(msg)
    assert reg.snapshot() == before


def test_fourteen_bit_pair_resolves_beyond_seven_bits():
    reg, ctl, sent, _ = control([{"address": "/loop/gain", "cc": 7, "bits": 14}], feedback=False)
    spec = reg.spec("/loop/gain")
    values = set()
    for lsb in range(0, 128, 16):  # one MSB step, resolved by the LSB
        ctl.handle((CC, 7, 64))
        ctl.handle((CC, 39, lsb))
        values.add(reg.get("/loop/gain"))
        assert reg.get("/loop/gain") == pytest.approx(spec.from_unit(((64 << 7) | lsb) / 16383), abs=1e-9)
    assert len(values) == 8  # eight distinct values inside what 7 bits would call one step
    assert max(values) - min(values) < (spec.max - spec.min) / 127


def test_pickup_takeover_waits_for_the_control_to_reach_the_value():
    reg, ctl, _, _ = control([{"address": "/loop/gain", "cc": 1}], takeover="pickup")
    reg.set("/loop/gain", 0.0, source="osc")  # at 80/86 of the range, CC ≈ 118
    here = reg.spec("/loop/gain").to_unit(0.0) * 127
    ctl.handle((CC, 1, 10))
    ctl.handle((CC, 1, 40))
    assert reg.get("/loop/gain") == 0.0  # far away: nothing jumps
    ctl.handle((CC, 1, int(here) + 3))  # crossed the value: picked up
    assert reg.get("/loop/gain") == pytest.approx(reg.spec("/loop/gain").from_unit((int(here) + 3) / 127))
    ctl.handle((CC, 1, 20))  # and follows from then on
    assert reg.get("/loop/gain") == pytest.approx(reg.spec("/loop/gain").from_unit(20 / 127))
    reg.set("/loop/gain", -3.0, source="preset")  # moved from elsewhere: must pick up again
    ctl.handle((CC, 1, 30))
    assert reg.get("/loop/gain") == -3.0
    reg.set("/midi/takeover", "jump")
    ctl.handle((CC, 1, 30))
    assert reg.get("/loop/gain") == pytest.approx(reg.spec("/loop/gain").from_unit(30 / 127))


def test_feedback_follows_changes_from_anywhere_but_the_control_itself():
    reg, ctl, sent, _ = control([{"address": "/loop/gain", "cc": 81}, {"address": "/opt/lr", "cc": 7, "bits": 14},
                                 {"address": "/loop/mute", "note": 40, "mode": "toggle", "channel": 2}])
    reg.set("/loop/gain", 6.0, source="osc")
    assert sent == [bytes((CC, 81, 127))]
    sent.clear()
    ctl.handle((CC, 81, 5))  # the fader that moved is not told where it is
    assert sent == []
    reg.set("/opt/lr", 1e-3, source="preset")
    raw = round(reg.spec("/opt/lr").to_unit(1e-3) * 16383)
    assert sent == [bytes((CC, 7, raw >> 7)), bytes((CC, 39, raw & 0x7F))]
    sent.clear()
    reg.set("/loop/mute", True)
    assert sent == [bytes((0x91, 40, 127))]
    sent.clear()
    reg.set("/midi/feedback", False)
    reg.set("/loop/gain", -6.0)
    assert sent == []


def test_keys_are_told_their_state_even_when_they_made_the_change():
    # a key cannot know what it switched on: its light is set by the engine, unlike a fader,
    # which is where the hand left it
    reg, ctl, sent, _ = control([{"address": "/loop/mute", "note": 38, "mode": "toggle"},
                                 {"address": "/son/root", "note": 60, "note_high": 71, "mode": "pitch_class"},
                                 {"address": "/loop/gain", "cc": 81}])
    ctl.handle((0x90, 38, 100))
    assert sent == [bytes((0x90, 38, 127))]
    sent.clear()
    ctl.handle((0x90, 62, 100))  # D: its key lights, the one that was lit goes out
    lit = {m[1]: m[2] for m in sent}
    assert reg.get("/son/root") == "D" and lit[62] == 127 and lit[60] == 0 and set(lit) == set(range(60, 72))
    sent.clear()
    ctl.handle((CC, 81, 90))
    assert sent == []


def test_notes_trigger_toggle_pick_a_range_and_a_pitch_class():
    reg, ctl, sent, fired = control([
        {"address": "/target/clear", "note": 36},
        {"address": "/opt/reset", "note": 37, "value": ["noise"]},
        {"address": "/loop/mute", "note": 38, "mode": "toggle"},
        {"address": "/opt/run", "note": 39, "mode": "momentary"},
        {"address": "/target/layer", "note": 40, "value": "ar.2"},
        {"address": "/target/channel", "note": 48, "note_high": 56},
        {"address": "/son/root", "note": 60, "note_high": 84, "mode": "pitch_class"},
    ])
    ctl.handle((0x90, 36, 100))
    ctl.handle((0x90, 37, 100))
    assert fired == [("/target/clear", ()), ("/opt/reset", ("noise",))]
    ctl.handle((0x90, 38, 90))
    ctl.handle((0x80, 38, 0))
    assert reg.get("/loop/mute") is True
    ctl.handle((0x90, 38, 90))
    assert reg.get("/loop/mute") is False
    ctl.handle((0x90, 39, 90))
    assert reg.get("/opt/run") is True
    ctl.handle((0x90, 39, 0))  # note-on with velocity 0 is a release
    assert reg.get("/opt/run") is False
    ctl.handle((0x90, 40, 1))
    assert reg.get("/target/layer") == "ar.2"
    ctl.handle((0x90, 52, 64))  # the middle key of the range
    assert reg.get("/target/channel") == pytest.approx(0.5)
    for note, name in ((60, "C"), (67, "G"), (70, "A#"), (81, "A")):
        ctl.handle((0x90, note, 64))
        assert reg.get("/son/root") == name


def test_learn_binds_the_next_moving_cc_and_upgrades_a_pair_to_14_bits():
    reg, ctl, _, _ = control([])
    learned = []
    ctl.on_learn = lambda address, c: learned.append((address, c))
    ctl.handle((CC, 20, 5))  # seen before learning: a repeat of it is no move
    ctl.learn("/son/base")
    ctl.handle((CC, 20, 5))
    assert ctl.bindings == ()
    ctl.handle((CC | 3, 21, 9))
    assert [b.control for b in ctl.bindings] == ["cc 4/21"] and learned == [("/son/base", "cc 4/21")]
    assert json.loads(reg.get("/midi/map")) == [{"address": "/son/base", "cc": 21, "channel": 4}]
    ctl.handle((CC | 3, 21, 127))  # bound: it moves the value at once
    assert reg.get("/son/base") == 4000.0
    ctl.learn("/loop/gain")
    ctl.handle((CC, 7, 100))
    ctl.handle((CC, 39, 3))  # the LSB of the pair follows the MSB: 14 bits
    assert {b.control for b in ctl.bindings} == {"cc 4/21", "cc14 1/7"}
    with pytest.raises(ParameterError, match="arguments"):
        ctl.learn("/opt/reset")  # it needs to know what kind of reset
    ctl.learn("/opt/reset", ["noise"])  # a command learns a trigger with its arguments
    ctl.handle((0x90, 50, 100))
    assert [b.value for b in ctl.bindings if b.control == "note 1/50" and b.mode == "trigger"] == [("noise",)]
    ctl.learn("/loop/gain")  # a control learnt again replaces its old meaning
    ctl.handle((CC | 3, 21, 3))
    assert sorted(b.address for b in ctl.bindings if b.control == "cc 4/21") == ["/loop/gain"]
    assert ctl.forget("/loop/gain") == 2
    assert {b.address for b in ctl.bindings} == {"/opt/reset"}
    with pytest.raises(ParameterError):
        ctl.learn("/no/such")
    with pytest.raises(ParameterError):
        ctl.learn("/target/spec")  # text has no range


def test_bad_maps_are_refused_with_a_reason_and_change_nothing():
    reg, ctl, _, _ = control([{"address": "/loop/gain", "cc": 1}])
    before = reg.get("/midi/map")
    for bad, words in (
        ("not json", "valid JSON"),
        ('{"bindings": 3}', "list"),
        ('[{"address": "/x/y", "cc": 1}]', "not a parameter"),
        ('[{"address": "/loop/gain", "cc": 200}]', "cc=200"),
        ('[{"address": "/loop/gain", "cc": 40, "bits": 14}]', "cc=40"),
        ('[{"address": "/loop/gain"}]', "either cc or note"),
        ('[{"address": "/loop/gain", "cc": 1, "channel": 17}]', "channel=17"),
        ('[{"address": "/loop/gain", "cc": 1, "colour": 1}]', "colour"),
        ('[{"address": "/target/spec", "cc": 1}]', "no range"),
        ('[{"address": "/loop/gain", "note": 3, "mode": "toggle"}]', "switch"),
        ('[{"address": "/opt/reset", "note": 3, "value": ["sideways"]}]', "must be one of"),
        ('[{"address": "/loop/gain", "note": 3, "value": 99}]', "within"),
        # a mode on a control it is not for names the modes that fit
        ('[{"address": "/loop/gain", "cc": 1, "mode": "range"}]', "mode=range is for a range of keys .* use absolute, toggle"),
        ('[{"address": "/loop/gain", "note": 3, "mode": "absolute"}]', "mode=absolute is for a CC, not a key; use toggle"),
        ('[{"address": "/loop/mute", "note": 3, "note_high": 9, "mode": "toggle"}]', "not a range of keys"),
        ('[{"address": "/target/clear", "cc": 3, "mode": "toggle"}]', "fires \\(trigger\\)"),
        ('[{"address": "/loop/gain", "cc": 3, "mode": "glide"}]', "must be one of absolute"),
        ('[{"address": "/loop/gain", "note": 3, "note_high": 9, "mode": "pitch_class"}]', "needs an enum"),
        ('[{"address": "/clock/peers", "cc": 5}]', "read-only: /clock/peers"),  # the engine's to set
    ):
        with pytest.raises(ParameterError, match=words):
            reg.set("/midi/map", bad)
        assert reg.get("/midi/map") == before


def test_bindings_round_trip_and_maps_ride_in_presets(tmp_path):
    data = [{"address": "/opt/lr", "cc": 7, "bits": 14, "channel": 3}, {"address": "/son/root", "note": 60, "note_high": 71, "mode": "pitch_class"},
            {"address": "/opt/reset", "note": 1, "value": ["file", "/tmp/a.wav"]}]
    reg, ctl, _, _ = control(data)
    for b in ctl.bindings:
        assert Binding.from_dict(b.to_dict()) == b
    assert parse_map(map_json(ctl.bindings), reg) == ctl.bindings
    store = PresetStore(tmp_path)
    store.save(Preset.capture("rig", reg))
    reg.set("/midi/map", "")
    assert ctl.bindings == ()
    store.load("rig", reg)
    assert [b.control for b in ctl.bindings] == ["cc14 3/7", "notes 1/60-71", "note 1/1"]


def test_a_preset_without_a_map_keeps_the_bindings_and_one_with_a_map_replaces_them(tmp_path):
    store = PresetStore(tmp_path, shipped=None)
    reg, ctl, _, _ = control([])
    reg.set("/loop/gain", -20.0)
    store.save(Preset.capture("sound", reg))  # saved before any controller was mapped
    (tmp_path / "hand-written.json").write_text(json.dumps({"values": {"/loop/gain": -9.0, "/midi/takeover": "jump"}}))
    reg.set("/midi/map", json.dumps([{"address": "/loop/gain", "cc": 7}]))
    rig = ctl.bindings
    reg.set("/clock/playing", False, source="osc")
    for name in ("sound", "hand-written"):
        store.load(name, reg)
        assert ctl.bindings == rig, name  # the controller stays mapped
        assert reg.get("/clock/playing") is False  # and the transport stays where it is
    assert reg.get("/loop/gain") == -9.0
    ctl.handle((CC, 7, 127))  # and it still moves what it moved
    assert reg.get("/loop/gain") == 6.0
    (tmp_path / "with-map.json").write_text(json.dumps(
        {"values": {"/midi/map": json.dumps([{"address": "/son/base", "cc": 9}])}}))
    store.load("with-map", reg)
    assert [(b.address, b.control) for b in ctl.bindings] == [("/son/base", "cc 1/9")]
    assert reg.get("/loop/gain") == reg.spec("/loop/gain").default  # the rest: defaults, as ever
    (tmp_path / "no-map.json").write_text(json.dumps({"values": {"/midi/map": ""}}))
    store.load("no-map", reg)  # a preset that says "no map" clears it
    assert ctl.bindings == ()


def test_shipped_maps_validate_and_save_load_round_trips(tmp_path):
    reg = default_registry()
    store = MapStore(tmp_path)
    assert {"bcf2000", "launch-control-xl"} <= set(store.names())
    bcf = store.load("bcf2000", reg)
    faders = {b.cc: b.address for b in bcf if b.cc is not None and 81 <= b.cc <= 88}
    encoders = {b.cc for b in bcf if b.cc is not None and 1 <= b.cc <= 8}
    assert len(faders) == 8 and encoders == set(range(1, 9))
    assert store.read("bcf2000")["ports"]["in"] == "BCF2000"
    lcxl = store.load("launch-control-xl", reg)
    assert {b.channel for b in lcxl} == {9}
    store.save("mine", bcf)
    assert store.load("mine", reg) == bcf
    with pytest.raises(PresetError):
        store.load("../etc/passwd", reg)
    with pytest.raises(PresetError):
        store.load("absent", reg)


def test_service_routes_clock_apart_and_survives_a_failing_handler():
    got_clock, got_control = [], []
    port = MemoryInput()

    def control_handler(message, when):
        got_control.append(message)
        if message[1] == 66:
            raise RuntimeError("a bug in a handler")

    service = MidiService([port], MemoryOutput(), on_control=control_handler,
                          on_clock=lambda m, t, local: got_clock.append(m))
    port.push([0xF8, 0xB0, 7, 1, 0xFA, 66, 2, 0xF2, 0, 1, 0xF0, 1, 2, 0xF7, 8, 3])
    assert service.pump() == 5
    assert got_clock == [(0xF8,), (0xFA,), (0xF2, 0, 1)]
    assert got_control == [(0xB0, 7, 1), (0xB0, 66, 2)]  # the sysex cancelled running status
    assert service.counts["failed"] == 1
    assert service.ports() == ["in:memory*", "out:memory*"]


def test_every_midi_command_has_a_handler():
    reg = default_registry()
    ctl = MidiControl(reg)
    try:
        table = command_handlers(ctl, MapStore(shipped=None))
        assert set(table) == {c.address for c in MIDI_COMMANDS}
    finally:
        ctl.close()


def test_every_takeover_choice_has_its_way_and_a_new_one_fails_at_start():
    from dataclasses import replace

    from earengine.errors import ConfigError
    from earengine.params.catalog import COMMANDS, PARAMS
    from earengine.params.registry import Registry

    MidiControl(default_registry()).close()  # the table checks itself: pickup and jump
    rows = [replace(p, choices=p.choices + ("glide",)) if p.address == "/midi/takeover" else p for p in PARAMS]
    with pytest.raises(ConfigError, match="glide"):
        MidiControl(Registry(rows, COMMANDS))


def test_port_patterns():
    names = ["system:midi_capture_1", "BCF2000:BCF2000 MIDI 1", "jack_midi_clock:mclk_out"]
    assert match_port("jack_midi_clock:mclk_out", names) == names[2]
    assert match_port("bcf", names) == names[1]
    assert match_port("*capture_?", names) == names[0]
    assert match_port("Launch Control", names) is None


def test_every_binding_mode_has_its_way_and_a_mode_without_one_fails():
    from dataclasses import replace

    from earengine.errors import ConfigError
    from earengine.midi.bindings import MODES
    from earengine.midi.control import WAYS, _check_ways

    assert set(WAYS) == set(MODES)
    with pytest.raises(ConfigError, match="glide is not a choice"):
        _check_ways({**WAYS, "glide": WAYS["absolute"]})
    with pytest.raises(ConfigError, match="no entry for choice range"):
        _check_ways({k: v for k, v in WAYS.items() if k != "range"})
    with pytest.raises(ConfigError, match="range: its way takes other controls"):
        _check_ways({**WAYS, "range": replace(WAYS["range"], cc=WAYS["absolute"].cc)})


def test_a_read_only_row_cannot_be_learned():
    _, ctl, _, _ = control([])
    with pytest.raises(ParameterError, match="read-only: /clock/peers"):
        ctl.learn("/clock/peers")
