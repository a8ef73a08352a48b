"""An Ableton Link peer in a process of its own (aalink), for the Link tests and the clock benchmark.

It prints its beat grid (pairs of Link's clock, ``CLOCK_MONOTONIC_RAW``, and its beat, with the
tempo, the peer count and whether it plays) and takes tempo, quantum, play and stop on stdin.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np

from tests.helpers.jack import wait_until

PEER = r"""
import asyncio, datetime, sys, time, aalink

async def main():
    link = aalink.Link(float(sys.argv[1]))
    link.quantum = 4
    link.start_stop_sync_enabled = True
    link.enabled = True
    loop = asyncio.get_running_loop()
    commands = asyncio.Queue()
    loop.add_reader(sys.stdin, lambda: commands.put_nowait(sys.stdin.readline()))
    while True:
        a = time.clock_gettime(time.CLOCK_MONOTONIC_RAW)
        beat = link.beat
        b = time.clock_gettime(time.CLOCK_MONOTONIC_RAW)
        print(f"grid {0.5 * (a + b):.7f} {beat:.7f} {link.tempo:.6f} {link.num_peers} {int(link.playing)}", flush=True)
        while not commands.empty():
            words = commands.get_nowait().split()
            if not words or words[0] == "quit":
                link.enabled = False
                return
            if words[0] == "tempo":
                link.tempo = float(words[1])
            elif words[0] == "quantum":
                link.quantum = float(words[1])
            elif words[0] == "play":  # start, as a DAW does: its bar 0 on the session's next bar line
                when = link.time + datetime.timedelta(seconds=float(words[1]))
                link.set_is_playing_and_request_beat_at_time(True, when, 0.0)
            elif words[0] == "stop":
                link.playing = False
            print(f"did {words[0]}", flush=True)
        await asyncio.sleep(0.02)

asyncio.run(main())
"""


class LinkPeer:
    """The other Link peer (start/stop sync on, stopped at first): its grid as printed
    (CLOCK_MONOTONIC_RAW, beat, tempo, peers, playing), and ways to set its tempo, start and stop."""

    def __init__(self, bpm: float) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", PEER, str(bpm)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.grid: list[tuple[float, float, float, int, int]] = []
        self.did: list[str] = []  # the commands it has carried out, in order
        threading.Thread(target=self._read, daemon=True).start()
        assert wait_until(lambda: len(self.grid) > 3, 10.0), "the Link peer did not start"

    def _read(self) -> None:
        for line in self.proc.stdout:
            words = line.split()
            if words and words[0] == "grid":
                self.grid.append((float(words[1]), float(words[2]), float(words[3]), int(words[4]), int(words[5])))
            elif words and words[0] == "did":
                self.did.append(words[1])

    def _say(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def set_tempo(self, bpm: float) -> None:
        self._say(f"tempo {bpm}")

    def set_quantum(self, beats: int) -> None:
        """Its bar (the beats its phase counts); its printed beats line up with peers of the same
        quantum. Returns once the peer has its new bar: the grid it prints from then on counts in it."""
        done = self.did.count("quantum")
        self._say(f"quantum {beats}")
        assert wait_until(lambda: self.did.count("quantum") > done, 10.0), "the Link peer did not take its quantum"

    def play(self, after_s: float) -> None:
        """Start the session on its first bar line at least ``after_s`` from now."""
        self._say(f"play {after_s}")

    def stop(self) -> None:
        self._say("stop")

    def beat_at(self, raw_s: float) -> float:
        """The peer's beat at a CLOCK_MONOTONIC_RAW time (its grid samples nearest in time)."""
        g = np.array(self.grid)
        i = int(np.argmin(np.abs(g[:, 0] - raw_s)))
        t, beat, bpm = g[i, 0], g[i, 1], g[i, 2]
        return beat + (raw_s - t) * bpm / 60.0

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=5)
        except Exception:
            self.proc.kill()
            self.proc.wait()
