"""Benchmark: OSC set→applied latency and loss under a flood, the engine against bare python-osc.

Run: ``.venv/bin/python bench/osc_latency.py [--seconds 3] [--rates 1000,10000] [--repeats 3]``

One sender process offers a stream of ``/clock/bpm <value>`` messages at a fixed rate (paced by
sleeping until about a millisecond before each message is due and yielding the CPU in between),
and sends every message to two receivers, each in a process of its own, one after the other (the
order alternates message by message):

- ``engine``: earengine's :class:`~earengine.control.osc.OscServer` and
  :class:`~earengine.control.osc.OscRouter` on a registry. A message is *applied* when the
  registry notifies its subscribers of the new value: validated, recorded, visible to the synth.
- ``python-osc``: ``pythonosc.osc_server.BlockingOSCUDPServer`` with a ``Dispatcher`` (or the
  ``ThreadingOSCUDPServer`` with ``--peer threading``). A message is applied when its handler runs.

The value carries the message's sequence number (``bpm = 20 + seq / 1000``). The sender keeps the
``time.monotonic()`` at which each datagram left for each receiver, the receivers keep the
``time.monotonic()`` at which each sequence number was applied (CLOCK_MONOTONIC is one clock for
every process on Linux). Latency is applied minus sent; a message not applied within a second after
the stream ends is lost. Each (rate) is measured ``--repeats`` times; the figures printed are
medians over the repeats, with the range in brackets.

The last line is the ratio summary (engine / python-osc: below 1 means the engine is better).
The exit status is 1 if the engine lost any message at 10,000 messages/s.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import statistics
import struct
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ADDRESS = "/clock/bpm"
BPM_BASE = 20.0
BPM_STEP = 0.001  # one sequence number; float32 resolves it at every tempo the sequence reaches
_PREFIX = b"/clock/bpm\x00\x00,f\x00\x00"  # address and type tags, padded to 4 bytes
DRAIN_S = 1.0
ENGINE, PEER = 0, 1
NAMES = ("engine", "python-osc")


def encode(seq: int) -> bytes:
    """``/clock/bpm f`` for a sequence number, encoded here so both receivers get the same bytes."""
    return _PREFIX + struct.pack(">f", BPM_BASE + seq * BPM_STEP)


def decode(value: float) -> int:
    return int(round((value - BPM_BASE) / BPM_STEP))


# ---------------------------------------------------------------------------------------------
# Processes (module-level functions: the spawn start method imports this file in each child)
# ---------------------------------------------------------------------------------------------
def run_engine(port, applied, ready, stop) -> None:
    """earengine's OSC server on a registry; the subscriber stamps each applied value."""
    from earengine.control.osc import OscRouter, OscServer
    from earengine.params import default_registry

    registry = default_registry()
    clock = time.monotonic
    size = len(applied)

    def on_change(change) -> None:
        if change.address == ADDRESS:
            seq = decode(change.value)
            if 0 <= seq < size:
                applied[seq] = clock()

    registry.subscribe(on_change)
    router = OscRouter(registry)
    with OscServer(router, host="127.0.0.1", port=0) as server:
        port.value = server.address[1]
        ready.set()
        stop.wait()
    router.close()


def run_python_osc(port, applied, ready, stop, threading_server: bool) -> None:
    """A bare python-osc server whose handler stamps each value."""
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import BlockingOSCUDPServer, ThreadingOSCUDPServer

    clock = time.monotonic
    size = len(applied)

    def on_bpm(address: str, value: float) -> None:
        seq = decode(value)
        if 0 <= seq < size:
            applied[seq] = clock()

    dispatcher = Dispatcher()
    dispatcher.map(ADDRESS, on_bpm)
    kind = ThreadingOSCUDPServer if threading_server else BlockingOSCUDPServer
    server = kind(("127.0.0.1", 0), dispatcher)
    port.value = server.server_address[1]
    threading.Thread(target=lambda: (stop.wait(), server.shutdown()), daemon=True).start()
    ready.set()
    server.serve_forever(poll_interval=0.05)
    server.server_close()


def run_sender(ports, first_seq: int, count: int, rate_hz: float, sent_engine, sent_peer, go) -> None:
    """Send ``count`` messages at ``rate_hz`` to both receivers, stamping each datagram."""
    datagrams = [encode(first_seq + i) for i in range(count)]
    dests = [("127.0.0.1", ports[ENGINE]), ("127.0.0.1", ports[PEER])]
    stamps = [sent_engine, sent_peer]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    clock, sendto, yield_cpu = time.monotonic, sock.sendto, os.sched_yield
    period = 1.0 / rate_hz
    go.wait()
    t0 = clock() + 0.01
    for i, data in enumerate(datagrams):
        due = t0 + i * period
        while True:
            left = due - clock()
            if left <= 0:
                break
            if left > 0.0015:
                time.sleep(left - 0.001)
            else:
                yield_cpu()  # let the receivers run while we wait for the next slot
        seq = first_seq + i
        for k in ((ENGINE, PEER) if i % 2 == 0 else (PEER, ENGINE)):
            stamps[k][seq] = clock()
            sendto(data, dests[k])
    sock.close()


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------
def measure(ctx, ports, first_seq: int, count: int, rate_hz: float, sent, applied) -> dict:
    go = ctx.Event()
    sender = ctx.Process(target=run_sender, args=(ports, first_seq, count, rate_hz, sent[ENGINE], sent[PEER], go),
                         name="osc-bench-sender")
    sender.start()
    time.sleep(0.2)  # the child has imported and built its datagrams
    go.set()
    sender.join(timeout=count / rate_hz + 30)
    if sender.exitcode != 0:
        raise RuntimeError(f"the sender failed (exit code {sender.exitcode})")
    time.sleep(DRAIN_S)
    out = {}
    span = slice(first_seq, first_seq + count)
    for k in (ENGINE, PEER):
        t_sent = np.frombuffer(sent[k], dtype=np.float64)[span]
        t_done = np.frombuffer(applied[k], dtype=np.float64)[span]
        got = t_done > 0
        lat_ms = (t_done[got] - t_sent[got]) * 1000.0
        offered_s = float(t_sent.max() - t_sent.min()) or 1.0
        out[NAMES[k]] = {
            "sent": count,
            "received": int(got.sum()),
            "lost": int(count - got.sum()),
            "p50_ms": float(np.percentile(lat_ms, 50)) if lat_ms.size else float("nan"),
            "p99_ms": float(np.percentile(lat_ms, 99)) if lat_ms.size else float("nan"),
            "rate_hz": (count - 1) / offered_s,
        }
    return out


def _med(runs: list[dict], key: str) -> tuple[float, float, float]:
    values = [r[key] for r in runs]
    return statistics.median(values), min(values), max(values)


def _ratio(a: float, b: float) -> str:
    if b == 0:
        return "n/a (0/0)" if a == 0 else "inf"
    return f"{a / b:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each stream (default 3)")
    parser.add_argument("--rates", default="1000,10000", help="messages per second, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="measures per rate; medians are printed")
    parser.add_argument("--peer", choices=("blocking", "threading"), default="blocking",
                        help="python-osc server class to compare with (default: BlockingOSCUDPServer)")
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    if args.seconds <= 0 or args.repeats < 1 or not rates or min(rates) <= 0:
        parser.error("--seconds, --repeats and every rate must be > 0")

    counts = [max(1, int(round(rate * args.seconds))) for rate in rates]
    total = sum(counts) * args.repeats
    if decode(400.0) < total:
        parser.error(f"{total} messages do not fit the sequence range of /clock/bpm; send fewer")
    ctx = mp.get_context("spawn")
    sent = [ctx.RawArray("d", total) for _ in range(2)]
    applied = [ctx.RawArray("d", total) for _ in range(2)]
    ports = ctx.RawArray("i", 2)
    stop = ctx.Event()
    readies = [ctx.Event(), ctx.Event()]
    engine_port, peer_port = ctx.RawValue("i", 0), ctx.RawValue("i", 0)
    receivers = [
        ctx.Process(target=run_engine, args=(engine_port, applied[ENGINE], readies[ENGINE], stop),
                    name="osc-bench-engine"),
        ctx.Process(target=run_python_osc, args=(peer_port, applied[PEER], readies[PEER], stop,
                                                 args.peer == "threading"), name="osc-bench-python-osc"),
    ]
    peer_label = "ThreadingOSCUDPServer" if args.peer == "threading" else "BlockingOSCUDPServer"
    print(f"osc latency: /clock/bpm streams of {args.seconds:g} s at {', '.join(f'{r:g}' for r in rates)} msg/s, "
          f"{args.repeats} repeat(s); engine OscServer+OscRouter vs python-osc {peer_label}, "
          f"sender and each receiver in its own process, on {os.cpu_count()} CPU(s)")
    results: dict[float, list[dict]] = {rate: [] for rate in rates}
    try:
        for proc in receivers:
            proc.start()
        for ready, proc in zip(readies, receivers):
            if not ready.wait(30):
                raise RuntimeError(f"{proc.name} did not start")
        ports[ENGINE], ports[PEER] = engine_port.value, peer_port.value
        first = 0
        for repeat in range(args.repeats):
            for rate, count in zip(rates, counts):
                run = measure(ctx, ports, first, count, rate, sent, applied)
                first += count
                results[rate].append(run)
                e, p = run["engine"], run["python-osc"]
                print(f"  repeat {repeat + 1} at {rate:g}/s: engine lost {e['lost']}, p99 {e['p99_ms']:.3f} ms; "
                      f"python-osc lost {p['lost']}, p99 {p['p99_ms']:.3f} ms")
    finally:
        stop.set()
        for proc in receivers:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)

    summary: dict[float, dict[str, dict]] = {}
    for rate in rates:
        summary[rate] = {}
        for name in NAMES:
            runs = [r[name] for r in results[rate]]
            p50, p50_lo, p50_hi = _med(runs, "p50_ms")
            p99, p99_lo, p99_hi = _med(runs, "p99_ms")
            lost, lost_lo, lost_hi = _med(runs, "lost")
            sent_n = runs[0]["sent"]
            received = statistics.median(r["received"] for r in runs)
            offered = statistics.median(r["rate_hz"] for r in runs)
            summary[rate][name] = {"p50": p50, "p99": p99, "lost": lost, "lost_total": sum(r["lost"] for r in runs)}
            print(f"{name:10s} at {rate:>6g}/s (offered {offered:,.0f}/s): sent {sent_n}, received {received:g}, "
                  f"lost {lost:g} [{lost_lo:g}-{lost_hi:g}], p50 {p50:.3f} ms [{p50_lo:.3f}-{p50_hi:.3f}], "
                  f"p99 {p99:.3f} ms [{p99_lo:.3f}-{p99_hi:.3f}]")
    parts = []
    for rate in rates:
        e, p = summary[rate]["engine"], summary[rate]["python-osc"]
        parts.append(f"at {rate:g}/s p50 {_ratio(e['p50'], p['p50'])}, p99 {_ratio(e['p99'], p['p99'])}, "
                     f"loss {_ratio(e['lost'], p['lost'])} ({e['lost']:g} vs {p['lost']:g})")
    flood = summary.get(10000.0)
    failed = flood is not None and flood["engine"]["lost_total"] > 0
    if failed:
        print(f"FAIL: the engine lost {flood['engine']['lost_total']} message(s) at 10000/s over all repeats")
    print("ratio engine/python-osc (median of repeats; below 1 is better): " + "; ".join(parts))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
