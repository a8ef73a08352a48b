"""Importing the sonification package stays light; its adapters need their frameworks.

Its docstring examples run with every module's, in tests/test_doctests.py."""

import importlib
import subprocess
import sys

import pytest

def test_the_package_and_its_rows_import_without_torch_or_pyo():
    code = ("import sys, earengine.sonify, earengine.sonify.commands, earengine.params.catalog; "
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
