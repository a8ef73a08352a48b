"""The parameter registry: one row per parameter, everything else derived from the rows."""

from earengine.params.overrides import parse_sets
from earengine.params.registry import Change, Registry, parse_text
from earengine.params.spec import ArgSpec, CommandSpec, ParamSpec

__all__ = ["ArgSpec", "Change", "CommandSpec", "ParamSpec", "Registry", "default_registry", "parse_sets", "parse_text"]


def default_registry() -> Registry:
    """A fresh registry holding every row earengine declares."""
    from earengine.params.catalog import COMMANDS, PARAMS

    return Registry(PARAMS, COMMANDS)
