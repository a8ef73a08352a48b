"""Test helpers for streams: a real UDP receiver that records every datagram and reassembles frames."""

import socket
import threading
import time
from collections import defaultdict

import numpy as np

from earengine.osc.wire import decode_packet


class Receiver:
    """Binds a loopback UDP port and records (arrival, size, timetag, address, args) on a thread."""

    def __init__(self, *, read=True, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.items = []
        self.sizes = []
        self._stop = False
        self._thread = None
        if read:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    @property
    def dest(self):
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _run(self):
        while not self._stop:
            try:
                data, _ = self.sock.recvfrom(65536)
            except (socket.timeout, OSError):
                continue
            now = time.time()
            self.sizes.append(len(data))
            for when, address, args in decode_packet(data):
                self.items.append((now, when, address, args))

    def wait_for(self, predicate, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if predicate(self):
                return True
            time.sleep(0.02)
        return False

    def addresses(self):
        return {a for _, _, a, _ in self.items}

    def close(self):
        self._stop = True
        if self._thread is not None:
            self._thread.join(timeout=1)
        self.sock.close()


def frames(items):
    """Reassemble frames: {frame: {"phase", "when", "arrival", "step", "acts": {tap: ndarray}}},
    checking that chunks tile each array exactly once."""
    out = defaultdict(lambda: {"acts": {}, "chunks": defaultdict(list)})
    for arrival, when, address, args in items:
        if address == "/stream/phase":
            f = out[args[0]]
            f["phase"], f["when"], f["arrival"] = args[1], when, arrival
        elif address == "/stream/step":
            out[args[0]]["step"] = (args[1], args[2])
        elif address.startswith("/stream/act/"):
            frame, start, count = args[:3]
            values = args[3:]
            assert len(values) == count, (address, count, len(values))
            out[frame]["chunks"][address[len("/stream/act/"):]].append((start, values))
    incomplete = []
    for number, f in out.items():
        for tap, chunks in f.pop("chunks").items():
            chunks.sort()
            pos = 0
            for start, values in chunks:
                if start != pos:  # UDP may lose a datagram on a loaded machine: skip that frame
                    incomplete.append(number)
                    break
                pos += len(values)
            f["acts"][tap] = np.array([v for _, vals in chunks for v in vals], dtype=np.float32)
    for number in incomplete:
        out.pop(number, None)
    return dict(out)


def arrays(items, prefix, sizes=None):
    """Latest complete array per tap of messages ``<prefix><tap> <frame> <start> <count> values``.

    Chunks are grouped by frame; a frame's array counts only when its chunks tile it from 0 without
    gaps and, for taps named in ``sizes`` (tap -> values), reach that size. A datagram lost on a
    loaded machine, or chunks recorded only in part, then leave the tap out instead of giving a
    short array: repeated announcements complete it later.
    """
    parts = defaultdict(lambda: defaultdict(dict))
    for _, _, address, args in items:
        if address.startswith(prefix):
            parts[address[len(prefix):]][args[0]][args[1]] = args[3:]
    out = {}
    for tap, by_frame in parts.items():
        for frame in sorted(by_frame, reverse=True):
            chunks, pos = by_frame[frame], 0
            while pos in chunks and chunks[pos]:
                pos += len(chunks[pos])
            if pos != sum(len(v) for v in chunks.values()) or 0 not in chunks:
                continue
            if sizes is not None and tap in sizes and pos != sizes[tap]:
                continue
            out[tap] = np.array([v for start in sorted(chunks) for v in chunks[start]], dtype=np.float32)
            break
    return out
