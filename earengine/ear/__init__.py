"""The artificial ear: constant-Q scaleogram, residual encoder, causal autoregressive model, CPC.

Importing this package does not import torch; the names below load their module on first use.

- :class:`Ear`, :class:`EarConfig`, :func:`build_ear` (``earengine.ear.model``): the network, its
  presets, and a seeded new ear with its CPC predictors;
- :class:`CPCHead`, :class:`CPCConfig` (``earengine.ear.cpc``): predictors and InfoNCE loss;
- :func:`load_ear`, :func:`save_ear` (``earengine.ear.checkpoint``): safetensors checkpoints;
- :func:`train`, :class:`TrainConfig` (``earengine.ear.train``);
- :func:`run_probe`, :class:`ProbeConfig` (``earengine.ear.probe``).
"""

from __future__ import annotations

from earengine.lazy import lazy_exports

_LAZY = {
    "Ear": "earengine.ear.model",
    "EarConfig": "earengine.ear.model",
    "build_ear": "earengine.ear.model",
    "CPCHead": "earengine.ear.cpc",
    "CPCConfig": "earengine.ear.cpc",
    "load_ear": "earengine.ear.checkpoint",
    "save_ear": "earengine.ear.checkpoint",
    "train": "earengine.ear.train",
    "TrainConfig": "earengine.ear.train",
    "run_probe": "earengine.ear.probe",
    "ProbeConfig": "earengine.ear.probe",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(globals(), _LAZY)
