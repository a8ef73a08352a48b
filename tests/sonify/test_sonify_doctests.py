"""The sonification docstring examples run, and importing the package stays light."""

import doctest
import importlib
import subprocess
import sys

import pytest

MODULES = [
    "earengine.sonify.params",
    "earengine.sonify.frame",
    "earengine.sonify.mapping",
    "earengine.sonify.timbre",
    "earengine.sonify.render",
    "earengine.sonify.sinks",
    "earengine.sonify.capture",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_the_package_and_its_rows_import_without_torch_or_pyo():
    code = ("import sys, earengine.sonify, earengine.sonify.commands, earengine.params.table; "
            "print('torch' in sys.modules, 'pyo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_adapters_import_only_where_their_framework_is():
    for module, framework in (("earengine.sonify.lightning", "lightning"),
                              ("earengine.sonify.huggingface", "transformers")):
        try:
            importlib.import_module(framework)
        except ImportError:
            with pytest.raises(ImportError):
                importlib.import_module(module)
        else:
            assert importlib.import_module(module)
