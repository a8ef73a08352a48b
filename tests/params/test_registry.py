"""Registry rows and the one set path: validation, records, notification, round trips."""

import math
import threading

import pytest

from earengine.errors import EarEngineError, ParameterError, UnknownAddressError
from earengine.params import CommandSpec, ParamSpec, Registry, default_registry, parse_text
from earengine.params.catalog import COMMANDS, PARAMS


def test_every_default_validates_and_specs_round_trip():
    for spec in PARAMS:
        assert spec.validate((spec.default,)) == spec.default
        assert ParamSpec.from_dict(spec.to_dict()) == spec
    for cmd in COMMANDS:
        assert CommandSpec.from_dict(cmd.to_dict()) == cmd


def test_addresses_are_unique_and_namespaced():
    reg = default_registry()
    assert len(reg.specs) == len(PARAMS)
    assert {"clock", "loop", "preset", "get", "status", "notify", "sync", "reply"} <= set(reg.namespaces())


def test_bad_rows_are_refused_at_declaration():
    with pytest.raises(ValueError):
        ParamSpec("/x/y", "float", 10.0, min=0.0, max=1.0)  # default out of range
    with pytest.raises(ValueError):
        ParamSpec("/x/y", "float", 1.0, min=0.0, max=1.0, scale="log")  # log needs min > 0
    with pytest.raises(ValueError):
        ParamSpec("x", "float", 1.0)
    with pytest.raises(ValueError):
        Registry([ParamSpec("/a/b", "int", 1), ParamSpec("/a/b", "int", 2)])


def bad_values(spec):
    """Values of every kind that must be refused for this spec."""
    out = [("wrong count", ()), ("wrong count", (spec.default, spec.default))]
    if spec.type in ("float", "int"):
        out += [("wrong type", ("loud",)), ("NaN", (math.nan,)), ("inf", (math.inf,)), ("-inf", (-math.inf,))]
        if spec.max is not None:
            out.append(("above range", (spec.max + 1,)))
        if spec.min is not None:
            out.append(("below range", (spec.min - 1,)))
    if spec.type == "int":
        out.append(("fraction", (1.5,)))
    if spec.type == "enum":
        out += [("not a choice", ("nonsense",)), ("wrong type", (1,))]
    if spec.type == "bool":
        out += [("wrong type", (0.5,)), ("wrong type", ("maybe",))]
    return out


@pytest.mark.parametrize("spec", PARAMS, ids=lambda s: s.address)
def test_every_parameter_refuses_bad_values_and_keeps_its_value(spec):
    reg = default_registry()
    seen = []
    reg.subscribe(seen.append)
    before = reg.snapshot()
    for kind, args in bad_values(spec):
        with pytest.raises(ParameterError) as err:
            reg.set_args(spec.address, args)
        message = str(err.value)
        assert spec.address in message and "\n" not in message, (kind, message)
    assert reg.snapshot() == before
    assert seen == []


def test_set_records_and_notifies_once_per_change():
    reg = default_registry()
    seen = []
    with reg.subscribe(seen.append):
        assert reg.set("/clock/bpm", 128) == 128.0
        reg.set("/clock/bpm", 128.0)  # no change, no notification
        reg.set("/loop/mute", 1, source="test")
    assert [(c.address, c.value) for c in seen] == [("/clock/bpm", 128.0), ("/loop/mute", True)]
    assert seen[1].source == "test" and seen[1].previous is False
    assert seen[1].version > seen[0].version == 1
    reg.set("/clock/bpm", 100)
    assert len(seen) == 2  # unsubscribed on exit


def test_unknown_address_and_failing_subscriber():
    reg = default_registry()
    with pytest.raises(UnknownAddressError) as err:
        reg.set("/nope/nothing", 1)
    assert isinstance(err.value, EarEngineError) and "/nope/nothing" in str(err.value)

    def boom(change):
        raise RuntimeError("subscriber bug")

    reg.subscribe(boom)
    assert reg.set("/loop/gain", -10) == -10.0  # a broken subscriber never blocks a change
    assert reg.get("/loop/gain") == -10.0


def test_update_is_all_or_nothing():
    reg = default_registry()
    with pytest.raises(ParameterError):
        reg.update({"/clock/bpm": 90, "/loop/gain": 99})
    assert reg.get("/clock/bpm") == 120.0
    reg.update({"/clock/bpm": 90, "/loop/gain": -1})
    assert reg.get("/clock/bpm") == 90.0 and reg.get("/loop/gain") == -1.0


def test_not_live_parameters_refuse_changes_while_running():
    reg = Registry([ParamSpec("/ear/device", "enum", "cpu", choices=("cpu", "cuda"), live=False)])
    reg.set("/ear/device", "cuda")
    reg.running = True
    with pytest.raises(ParameterError, match="only be set at start"):
        reg.set("/ear/device", "cpu")


def test_normalised_control_mapping_honours_scale():
    lin = ParamSpec("/a/lin", "float", 0.0, min=-80.0, max=6.0)
    log = ParamSpec("/a/log", "float", 100.0, min=10.0, max=10000.0, scale="log")
    whole = ParamSpec("/a/int", "int", 1, min=1, max=16)
    choice = ParamSpec("/a/enum", "enum", "a", choices=("a", "b", "c"))
    assert lin.from_unit(0) == -80.0 and lin.from_unit(1) == 6.0
    assert log.from_unit(0.5) == pytest.approx(316.227766)  # geometric midpoint
    assert log.to_unit(log.from_unit(0.3)) == pytest.approx(0.3)
    assert whole.from_unit(1.0) == 16 and isinstance(whole.from_unit(0.5), int)
    assert [choice.from_unit(p) for p in (0.0, 0.5, 1.0)] == ["a", "b", "c"]
    for spec in PARAMS:  # every numeric row maps both ends onto valid values
        if spec.numeric and spec.min is not None:
            spec.validate((spec.from_unit(0.0),))
            spec.validate((spec.from_unit(1.0),))


def test_parse_text_for_cli_overrides():
    reg = default_registry()
    assert parse_text(reg.spec("/clock/bpm"), "128") == 128.0
    assert parse_text(reg.spec("/loop/mute"), "1") is True
    with pytest.raises(ParameterError, match="must be a number"):
        parse_text(reg.spec("/clock/bpm"), "fast")


def test_concurrent_sets_are_consistent():
    reg = default_registry()
    seen = []
    reg.subscribe(seen.append)

    def hammer(offset):
        for i in range(500):
            reg.set("/loop/gain", float(-(i % 60) - offset * 0.5))

    threads = [threading.Thread(target=hammer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    versions = [c.version for c in seen]
    assert len(set(versions)) == len(versions) == reg.version


def test_an_int_that_an_osc_answer_could_not_carry_is_refused_at_the_boundary():
    """/sync 2147483648.0 (a whole float beyond 32 bits) used to be taken, and its /synced answer
    could not be encoded: every int argument must fit in an OSC int."""
    from earengine.control.osc import OscRouter

    router = OscRouter(default_registry())
    (reply,) = router.handle("/sync", (2147483648.0,), ("127.0.0.1", 1))
    assert reply.address == "/fail" and "32 bits" in reply.args[1]
    assert router.handle("/sync", (2147483647,), ("127.0.0.1", 1))[0].args == (2147483647,)


def test_read_only_rows_are_the_engines_to_set_and_round_trip_with_their_access():
    from earengine.params.spec import ACCESS

    peers = default_registry().spec("/clock/peers")
    assert peers.access == "r" and not peers.writable
    assert ParamSpec.from_dict(peers.to_dict()) == peers and peers.to_dict()["access"] == "r"
    assert {s.access for s in PARAMS} <= set(ACCESS)
    with pytest.raises(ValueError, match="access='w' must be one of rw, r"):
        ParamSpec("/x/y", "int", 0, access="w")
    with pytest.raises(ParameterError, match="^read-only: /clock/peers is set by the engine"):
        parse_text(peers, "3")  # --set /clock/peers=3
    reg = default_registry()
    assert reg.set("/clock/peers", 2, source="link") == 2  # the engine's own path still sets it
