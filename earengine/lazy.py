"""Lazy exports: a package names what it offers, and each name loads its module on first use.

So ``import earengine.ear`` or ``import earengine.engine`` stays light (no torch, no pyo) while
``from earengine.ear import train`` still works. A package sets, at its top level::

    __getattr__, __dir__ = lazy_exports(globals(), {"Engine": "earengine.engine.engine"})

>>> ns = {"__name__": "demo"}
>>> getattr_, dir_ = lazy_exports(ns, {"sqrt": "math"})
>>> getattr_("sqrt")(9.0), "sqrt" in ns, "sqrt" in dir_()
(3.0, True, True)
>>> getattr_("cbrt")
Traceback (most recent call last):
...
AttributeError: module 'demo' has no attribute 'cbrt'
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(namespace: dict, table: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` that load each name of ``table`` (name -> module)
    from its module when first asked, and keep it in ``namespace`` after."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
