"""Listen to training: gradient-norm sonification of any PyTorch run (after C. Perone, 2019).

::

    from earengine.sonify import GradientSonifier

    with GradientSonifier(model, sink="engine", run="mnist", optimizer=optimizer):
        for x, y in loader:              # your loop, unchanged
            ...
            optimizer.step()             # each step is heard in the running engine

Names are imported lazily, so ``import earengine.sonify`` needs neither torch nor pyo.
"""

from __future__ import annotations

from earengine.lazy import lazy_exports

_EXPORTS = {
    "GradientSonifier": "earengine.sonify.capture",
    "layer_groups": "earengine.sonify.capture",
    "GradientFrame": "earengine.sonify.frame",
    "Settings": "earengine.sonify.mapping",
    "map_norms": "earengine.sonify.mapping",
    "SEED_PRESET": "earengine.sonify.mapping",
    "OscSink": "earengine.sonify.sinks",
    "WavSink": "earengine.sonify.sinks",
    "MemorySink": "earengine.sonify.sinks",
    "Renderer": "earengine.sonify.render",
    "render_frames": "earengine.sonify.render",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
