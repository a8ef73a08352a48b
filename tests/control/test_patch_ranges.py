"""The patches' number boxes and sliders stay inside the registry's ranges.

A patch retypes a parameter's range in its widgets; these tests read every widget that feeds a
parameter's address (Pure Data: a widget connected to ``[oscformat ns name]``; Max: one connected
to ``[prepend /ns/name]``) and check its range against the row, so a row that narrows or moves
fails here instead of the patch sending values the engine refuses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from earengine.params import default_registry

PATCHES = Path(__file__).resolve().parents[2] / "patches"


def pd_widgets(text: str) -> list[tuple[str, float, float, str]]:
    """``(address, min, max, kind)`` for every Pd widget wired to an ``oscformat``.

    Objects are numbered per canvas, in the order they appear (a subpatch counts as one object of
    its parent, at its ``#X restore``), as ``#X connect`` numbers them.
    """
    records = [r.strip() for r in text.replace("\\;", "\0").split(";\n")]
    canvases: list[tuple[list[str], list[tuple[int, int, int, int]]]] = []
    found: list[tuple[str, float, float, str]] = []

    def close(objects: list[str], connections: list[tuple[int, int, int, int]]) -> None:
        for src, outlet, dst, _ in connections:
            head, target = objects[src].split(), objects[dst].split()
            if outlet != 0 or target[:3] != ["#X", "obj", target[2]] or len(target) < 5 or target[4] != "oscformat":
                continue
            address = "/" + "/".join(target[5:])
            if head[1] == "floatatom":
                found.append((address, float(head[5]), float(head[6]), "floatatom"))
            elif head[1] == "obj" and len(head) > 8 and head[4] in ("hsl", "vsl", "nbx"):
                found.append((address, float(head[7]), float(head[8]), head[4]))

    for record in records:
        if record.startswith("#N canvas"):
            canvases.append(([], []))
        elif record.startswith("#X restore"):
            objects, connections = canvases.pop()
            close(objects, connections)
            canvases[-1][0].append(record)
        elif record.startswith("#X connect"):
            canvases[-1][1].append(tuple(int(x) for x in record.split()[2:6]))
        elif record.startswith("#X ") and not record.startswith(("#X coords", "#X f ")):
            canvases[-1][0].append(record)
    while canvases:
        close(*canvases.pop())
    return found


def max_widgets(patch: dict) -> list[tuple[str, float, float, str]]:
    """``(address, min, max, kind)`` for every Max number box or slider wired to ``prepend /…``."""
    boxes = {b["box"]["id"]: b["box"] for b in patch["patcher"]["boxes"]}
    found = []
    for line in patch["patcher"]["lines"]:
        (src, _), (dst, _) = line["patchline"]["source"], line["patchline"]["destination"]
        box, text = boxes[src], boxes[dst].get("text", "")
        if not text.startswith("prepend /"):
            continue
        address = text.split()[1]
        if box.get("maxclass") in ("flonum", "number"):
            found.append((address, float(box["minimum"]), float(box["maximum"]), box["maxclass"]))
        elif box.get("maxclass") == "slider":
            low = float(box.get("min", 0.0))
            found.append((address, low, low + float(box.get("size", 128)), "slider"))
    return found


def check(widgets):
    registry = default_registry()
    assert widgets, "no widget wired to a parameter was found"
    for address, low, high, kind in widgets:
        spec = registry.spec(address)
        assert spec.min is not None and spec.max is not None, address
        assert spec.min <= low < high <= spec.max, (
            f"{kind} for {address} spans {low:g} … {high:g}; the registry allows {spec.min:g} … {spec.max:g}")


def test_pure_data_widgets_stay_in_range():
    widgets = pd_widgets((PATCHES / "puredata" / "earengine.pd").read_text())
    assert {w[0] for w in widgets} >= {"/clock/bpm", "/loop/gain", "/opt/lr", "/stream/fps"}
    check(widgets)


def test_max_widgets_stay_in_range():
    widgets = max_widgets(json.loads((PATCHES / "max" / "earengine.maxpat").read_text()))
    assert {w[0] for w in widgets} >= {"/clock/bpm", "/loop/gain", "/opt/lr", "/stream/fps"}
    check(widgets)


def test_a_widget_wider_than_its_row_is_caught():
    patch = "\n".join([
        "#N canvas 0 0 400 300 12;",
        "#X floatatom 20 20 6 0 1000 0 - - - 0;",
        "#X obj 20 50 oscformat clock bpm;",
        "#X connect 0 0 1 0;",
        "",
    ])
    widgets = pd_widgets(patch)
    assert widgets == [("/clock/bpm", 0.0, 1000.0, "floatatom")]
    with pytest.raises(AssertionError, match="20 … 400"):
        check(widgets)
