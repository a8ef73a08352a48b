"""The force-directed neuron layout: Barnes-Hut forces match the exact sum within a stated
tolerance, the forces are the energy's gradient, the energy falls, connected neurons end up
closer than unconnected ones; the layout round-trips and is cached in the cache folder, never
written into an ear's folder unless asked."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

from earengine.viz.layout import (
    LayoutConfig,
    NeuronLayout,
    coarsen,
    compute_layout,
    ear_graph,
    energy,
    relax,
    repulsion_barnes_hut,
    repulsion_exact,
)


def points(n, dims, *, clustered, seed):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(n, dims, generator=g)
    if clustered:  # half of them packed into a small corner: the tree gets deep and uneven
        p[: n // 2] = p[: n // 2] * 0.05 + 0.3
    return p, torch.rand(n, generator=g) + 0.5


def scale_of_forces(p, q, k=2.5):
    """Sum of the magnitudes of every pairwise force on each vertex: what an error is relative to."""
    r = (p[:, None] - p[None]).norm(dim=-1)
    r.fill_diagonal_(float("inf"))
    return q * (q[None, :] * r.pow(-k)).sum(1)


@pytest.mark.parametrize("dims,clustered", [(2, False), (2, True), (3, False)])
def test_barnes_hut_matches_the_exact_forces_within_tolerance(dims, clustered):
    """Stated tolerance at theta = 0.5: per vertex, the force error relative to the sum of the
    magnitudes of its pairwise forces has median <= 0.5 % and 99th percentile <= 3 %; the
    potential is within 3 %. A smaller theta is more accurate."""
    p, q = points(1500, dims, clustered=clustered, seed=dims + clustered)
    exact_f, exact_phi = repulsion_exact(p, q)
    scale = scale_of_forces(p, q)
    errors = {}
    for theta in (0.3, 0.5):
        f, phi = repulsion_barnes_hut(p, q, theta=theta)
        err = (f - exact_f).norm(dim=1) / scale
        errors[theta] = err
        assert float((phi - exact_phi).abs().div(exact_phi).max()) <= 0.03
    assert float(errors[0.5].median()) <= 0.005 and float(errors[0.5].quantile(0.99)) <= 0.03
    assert float(errors[0.3].median()) < float(errors[0.5].median())


def test_a_tree_opened_everywhere_is_the_exact_sum():
    p, q = points(300, 2, clustered=True, seed=5)
    f, phi = repulsion_barnes_hut(p, q, theta=1e-6)  # nothing is far enough: every leaf opened
    exact_f, exact_phi = repulsion_exact(p, q)
    assert torch.allclose(f, exact_f, rtol=1e-4, atol=1e-3 * float(exact_f.abs().max()))
    assert torch.allclose(phi, exact_phi, rtol=1e-4)


def small_graph(seed=0):
    """Two taps, a few channels and rows: small enough for exact sums everywhere."""
    shapes = {"enc.6": (12, 5), "enc.7": (16, 1), "ar.0": (16, 1)}
    return ear_graph(shapes, config=LayoutConfig(channel_links=3), rng=np.random.default_rng(seed))


def test_forces_are_the_negative_gradient_of_the_energy():
    graph = small_graph()
    gt = {"edges": torch.as_tensor(graph.edges), "weights": torch.as_tensor(graph.weights),
          "charge": torch.as_tensor(graph.charge)}
    p = torch.rand(graph.n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    gt64 = {k: (v.double() if v.is_floating_point() else v) for k, v in gt.items()}
    x = p.clone().requires_grad_(True)
    r = (x[:, None] - x[None]).norm(dim=-1) + torch.eye(graph.n, dtype=torch.float64)
    iu = torch.triu_indices(graph.n, graph.n, 1)
    q = gt64["charge"]
    e_rep = (q[iu[0]] * q[iu[1]] / (1.5 * r[iu[0], iu[1]].pow(1.5))).sum()
    d = x[gt64["edges"][:, 1]] - x[gt64["edges"][:, 0]]
    e = e_rep + 0.5 * (gt64["weights"] * (d * d).sum(-1)).sum() + 0.5 * 0.1 * (x * x).sum()
    e.backward()
    f_rep, _ = repulsion_exact(p, q)
    from earengine.viz.layout.forces import _attraction

    f_att, _ = _attraction(p, gt64["edges"], gt64["weights"])
    assert torch.allclose(-x.grad, f_rep + f_att - 0.1 * p, rtol=1e-6, atol=1e-8)
    assert energy(p, gt64, k=2.5, centring=0.1) == pytest.approx(float(e.detach()), rel=1e-9)


def test_energy_falls_and_connected_neurons_end_up_closer():
    graph = small_graph()
    config = LayoutConfig(iterations=150, seed=3)
    record = []
    pos = compute_layout(graph, config=config, record=record, min_vertices=16)
    assert len(record) >= 3  # several levels, coarse to fine
    for level, energies in record:
        # the adaptive step overshoots now and then near a minimum, but the energy falls: the
        # last steps of each level sit well below its first ones
        quarter = max(1, len(energies) // 4)
        assert energies[-1] < energies[0] and np.mean(energies[-quarter:]) < np.mean(energies[:quarter]), level
    assert np.abs(pos).max() == pytest.approx(1.0)
    e = graph.edges
    connected = np.linalg.norm(pos[e[:, 0]] - pos[e[:, 1]], axis=1).mean()
    linked = set(map(tuple, e)) | set(map(tuple, e[:, ::-1]))
    rng = np.random.default_rng(0)
    pairs = [(a, b) for a, b in rng.integers(0, graph.n, (4000, 2)) if a != b and (a, b) not in linked]
    unconnected = np.mean([np.linalg.norm(pos[a] - pos[b]) for a, b in pairs])
    assert connected < 0.6 * unconnected, (connected, unconnected)
    # seeded: the same again
    assert np.array_equal(pos, compute_layout(graph, config=config, min_vertices=16))


def test_relax_with_barnes_hut_lowers_the_exact_energy():
    graph = small_graph(1)
    gt = {"edges": torch.as_tensor(graph.edges), "weights": torch.as_tensor(graph.weights),
          "charge": torch.as_tensor(graph.charge)}
    p = torch.rand(graph.n, 2, generator=torch.Generator().manual_seed(2))
    before = energy(p, gt, k=2.5, centring=0.05)
    relax(p, gt, config=LayoutConfig(iterations=80), centring=0.05, exact=False)
    assert energy(p, gt, k=2.5, centring=0.05) < 0.8 * before


def test_coarsening_keeps_charge_and_merges_neighbours():
    graph = small_graph()
    coarse, parent = coarsen(graph, "channel")
    assert coarse.shapes == ((6, 5), (8, 1), (8, 1))
    assert coarse.charge.sum() == pytest.approx(graph.charge.sum(), rel=1e-6)
    assert parent.shape == (graph.n,) and parent.max() == coarse.n - 1
    # channels 0 and 1 of the first tap, same row, share a parent; rows do not merge on this axis
    assert parent[0] == parent[5] and parent[0] != parent[1]
    finer, parent_f = coarsen(graph, "freq")
    assert finer.shapes == ((12, 3), (16, 1), (16, 1)) and parent_f[0] == parent_f[1] != parent_f[2]
    assert np.all(coarse.edges[:, 0] < coarse.edges[:, 1])  # no self-loops, each edge once


def test_ear_graph_joins_consecutive_taps_along_nearby_rows():
    shapes = {"scaleogram": (1, 216), "enc.0": (2, 83)}
    graph = ear_graph(shapes, config=LayoutConfig(channel_links=1, freq_reach=1))
    src, dst = graph.edges[:, 0], graph.edges[:, 1]
    assert np.all(src < 216) and np.all(dst >= 216)
    rows_out = (dst - 216) % 83
    # block 0 pools by 2 after a 3-row convolution and reads 25 pooled rows: output row r is
    # centred on input row 2r + 25.5 (+-1 row of reach)
    assert np.all(np.abs(src - (2 * rows_out + 25.5)) <= 1.5)
    charge = ear_graph(shapes, charge={"enc.0": np.array([0.0, 4.0])}).charge
    assert charge.min() == pytest.approx(0.05) and charge.mean() > 0.9  # a silent channel still takes room


def test_layout_round_trips_as_json_and_csv(tmp_path):
    rng = np.random.default_rng(0)
    lay = NeuronLayout(("enc.0", "ar.1"), ((2, 3), (4, 1)), rng.uniform(-1, 1, (10, 2)), "abc", {"seed": 1})
    lay.save(tmp_path / "l.json")
    back = NeuronLayout.load(tmp_path / "l.json")
    assert back.taps == lay.taps and back.shapes == lay.shapes and back.ear_sha256 == "abc"
    assert np.allclose(back.positions, lay.positions, atol=1e-6)
    lay.save(tmp_path / "l.csv")
    rows = (tmp_path / "l.csv").read_text().splitlines()
    assert rows[0] == "index,tap,channel,freq,x,y" and len(rows) == 11
    assert rows[4].split(",")[:4] == ["3", "enc.0", "1", "0"]  # channel-major within a tap
    with pytest.raises(ValueError):
        lay.save(tmp_path / "l.txt")
    with pytest.raises(ValueError):
        NeuronLayout(("a",), ((2, 2),), np.zeros((3, 2)))


def test_layout_command_writes_csv_and_json_and_caches_outside_the_ear(tmp_path, capsys, monkeypatch):
    from earengine.cli import main
    from earengine.ear.checkpoint import read_config, save_ear
    from earengine.ear.model import Ear, EarConfig
    from earengine.viz.layout import cache

    torch.manual_seed(0)
    ear_dir = tmp_path / "ear"
    save_ear(ear_dir, Ear(EarConfig.preset("small", width=1 / 16)).eval())
    assert main(["layout", "--model", str(ear_dir), "--out", str(tmp_path / "n.csv"), "--iterations", "15"]) == 0
    path = cache.layout_cache_path(read_config(ear_dir)["weights_sha256"], LayoutConfig(iterations=15))
    assert path.is_file() and not (ear_dir / "layout.json").exists()
    stamp = path.stat().st_mtime_ns
    monkeypatch.setattr(cache, "compute_layout", None)  # the second time must not compute
    assert main(["layout", "--model", str(ear_dir), "--out", str(tmp_path / "n.json"), "--iterations", "15"]) == 0
    assert path.stat().st_mtime_ns == stamp and f"read from {path}" in capsys.readouterr().err
    data = json.loads((tmp_path / "n.json").read_text())
    assert [t["name"] for t in data["taps"]][:2] == ["scaleogram", "enc.0"] and len(data["taps"]) == 18
    n = sum(t["channels"] * t["freq"] for t in data["taps"])
    assert len(data["positions"]) == n and len((tmp_path / "n.csv").read_text().splitlines()) == n + 1
    assert main(["layout", "--model", str(ear_dir), "--out", str(tmp_path / "n.png")]) == 2
    assert "must end in .csv or .json" in capsys.readouterr().err


def folder_digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_a_3d_layout_of_a_shipped_ear_leaves_its_folder_byte_identical(tmp_path, capsys, monkeypatch):
    """`earengine layout --dims 3` once replaced the shipped ear's 2-D layout.json inside the
    package: now the ear's folder is only read, the 3-D layout goes to the cache, and a second
    call reads it from there; the shipped 2-D layout is still what the engine reads."""
    from earengine.cli import main
    from earengine.resources import DEFAULT_EAR
    from earengine.viz.layout import cache, read_cached_layout

    ear_dir = tmp_path / "ear-default"
    shutil.copytree(DEFAULT_EAR, ear_dir)
    before = folder_digest(ear_dir)
    argv = ["layout", "--model", str(ear_dir), "--dims", "3", "--iterations", "5", "--out", str(tmp_path / "a.json")]
    assert main(argv) == 0
    assert folder_digest(ear_dir) == before
    sha = json.loads((ear_dir / "config.json").read_text())["weights_sha256"]
    path = cache.layout_cache_path(sha, LayoutConfig(dims=3, iterations=5))
    assert f"cached at {path}" in capsys.readouterr().err
    monkeypatch.setattr(cache, "compute_layout", None)  # the second call must not compute
    assert main(argv[:-1] + [str(tmp_path / "b.json")]) == 0
    assert f"read from {path}" in capsys.readouterr().err
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert folder_digest(ear_dir) == before
    assert read_cached_layout(ear_dir).dims == 2  # the default settings: the ear's own file
    assert main(["layout", "--model", str(ear_dir)]) == 0  # ... and the command reads it too
    assert f"read from {ear_dir / 'layout.json'}" in capsys.readouterr().err


def test_only_save_to_ear_writes_into_the_ears_folder(tmp_path, capsys):
    from earengine.cli import main
    from earengine.ear.checkpoint import save_ear
    from earengine.ear.model import Ear, EarConfig
    from earengine.viz.layout import read_cached_layout

    torch.manual_seed(0)
    ear_dir = tmp_path / "ear"
    save_ear(ear_dir, Ear(EarConfig.preset("small", width=1 / 16)).eval())
    argv = ["layout", "--model", str(ear_dir), "--iterations", "15"]
    assert main(argv) == 0 and not (ear_dir / "layout.json").exists()
    assert main(argv + ["--save-to-ear"]) == 0  # from the cache into the ear's folder: no second computation
    err = capsys.readouterr().err
    assert "read from" in err and f"saved in the ear's folder, {ear_dir / 'layout.json'}" in err
    assert read_cached_layout(ear_dir, LayoutConfig(iterations=15)).dims == 2
    other = tmp_path / "other"
    save_ear(other, Ear(EarConfig.preset("small", width=1 / 16)).eval())
    (other / "layout.json").mkdir()  # a place no file can be written: one line, status 2
    assert main(["layout", "--model", str(other), "--iterations", "15", "--save-to-ear"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("earengine layout: cannot save the layout into the ear's folder")
