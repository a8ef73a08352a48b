"""Presets: atomic JSON, validation before anything applies, unknown keys warned once."""

import json
import logging

import pytest

from earengine.errors import PresetError
from earengine.params import default_registry
from earengine.params.presets import SHIPPED_DIR, Preset, PresetStore, check_name


def test_round_trip_and_load(tmp_path):
    reg = default_registry()
    reg.update({"/clock/bpm": 97.5, "/loop/gain": -12})
    store = PresetStore(tmp_path, shipped=None)
    preset = Preset.capture("slow-one", reg)
    assert Preset.from_dict(preset.to_dict()) == preset
    path = store.save(preset)
    assert json.loads(path.read_text())["values"]["/clock/bpm"] == 97.5
    assert [p.name for p in tmp_path.iterdir()] == ["slow-one.json"]  # no temp files left
    other = default_registry()
    store.load("slow-one", other)
    assert other.snapshot() == reg.snapshot()
    assert store.names() == ["slow-one"]


def test_missing_keys_get_defaults_and_unknown_keys_warn_once(tmp_path, caplog):
    reg = default_registry()
    reg.set("/loop/gain", -30)
    (tmp_path / "partial.json").write_text(json.dumps(
        {"earengine_preset": 1, "values": {"/clock/bpm": 140, "/future/knob": 3, "/future/other": 1}}))
    with caplog.at_level(logging.WARNING):
        unknown = PresetStore(tmp_path, shipped=None).load("partial", reg)
    assert unknown == ["/future/knob", "/future/other"]
    assert reg.get("/clock/bpm") == 140.0 and reg.get("/loop/gain") == reg.spec("/loop/gain").default
    warnings = [r for r in caplog.records if "unknown" in r.getMessage()]
    assert len(warnings) == 1 and "/future/knob" in warnings[0].getMessage()


def test_invalid_value_changes_nothing(tmp_path):
    reg = default_registry()
    reg.set("/clock/bpm", 99)
    (tmp_path / "bad.json").write_text(json.dumps({"values": {"/clock/bpm": 140, "/loop/gain": "loud"}}))
    with pytest.raises(PresetError, match="/loop/gain"):
        PresetStore(tmp_path, shipped=None).load("bad", reg)
    assert reg.get("/clock/bpm") == 99.0
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(PresetError, match="not valid JSON"):
        PresetStore(tmp_path, shipped=None).load("junk", reg)


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "a\\b", "", ".hidden", "x" * 65, "a.json", "spa ce"])
def test_names_with_paths_are_refused(name, tmp_path):
    with pytest.raises(PresetError, match="preset name"):
        check_name(name)
    with pytest.raises(PresetError):
        PresetStore(tmp_path, shipped=None).read(name)


def test_shipped_presets_validate_completely():
    names = PresetStore(SHIPPED_DIR / "none", shipped=SHIPPED_DIR).names()
    assert names, "earengine/data/presets holds the shipped presets"
    for name in names:
        reg = default_registry()
        preset = PresetStore(SHIPPED_DIR / "none", shipped=SHIPPED_DIR).read(name)
        values, unknown = preset.resolve(reg)
        assert unknown == [], (name, unknown)


def test_presets_and_midi_maps_are_one_named_json_store(tmp_path):
    """One store behind both: the user's file shadows a shipped one of the same name, names from
    both folders are listed once, writes are atomic, a path is never a name."""
    from earengine.files import NamedJsonStore
    from earengine.midi.bindings import MapStore

    shipped, user = tmp_path / "shipped", tmp_path / "user"
    shipped.mkdir()
    (shipped / "a.json").write_text(json.dumps({"values": {"/clock/bpm": 100}}))
    (shipped / "b.json").write_text(json.dumps({"values": {}}))
    presets = PresetStore(user, shipped=shipped)
    maps = MapStore(user, shipped=shipped)
    assert isinstance(presets.files, NamedJsonStore) and isinstance(maps.files, NamedJsonStore)
    assert presets.names() == ["a", "b"]
    presets.save(Preset("a", (("/clock/bpm", 120.0),)))
    assert presets.read("a").values == (("/clock/bpm", 120.0),)  # the user's, not the shipped one
    assert presets.names() == maps.names() == ["a", "b"]
    assert sorted(p.name for p in user.iterdir()) == ["a.json"]
    for store, kind in ((presets, "preset"), (maps, "MIDI map")):
        with pytest.raises(PresetError, match=f"^{kind} name='../a' must be"):
            store.read("../a")
        with pytest.raises(PresetError, match=f"no {kind} named 'c'"):
            store.read("c")
    with pytest.raises(PresetError, match='must be an object with "earengine_midi_map": 1'):
        maps.read("a")
    (user / "list.json").write_text("[1]")
    with pytest.raises(PresetError, match="must be a JSON object with a 'values' object"):
        presets.read("list")


def test_a_reading_is_neither_saved_nor_set_by_a_preset(tmp_path):
    reg = default_registry()
    reg.set("/clock/peers", 3, source="link")
    preset = Preset.capture("with-peers", reg)
    assert "/clock/peers" not in dict(preset.values)
    store = PresetStore(tmp_path, shipped=None)
    (tmp_path / "hand.json").write_text(json.dumps({"values": {"/clock/peers": 7, "/clock/bpm": 100}}))
    store.load("hand", reg)
    assert reg.get("/clock/peers") == 3 and reg.get("/clock/bpm") == 100.0
    store.save(Preset.capture("plain", reg))
    store.load("plain", reg)  # nor does a missing reading fall back to its default
    assert reg.get("/clock/peers") == 3
