"""The loop player: two buffers, bar-quantized swaps, crossfades, gain ramps and a limiter.

A new loop is prepared off the audio thread (table filled, length fitted to whole bars) and
handed over with :meth:`LoopPlayer.queue`. At the next bar line of the clock, on the audio
thread, the idle slot takes it and starts from its first sample while the playing slot fades out
over ``/loop/xfade``. Loops are read at the rate that makes them last exactly their bars at the
current tempo, so a tempo change resamples the playing loop and keeps it on the grid.

The output passes the limiter of :mod:`earengine.synth.bus`; loop tables are checked finite
before they reach the audio thread, so the output never carries NaN or inf.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from earengine.control.clock import BarClock, BarEvent
from earengine.errors import ParameterError
from earengine.params.registry import Change, Registry
from earengine.synth.bus import OutputBus
from earengine.synth.server import AudioServer

__all__ = ["Loop", "LoopPlayer", "fit_bars", "db_to_amp"]

log = logging.getLogger("earengine.player")


def db_to_amp(gain_db: float) -> float:
    """Decibels to linear amplitude; -80 dB and below is silence."""
    return 0.0 if gain_db <= -80.0 else float(10.0 ** (gain_db / 20.0))


def fit_bars(n_samples: int, *, sr: int, bpm: float, beats_per_bar: int) -> int:
    """Whole number of bars (at least 1) nearest to a loop's duration at this tempo.

    >>> fit_bars(88200, sr=44100, bpm=120.0, beats_per_bar=4)   # 2 s = 1 bar at 120 BPM
    1
    >>> fit_bars(160000, sr=44100, bpm=120.0, beats_per_bar=4)  # 3.6 s -> 2 bars (4 s)
    2
    """
    bar_s = beats_per_bar * 60.0 / bpm
    return max(1, int(round(n_samples / sr / bar_s)))


@dataclass(frozen=True, eq=False)
class Loop:
    """An immutable loop: mono samples at ``sr`` and the number of bars it spans.

    ``samples`` is made read-only; ``source`` says where it came from (a path, ``dream``).
    """

    samples: np.ndarray
    sr: int
    bars: int
    source: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        x = np.ascontiguousarray(self.samples, dtype=np.float32)
        if x.ndim != 1 or x.size < 2:
            raise ParameterError(f"loop samples must be 1-D with at least 2 samples, got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ParameterError("loop samples must be finite (no NaN or inf)")
        if self.bars < 1:
            raise ParameterError(f"bars={self.bars} must be >= 1")
        x.setflags(write=False)
        object.__setattr__(self, "samples", x)

    @property
    def duration_s(self) -> float:
        return self.samples.size / self.sr

    def rendered(self, *, bpm: float, beats_per_bar: int, sr: int) -> np.ndarray:
        """The loop as heard at a tempo: resampled to last exactly ``bars`` bars."""
        n_out = int(round(self.bars * beats_per_bar * 60.0 / bpm * sr))
        pos = np.arange(n_out) * (self.samples.size / n_out)
        idx = np.floor(pos).astype(np.int64)
        frac = (pos - idx).astype(np.float32)
        x = self.samples
        return x[idx] * (1 - frac) + x[(idx + 1) % x.size] * frac


class _Slot:
    """One of the two buffers: a table, a reader and a gain that crossfades."""

    def __init__(self, pyo, server_sr: int, index: int) -> None:
        self.index = index
        self.table = pyo.DataTable(size=2)
        self.gain = pyo.SigTo(0.0, time=0.05)
        # A phasor drives the read position so a loop can start at any phase (dreamed loops keep
        # their place in the bar cycle when they replace each other).
        self.phasor = pyo.Phasor(freq=0.5, phase=0.0)
        self.reader = pyo.Pointer2(self.table, self.phasor, interp=4, autosmooth=False, mul=self.gain)
        self.phasor.stop()
        self.reader.stop()
        self.loop: Optional[Loop] = None
        self.tables: dict[int, object] = {}


class LoopPlayer:
    """Plays loops on the bar grid of its clock. Built on an :class:`AudioServer`.

    Parameters
    ----------
    audio : AudioServer
        A started server.
    registry : Registry
        Supplies ``/clock/*`` and ``/loop/*``; the player follows its changes.
    out : bool
        Send to the outputs through its own limiter (True), or leave :attr:`stereo` for an
        :class:`~earengine.synth.bus.OutputBus` that sums it with other sources.
    """

    def __init__(self, audio: AudioServer, registry: Registry, *, out: bool = True) -> None:
        import pyo

        self.audio = audio
        self.registry = registry
        self.sr = audio.sr
        self.clock = BarClock(
            sr=audio.sr, bpm=registry.get("/clock/bpm"), beats_per_bar=registry.get("/clock/beats_per_bar")
        )
        self.slots = [_Slot(pyo, audio.sr, 0), _Slot(pyo, audio.sr, 1)]
        self.active = 0  # slot index that is (or will be) heard
        self.loops_started = 0
        self.last_event: Optional[BarEvent] = None
        self.loop_starts: list[tuple[int, int, float]] = []  # (bar, clock sample, error) — last 64
        self._pending: Optional[tuple[Loop, object]] = None
        self._tempo: Optional[tuple[float, int]] = None
        self._fade_done_at: Optional[int] = None
        self._lock = threading.Lock()  # guards _pending between queue() callers only
        self._retired: list = []  # tables replaced on the audio thread, freed off it
        self._origin_bar: Optional[int] = None  # bar where the current sequence of loops began
        self._origin_error = 0.0  # how far from that bar line (samples) its first loop started

        self.master = pyo.SigTo(db_to_amp(registry.get("/loop/gain")), time=self._ramp_s("/loop/gain"))
        self.mute = pyo.SigTo(0.0 if registry.get("/loop/mute") else 1.0, time=self._ramp_s("/loop/mute"))
        mix = pyo.Mix([s.reader for s in self.slots], voices=1)
        self._pre = pyo.Sig(mix, mul=self.master * self.mute)
        # one stream per output channel, so the engine's bus can sum it with other sources
        self.stereo = pyo.Sig(self._pre, mul=[1.0] * audio.nchnls)
        self.bus = OutputBus(audio, [self.stereo]) if out else None
        self._sub = registry.subscribe(self._on_change)
        audio.add_callback(self._on_buffer)

    def close(self) -> None:
        self._sub.close()
        self.audio.remove_callback(self._on_buffer)
        if self.bus is not None:
            self.bus.close()

    def _ramp_s(self, address: str) -> float:
        return max(1e-4, self.registry.spec(address).ramp_ms / 1000.0)

    # -- any thread ---------------------------------------------------------------------------
    def make_loop(self, samples: np.ndarray, *, sr: int, source: str = "", bars: Optional[int] = None) -> Loop:
        """A loop fitted to whole bars at the current tempo (or to ``bars`` if given)."""
        if bars is None:
            bars = fit_bars(len(samples), sr=sr, bpm=self.clock.bpm, beats_per_bar=self.clock.beats_per_bar)
        return Loop(samples, sr, bars, source)

    def queue(self, loop: Loop, *, keep_phase: bool = False) -> None:
        """Play ``loop`` from the next bar line on. Off the audio thread: builds its table.

        With ``keep_phase`` the loop enters at the bar it would be at had it been playing since
        the first loop of the sequence (dreamed loops replacing each other); otherwise it starts
        from its first sample and starts a new sequence.
        """
        import pyo

        with self._lock:
            pending = self._pending
            if pending is not None and pending[2] and keep_phase and pending[0].samples.size == loop.samples.size:
                # Replace a dreamed loop that has not started yet in place: no new table, so the
                # engine allocates one table per bar, not one per optimizer step. Should the bar
                # line take it mid-copy, it plays two successive dreams spliced, which sound alike.
                np.asarray(pending[1].getBuffer())[:] = loop.samples
                self._pending = (loop, pending[1], True)
                return
        table = pyo.DataTable(size=loop.samples.size)
        np.asarray(table.getBuffer())[:] = loop.samples
        with self._lock:
            self._pending = (loop, table, keep_phase)
            # free tables the audio thread retired more than one swap ago
            del self._retired[:-2]

    @property
    def current(self) -> Optional[Loop]:
        return self.slots[self.active].loop

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def heard(self) -> Optional[np.ndarray]:
        """The playing loop as heard now (resampled to its bars at the current tempo)."""
        loop = self.current
        if loop is None:
            return None
        return loop.rendered(bpm=self.clock.bpm, beats_per_bar=self.clock.beats_per_bar, sr=self.sr)

    def _on_change(self, change: Change) -> None:
        a = change.address
        if a == "/loop/gain":
            self.master.value = db_to_amp(change.value)
        elif a == "/loop/mute":
            self.mute.value = 0.0 if change.value else 1.0
        elif a in ("/clock/bpm", "/clock/beats_per_bar"):
            # applied on the audio thread at the next buffer, together with the readers' rates
            self._tempo = (self.registry.get("/clock/bpm"), self.registry.get("/clock/beats_per_bar"))

    # -- audio thread -------------------------------------------------------------------------
    def _rate(self, loop: Loop) -> float:
        return 1.0 / (loop.bars * self.clock.bar_s)

    def _on_buffer(self) -> None:
        tempo, self._tempo = self._tempo, None
        if tempo is not None:
            self.clock.set_tempo(*tempo)
            for slot in self.slots:
                if slot.loop is not None:
                    slot.phasor.freq = self._rate(slot.loop)
        n = self.audio.buffersize
        if self._fade_done_at is not None and self.clock.samples >= self._fade_done_at:
            idle = self.slots[1 - self.active]
            idle.reader.stop()
            idle.phasor.stop()
            idle.loop = None
            self._fade_done_at = None
        event = self.clock.tick(n)
        if event is None:
            return
        self.last_event = event
        pending, self._pending = self._pending, None
        if pending is not None:
            self._start(pending, event)

    def _start(self, pending: tuple, event: BarEvent) -> None:
        loop, table, keep_phase = pending
        if not keep_phase or self._origin_bar is None:
            self._origin_bar, self._origin_error = event.bar, event.error_samples
        # Bar lines are taken at buffer boundaries, each off the true line by its own error: a
        # loop that keeps the phase also takes the difference, or every swap would jump by it.
        offset = (event.error_samples - self._origin_error) / (loop.bars * self.clock.bar_s * self.sr)
        phase = (((event.bar - self._origin_bar) % loop.bars) / loop.bars + offset) % 1.0
        xfade_s = self.registry.get("/loop/xfade") / 1000.0
        old = self.slots[self.active]
        new = self.slots[1 - self.active] if old.loop is not None else old
        new.reader.stop()
        new.phasor.stop()
        new.reader.table = table
        # The old table may still be referenced inside pyo until the reader has moved on: keep it
        # alive here; it is released from queue(), off the audio thread.
        self._retired.append(new.table)
        new.table = table
        new.loop = loop
        new.phasor.freq = self._rate(loop)
        new.phasor.phase = phase
        new.phasor.reset()
        fade = max(1.0 / self.sr, xfade_s)
        new.gain.time = fade
        old.gain.time = fade
        if new is not old:
            old.gain.value = 0.0
            self._fade_done_at = self.clock.samples + int(fade * self.sr) + self.audio.buffersize
        new.gain.value = 1.0
        new.phasor.play()
        new.reader.play()
        self.active = new.index
        self.loops_started += 1
        self.loop_starts = (self.loop_starts + [(event.bar, self.clock.samples - self.audio.buffersize, event.error_samples)])[-64:]
