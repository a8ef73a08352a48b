"""The artificial ear: constant-Q scaleogram, residual encoder, causal autoregressive model, CPC.

Importing this package does not import torch; the names below load their module on first use.

- :class:`Ear`, :class:`EarConfig` (``earengine.ear.model``): the network and its presets;
- :class:`CPCHead`, :class:`CPCConfig` (``earengine.ear.cpc``): predictors and InfoNCE loss;
- :func:`load_ear`, :func:`save_ear` (``earengine.ear.checkpoint``): safetensors checkpoints;
- :func:`train`, :class:`TrainConfig` (``earengine.ear.train``);
- :func:`run_probe`, :class:`ProbeConfig` (``earengine.ear.probe``).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Ear": "earengine.ear.model",
    "EarConfig": "earengine.ear.model",
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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'earengine.ear' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
