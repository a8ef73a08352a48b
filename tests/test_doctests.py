"""The examples in every module's docstrings run, earengine's and the test helpers' (they are
documentation, so they must stay true).

Modules are found by walking the package, so a new module is covered the day it lands; one whose
examples fail, or that cannot be imported, fails here. Adapters for a framework that is not
installed are the only modules left out, and only while their framework is missing.
"""

import doctest
import importlib
import pkgutil
import subprocess
import sys

import pytest

import earengine

#: Modules importable only where an optional framework is installed: module -> framework.
OPTIONAL = {
    "earengine.sonify.lightning": "lightning",
    "earengine.sonify.huggingface": "transformers",
}


def _modules() -> list[str]:
    import tests.helpers

    names = ["earengine", "tests.helpers"]
    for package in (earengine, tests.helpers):
        for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
            if info.name != "earengine.__main__":  # running it is `earengine` itself
                names.append(info.name)
    return sorted(names)


MODULES = _modules()


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    framework = OPTIONAL.get(name)
    if framework is not None:
        pytest.importorskip(framework)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples fail in {name}"


def test_every_module_is_collected():
    assert "earengine.osc.wire" in MODULES and "earengine.cli" in MODULES
    assert len(MODULES) > 50


def test_import_is_light():
    code = ("import sys, earengine, earengine.cli, earengine.sonify, earengine.sonify.commands, "
            "earengine.params.catalog; print('torch' in sys.modules, 'pyo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
