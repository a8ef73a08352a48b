"""Benchmark: parsing MIDI input bytes, earengine's MidiParser against mido's Parser.

Run: ``.venv/bin/python bench/midi_parse.py [--messages 20000] [--repeats 5]``

Both parsers read the same byte streams, delivered in the pieces a port delivers (one message,
with whatever realtime bytes came with it, per read), and hand on what the control takes: a
tuple of ints per message (for mido: ``tuple(msg.bytes())``; the time without that step is
printed too). Two streams, from one seeded generator:

- ``controller``: what a controller and a clock send: running status wherever it applies, a
  clock byte (0xF8) between any two bytes now and then, a sysex block now and then.
- ``plain``: the same channel messages, every status byte written, clock bytes only between
  messages and no sysex: a stream mido's Parser reads whole, so that its speed is measured on
  a fair footing.

For each parser and stream: the channel messages recovered (of those sent) and the best time
per message over ``--repeats`` runs. The last line is the ratio (mido / ours: above 1 means
ours is faster) on the plain stream, and how many of the controller's messages mido recovers.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from earengine.midi.wire import DATA_BYTES, MidiParser  # noqa: E402

KINDS = (0xB0, 0xB0, 0xB0, 0x90, 0x80, 0xE0, 0xC0, 0xD0)


def streams(n: int, seed: int = 13) -> tuple[list[bytes], list[bytes], list[tuple]]:
    """(controller pieces, plain pieces, the channel messages sent)."""
    rng = np.random.default_rng(seed)
    messages = []
    for _ in range(n):
        status = int(rng.choice(KINDS)) | int(rng.integers(0, 4))
        messages.append((status,) + tuple(int(b) for b in rng.integers(0, 128, DATA_BYTES[status & 0xF0])))
    controller, plain, running = [], [], None
    for msg in messages:
        body = list(msg[1:]) if msg[0] == running else list(msg)
        running = msg[0]
        piece = []
        for byte in body:
            if rng.random() < 0.1:
                piece.append(0xF8)
            piece.append(byte)
        if rng.random() < 0.01:
            piece = [0xF0, *rng.integers(0, 128, 12).tolist(), 0xF7] + list(msg)
            running = msg[0]
        controller.append(bytes(piece))
        plain.append(bytes(([0xF8] if rng.random() < 0.1 else []) + list(msg)))
    return controller, plain, messages


def ours(pieces: list[bytes]) -> list[tuple]:
    parser, out = MidiParser(), []
    for piece in pieces:
        out += parser.feed(piece)
    return out


def theirs(mido, to_tuple: bool):
    def run(pieces: list[bytes]) -> list:
        parser, out = mido.Parser(), []
        for piece in pieces:
            parser.feed(piece)
            if to_tuple:
                out += [tuple(m.bytes()) for m in parser]
            else:
                out += list(parser)
        return out
    return run


def best_us(fn, pieces, n: int, repeats: int) -> tuple[float, list]:
    best, out = float("inf"), []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(pieces)
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6, out


def recovered(out: list[tuple], sent: list[tuple]) -> int:
    """How many of the sent channel messages came out (each counted once)."""
    return sum((Counter(m for m in out if m[0] < 0xF0) & Counter(sent)).values())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    import mido

    controller, plain, sent = streams(args.messages)
    n = len(sent)
    print(f"{n} channel messages; {sum(map(len, controller))} bytes as a controller sends them, "
          f"{sum(map(len, plain))} written plain")
    results = {}
    for stream_name, pieces in (("controller", controller), ("plain", plain)):
        runners = (("earengine", ours, False), ("mido", theirs(mido, True), False),
                   ("mido, no tuples", theirs(mido, False), True))
        for name, fn, messages in runners:
            us, out = best_us(fn, pieces, n, args.repeats)
            got = recovered([tuple(m.bytes()) for m in out] if messages else out, sent)
            results[stream_name, name] = (us, got)
            print(f"{stream_name:>10}  {name:<16} {us:7.2f} µs/message  {got:6d}/{n} messages recovered")
    (ours_us, _), (mido_us, _) = results["plain", "earengine"], results["plain", "mido"]
    mido_got = results["controller", "mido"][1]
    print(f"mido / ours: {mido_us / ours_us:.2f}x the time per message (plain stream); "
          f"mido recovers {mido_got}/{n} ({100 * mido_got / n:.0f}%) of the controller's messages, ours "
          f"{results['controller', 'earengine'][1]}/{n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
