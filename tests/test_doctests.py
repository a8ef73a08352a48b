"""The examples in docstrings run (they are documentation, so they must stay true)."""

import doctest
import importlib

import pytest

MODULES = [
    "earengine.params.spec",
    "earengine.params.registry",
    "earengine.control.osc",
    "earengine.control.clock",
    "earengine.synth.player",
    "earengine.progress",
    "earengine.ear.model",
    "earengine.optvis.targets",
    "earengine.music",
    "earengine.pattern",
    "earengine.optvis.grid",
    "earengine.optvis.param",
    "earengine.optvis.specificity",
    "earengine.control.midi_file",
    "earengine.control.note_out",
    "earengine.corpus.checks",
    "earengine.corpus.debian",
    "earengine.corpus.manifest",
    "earengine.corpus.composers",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, earengine, earengine.cli; print('torch' in sys.modules, 'pyo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
