"""The audio input: its channels mixed to mono, into an :class:`~earengine.listen.ring.InputRing`.

pyo's ``Input`` streams are averaged to one channel (a source on both channels keeps its level)
and filled into a small circular pyo table (``TableFill``). A per-buffer callback of the audio
server copies what the table gained since the last buffer into the shared ring, stamped with the
wall-clock time it was heard and the loop player's clock sample it lines up with, and notes the
ring position of every bar line of that clock (captures start there). A copy of a buffer's
samples and one seqlock write per buffer: no lock, no allocation beyond the copy, nothing that
waits.

Alignment: the callback runs at the start of a buffer, after the loop player's clock has ticked
over it, when the table holds the input up to the end of the previous buffer. Input and output
of one device cycle belong together (a JACK client playing into the engine is read in the same
cycle), so the ring's head lines up with the start of the buffer the clock just ticked over.
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np

from earengine.listen.ring import InputRing

__all__ = ["AudioInput"]

#: Samples of the pyo table the input is filled into (several buffers: the callback empties it
#: every buffer).
TABLE_SAMPLES = 8192


class AudioInput:
    """Feeds the input's mono mix into ``ring``, once per buffer, from the audio thread.

    Parameters
    ----------
    audio : AudioServer
        A started server with inputs (``AudioServer(inputs=…)``).
    ring : InputRing
        Where the samples go (its rate is the server's).
    clock : BarClock, optional
        The loop player's clock (the player's callback must run before this one): its samples
        and bar lines are noted against the ring's positions.
    """

    def __init__(self, audio, ring: InputRing, *, clock=None) -> None:
        import pyo

        self.audio = audio
        self.ring = ring
        self.clock = clock
        n = max(1, audio.inputs)
        self._inputs = pyo.Input(chnl=list(range(n)))
        self._mono = pyo.Mix(self._inputs, voices=1, mul=1.0 / n)
        self._table = pyo.DataTable(size=TABLE_SAMPLES)
        self._fill = pyo.TableFill(self._mono, self._table)
        self._buf = np.asarray(self._table.getBuffer())
        self._pos = 0
        self._beat: Optional[float] = None
        self._samples = 0
        #: (bar, ring position of its first sample) of the newest bar line, set on the audio thread
        self.bar_line: Optional[tuple[int, int]] = None
        #: buffers heard
        self.buffers = 0
        audio.add_callback(self._on_buffer)

    def close(self) -> None:
        self.audio.remove_callback(self._on_buffer)
        self._fill.stop()

    # -- audio thread ---------------------------------------------------------------------------
    def _on_buffer(self) -> None:
        pos = int(self._fill.getCurrentPos())
        last, self._pos = self._pos, pos
        if pos >= last:
            got = self._buf[last:pos]
        else:
            got = np.concatenate((self._buf[last:], self._buf[:pos]))
        n = self.audio.buffersize
        clock = self.clock
        start = self.ring._head + got.shape[0]  # where the buffer the clock just ticked over begins
        clock_sample = clock.samples - n if clock is not None else start
        # the newest input was heard as the previous cycle ran
        self.ring.write(got, time_s=time.time() - n / self.audio.sr, clock_sample=clock_sample)
        self.buffers += 1
        if clock is None:
            return
        beat, bpb = float(clock.beat), clock.beats_per_bar
        prev, self._beat = self._beat, beat
        if prev is None or not clock.playing or beat <= prev:
            return
        bar = int(beat // bpb)
        if bar > int(prev // bpb):  # a bar line fell in the buffer just ticked over: where?
            into = (bar * bpb - prev) / (beat - prev) * n
            self.bar_line = (bar, start + int(round(into)))
