"""Benchmark: force-layout repulsion per iteration, Barnes-Hut against the exact O(N²) sum.

Run: ``.venv/bin/python bench/layout.py [--sizes 5000,20000,100000] [--device cpu|cuda] [--repeats 3]``

For each size the same points (clusters of different spread, as a layout's layers form, charges
between 0.5 and 1.5) go through :func:`~earengine.viz.layout.repulsion_barnes_hut` (theta 0.5) and
:func:`~earengine.viz.layout.repulsion_exact`; each is timed ``--repeats`` times after a warm-up
and the median is printed, with the force error of Barnes-Hut relative to the exact forces.

The exact sum costs the same for every row of vertices, so above ``--exact-rows`` vertices it is
timed on that many rows and scaled to all of them (said so in the output): one exact iteration
at 100,000 vertices takes minutes on a laptop CPU. The last line is the ratio summary
(exact time / Barnes-Hut time per size: above 1 means Barnes-Hut is faster).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def clustered_points(n: int, *, seed: int, device: str):
    import torch

    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(16, 2, generator=g) * 2 - 1
    spread = torch.rand(16, generator=g) * 0.2 + 0.02
    which = torch.randint(0, 16, (n,), generator=g)
    p = centres[which] + torch.randn(n, 2, generator=g) * spread[which, None]
    q = torch.rand(n, generator=g) + 0.5
    return p.to(device), q.to(device)


def timed(fn, repeats: int, device: str) -> float:
    import torch

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    import torch

    from earengine.viz.layout import repulsion_barnes_hut

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="5000,20000,100000")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--exact-rows", type=int, default=4096,
                    help="above this many vertices, time the exact sum on this many rows and scale")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"layout repulsion, theta 0.5, k 2.5, on {args.device} ({torch.get_num_threads()} CPU threads), "
          f"median of {args.repeats}")
    ratios = []
    for n in [int(s) for s in args.sizes.split(",")]:
        p, q = clustered_points(n, seed=n, device=args.device)
        t_bh = timed(lambda: repulsion_barnes_hut(p, q, theta=0.5), args.repeats, args.device)
        rows = min(n, args.exact_rows)

        def exact_rows():
            # every vertex's force from all n vertices, for the first `rows` vertices
            return _exact_some_rows(p, q, rows)

        t_rows = timed(exact_rows, max(1, args.repeats if n <= 20000 else 1), args.device)
        t_exact = t_rows * n / rows
        f_bh, _ = repulsion_barnes_hut(p, q, theta=0.5)
        f_ex = exact_rows()
        err = ((f_bh[:rows] - f_ex).norm(dim=1) / f_ex.norm(dim=1).clamp_min(1e-30)).median()
        note = "" if rows == n else f" (timed on {rows} of {n} rows, scaled)"
        print(f"{n:>7} vertices: Barnes-Hut {t_bh * 1000:9.1f} ms/iteration, exact {t_exact * 1000:10.1f} "
              f"ms/iteration{note}; median force error {float(err) * 100:.2f} %")
        ratios.append((n, t_exact / t_bh))
    print("ratio exact/Barnes-Hut: " + ", ".join(f"{n}: {r:.1f}x" for n, r in ratios))
    return 0


def _exact_some_rows(p, q, rows: int, *, k: float = 2.5, chunk: int = 512):
    import torch

    force = torch.zeros((rows, p.shape[1]), dtype=p.dtype, device=p.device)
    for s in range(0, rows, chunk):
        e = min(rows, s + chunk)
        d = p[s:e, None, :] - p[None, :, :]
        r2 = (d * d).sum(-1)
        idx = torch.arange(s, e, device=p.device)
        r2[idx - s, idx] = float("inf")
        inv = r2.clamp_min(1e-18).sqrt().pow(-(k + 1))
        force[s:e] = q[s:e, None] * (q[None, :, None] * d * inv[..., None]).sum(1)
    return force


if __name__ == "__main__":
    sys.exit(main())
