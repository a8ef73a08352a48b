"""Every choice of every enum row the sonifier, the synth and the dream consume has its entry.

Choices dispatch through tables (:func:`earengine.params.registry.check_choices`), never through an
``else`` that would silently take a new choice as the last one; this test lists the tables by
address, so a row that grows a choice, or a consumer that starts reading a new enum, shows here.
"""

import dataclasses

import pytest

from earengine.errors import ConfigError
from earengine.music import DIVISIONS, NOTE_NAMES, SCALES
from earengine.params import default_registry
from earengine.params.registry import check_choices
from earengine.params.spec import row
from earengine.sonify.mapping import CURVES, LOUDNESS, VOICINGS
from earengine.sonify.timbre import WAVE_HARMONICS

torch = pytest.importorskip("torch")
from earengine.optvis.dream import OPTIMIZERS, STEP_CONTROLS  # noqa: E402
from earengine.optvis.param import FACTORIES  # noqa: E402

#: address -> the table its consumer dispatches through.
TABLES = {
    "/son/curve": CURVES,
    "/son/loudness": LOUDNESS,
    "/son/voicing": VOICINGS,
    "/son/wave": WAVE_HARMONICS,
    "/son/scale": SCALES,
    "/son/root": dict.fromkeys(NOTE_NAMES),
    "/son/division": DIVISIONS,
    "/opt/param": FACTORIES,
    "/opt/algorithm": OPTIMIZERS,
    "/opt/step": STEP_CONTROLS,
    "/grid/key": dict.fromkeys(NOTE_NAMES),
    "/grid/scale": {s: SCALES[s] for s in SCALES if s != "off"},
    "/grid/division": {d: DIVISIONS[d] for d in DIVISIONS if d != "off"},
}
#: Enum rows of these features that are not dispatched on, and why.
NOT_DISPATCHED = {
    "/target/layer": "a tap name, checked against the ear's taps when the dream is configured",
}


def _enum_rows(prefixes=("/son/", "/opt/", "/grid/", "/target/", "/reg/")):
    reg = default_registry()
    return [reg.spec(a) for a in reg.snapshot() if a.startswith(prefixes) and reg.spec(a).type == "enum"]


@pytest.mark.parametrize("address", sorted(TABLES))
def test_every_choice_has_an_entry(address):
    spec = default_registry().spec(address)
    assert check_choices(spec, TABLES[address]) == dict(TABLES[address])


def test_every_enum_row_consumed_here_is_listed():
    for spec in _enum_rows():
        assert spec.address in TABLES or spec.address in NOT_DISPATCHED, f"{spec.address} has no dispatch table here"


def test_a_choice_added_to_a_row_without_its_entry_fails():
    spec = default_registry().spec("/son/curve")
    grown = dataclasses.replace(spec, choices=spec.choices + ("cubic",))
    with pytest.raises(ConfigError, match="cubic"):
        check_choices(grown, CURVES)


def test_the_dream_starts_are_the_reset_kinds():
    from earengine.optvis.dream import STARTS
    from earengine.optvis.params import OPT_COMMANDS

    kind = row(OPT_COMMANDS, "/opt/reset").args[0]
    assert tuple(STARTS) == kind.choices
