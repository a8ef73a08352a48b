"""How soon a dream answers: seconds until the target reaches 90 % of its plateau, from noise and
after a ``/target/set`` to another channel block, the live engine at the defaults.

Each run is a real ``earengine run --audio null`` on the shipped ear at the defaults (notes on
the grid, 2 bars at 120 BPM: a 4 s loop), read through its own status lines (``target``, the
score of the loop the dream keeps). A run dreams one target for ``--seconds`` from noise, then
is sent ``/target/spec`` for the other target of its pair over OSC and dreams that for as long.
The plateau of each half is the mean target of its last quarter (10 s of 40 s); the time to 90 %
is the first status line at or past ``start + 0.9 × (plateau − start)``.

Our way (``/opt/step adaptive``: steps judged by the loop heard, bold for notes, loosened on a
new target) and the way it stepped before (``/opt/step fixed``, every step at ``/opt/lr``) run
in the same invocation on the same pairs and seeds; the last line gives both medians in seconds
and loops and the ratio fixed / adaptive. The plateau each way reached is printed per pair.

    python bench/responsiveness.py                 # 4 pairs x 2 seeds x 2 ways, 40 s a half (about 25 min)
    python bench/responsiveness.py --pairs 2 --seeds 1 --seconds 30

Absolute seconds depend on the machine's load (steps per second); the ratio less so.
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from pythonosc.udp_client import SimpleUDPClient

ROOT = Path(__file__).resolve().parents[1]
PAIRS = (("enc.5:0-15", "enc.5:32-47"), ("enc.5:48-63", "enc.5:16-31"), ("ar.2:0-15", "ar.2:32-47"),
         ("enc.6:0-15", "enc.6:48-63"))
LOOP_S = 2 * 4 * 60.0 / 120.0  # the default loop: 2 bars of 4 beats at 120 BPM
LINE = re.compile(r"dream dreaming, step (\d+), ([\d.]+) steps/s, loss \S+, target (\S+), settled (\d+)%")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(pair: tuple, seed: int, way: str, seconds: float) -> dict:
    """One engine: ``pair[0]`` from noise for ``seconds``, then ``pair[1]``; status lines read."""
    port = free_port()
    cmd = [sys.executable, "-m", "earengine", "run", "--audio", "null", "--osc-port", str(port), "--status-every",
           "0.25", "--no-stream-ws", "--set", f"/target/spec={pair[0]}", "--set", f"/opt/seed={seed}",
           "--set", f"/opt/step={way}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    points: list[tuple[float, int, float, float, int]] = []  # (time, step, steps/s, target, settled %)
    lines: list[str] = []

    def read() -> None:
        for text in proc.stdout:
            lines.append(text)
            m = LINE.search(text)
            if m:
                points.append((time.monotonic(), int(m[1]), float(m[2]), float(m[3]), int(m[4])))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while not (points and points[-1][1] >= 1):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the engine did not start dreaming:\n{''.join(lines[-20:])}")
            time.sleep(0.05)
        t0 = points[-1][0]
        time.sleep(max(0.0, t0 + seconds - time.monotonic()))
        first = len(points)
        SimpleUDPClient("127.0.0.1", port).send_message("/target/spec", pair[1])
        t1 = time.monotonic()
        time.sleep(seconds)
        second = points[first:]
        # the first status lines after the message may still report the old target's last step
        step_at = second[0][1] if second else 0
        second = [p for p in second if p[1] > step_at + 1]
    finally:
        proc.terminate()
        proc.wait(30)
    return {"noise": halve([p for p in points[:first] if p[0] >= t0], t0), "switch": halve(second, t1),
            "steps_per_s": statistics.median(p[2] for p in points if p[2] > 0) if points else 0.0}


def halve(points: list, t0: float) -> dict:
    """Seconds to 90 % of the plateau (mean of the last quarter), the plateau and the start."""
    if len(points) < 8:
        return {"t90": float("nan"), "plateau": float("nan"), "start": float("nan")}
    targets = [p[3] for p in points]
    plateau = statistics.fmean(targets[-max(1, len(targets) // 4):])
    start = targets[0]
    goal = start + 0.9 * (plateau - start)
    t90 = next((p[0] - t0 for p in points if p[3] >= goal), points[-1][0] - t0)
    return {"t90": t90, "plateau": plateau, "start": start}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=40.0, help="seconds of each half (the issue: 40)")
    args = ap.parse_args()
    results: dict = {"adaptive": [], "fixed": []}
    for pair in PAIRS[: args.pairs]:
        for seed in range(args.seeds):
            for way in ("fixed", "adaptive"):
                r = run(pair, seed, way, args.seconds)
                results[way].append(r)
                print(f"{way:8s} {pair[0]} -> {pair[1]} seed {seed}: from noise 90 % in {r['noise']['t90']:.1f} s "
                      f"(plateau {r['noise']['plateau']:.3f}), after the change {r['switch']['t90']:.1f} s "
                      f"(plateau {r['switch']['plateau']:.3f}, from {r['switch']['start']:.3f}); "
                      f"{r['steps_per_s']:.1f} steps/s", flush=True)
    med = {way: {half: statistics.median(r[half]["t90"] for r in rs) for half in ("noise", "switch")}
           for way, rs in results.items()}
    lower = sum(a[h]["plateau"] < f[h]["plateau"] for a, f in zip(results["adaptive"], results["fixed"])
                for h in ("noise", "switch"))
    print(f"plateau: adaptive below fixed in {lower} of {2 * len(results['fixed'])} halves")
    for way in ("fixed", "adaptive"):
        print(f"{way}: from noise {med[way]['noise']:.1f} s ({med[way]['noise'] / LOOP_S:.2f} loops), "
              f"after a change {med[way]['switch']:.1f} s ({med[way]['switch'] / LOOP_S:.2f} loops)")
    print(f"median seconds to 90 %: from noise {med['adaptive']['noise']:.1f} s "
          f"({med['adaptive']['noise'] / LOOP_S:.2f} loops), after a change {med['adaptive']['switch']:.1f} s "
          f"({med['adaptive']['switch'] / LOOP_S:.2f} loops); ratio fixed/adaptive "
          f"{med['fixed']['noise'] / med['adaptive']['noise']:.2f} from noise, "
          f"{med['fixed']['switch'] / med['adaptive']['switch']:.2f} after a change")


if __name__ == "__main__":
    main()
