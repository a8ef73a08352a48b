"""The sonification adapters need their frameworks.

Its docstring examples run with every module's, and its light import is checked, in
tests/test_doctests.py."""

import importlib

import pytest

from tests.test_doctests import OPTIONAL


def test_adapters_import_only_where_their_framework_is():
    for module, framework in OPTIONAL.items():
        try:
            importlib.import_module(framework)
        except ImportError:
            with pytest.raises(ImportError):
                importlib.import_module(module)
        else:
            assert importlib.import_module(module)
