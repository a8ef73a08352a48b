"""Parameter overrides typed on a command line: ``--set ADDRESS=VALUE``, parsed against the rows.

``earengine run``, ``render`` and ``sonify-demo`` take them; each value is parsed by its row
(:func:`~earengine.params.registry.parse_text`), so a bad one fails before anything starts.

Examples
--------
>>> from earengine.params import default_registry
>>> parse_sets(default_registry(), ["/clock/bpm=128", "/loop/bars=2"])
{'/clock/bpm': 128.0, '/loop/bars': 2}
>>> parse_sets(default_registry(), ["/clock/bpm"])
Traceback (most recent call last):
...
earengine.errors.ParameterError: --set '/clock/bpm' must look like /namespace/name=value
"""

from __future__ import annotations

from typing import Any, Iterable

from earengine.errors import ParameterError
from earengine.params.registry import Registry, parse_text

__all__ = ["parse_sets"]


def parse_sets(registry: Registry, items: Iterable[str], *, prefix: str = "/") -> dict[str, Any]:
    """``--set ADDRESS=VALUE`` items as ``{address: value}``, each value parsed by its row in ``registry``.

    Parameters
    ----------
    registry : Registry
        Whose rows name the parameters (its values are left alone).
    items : iterable of str
        ``ADDRESS=VALUE`` texts, as typed.
    prefix : str
        Every address must start with it (``"/son/"``: only the sonifier's parameters).
    """
    shape = "/namespace/name" if prefix == "/" else f"{prefix}name"
    out = {}
    for item in items:
        address, sep, text = item.partition("=")
        if not sep or not address.startswith(prefix):
            raise ParameterError(f"--set {item!r} must look like {shape}=value")
        out[address] = parse_text(registry.spec(address), text)
    return out
