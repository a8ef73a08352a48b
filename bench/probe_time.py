"""How long `earengine probe` takes: the first time (nothing cached) and again (clips and
baselines cached), on the same ear, task and settings, in one run.

The goal is a default probe within 3 minutes on a 2-core CPU. The first probe of a task reads
the music, computes the clips' scaleograms and trains the supervised baseline; each of these is
cached (``$EARENGINE_HOME/cache/probe``), so a second probe — another ear of the same
architecture, another checkpoint of the same run — only runs the ears and the classifiers.
Both runs must print the same table (checked here). The last line is the ratio.

Usage: ``python bench/probe_time.py [--model models/ear-default] [--task tracks|composers]
[--data DIR] [--threads 1]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def probe(args, cache_home: str) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "earengine", "probe", "--model", args.model, "--task", args.task,
           "--threads", str(args.threads)]
    if args.data:
        cmd += ["--data", args.data]
    # The corpora are read from the usual home; the cache goes to a fresh folder of its own.
    env = dict(os.environ, EARENGINE_PROBE_CACHE=cache_home)
    t0 = time.monotonic()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - t0
    if done.returncode != 0:
        sys.exit(f"probe failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    return wall, done.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "models" / "ear-default"))
    ap.add_argument("--task", default="tracks", choices=("tracks", "composers"))
    ap.add_argument("--data", default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="earengine-probe-cache-") as cache:
        cold, table_cold = probe(args, cache)
        print(f"first probe (nothing cached): {cold:.1f} s")
        warm, table_warm = probe(args, cache)
        print(f"second probe (clips and baselines cached): {warm:.1f} s")
    print(table_warm)
    print(f"same table both times: {'yes' if table_cold == table_warm else 'NO'}")
    print(f"goal: default probe within 180 s; first {cold:.0f} s, cached {warm:.0f} s")
    print(f"ratio first/cached: {cold / warm:.2f}")


if __name__ == "__main__":
    main()
