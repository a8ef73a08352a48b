"""The layers contract: imports inside earengine only point down.

Bottom up: the foundation (errors, files, units, music theory, the OSC wire format), the
parameter registry, the rows (each feature's ``params`` module and the catalog that gathers
them), the domain (clock grid, corpus and sonify; then ear; then optvis; then viz), synth (the
only package that imports pyo), the transports (OSC server and OSCQuery, MIDI, clock sources,
streams), the engine and its worker, and the command line on top.

Every import counts, whether at module level, inside a function or under ``TYPE_CHECKING``:
a dependency hidden in a function is still a dependency. So does a module named in a string
(``"earengine.synth.local:LocalSynthSink"``, lazy export tables): loading by name is an import
too. The few upward references by name that are on purpose are listed in :data:`BY_NAME`, each
with its reason. The same check runs as
``python tests/test_layers.py`` and prints one line per import that points up.
"""

from __future__ import annotations

import ast
import fnmatch
import pathlib
import re
import sys
from typing import Iterator

ROOT = pathlib.Path(__file__).resolve().parents[1] / "earengine"

#: Layer names, bottom up.
LAYERS = ("foundation", "params", "rows", "domain", "ear", "optvis", "viz", "synth", "transports", "engine", "cli")

#: (pattern, layer): the first pattern that matches a module decides its layer.
RULES: tuple[tuple[str, str], ...] = (
    ("earengine.cli", "cli"),
    ("earengine.__main__", "cli"),
    ("earengine.*.commands", "cli"),
    ("earengine.engine", "engine"),
    ("earengine.engine.*", "engine"),
    ("earengine.worker", "engine"),
    ("earengine.worker.*", "engine"),
    ("earengine.listen.ring", "foundation"),
    ("earengine.listen.params", "rows"),
    ("earengine.listen", "engine"),
    ("earengine.listen.*", "engine"),
    ("earengine.params", "rows"),
    ("earengine.params.catalog", "rows"),
    ("earengine.*.params", "rows"),
    ("earengine.params.*", "params"),
    ("earengine.control", "transports"),
    ("earengine.control.*", "transports"),
    ("earengine.midi", "transports"),
    ("earengine.midi.*", "transports"),
    ("earengine.streams", "transports"),
    ("earengine.streams.*", "transports"),
    ("earengine.clock.grid", "domain"),
    ("earengine.clock", "transports"),
    ("earengine.clock.*", "transports"),
    ("earengine.synth", "synth"),
    ("earengine.synth.*", "synth"),
    ("earengine.viz", "viz"),
    ("earengine.viz.*", "viz"),
    ("earengine.optvis", "optvis"),
    ("earengine.optvis.*", "optvis"),
    ("earengine.ear", "ear"),
    ("earengine.ear.*", "ear"),
    ("earengine.corpus", "domain"),
    ("earengine.corpus.*", "domain"),
    ("earengine.sonify", "domain"),
    ("earengine.sonify.*", "domain"),
    ("earengine", "foundation"),
    ("earengine.*", "foundation"),
)


#: Upward references by name that are on purpose: (module, module it names) -> why.
BY_NAME = {
    ("earengine.sonify.sinks", "earengine.synth.local"):
        "open_sink('local') lets a training script hear itself through a local pyo server; the "
        "sonifier names that sink, the synth layer implements it, and it loads only when asked",
}

_NAMED = re.compile(r"^(earengine(?:\.\w+)+)(?::\w+)?$")


def layer_of(module: str) -> str:
    """The layer a module belongs to.

    >>> layer_of("earengine.midi.params"), layer_of("earengine.clock.grid"), layer_of("earengine.errors")
    ('rows', 'domain', 'foundation')
    """
    for pattern, layer in RULES:
        if fnmatch.fnmatchcase(module, pattern):
            return layer
    raise AssertionError(f"no layer for {module}")


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: pathlib.Path) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every import of an earengine module in one file."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    loggers = {id(arg) for node in ast.walk(tree) if isinstance(node, ast.Call)
               and getattr(node.func, "attr", getattr(node.func, "id", "")) == "getLogger" for arg in node.args}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in loggers:
            named = _NAMED.match(node.value)
            if named and _exists(named.group(1)):
                yield node.lineno, named.group(1)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("earengine"):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("earengine"):
                continue
            # `from earengine.x import y` may name a submodule y; count it as the deeper module
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield node.lineno, sub if _exists(sub) else target


def _exists(module: str) -> bool:
    path = ROOT.parent / module.replace(".", "/")
    return path.with_suffix(".py").exists() or path.is_dir()


def violations() -> list[str]:
    """One line per import that points up a layer."""
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    out: list[str] = []
    for path in sorted(ROOT.rglob("*.py")):
        here = _module_name(path)
        for line, target in imports(path):
            if rank[layer_of(target)] > rank[layer_of(here)] and (here, target) not in BY_NAME:
                rel = path.relative_to(ROOT.parent)
                text = f"{rel}:{line}: {here} ({layer_of(here)}) imports {target} ({layer_of(target)})"
                if text not in out:
                    out.append(text)
    return out


def test_imports_point_down():
    found = violations()
    assert not found, "imports that point up a layer:\n" + "\n".join(found)


def test_upward_references_by_name_are_seen_and_each_has_its_reason():
    for (here, target), why in BY_NAME.items():
        path = ROOT.parent / (here.replace(".", "/") + ".py")
        assert target in {t for _, t in imports(path)}, f"{here} no longer names {target}: drop it from BY_NAME"
        assert why


def test_every_module_has_a_layer():
    for path in ROOT.rglob("*.py"):
        assert layer_of(_module_name(path)) in LAYERS


def test_the_contract_catches_an_upward_import(tmp_path, monkeypatch):
    fake_root = tmp_path / "earengine"
    fake_root.mkdir()
    (fake_root / "__init__.py").write_text("")
    (fake_root / "errors.py").write_text("from earengine.engine import Engine\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake_root)
    assert violations() == ["earengine/errors.py:1: earengine.errors (foundation) imports earengine.engine (engine)"]


if __name__ == "__main__":
    lines = violations()
    print("\n".join(lines) or "every import points down")
    sys.exit(1 if lines else 0)
