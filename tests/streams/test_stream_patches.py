"""The patches speak the engine's language: every address a patch sends is in the registry, every
address it listens for is one the engine sends; the TouchDesigner script assembles a real stream
into the layout's points lit by the activations."""

import importlib.util
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from earengine.streams.hub import StreamHub
from earengine.streams.params import STREAM_OUT
from earengine.streams.position import Position
from earengine.params import default_registry
from earengine.optvis.params import TAPS
from earengine.streams.activations import ActivationSet
from earengine.viz.layout import NeuronLayout
from tests.helpers.streams import Receiver, frames

PATCHES = Path(__file__).resolve().parents[2] / "patches"
ADDRESS = re.compile(r"(?<![\w.])/[a-z][a-z0-9_]*(?:/[a-z0-9_.<>]+)+(?:\.reply)?")


def engine_sends():
    """Every address the engine may send to a patch."""
    registry = default_registry()
    out = {"/fail", "/done", "/changed", "/synced"} | {c.reply for c in registry.commands.values() if c.reply}
    for pattern in STREAM_OUT:
        out |= {pattern.replace("<tap>", tap) for tap in TAPS} if "<tap>" in pattern else {pattern}
    return out


def engine_takes():
    registry = default_registry()
    return set(registry.specs) | set(registry.commands)


def pd_addresses(path):
    """(sent, received) addresses of a Pd patch: [oscformat a b] sends /a/b; the words of the
    [route] fed by [route stream] are received as /stream/<word>."""
    lines = path.read_text().splitlines()
    objects, depth = [], 0
    for line in lines[1:]:
        if line.startswith("#N canvas"):
            depth += 1
            continue
        if line.startswith("#X restore"):
            depth -= 1
            objects.append("graph")
            continue
        if depth or line.startswith("#X connect") or line.startswith("#X array") or line.startswith("#X coords"):
            continue
        objects.append(line.rstrip(";"))
    text = lambda i: objects[i].split(" ", 4)[4] if objects[i].startswith("#X obj") else ""  # noqa: E731
    sent = {"/" + "/".join(text(i).split()[1:]) for i in range(len(objects)) if text(i).startswith("oscformat ")}
    edges = [tuple(int(v) for v in line.rstrip(";").split()[2:6]) for line in lines if line.startswith("#X connect")]
    received = set()
    for i in range(len(objects)):
        if text(i).strip() == "route stream":
            for a, ao, b, bi in edges:
                if a == i and ao == 0 and text(b).startswith("route "):
                    received |= {f"/stream/{w}" for w in text(b).split()[1:]}
    return sent, received


def max_addresses(path):
    patcher = json.loads(path.read_text())["patcher"]
    sent, received = set(), set()
    for entry in patcher["boxes"]:
        box = entry["box"]
        words = str(box.get("text", "")).split()
        if not words:
            continue
        if box["maxclass"] == "message" and words[0].startswith("/"):
            sent.add(words[0])
        elif box["maxclass"] == "newobj" and words[0] == "prepend" and words[1].startswith("/"):
            sent.add(words[1])
        elif box["maxclass"] == "newobj" and words[0] == "route":
            received |= {w for w in words[1:] if w.startswith("/")}
    return sent, received


@pytest.mark.parametrize("path", sorted(PATCHES.rglob("*.pd")) + sorted(PATCHES.rglob("*.maxpat")), ids=lambda p: p.name)
def test_patches_send_only_registry_addresses_and_listen_only_to_engine_addresses(path):
    sent, received = pd_addresses(path) if path.suffix == ".pd" else max_addresses(path)
    assert sent and received, "the patch should both control the engine and show its streams"
    assert sent <= engine_takes(), sent - engine_takes()
    sends = engine_sends()
    # Pd routes address by address component: /stream/act is the container of /stream/act/<tap>
    unknown = {a for a in received if a not in sends and not any(s.startswith(a + "/") for s in sends)}
    assert not unknown, unknown
    assert {"/stream/add", "/clock/bpm"} <= sent and {"/stream/phase"} <= received


def test_touchdesigner_files_use_only_engine_addresses():
    known = engine_takes() | engine_sends() | set(STREAM_OUT)
    for path in sorted((PATCHES / "touchdesigner").iterdir()):
        found = set(ADDRESS.findall(path.read_text()))
        assert found, path
        assert found <= known, (path.name, found - known)


def load_td_script():
    spec = importlib.util.spec_from_file_location("earengine_td", PATCHES / "touchdesigner" / "earengine_td.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeScriptOp:
    """The bits of a TouchDesigner Script CHOP the script uses."""

    def __init__(self):
        self.chans = {}
        self.numSamples = 0

    def clear(self):
        self.chans = {}

    def appendChan(self, name):
        chan = type("Chan", (), {})()
        self.chans[name] = chan
        return chan


@pytest.mark.parametrize("reduce", ["channel", "channel_freq"])
def test_touchdesigner_script_turns_a_real_stream_into_lit_points(reduce):
    td = load_td_script()
    rng = np.random.default_rng(1)
    shapes = {"enc.5": (8, 3, 10), "ar.3": (5, 1, 4)}
    acts = {t: rng.uniform(0, 1, s).astype(np.float32) for t, s in shapes.items()}
    mask = {"enc.5": np.zeros((8, 3), bool)}
    mask["enc.5"][2] = True
    registry = default_registry()
    registry.update({"/stream/reduce": reduce, "/stream/layers": "enc.5 ar.3", "/stream/fps": 20.0})
    # a slow loop: the step stays put while we look
    pos = Position(time.time(), 0.0, 100.0, key=1, acts=ActivationSet(1, 5, -0.1, acts, mask))
    layout = NeuronLayout(("enc.5", "ar.3"), ((8, 3), (5, 1)), rng.uniform(-1, 1, (29, 2)))
    rx = Receiver()
    with StreamHub(registry, position=lambda: pos) as hub:
        hub.set_layout(layout)
        hub.add(rx.dest)
        assert rx.wait_for(lambda r: len(frames(r.items)) >= 5, 5)
    for _, _, address, args in list(rx.items):
        td.receive(address, args)
    op = FakeScriptOp()
    td.cook(op)
    assert op.numSamples == 29 and set(op.chans) == {"tx", "ty", "tz", "act", "mask", "tap"}
    assert np.allclose(op.chans["tx"].vals, layout.positions[:, 0]) and np.allclose(op.chans["ty"].vals, layout.positions[:, 1])
    step = int(td.state.phase * 10)
    assert step == 0
    want = acts["enc.5"][:, :, step]
    want = np.repeat(want.mean(1), 3) if reduce == "channel" else want.reshape(-1)
    assert np.allclose(op.chans["act"].vals[:24], want, atol=1e-6)
    assert op.chans["mask"].vals[:24] == [1.0 if 6 <= i < 9 else 0.0 for i in range(24)]
    assert op.chans["tap"].vals == [0.0] * 24 + [1.0] * 5 and td.state.step == 5
    rx.close()
