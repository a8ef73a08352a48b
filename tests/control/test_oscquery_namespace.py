"""OSCQuery's namespace is the registry: every parameter with its type, range, value, unit and
doc; every command; answered over real HTTP with the status codes the protocol asks for."""

import json
import urllib.error
import urllib.request

import pytest

from earengine.control.oscquery import ATTRIBUTES, OscQueryServer, namespace, node
from earengine.params import default_registry


def leaves(tree):
    if "CONTENTS" in tree:
        for child in tree["CONTENTS"].values():
            yield from leaves(child)
    else:
        yield tree


def test_every_parameter_appears_with_its_type_range_value_and_unit():
    registry = default_registry()
    registry.set("/loop/gain", -12.5)
    tree = namespace(registry)
    found = {leaf["FULL_PATH"]: leaf for leaf in leaves(tree)}
    assert set(found) == set(registry.specs) | set(registry.commands)
    for spec in registry:
        leaf = found[spec.address]
        assert leaf["TYPE"] == {"float": "f", "int": "i", "bool": "i", "enum": "s", "str": "s"}[spec.type]
        assert leaf["ACCESS"] == (3 if spec.writable else 1) and leaf["DESCRIPTION"] == spec.doc
        value = registry.get(spec.address)
        assert leaf["VALUE"] == [int(value) if spec.type == "bool" else value]
        if spec.type == "enum":
            assert leaf["RANGE"] == [{"VALS": list(spec.choices)}]
        elif spec.type == "bool":
            assert leaf["RANGE"] == [{"MIN": 0, "MAX": 1}] and leaf["CLIPMODE"] == ["both"]
        elif spec.type in ("float", "int") and spec.min is not None:
            assert leaf["RANGE"][0]["MIN"] == spec.min and leaf["RANGE"][0]["MAX"] == spec.max
            assert type(leaf["RANGE"][0]["MIN"]) is (int if spec.type == "int" else float)
            assert leaf["CLIPMODE"] == ["both"]
        else:
            assert "RANGE" not in leaf and leaf["CLIPMODE"] == ["none"]
        assert leaf.get("UNIT") == ([spec.unit] if spec.unit else None)
    assert found["/loop/gain"]["VALUE"] == [-12.5]
    assert found["/clock/peers"]["ACCESS"] == 1  # a reading: hosts show it, never set it
    # commands: no value to read; their arguments' types and choices
    for cmd in registry.commands.values():
        leaf = found[cmd.address]
        assert leaf["ACCESS"] == 0 and "VALUE" not in leaf and leaf.get("TYPE", "") == cmd.typetags
    assert found["/opt/reset"]["RANGE"][0] == {"VALS": ["silence", "noise", "file", "current", "input"]}
    # containers: one per namespace, each holding its own addresses
    assert tree["CONTENTS"]["stream"]["FULL_PATH"] == "/stream"
    assert set(tree["CONTENTS"]["stream"]["CONTENTS"]) >= {"fps", "layers", "add", "remove"}
    assert json.loads(json.dumps(tree)) == tree  # plain JSON, no NaN


def test_nodes_are_found_by_path():
    registry = default_registry()
    assert node(registry, "/clock/bpm")["VALUE"] == [120.0]
    assert node(registry, "/clock")["FULL_PATH"] == "/clock"
    assert node(registry, "/")["FULL_PATH"] == "/"
    assert node(registry, "/no/such") is None


@pytest.fixture
def server():
    registry = default_registry()
    with OscQueryServer(registry, port=0, osc_port=9123, zeroconf=False) as s:
        yield s


def get(server, path):
    host, port = server.address
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as r:
            body = r.read()
            return r.status, json.loads(body) if body else None
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_http_answers_nodes_attributes_and_host_info(server):
    status, root = get(server, "/")
    assert status == 200 and root == namespace(server.registry)
    status, leaf = get(server, "/loop/gain")
    assert status == 200 and leaf["TYPE"] == "f" and leaf["UNIT"] == ["dB"]
    server.registry.set("/loop/gain", -6.0)
    assert get(server, "/loop/gain?VALUE") == (200, {"VALUE": [-6.0]})
    assert get(server, "/loop/gain?RANGE") == (200, {"RANGE": [{"MIN": -80.0, "MAX": 6.0}]})
    for attribute in ATTRIBUTES:
        status, _ = get(server, f"/clock/bpm?{attribute}")
        assert status in (200, 204)
    assert get(server, "/loop/load?VALUE")[0] == 204  # a command has no value
    assert get(server, "/no/such")[0] == 404
    assert get(server, "/loop/gain?FLAVOUR")[0] == 400
    status, info = get(server, "/?HOST_INFO")
    assert status == 200 and info["OSC_PORT"] == 9123 and info["OSC_TRANSPORT"] == "UDP"
    assert info["EXTENSIONS"]["LISTEN"] and info["EXTENSIONS"]["CLIPMODE"] and info["EXTENSIONS"]["UNIT"]
