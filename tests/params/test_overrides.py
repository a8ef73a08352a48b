"""``--set ADDRESS=VALUE`` overrides: parsed by their rows, refused in one line when malformed."""

import pytest

from earengine.errors import EarEngineError, UnknownAddressError
from earengine.params import default_registry, parse_sets
from tests.helpers.errors import one_line


def test_values_are_parsed_by_their_rows_and_the_registry_is_left_alone():
    registry = default_registry()
    before = registry.snapshot()
    assert parse_sets(registry, ["/clock/bpm=128", "/loop/bars=4", "/son/scale=major"]) == {
        "/clock/bpm": 128.0, "/loop/bars": 4, "/son/scale": "major"}
    assert registry.snapshot() == before
    assert parse_sets(registry, []) == {}


@pytest.mark.parametrize(("items", "prefix", "says"), [
    (["/clock/bpm"], "/", "must look like /namespace/name=value"),
    (["clock/bpm=120"], "/", "must look like /namespace/name=value"),
    (["/clock/bpm=120"], "/son/", "must look like /son/name=value"),
    (["/clock/bpm=fast"], "/", "must be a number"),
    (["/clock/bpm=120", "/no/such=1"], "/", "is not a parameter"),
])
def test_malformed_items_fail_in_one_line(items, prefix, says):
    with pytest.raises(EarEngineError) as info:
        parse_sets(default_registry(), items, prefix=prefix)
    assert says in str(info.value) and one_line(info.value)


def test_an_unknown_address_is_an_unknown_address():
    with pytest.raises(UnknownAddressError):
        parse_sets(default_registry(), ["/no/such=1"])
