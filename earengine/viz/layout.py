"""The force-directed layout of the ear's neurons (Immersions paper, section 3).

Every neuron — a tap, a channel and a frequency row, time collapsed — is a vertex. Neurons of
consecutive taps that a convolution connects are joined by edges: each output channel to its
most strongly weighted input channels, along nearby frequency rows. Three forces act:

- attraction along edges, ``a_ij = w_ij (p_j - p_i)``;
- repulsion between every pair, ``r_ij = q_i q_j (p_i - p_j) / |p_i - p_j|^(k+1)``, with the
  charge ``q`` of a neuron from how much its channel varies over music (the checkpoint's data
  standard deviation), approximated with a Barnes-Hut tree;
- centring, ``c_i = -l p_i``.

They are the negative gradient of the energy :func:`energy`, which the layout lowers with
Hu's adaptive step (each vertex moves a step along its force; the step grows while the energy
keeps falling and shrinks when it rises). To avoid poor local minima the graph is first
coarsened — neighbouring channels, then neighbouring frequency rows merged, level after level —
laid out from the coarsest level up, each finer level starting from its parent's position.

:class:`NeuronLayout` (numpy only, loaded by the engine process) holds the result; it is
computed once per ear and cached beside it (:func:`cached_layout`), and exported as CSV or JSON
by ``earengine layout --model M --out F``. The torch parts import torch when called.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np

from earengine.errors import ConfigError, ParameterError, check_config_keys

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
    "layout_cache_path",
    "FORMAT",
]

FORMAT = "earengine-layout"
FORMAT_VERSION = 1
CACHE_FILE = "layout.json"


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------
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


@dataclass(frozen=True, eq=False)
class NeuronLayout:
    """Positions of every neuron of an ear, in [-1, 1], numbered as in :class:`NeuronGraph`.

    Examples
    --------
    >>> lay = NeuronLayout(("a", "b"), ((2, 1), (1, 2)), np.zeros((4, 2), np.float32))
    >>> lay.tap_positions("b").shape
    (2, 2)
    >>> NeuronLayout.from_dict(lay.to_dict()).shapes
    ((2, 1), (1, 2))
    """

    taps: tuple
    shapes: tuple
    positions: np.ndarray
    ear_sha256: str = ""
    config: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "taps", tuple(self.taps))
        object.__setattr__(self, "shapes", tuple((int(c), int(f)) for c, f in self.shapes))
        pos = np.ascontiguousarray(self.positions, dtype=np.float32)
        total = sum(c * f for c, f in self.shapes)
        if pos.ndim != 2 or pos.shape[0] != total or pos.shape[1] not in (2, 3):
            raise ParameterError(f"positions shape={pos.shape} must be ({total}, 2 or 3) for these taps")
        pos.setflags(write=False)
        object.__setattr__(self, "positions", pos)

    @property
    def dims(self) -> int:
        return int(self.positions.shape[1])

    def tap_positions(self, tap: str) -> np.ndarray:
        """``(channels * freq, dims)`` positions of one tap's neurons, channel-major."""
        k = 0
        for name, (c, f) in zip(self.taps, self.shapes):
            if name == tap:
                return self.positions[k:k + c * f]
            k += c * f
        raise ParameterError(f"tap={tap!r} must be one of {', '.join(self.taps)}")

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "ear_sha256": self.ear_sha256,
            "config": dict(self.config),
            "taps": [{"name": t, "channels": c, "freq": f} for t, (c, f) in zip(self.taps, self.shapes)],
            "dims": self.dims,
            "positions": [[round(float(v), 6) for v in row] for row in self.positions],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "NeuronLayout":
        if data.get("format") != FORMAT:
            raise ConfigError(f"layout format={data.get('format')!r} must be {FORMAT!r}")
        taps = tuple(t["name"] for t in data["taps"])
        shapes = tuple((int(t["channels"]), int(t["freq"])) for t in data["taps"])
        return cls(taps, shapes, np.asarray(data["positions"], dtype=np.float32),
                   str(data.get("ear_sha256", "")), dict(data.get("config", {})))

    def to_csv(self) -> str:
        """One row per neuron: ``index,tap,channel,freq,x,y[,z]``."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        axes = ["x", "y", "z"][: self.dims]
        writer.writerow(["index", "tap", "channel", "freq", *axes])
        k = 0
        for tap, (c, f) in zip(self.taps, self.shapes):
            for ci in range(c):
                for fi in range(f):
                    writer.writerow([k, tap, ci, fi, *(f"{v:.6f}" for v in self.positions[k])])
                    k += 1
        return buf.getvalue()

    def save(self, path: Union[str, Path]) -> None:
        """Write as JSON (``.json``) or CSV (``.csv``), atomically."""
        from earengine.ear.checkpoint import atomic_write_bytes

        path = Path(path)
        if path.suffix.lower() == ".csv":
            atomic_write_bytes(path, self.to_csv().encode())
        elif path.suffix.lower() == ".json":
            atomic_write_bytes(path, (json.dumps(self.to_dict(), separators=(",", ":")) + "\n").encode())
        else:
            raise ParameterError(f"--out={str(path)!r} must end in .csv or .json")

    @classmethod
    def load(cls, path: Union[str, Path]) -> "NeuronLayout":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"layout {str(path)!r} must be a layout JSON file ({exc})") from None


# ---------------------------------------------------------------------------------------------
# The graph
# ---------------------------------------------------------------------------------------------
def _freq_centres(tap_in: str, tap_out: str, f_in: int, f_out: int) -> np.ndarray:
    """Row of ``tap_in`` each row of ``tap_out`` is centred on, from the encoder's geometry."""
    rows = np.arange(f_out, dtype=np.float64)
    if f_out == 1 or f_in == 1:
        return np.full(f_out, (f_in - 1) / 2.0)
    if tap_out.startswith("enc."):
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


# ---------------------------------------------------------------------------------------------
# Forces (torch)
# ---------------------------------------------------------------------------------------------
def repulsion_exact(p, q, *, k: float = 2.5, chunk: int = 512):
    """Repulsive forces and potentials by summing every pair, O(N²).

    Parameters
    ----------
    p : Tensor, shape (N, D)
    q : Tensor, shape (N,)
    k : float > 1

    Returns
    -------
    force : Tensor (N, D)
        ``sum_j q_i q_j (p_i - p_j) / |p_i - p_j|^(k+1)``.
    potential : Tensor (N,)
        ``sum_j q_j / ((k-1) |p_i - p_j|^(k-1))`` (the repulsive energy is ``0.5 sum q_i phi_i``).
    """
    import torch

    n = p.shape[0]
    force = torch.zeros_like(p)
    phi = torch.zeros(n, dtype=p.dtype, device=p.device)
    for s in range(0, n, chunk):
        d = p[s:s + chunk, None, :] - p[None, :, :]
        r2 = (d * d).sum(-1)
        idx = torch.arange(s, min(n, s + chunk), device=p.device)
        r2[idx - s, idx] = float("inf")  # no self-interaction
        r2 = r2.clamp_min(1e-18)
        r = r2.sqrt()
        inv = r.pow(-(k + 1))
        force[s:s + chunk] = q[s:s + chunk, None] * (q[None, :, None] * d * inv[..., None]).sum(1)
        phi[s:s + chunk] = (q[None, :] * r.pow(-(k - 1))).sum(1) / (k - 1)
    return force, phi


class _Tree:
    """A Barnes-Hut tree as dense grids, one per level: level ``l`` splits the bounding box
    into ``2^l`` cells per axis and holds each cell's total charge and centre of charge."""

    def __init__(self, p, q, *, max_depth: Optional[int] = None) -> None:
        import torch

        n, dims = p.shape
        self.dims = dims
        lo = p.min(0).values
        size = float((p.max(0).values - lo).max()) * (1 + 1e-6) + 1e-9
        cap = 10 if dims == 2 else 7  # up to about a million cells on the finest level
        depth = max_depth or int(min(cap, max(1, math.ceil(math.log2(max(2, n)) / dims) + 1)))
        self.depth, self.size, self.lo = depth, size, lo
        ij = ((p - lo) / size * (1 << depth)).long().clamp_(0, (1 << depth) - 1)  # (N, D) finest cell
        self.mass, self.com = [], []
        for level in range(depth + 1):
            cells = ij >> (depth - level)
            cid = self.cell_id(cells, level)
            m = torch.zeros(1 << (dims * level), dtype=p.dtype, device=p.device).index_add_(0, cid, q)
            c = torch.zeros((1 << (dims * level), dims), dtype=p.dtype, device=p.device).index_add_(0, cid, q[:, None] * p)
            c = c / m.clamp_min(1e-30)[:, None]
            self.mass.append(m)
            self.com.append(c)
        leaf = self.cell_id(ij, depth)
        self.order = torch.argsort(leaf)
        counts = torch.bincount(leaf, minlength=1 << (dims * depth))
        self.count = counts
        self.start = torch.cumsum(counts, 0) - counts
        # child offsets: every combination of 0/1 per axis
        grid = torch.stack(torch.meshgrid(*[torch.arange(2, device=p.device)] * dims, indexing="ij"), -1)
        self.child = grid.reshape(-1, dims)

    def cell_id(self, cells, level: int):
        cid = cells[:, 0]
        for axis in range(1, self.dims):
            cid = (cid << level) | cells[:, axis]
        return cid

    def cell_coords(self, cid, level: int):
        import torch

        out = []
        for axis in reversed(range(self.dims)):
            out.append(cid & ((1 << level) - 1))
            cid = cid >> level
        return torch.stack(out[::-1], -1)


def repulsion_barnes_hut(p, q, *, k: float = 2.5, theta: float = 0.5, chunk: int = 4096,
                         max_depth: Optional[int] = None):
    """Repulsive forces and potentials with a Barnes-Hut tree, about O(N log N).

    Same results as :func:`repulsion_exact` within the opening criterion's error: a cell of
    size ``s`` whose centre of charge lies at ``d`` from a vertex acts as one body of the
    cell's total charge when ``s / d < theta``; otherwise it is opened, down to the finest
    level, where its vertices act one by one. Runs level by level on (vertex, cell) pairs, in
    chunks of vertices, on whatever device ``p`` lives on.
    """
    import torch

    n, dims = p.shape
    tree = _Tree(p, q, max_depth=max_depth)
    force = torch.zeros_like(p)
    phi = torch.zeros(n, dtype=p.dtype, device=p.device)
    nchild = tree.child.shape[0]
    for s in range(0, n, chunk):
        rows = torch.arange(s, min(n, s + chunk), device=p.device)
        # level 1: every non-empty cell for every vertex of the chunk
        cells = torch.arange(nchild, device=p.device)
        cells = cells[tree.mass[1][cells] > 0]
        pi = rows.repeat_interleave(cells.numel())
        ci = cells.repeat(rows.numel())
        for level in range(1, tree.depth + 1):
            d = p[pi] - tree.com[level][ci]
            r2 = (d * d).sum(-1)
            r = r2.clamp_min(1e-18).sqrt()
            cell_size = tree.size / (1 << level)
            far = cell_size < theta * r
            if far.any():
                m = tree.mass[level][ci[far]]
                rf = r[far]
                force.index_add_(0, pi[far], (q[pi[far]] * m * rf.pow(-(k + 1)))[:, None] * d[far])
                phi.index_add_(0, pi[far], m * rf.pow(-(k - 1)) / (k - 1))
            pi, ci = pi[~far], ci[~far]
            if level == tree.depth or pi.numel() == 0:
                break
            coords = tree.cell_coords(ci, level)
            kids = (coords[:, None, :] * 2 + tree.child[None, :, :]).reshape(-1, dims)
            kid_id = tree.cell_id(kids, level + 1)
            pi = pi.repeat_interleave(nchild)
            keep = tree.mass[level + 1][kid_id] > 0
            pi, ci = pi[keep], kid_id[keep]
        if pi.numel():  # leaves still too close: vertex by vertex
            counts = tree.count[ci]
            pj_rows = pi.repeat_interleave(counts)
            first = tree.start[ci].repeat_interleave(counts)
            within = torch.arange(pj_rows.numel(), device=p.device) - (torch.cumsum(counts, 0) - counts).repeat_interleave(counts)
            j = tree.order[first + within]
            keep = j != pj_rows
            pj_rows, j = pj_rows[keep], j[keep]
            d = p[pj_rows] - p[j]
            r = (d * d).sum(-1).clamp_min(1e-18).sqrt()
            force.index_add_(0, pj_rows, (q[pj_rows] * q[j] * r.pow(-(k + 1)))[:, None] * d)
            phi.index_add_(0, pj_rows, q[j] * r.pow(-(k - 1)) / (k - 1))
    return force, phi


def _attraction(p, edges, w):
    d = p[edges[:, 1]] - p[edges[:, 0]]
    f = w[:, None] * d
    force = p.new_zeros(p.shape)
    force.index_add_(0, edges[:, 0], f)
    force.index_add_(0, edges[:, 1], -f)
    return force, 0.5 * (w * (d * d).sum(-1)).sum()


def _total_energy(p, q, phi, e_att, centring: float) -> float:
    """Attraction + repulsion (from the potentials ``phi``) + centring."""
    return float(e_att + 0.5 * (q * phi).sum() + 0.5 * centring * (p * p).sum())


def energy(p, graph_t: Mapping[str, Any], *, k: float, centring: float, exact: bool = True, theta: float = 0.5):
    """The layout energy whose negative gradient the forces are:
    ``sum_edges w/2 |p_i - p_j|^2 + sum_{i<j} q_i q_j / ((k-1) |p_i - p_j|^(k-1)) + l/2 sum |p_i|^2``.

    ``graph_t`` holds torch tensors ``edges``, ``weights``, ``charge``.
    """
    q = graph_t["charge"]
    _, e_att = _attraction(p, graph_t["edges"], graph_t["weights"])
    _, phi = repulsion_exact(p, q, k=k) if exact else repulsion_barnes_hut(p, q, k=k, theta=theta)
    return _total_energy(p, q, phi, e_att, centring)


def relax(p, graph_t: Mapping[str, Any], *, config: LayoutConfig, centring: float, exact: Optional[bool] = None,
          record: Optional[list] = None, max_iterations: Optional[int] = None):
    """Lower the energy of positions ``p`` (in place, returned) with Hu's adaptive step.

    Every vertex moves ``step`` along its force. After five steps in a row that lowered the
    energy the step grows by 1/0.9; a step that raised it shrinks it by 0.9. Stops when the step
    falls below ``config.tol`` times the layout's size, or after ``config.iterations`` steps.
    ``record`` (a list) receives the energy before each step.
    """
    q, edges, w = graph_t["charge"], graph_t["edges"], graph_t["weights"]
    n = p.shape[0]
    exact = n <= 2048 if exact is None else exact
    scale = float((p.max(0).values - p.min(0).values).max()) + 1e-9
    step = 0.05 * scale
    e_prev, progress = math.inf, 0
    for _ in range(max_iterations or config.iterations):
        if exact:
            f_rep, phi = repulsion_exact(p, q, k=config.k)
        else:
            f_rep, phi = repulsion_barnes_hut(p, q, k=config.k, theta=config.theta)
        f_att, e_att = _attraction(p, edges, w)
        force = f_rep + f_att - centring * p
        e = _total_energy(p, q, phi, e_att, centring)
        if record is not None:
            record.append(e)
        if e < e_prev:
            progress += 1
            if progress >= 5:
                progress, step = 0, step / 0.9
        else:
            progress, step = 0, step * 0.9
        e_prev = e
        norm = force.norm(dim=1, keepdim=True).clamp_min(1e-12)
        p += step * force / norm
        scale = float((p.max(0).values - p.min(0).values).max()) + 1e-9
        if step < config.tol * scale:
            break
    return p


def compute_layout(graph: NeuronGraph, *, config: LayoutConfig = LayoutConfig(), device: str = "cpu",
                   progress: Optional[Callable[[str], None]] = None, record: Optional[list] = None,
                   min_vertices: int = 64) -> np.ndarray:
    """Positions of every vertex of ``graph`` (N, dims), centred and scaled into [-1, 1].

    Coarsens channels and frequency rows alternately until the graph has at most
    ``min_vertices`` vertices (or stops shrinking), lays out the coarsest level from seeded
    random positions, then each finer level from its parents' positions plus a little seeded
    noise; the centring factor grows towards ``config.centring`` level by level.
    ``record`` (a list) receives ``(level, energies)`` per level.
    """
    import torch

    levels = [(graph, None)]
    axis = "channel"
    while levels[-1][0].n > min_vertices and len(levels) < 32:
        coarse, parent = coarsen(levels[-1][0], axis)
        if coarse.n == levels[-1][0].n:
            other = "freq" if axis == "channel" else "channel"
            coarse, parent = coarsen(levels[-1][0], other)
            if coarse.n == levels[-1][0].n:
                break
        levels.append((coarse, parent))
        axis = "freq" if axis == "channel" else "channel"
    g = torch.Generator().manual_seed(int(config.seed))
    p = None
    n_levels = len(levels)
    for depth in range(n_levels - 1, -1, -1):
        level_graph, _ = levels[depth]
        gt = {"edges": torch.as_tensor(level_graph.edges, device=device),
              "weights": torch.as_tensor(level_graph.weights, device=device),
              "charge": torch.as_tensor(level_graph.charge, device=device, dtype=torch.float32)}
        if p is None:
            p = (torch.rand((level_graph.n, config.dims), generator=g) * 2 - 1).to(device)
        else:
            parent = torch.as_tensor(levels[depth + 1][1], device=device)
            scale = float((p.max(0).values - p.min(0).values).max()) + 1e-9
            noise = (torch.rand((level_graph.n, config.dims), generator=g) * 2 - 1).to(device)
            p = p[parent] + noise * 0.01 * scale
        centring = config.centring * (0.25 + 0.75 * (n_levels - 1 - depth) / max(1, n_levels - 1))
        energies: list = []
        p = relax(p, gt, config=config, centring=centring, record=energies)
        if record is not None:
            record.append((depth, energies))
        if progress is not None:
            progress(f"layout: level {n_levels - depth} of {n_levels}, {level_graph.n} neurons, "
                     f"{len(energies)} steps, energy {energies[0]:.4g} -> {energies[-1]:.4g}")
    p = p - p.mean(0)
    p = p / p.abs().max().clamp_min(1e-12)
    return p.cpu().numpy().astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Ears and the cache
# ---------------------------------------------------------------------------------------------
def _ear_weights(ear) -> dict:
    """Per tap, |weights| from the previous tap's channels to this tap's, summed over kernels."""
    out = {}
    for i, block in enumerate(ear.encoder):
        out[f"enc.{i}"] = block.conv1.weight.detach().abs().sum(dim=(2, 3)).cpu().numpy()
    for i, block in enumerate(ear.ar):
        out[f"ar.{i}"] = block.conv.weight.detach().abs().sum(dim=2).cpu().numpy()
    return out


def layout_cache_path(ear_dir: Union[str, Path], ear_sha256: str = "") -> Path:
    """Where an ear's layout is cached: beside it, or, if that folder is read-only, under
    ``$EARENGINE_HOME/layouts`` (``~/.local/share/earengine/layouts``) by weights hash."""
    ear_dir = Path(ear_dir)
    if os.access(ear_dir, os.W_OK) or (ear_dir / CACHE_FILE).exists():
        return ear_dir / CACHE_FILE
    from earengine.files import user_dir

    return user_dir("layouts") / f"{ear_sha256 or ear_dir.name}.json"


def read_cached_layout(ear_dir: Union[str, Path]) -> Optional[NeuronLayout]:
    """The cached layout of a checkpoint folder if there is one for these weights (no torch)."""
    from earengine.ear.checkpoint import read_config

    sha = read_config(ear_dir).get("weights_sha256", "")
    path = layout_cache_path(ear_dir, sha)
    if not path.is_file():
        return None
    try:
        layout = NeuronLayout.load(path)
    except ConfigError:
        return None
    return layout if layout.ear_sha256 == sha else None


def cached_layout(ear_dir: Union[str, Path], *, config: LayoutConfig = LayoutConfig(), device: str = "cpu",
                  fresh: bool = False, progress: Optional[Callable[[str], None]] = None) -> NeuronLayout:
    """The layout of a checkpoint's ear: from the cache beside it, else computed and cached."""
    if not fresh:
        layout = read_cached_layout(ear_dir)
        if layout is not None and layout.config == config.to_dict():
            return layout
    from earengine.ear.checkpoint import load_ear

    loaded = load_ear(ear_dir, device="cpu")
    ear = loaded.ear
    n = ear.samples_per_step * 8
    shapes = {t: (s[0], s[1] if len(s) == 3 else 1) for t, s in ear.tap_shapes(n).items()}
    stats = loaded.stats.get("data", {}) if loaded.stats else {}
    charge = {t: v["std"].numpy() for t, v in stats.items()}
    graph = ear_graph(shapes, config=config, weights=_ear_weights(ear), charge=charge)
    positions = compute_layout(graph, config=config, device=device, progress=progress)
    sha = loaded.config.get("weights_sha256", "")
    layout = NeuronLayout(graph.taps, graph.shapes, positions, sha, config.to_dict())
    path = layout_cache_path(ear_dir, sha)
    try:
        layout.save(path)
    except OSError as exc:
        if progress is not None:
            progress(f"layout: cannot cache it at {path} ({exc.strerror}); it will be computed again next time")
    return layout
