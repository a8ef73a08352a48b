"""The neuron graph of an ear: how the layout is computed, vertices, edges, charges, coarsening.

Every neuron — a tap, a channel and a frequency row, time collapsed — is a vertex. Neurons of
consecutive taps that a convolution connects are joined by edges: each output channel to its
most strongly weighted input channels, along nearby frequency rows. A neuron's charge (how hard
it repels) comes from how much its channel varies over music. :func:`coarsen` merges
neighbouring channels or frequency rows, for the multilevel layout of
:mod:`earengine.viz.layout.forces`. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from earengine.errors import ConfigError, ParameterError, check_config_keys

__all__ = ["LayoutConfig", "NeuronGraph", "ear_graph", "coarsen"]


@dataclass(frozen=True)
class LayoutConfig:
    """How the layout is computed.

    Parameters
    ----------
    dims : {2, 3}
        Dimensions of the positions.
    k : float > 1
        Repulsion exponent: high values spread vertices evenly, low values make dense clusters
        (2.5 as Immersions).
    theta : float in (0, 1]
        Barnes-Hut opening criterion: a cell of size ``s`` at distance ``d`` counts as one body
        when ``s / d < theta``.
    attraction : float > 0
        Weight of every edge.
    centring : float >= 0
        Centring factor ``l`` at the finest level; coarser levels use less.
    channel_links : int > 0
        Input channels each output channel is joined to (its strongest by weight).
    freq_reach : int >= 0
        Frequency rows on each side of the row a neuron reads from that it is joined to.
    iterations : int > 0
        Most steps per level.
    tol : float > 0
        A level ends when the step falls below ``tol`` times the layout's size.
    seed : int >= 0
    """

    dims: int = 2
    k: float = 2.5
    theta: float = 0.5
    attraction: float = 1.0
    centring: float = 0.05
    channel_links: int = 8
    freq_reach: int = 1
    iterations: int = 300
    tol: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dims not in (2, 3):
            raise ConfigError(f"dims={self.dims} must be 2 or 3")
        if not self.k > 1:
            raise ConfigError(f"k={self.k} must be > 1")
        if not 0 < self.theta <= 1:
            raise ConfigError(f"theta={self.theta} must be in (0, 1]")
        if self.attraction <= 0 or self.centring < 0:
            raise ConfigError("attraction must be > 0 and centring >= 0")
        if self.channel_links < 1 or self.freq_reach < 0 or self.iterations < 1 or self.tol <= 0:
            raise ConfigError("channel_links and iterations must be >= 1, freq_reach >= 0, tol > 0")

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LayoutConfig":
        check_config_keys(data, {f.name for f in fields(cls)}, what="layout")
        return cls(**data)


@dataclass(frozen=True, eq=False)
class NeuronGraph:
    """Vertices (neurons) and weighted edges, numbered tap by tap, channel-major within a tap
    (vertex ``offset[tap] + c * F + f``), the order the streams send values in.

    Attributes
    ----------
    taps : tuple of str
    shapes : tuple of (channels, freq)
    edges : ndarray, shape (E, 2), int64
    weights : ndarray, shape (E,), float32
    charge : ndarray, shape (N,), float32 > 0
    """

    taps: tuple
    shapes: tuple
    edges: np.ndarray
    weights: np.ndarray
    charge: np.ndarray

    @property
    def n(self) -> int:
        return int(self.charge.size)


def _freq_centres(tap_in: str, tap_out: str, f_in: int, f_out: int) -> np.ndarray:
    """Row of ``tap_in`` each row of ``tap_out`` is centred on, from the encoder's geometry."""
    rows = np.arange(f_out, dtype=np.float64)
    if f_out == 1 or f_in == 1:
        return np.full(f_out, (f_in - 1) / 2.0)
    if tap_out.startswith("enc."):
        # the model module imports torch: only when an encoder tap is laid out, never on import
        from earengine.ear.model import ENCODER_FREQ_KERNEL_1, ENCODER_TABLE

        _, _, pool, k2 = ENCODER_TABLE[int(tap_out.split(".")[1])]
        # conv 2 (k2 rows, valid) reads pooled rows f..f+k2-1; pooling pairs conv-1 rows; conv 1
        # reads 3 input rows: the centre of all that, in input rows
        pooled = rows + (k2 - 1) / 2.0
        return pooled * pool + (pool - 1) / 2.0 + (ENCODER_FREQ_KERNEL_1 - 1) / 2.0
    return (rows + 0.5) * f_in / f_out - 0.5


def ear_graph(shapes: Mapping[str, Sequence[int]], *, config: LayoutConfig = LayoutConfig(),
              weights: Optional[Mapping[str, np.ndarray]] = None, charge: Optional[Mapping[str, np.ndarray]] = None,
              rng: Optional[np.random.Generator] = None) -> NeuronGraph:
    """The neuron graph of an ear from its taps' shapes.

    Parameters
    ----------
    shapes : mapping tap -> (channels, freq[, time])
        In the ear's order (``scaleogram``, ``enc.*``, ``ar.*``; ``freq`` is 1 for ``ar.*``);
        time is ignored.
    config : LayoutConfig
        ``channel_links`` and ``freq_reach`` shape the edges.
    weights : mapping tap -> ndarray (C_out, C_in), optional
        Connection strength from the previous tap's channels to this tap's (e.g. the summed
        absolute convolution weights); each output channel is joined to its strongest inputs.
        Without it the inputs are drawn with ``rng``.
    charge : mapping tap -> ndarray (C,), optional
        Per-channel charge (activation standard deviation over music); 1 without it. Scaled so
        the mean charge is 1, with a floor of 0.05 so a silent channel still takes room.
    rng : numpy.random.Generator, optional
        Seeded from ``config.seed`` when not given.
    """
    rng = rng or np.random.default_rng(config.seed)
    taps = tuple(shapes)
    dims = tuple((int(s[0]), int(s[1])) for s in shapes.values())
    offsets = np.cumsum([0] + [c * f for c, f in dims])
    edges = []
    for i in range(1, len(taps)):
        (c_in, f_in), (c_out, f_out) = dims[i - 1], dims[i]
        k = min(config.channel_links, c_in)
        w = None if weights is None else weights.get(taps[i])
        if w is not None and np.shape(w) == (c_out, c_in):
            links = np.argsort(-np.abs(np.asarray(w)), axis=1, kind="stable")[:, :k]
        else:
            links = np.stack([rng.choice(c_in, size=k, replace=False) for _ in range(c_out)])
        centre = np.rint(_freq_centres(taps[i - 1], taps[i], f_in, f_out)).astype(np.int64)
        reach = np.arange(-config.freq_reach, config.freq_reach + 1)
        rows_in = np.clip(centre[:, None] + reach[None, :], 0, f_in - 1)  # (f_out, R)
        co = np.arange(c_out)[:, None, None, None]
        fo = np.arange(f_out)[None, None, :, None]
        ci = links[:, :, None, None]
        fi = rows_in[None, None, :, :]
        src = offsets[i - 1] + ci * f_in + fi
        dst = offsets[i] + co * f_out + fo
        src, dst = np.broadcast_arrays(src, dst)
        pairs = np.stack([src.reshape(-1), dst.reshape(-1)], axis=1)
        edges.append(np.unique(pairs, axis=0))
    edges_arr = np.concatenate(edges) if edges else np.zeros((0, 2), np.int64)
    q = []
    for tap, (c, f) in zip(taps, dims):
        per_channel = np.ones(c, np.float64) if charge is None or tap not in charge else np.asarray(charge[tap], np.float64)
        if per_channel.size != c:
            per_channel = np.ones(c, np.float64)
        q.append(np.repeat(per_channel, f))
    q_arr = np.concatenate(q)
    q_arr = q_arr / max(1e-12, float(q_arr.mean()))
    q_arr = np.maximum(q_arr, 0.05)
    return NeuronGraph(taps, dims, edges_arr.astype(np.int64), np.full(len(edges_arr), config.attraction, np.float32),
                       q_arr.astype(np.float32))


def coarsen(graph: NeuronGraph, axis: str) -> tuple[NeuronGraph, np.ndarray]:
    """Merge neighbouring channels (``axis='channel'``) or frequency rows (``'freq'``) pairwise
    in every tap: the next coarser graph and each vertex's parent in it.

    Charges add (a merged vertex repels as its parts did together); edges between merged
    vertices add their weights; edges inside one merged vertex disappear.
    """
    parents = []
    shapes = []
    k = 0
    for c, f in graph.shapes:
        cc = np.arange(c)[:, None].repeat(f, 1)
        ff = np.arange(f)[None, :].repeat(c, 0)
        if axis == "channel":
            nc, nf = (c + 1) // 2, f
            cc = cc // 2
        elif axis == "freq":
            nc, nf = c, (f + 1) // 2
            ff = ff // 2
        else:
            raise ParameterError(f"axis={axis!r} must be channel or freq")
        parents.append(k + (cc * nf + ff).reshape(-1))
        shapes.append((nc, nf))
        k += nc * nf
    parent = np.concatenate(parents)
    charge = np.bincount(parent, weights=graph.charge, minlength=k).astype(np.float32)
    e = parent[graph.edges]
    keep = e[:, 0] != e[:, 1]
    e, w = np.sort(e[keep], axis=1), graph.weights[keep]
    if len(e):
        uniq, inverse = np.unique(e, axis=0, return_inverse=True)
        w = np.bincount(inverse.reshape(-1), weights=w, minlength=len(uniq)).astype(np.float32)
        e = uniq
    return NeuronGraph(graph.taps, tuple(shapes), e.astype(np.int64), w.astype(np.float32), charge), parent


