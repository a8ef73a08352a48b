"""Fuzzing files at the boundary: preset and MIDI-map JSON, and the safetensors weights and
config.json of an ear. Each is read whole or refused with one line (a PresetError, a
ParameterError or a CheckpointError); a refused file changes nothing."""

import json
import shutil

import pytest
from hypothesis import given
from hypothesis import strategies as st

from earengine.errors import EarEngineError
from earengine.params import default_registry
from earengine.params.presets import Preset, PresetStore
from tests.helpers.fuzz import fuzz, registry_is_valid

SOME_ADDRESSES = ["/clock/bpm", "/loop/gain", "/loop/mute", "/opt/algorithm", "/target/spec", "/son/scale",
                  "/midi/map", "/osc/sched_max", "/clock/peers", "/nope/nothing"]

json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False),
                        st.text(max_size=20))
json_value = st.recursive(json_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


@st.composite
def preset_text(draw):
    """A preset file: a real one with some values changed, or any JSON, or cut-short text."""
    kind = draw(st.sampled_from(["values", "values", "any json", "text"]))
    if kind == "text":
        return draw(st.text(max_size=80))
    if kind == "any json":
        return json.dumps(draw(json_value))
    values = {a: draw(st.one_of(json_scalar, st.just(float("nan")), st.just(float("inf"))))
              for a in draw(st.lists(st.sampled_from(SOME_ADDRESSES), max_size=5, unique=True))}
    text = json.dumps({"earengine_preset": 1, "name": "x", "values": values})
    if draw(st.booleans()):
        text = text[:draw(st.integers(0, len(text)))]
    return text


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-files")


@fuzz(250)
@given(text=preset_text())
def test_a_preset_file_loads_whole_or_is_refused_with_one_line_and_changes_nothing(folder, text):
    registry = default_registry()
    registry.set("/clock/bpm", 133.0)
    before = registry.snapshot()
    (folder / "fuzzed.json").write_text(text)
    store = PresetStore(folder, shipped=None)
    try:
        store.load("fuzzed", registry)
    except EarEngineError as exc:
        assert str(exc) and "\n" not in str(exc)
        assert registry.snapshot() == before
    assert registry_is_valid(registry) == []
    if registry.snapshot() != before:  # loaded: it round-trips through the values it set
        again = Preset.capture("again", registry)
        assert Preset.from_dict(again.to_dict()) == again


@st.composite
def binding(draw):
    keys = {"address": st.one_of(st.sampled_from(SOME_ADDRESSES + ["/opt/reset", "/loop/save"]), st.text(max_size=10)),
            "channel": st.one_of(st.integers(-2, 20), json_scalar), "cc": st.one_of(st.integers(-2, 130), json_scalar),
            "note": st.one_of(st.integers(-2, 130), json_scalar), "note_high": st.integers(-2, 130),
            "bits": st.sampled_from([7, 14, 8, "7"]), "mode": st.sampled_from(["absolute", "toggle", "momentary",
                                                                               "trigger", "range", "pitch_class", "x"]),
            "value": json_value, "invert": json_scalar, "colour": json_scalar}
    chosen = draw(st.lists(st.sampled_from(sorted(keys)), max_size=5, unique=True))
    return {k: draw(keys[k]) for k in chosen}


@fuzz(300)
@given(data=st.one_of(st.lists(binding(), max_size=4), json_value, st.text(max_size=60)))
def test_a_midi_map_is_taken_whole_or_refused_with_a_reason(data):
    """Over OSC (/midi/map is a JSON parameter), and as a map file."""
    from earengine.midi.control import MidiControl
    from earengine.osc.wire import encode_message
    from earengine.control.osc import OscRouter

    registry = default_registry()
    control = MidiControl(registry)
    router = OscRouter(registry)
    try:
        text = data if isinstance(data, str) else json.dumps(data)
        replies = router.handle_datagram(encode_message("/midi/map", (text,)), ("127.0.0.1", 1))
        if replies:
            assert [r.address for r in replies] == ["/fail"] and replies[0].args[1]
            assert registry.get("/midi/map") == ""
        else:  # taken: the bindings are the map, in its canonical form
            assert len(control.bindings) == (0 if not text.strip() else len(json.loads(text)) if isinstance(
                json.loads(text), list) else len(json.loads(text).get("bindings", ())))
        assert registry_is_valid(registry) == []
    finally:
        router.close()
        control.close()


@fuzz(150)
@given(text=st.one_of(st.text(max_size=60), json_value.map(json.dumps),
                      st.lists(binding(), max_size=3).map(lambda b: json.dumps({"earengine_midi_map": 1, "bindings": b}))))
def test_a_midi_map_file_is_read_or_refused_with_one_line(folder, text):
    from earengine.midi.bindings import MapStore

    (folder / "fuzzed-map.json").write_text(text)
    registry = default_registry()
    try:
        MapStore(folder, shipped=None).load("fuzzed-map", registry)
    except EarEngineError as exc:
        assert str(exc) and "\n" not in str(exc)


# -- an ear's files ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ear_files(tiny_ear_dir):
    return {name: (tiny_ear_dir / name).read_bytes() for name in ("config.json", "model.safetensors")}


@st.composite
def config_text(draw, original: bytes):
    config = json.loads(original)
    how = draw(st.sampled_from(["value", "value", "drop", "text", "cut"]))
    if how == "text":
        return draw(st.text(max_size=60)).encode()
    if how == "cut":
        return original[:draw(st.integers(0, len(original) - 1))]
    # a value changed somewhere in the ear's configuration (its size is left alone: see below)
    section = draw(st.sampled_from(["top", "ear", "scaleogram", "cpc"]))
    target = {"top": config, "ear": config["ear"], "scaleogram": config["ear"]["scaleogram"],
              "cpc": config["ear"]["cpc"]}[section]
    key = draw(st.sampled_from(sorted(target) + ["unknown"]))
    if how == "drop":
        target.pop(key, None)
    else:
        target[key] = draw(json_value)
    if draw(st.integers(0, 4)) == 0:  # a huge ear: refused before it is built
        config["ear"]["width"] = draw(st.sampled_from([16.0, 1000.0, 1e9]))
    if section == "scaleogram":  # no huge kernels (their size is the scaleogram's own business)
        for k in ("sr", "hop_length", "max_decimation", "bins_per_octave"):
            v = target.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) > 1e6:
                target[k] = 44100
    return json.dumps(config).encode()


@st.composite
def weights_bytes(draw, original: bytes):
    data = bytearray(original)
    how = draw(st.sampled_from(["cut", "flip header", "flip data", "header size", "garbage"]))
    if how == "cut":
        del data[draw(st.integers(0, len(data) - 1)):]
    elif how == "flip header":
        n = int.from_bytes(data[:8], "little")
        i = draw(st.integers(0, min(n + 7, len(data) - 1)))
        data[i] = draw(st.integers(0, 255))
    elif how == "flip data":
        i = draw(st.integers(len(data) // 2, len(data) - 1))
        data[i] ^= 0xFF
    elif how == "header size":
        data[:8] = draw(st.sampled_from([0, 1, 2**32, 2**63, len(data)])).to_bytes(8, "little")
    else:
        return draw(st.binary(max_size=64))
    return bytes(data)


def test_an_ear_loads_whole_or_is_refused_with_one_line(tmp_path, ear_files):
    from earengine.ear.checkpoint import load_ear, read_config

    folder = tmp_path / "ear"
    folder.mkdir()

    @fuzz(60)
    @given(which=st.sampled_from(["config", "weights"]), data=st.data())
    def load(which, data):
        config, weights = ear_files["config.json"], ear_files["model.safetensors"]
        if which == "config":
            config = data.draw(config_text(config))
        else:
            weights = data.draw(weights_bytes(weights))
        (folder / "config.json").write_bytes(config)
        (folder / "model.safetensors").write_bytes(weights)
        try:
            read_config(folder)
            loaded = load_ear(folder)
        except EarEngineError as exc:
            assert str(exc) and "\n" not in str(exc), str(exc)
            return
        assert loaded.ear is not None

    load()
    shutil.rmtree(folder)


def test_a_config_asking_for_a_huge_ear_is_refused_before_it_is_built(tmp_path, ear_files):
    from earengine.ear.checkpoint import load_ear
    from earengine.errors import CheckpointError

    config = json.loads(ear_files["config.json"])
    config["ear"]["width"] = 1000.0  # a million times the weights: building it would take terabytes
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes(ear_files["model.safetensors"])
    with pytest.raises(CheckpointError, match="needs at least"):
        load_ear(tmp_path)
