"""Benchmark: a flood of future-timetagged OSC bundles against the engine's bounded scheduler.

Run: ``.venv/bin/python bench/osc_flood_future.py [--bundles 1000000] [--ahead-s 94608000]``

Starts ``earengine run --audio null --no-dream`` in a child process, reads its resident memory
(VmRSS), then sends ``--bundles`` bundles timetagged ``--ahead-s`` ahead (three years by default,
beyond ``/osc/horizon_s``) from one loopback socket as fast as Python sends, then a second flood
of the same size due 30 s ahead (within the horizon, so ``/osc/sched_max`` is what bounds it).
After each, ``/sync`` and ``/counts`` say what the engine did with every datagram: refused
(counted), dropped at its inbox bound (counted), or dropped by the kernel before the engine saw it
(``kernel_dropped`` in ``/counts``, the ``drops`` column of ``/proc/net/udp``). Every datagram
sent must be in one of these.

Before this scheduler, 1,000,000 bundles three years ahead grew the engine by 684 MB (issue 14).
The last line is the memory growth against the goal (at most 10 MB; below 1 is within it).
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import udp  # noqa: E402
from earengine.osc.wire import encode_bundle, encode_message  # noqa: E402
from earengine.control.osc import udp_drops
from earengine.process import EngineProcess  # noqa: E402

GOAL_MB = 10.0


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def flood(eng: EngineProcess, ctl: udp.Asker, n: int, ahead_s: float, name: str, seq: int) -> float:
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    before_rss = rss_mb(eng.proc.pid)
    before = ctl.counts(wait_s=120.0)
    drops0 = udp_drops(eng.port)
    base = time.time() + ahead_s
    t0 = time.monotonic()
    for k in range(n):  # every bundle different (its timetag), as a hostile peer would send them
        sender.sendto(encode_bundle(base + k * 1e-6, [encode_message("/clock/bpm", (100.0,))]), eng.address)
    sent_s = time.monotonic() - t0
    ctl.need("/sync", seq, reply="/synced", wait_s=120.0)
    done_s = time.monotonic() - t0
    after = ctl.counts(wait_s=120.0)
    after_rss = rss_mb(eng.proc.pid)
    d = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    kdrops = udp_drops(eng.port) - drops0
    if d.get("kernel_dropped", kdrops) != kdrops:  # the engine counts them itself, the same way
        print(f"{name}: the engine counted {d['kernel_dropped']} kernel drops, /proc/net/udp {kdrops}")
    accounted = d["refused_far"] + d["refused_full"] + d["scheduled"] + d["dropped"] + kdrops
    growth = after_rss - before_rss
    print(f"{name}: {n} bundles sent in {sent_s:.1f} s ({n / sent_s:,.0f}/s), all handled after {done_s:.1f} s")
    print(f"{name}: refused beyond the horizon {d['refused_far']}, refused by the full scheduler {d['refused_full']}, "
          f"held {d['scheduled']}, dropped at the inbox {d['dropped']}, dropped by the kernel {kdrops}; "
          f"accounted for {accounted} of {n}")
    print(f"{name}: /fail #bundle answers sent {d['refused_far'] + d['refused_full'] - d['fail_unsent']}, "
          f"counted without an answer {d['fail_unsent']}")
    print(f"{name}: engine memory {before_rss:.1f} MB before, {after_rss:.1f} MB after: grew {growth:.1f} MB")
    sender.close()
    if accounted != n:
        print(f"{name}: {n - accounted} datagrams are not accounted for")
    return growth


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundles", type=int, default=1_000_000)
    ap.add_argument("--ahead-s", type=float, default=3 * 365 * 24 * 3600.0)
    args = ap.parse_args()
    with EngineProcess(["--audio", "null", "--no-dream", "--no-oscquery", "--no-zeroconf", "--status-every", "3600"],
                       cwd=str(REPO)) as eng:
        ctl = udp.Asker(eng.address)
        ctl.counts(wait_s=120.0)  # everything the first reply needs is loaded before the first reading
        time.sleep(1.0)
        far = flood(eng, ctl, args.bundles, args.ahead_s, "far future", 1)
        near = flood(eng, ctl, args.bundles, 30.0, "30 s ahead", 2)
        worst = max(far, near)
    print(f"engine memory growth for {args.bundles:,} future bundles: far {far:.1f} MB, near {near:.1f} MB; "
          f"worst / goal of {GOAL_MB:g} MB = {worst / GOAL_MB:.2f}")
    return 0 if worst <= GOAL_MB else 1


if __name__ == "__main__":
    raise SystemExit(main())
