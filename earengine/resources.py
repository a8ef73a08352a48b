"""Files shipped with earengine: MIDI controller maps, presets and the default ear.

They travel with the package, so an installed earengine (not only a checkout) finds them:

- ``earengine/data/maps/``: controller maps (``bcf2000``, ``launch-control-xl``), loaded with
  ``/midi/load`` or ``earengine run --midi-map``;
- ``earengine/data/presets/``: presets every engine offers beside the user's own (``/preset/list``);
- ``models/ear-default/``: the ear ``earengine run`` and ``earengine render`` dream with unless
  told otherwise (weights, config, model card and neuron layout).

The shipped ears live in the checkout's top-level ``models/`` folder, beside the package (the
project's top level is ``pyproject.toml, earengine, patches, models, tests, README.md``). A built
wheel carries them inside the package, as ``earengine/models/`` (``setup.py`` copies them there),
so :data:`MODELS` is that folder in an installed wheel and ``models/`` in a checkout or an
editable install.

>>> sorted(p.name for p in MIDI_MAPS.glob("*.json"))
['bcf2000.json', 'launch-control-xl.json']
>>> (PRESETS / "default.json").is_file(), (DEFAULT_EAR / "config.json").is_file()
(True, True)
>>> DEFAULT_EAR.name, DEFAULT_EAR.parent == MODELS
('ear-default', True)
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DATA", "MIDI_MAPS", "PRESETS", "MODELS", "DEFAULT_EAR"]

_PACKAGE = Path(__file__).resolve().parent
#: Maps and presets: beside this module, in the checkout and in an installed wheel alike.
DATA = _PACKAGE / "data"
MIDI_MAPS = DATA / "maps"
PRESETS = DATA / "presets"
#: The shipped ears: inside an installed wheel's package, else the checkout's ``models/``.
MODELS = _PACKAGE / "models" if (_PACKAGE / "models").is_dir() else _PACKAGE.parent / "models"
#: The ear shipped with earengine.
DEFAULT_EAR = MODELS / "ear-default"
