"""The force-directed layout of the ear's neurons (Immersions paper, section 3).

Every neuron — a tap, a channel and a frequency row, time collapsed — is a vertex; neurons of
consecutive taps that a convolution connects are joined by edges (:mod:`.graph`). Attraction
along edges, repulsion between every pair (exact, or with a Barnes-Hut tree) and centring act
on them; the layout lowers their energy level by level, from a coarsened graph up
(:mod:`.forces`). The result, :class:`NeuronLayout`, is computed once per ear and settings,
cached under ``$EARENGINE_HOME/cache/layouts`` (an ear's own ``layout.json`` is read, and written
only when asked) and exported as CSV or JSON (:mod:`.cache`).

The names below are the package's public API; importing it does not import torch.
"""

from __future__ import annotations

from earengine.viz.layout.cache import (
    EAR_FILE,
    FORMAT,
    NeuronLayout,
    cached_layout,
    layout_cache_path,
    read_cached_layout,
)
from earengine.viz.layout.forces import compute_layout, energy, relax, repulsion_barnes_hut, repulsion_exact
from earengine.viz.layout.graph import LayoutConfig, NeuronGraph, coarsen, ear_graph

__all__ = [
    "LayoutConfig",
    "NeuronGraph",
    "NeuronLayout",
    "ear_graph",
    "coarsen",
    "repulsion_exact",
    "repulsion_barnes_hut",
    "energy",
    "relax",
    "compute_layout",
    "cached_layout",
    "read_cached_layout",
    "layout_cache_path",
    "FORMAT",
    "EAR_FILE",
]
