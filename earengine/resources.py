"""Files shipped inside the package: MIDI controller maps, presets and the default ear.

They live under ``earengine/data/`` and travel as package data, so an installed earengine (not
only a checkout) finds them:

- ``data/maps/``: controller maps (``bcf2000``, ``launch-control-xl``), loaded with ``/midi/load``
  or ``earengine run --midi-map``;
- ``data/presets/``: presets every engine offers beside the user's own (``/preset/list``);
- ``data/ears/ear-default/``: the ear ``earengine run`` and ``earengine render`` dream with unless
  told otherwise (weights, config, model card and neuron layout).

>>> sorted(p.name for p in MIDI_MAPS.glob("*.json"))
['bcf2000.json', 'launch-control-xl.json']
>>> (PRESETS / "default.json").is_file(), (DEFAULT_EAR / "config.json").is_file()
(True, True)
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DATA", "MIDI_MAPS", "PRESETS", "EARS", "DEFAULT_EAR"]

#: Where the shipped files are: beside this module, in the checkout and in an installed wheel alike.
DATA = Path(__file__).resolve().parent / "data"
MIDI_MAPS = DATA / "maps"
PRESETS = DATA / "presets"
EARS = DATA / "ears"
#: The ear shipped with earengine.
DEFAULT_EAR = EARS / "ear-default"

