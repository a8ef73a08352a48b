"""The forces of the neuron layout and the multilevel relaxation that balances them (torch).

Three forces act on the vertices of a :class:`~earengine.viz.layout.graph.NeuronGraph`:

- attraction along edges, ``a_ij = w_ij (p_j - p_i)``;
- repulsion between every pair, ``r_ij = q_i q_j (p_i - p_j) / |p_i - p_j|^(k+1)``, summed
  exactly (:func:`repulsion_exact`, O(N²)) or approximated with a Barnes-Hut tree
  (:func:`repulsion_barnes_hut`, about O(N log N));
- centring, ``c_i = -l p_i``.

They are the negative gradient of the energy :func:`energy`, which :func:`relax` lowers with
Hu's adaptive step. :func:`compute_layout` lays out the coarsest graph first and each finer one
from its parents' positions. torch is imported when these are called, never on import.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional

import numpy as np

from earengine.viz.layout.graph import LayoutConfig, NeuronGraph, coarsen

__all__ = ["repulsion_exact", "repulsion_barnes_hut", "energy", "relax", "compute_layout"]


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


