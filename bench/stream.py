"""Benchmark: activation stream frame rate and lag behind the sound, all taps of the default ear.

Run: ``.venv/bin/python bench/stream.py [--seconds 5] [--fps 60] [--model models/ear-default]``

A :class:`~earengine.streams.hub.StreamHub` streams every tap of the ear (shapes of a 2-bar loop
at 120 BPM, values random) at ``--fps`` to a receiver on loopback UDP, with no lookahead, so each
bundle's timetag is the moment its frame sounds and *lag* = arrival − timetag. For each reduction
(channel, channel_freq, raw) it prints the frames per second that arrived complete, the lag
(median and 99th percentile) and the datagrams per frame.

The peer is python-osc: the same frame (same chunks of at most 1,400 bytes) built with
``OscMessageBuilder``/``OscBundleBuilder``. The last line is the ratio of the time to build one frame
(python-osc / earengine: above 1 means earengine is faster).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import udp  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def ear_shapes(model: Path, n_samples: int) -> dict:
    from earengine.ear.checkpoint import read_config
    from earengine.ear.model import Ear, EarConfig

    ear = Ear(EarConfig.from_dict(read_config(model)["ear"]))
    return {t: (s[0], s[1] if len(s) == 3 else 1, s[-1]) for t, s in ear.tap_shapes(n_samples).items()}


class Receiver(udp.Listener):
    """Every datagram with its arrival (wall clock)."""

    def __init__(self) -> None:
        self.raw: list = []
        super().__init__()

    def datagram(self, data: bytes) -> None:
        self.raw.append((time.time(), data))


def analyse(raw, taps) -> tuple[int, list, float]:
    """Complete frames, the lag of each (s), datagrams per frame."""
    from earengine.osc.wire import decode_packet

    parts = defaultdict(lambda: {"arrival": 0.0, "when": None, "taps": set(), "datagrams": 0})
    for arrival, data in raw:
        seen = set()
        for when, address, args in decode_packet(data):
            if not (address in ("/stream/phase", "/stream/step") or address.startswith("/stream/act/")):
                continue  # shapes, masks, layout: not part of a frame
            frame = args[0]
            f = parts[frame]
            if frame not in seen:
                f["datagrams"] += 1
                seen.add(frame)
            f["arrival"] = max(f["arrival"], arrival)
            if address == "/stream/phase":
                f["when"] = when
            if address.startswith("/stream/act/"):
                f["taps"].add(address[len("/stream/act/"):])
    complete = [f for f in parts.values() if f["taps"] == set(taps)]
    lags = [f["arrival"] - f["when"] for f in complete]
    dpf = statistics.mean(f["datagrams"] for f in complete) if complete else 0.0
    return len(complete), lags, dpf


def python_osc_frame(acts: dict, mode: str, p0: float, p1: float, frame: int, when: float, max_bytes: int) -> list:
    """The same frame built with python-osc, chunked the way the engine chunks it."""
    from pythonosc.osc_bundle_builder import OscBundleBuilder
    from pythonosc.osc_message_builder import OscMessageBuilder

    from earengine.streams.frames import reduce_frame

    per_chunk = (max_bytes - 100) // 5
    out = []
    for tap, a in acts.items():
        values = reduce_frame(a, p0, p1, mode)
        for start in range(0, values.size, per_chunk):
            chunk = values[start:start + per_chunk]
            msg = OscMessageBuilder(address=f"/stream/act/{tap}")
            for v in (frame, start, chunk.size):
                msg.add_arg(int(v))
            for v in chunk.tolist():
                msg.add_arg(float(v), arg_type="f")
            bundle = OscBundleBuilder(when)
            bundle.add_content(msg.build())
            out.append(bundle.build().dgram)
    return out


def main(argv=None) -> int:
    from earengine.streams.hub import StreamHub
    from earengine.streams.packing import BundlePacker
    from earengine.streams.position import Position
    from earengine.params import default_registry
    from earengine.streams.activations import ActivationSet

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "ear-default"))
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--fps", type=float, default=60.0)
    args = ap.parse_args(argv)

    loop_s = 4.0
    shapes = ear_shapes(Path(args.model), int(loop_s * 44100))
    rng = np.random.default_rng(0)
    acts = {t: rng.standard_normal(s).astype(np.float32) for t, s in shapes.items()}
    print(f"stream: all {len(acts)} taps of {Path(args.model).name}, {args.fps:g} fps, 1,400-byte datagrams, "
          f"{args.seconds:g} s per reduction, loopback UDP")
    build_ratio = []
    for mode in ("channel", "channel_freq", "raw"):
        registry = default_registry()
        registry.update({"/stream/fps": args.fps, "/stream/reduce": mode, "/stream/lookahead_ms": 0.0})
        pos = Position(time.time(), 0.0, loop_s, key=1, acts=ActivationSet(1, 1, 0.0, acts))
        rx = Receiver()
        with StreamHub(registry, position=lambda: pos) as hub:
            hub.add(rx.dest)
            time.sleep(0.5)
            rx.raw.clear()
            t0 = time.time()
            time.sleep(args.seconds)
            elapsed = time.time() - t0
            late = hub.counts["late"]
        rx.close()
        n, lags, dpf = analyse(rx.raw, acts)
        lags_ms = sorted(1000 * x for x in lags)
        p99 = lags_ms[int(0.99 * (len(lags_ms) - 1))] if lags_ms else float("nan")
        values = sum(a.shape[0] * (1 if mode == "channel" else a.shape[1]) for a in acts.values())
        print(f"{mode:>12}: {n / elapsed:5.1f} frames/s complete of {args.fps:g} asked ({late} skipped late), "
              f"{values} values and {dpf:.1f} datagrams a frame, lag behind the sound median "
              f"{statistics.median(lags_ms):.2f} ms, p99 {p99:.2f} ms")
        # build time of one frame: earengine's packer against python-osc
        reps = 30
        t = time.perf_counter()
        for k in range(reps):
            packer = BundlePacker(1400, time.time())
            hub.frame_messages(k, time.time(), 1 / args.fps, tuple(acts), mode, packer)
            packer.finish()
        ours = (time.perf_counter() - t) / reps
        t = time.perf_counter()
        for k in range(reps):
            python_osc_frame(acts, mode, 0.3, 0.3 + 1 / args.fps / loop_s, k, time.time(), 1400)
        peer = (time.perf_counter() - t) / reps
        print(f"{'':>12}  building a frame: earengine {ours * 1000:.2f} ms, python-osc {peer * 1000:.2f} ms")
        build_ratio.append((mode, peer / ours))
    print("ratio python-osc/earengine frame build time: " + ", ".join(f"{m}: {r:.1f}x" for m, r in build_ratio))
    return 0


if __name__ == "__main__":
    sys.exit(main())
