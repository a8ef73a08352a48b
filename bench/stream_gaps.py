"""Benchmark: how many stream frames carry activations, while the engine dreams and while it holds.

Run: ``.venv/bin/python bench/stream_gaps.py [--seconds 10] [--model PATH] [--fps 30] [--audio null]
[--set ADDRESS=VALUE ...]``

A real ``earengine run`` (subprocess, ``--audio null`` by default: real time, no sound card; the
shipped ear unless ``--model``) streams the default activation stream to a UDP receiver on
loopback, as a user's ``/stream/add 127.0.0.1:<port>`` would. The receiver counts frames (each
``/stream/phase``) and the frames that carry activations (at least one ``/stream/act/<tap>``
message) for ``--seconds`` while the engine dreams, then holds the loop (``/opt/run 0``), waits
until the loop playing is the last one dreamed, and counts again.

Every frame of the loop that is playing should carry that loop's activations, dreaming or not:
the share while dreaming should be that while holding. The last line is the ratio of the shares
(dreaming / held: 1 means no gaps while dreaming).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import udp  # noqa: E402
from earengine.osc.wire import decode_packet  # noqa: E402


class Receiver(udp.Listener):
    """A UDP socket on loopback that counts frames and the frames with activations, on a thread."""

    def __init__(self) -> None:
        self.frames: set[int] = set()
        self.with_acts: set[int] = set()
        super().__init__()

    def datagram(self, data: bytes) -> None:
        for _, address, args in decode_packet(data):
            if address == "/stream/phase":
                self.frames.add(args[0])
            elif address.startswith("/stream/act/"):
                self.with_acts.add(args[0])

    def count(self, seconds: float) -> tuple[int, int]:
        """Frames, and frames with activations, that arrive over the next ``seconds``."""
        frames0, acts0 = set(self.frames), set(self.with_acts)
        time.sleep(seconds)
        frames = set(self.frames) - frames0
        return len(frames), len((set(self.with_acts) - acts0) & frames)


def main(argv=None) -> int:
    from earengine.process import EngineProcess

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="ear checkpoint folder (default: the engine's, the shipped ear)")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds counted while dreaming, and again held")
    ap.add_argument("--fps", type=float, default=30.0, help="/stream/fps (default 30, the parameter's default)")
    ap.add_argument("--audio", default="null", help="earengine run --audio (default null)")
    ap.add_argument("--set", action="append", default=[], metavar="ADDRESS=VALUE",
                    help="a parameter at start, as earengine run --set (repeatable)")
    ap.add_argument("--ready", type=float, default=120.0, help="seconds to wait for the worker's first loop")
    args = ap.parse_args(argv)

    run = ["--audio", args.audio, "--status-every", "1000", "--set", f"/stream/fps={args.fps:g}"]
    if args.model:
        run += ["--ear", args.model]
    for value in args.set:
        run += ["--set", value]
    rx = Receiver()
    with EngineProcess(run, ready_s=60.0) as engine:
        osc = udp.Asker(engine.address)
        send = osc.send

        def ask(address: str, reply: str, *values) -> tuple:
            return tuple(osc.need(address, *values, reply=reply, wait_s=2.0))

        send("/stream/add", rx.dest)
        deadline = time.monotonic() + args.ready
        while not rx.with_acts:  # the worker loads the ear, dreams, and its first loop starts at a bar line
            if time.monotonic() > deadline:
                print(f"no frame with activations within {args.ready:g} s; engine said:\n{engine.output()}")
                return 1
            time.sleep(0.1)
        bars, bpm, beats = (ask("/get", addr, addr)[0] for addr in ("/loop/bars", "/clock/bpm", "/clock/beats_per_bar"))
        loop_s = bars * beats * 60.0 / bpm
        print(f"stream_gaps: {Path(args.model).name if args.model else 'shipped ear'}, {args.fps:g} fps, "
              f"{loop_s:g} s loops, {args.seconds:g} s counted each way, loopback UDP, --audio {args.audio}")
        dreaming = rx.count(args.seconds)
        steps_per_s = float(ask("/status", "/status.reply")[2])
        send("/opt/run", 0)
        # the loop queued last enters at the next bar line; a step in flight may still add one
        # more: wait two loops, then count
        time.sleep(2 * loop_s + 0.5)
        held = rx.count(args.seconds)
        send("/stream/remove", "all")
    rx.close()
    osc.sock.close()
    shares = []
    for label, (frames, acts) in (("dreaming", dreaming), ("held", held)):
        share = acts / frames if frames else 0.0
        shares.append(share)
        print(f"{label:9s} {acts / args.seconds:5.1f} frames/s with activations of {frames / args.seconds:5.1f} "
              f"({100 * share:5.1f} %)")
    print(f"dream: {steps_per_s:.1f} steps/s ({steps_per_s * loop_s:.0f} loops dreamed while one plays)")
    print(f"ratio dreaming/held share: {shares[0] / shares[1] if shares[1] else 0.0:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
