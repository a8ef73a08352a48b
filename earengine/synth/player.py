"""The loop player: two buffers, bar-quantized swaps, crossfades, gain ramps and a limiter.

A new loop is prepared off the audio thread (table filled, length fitted to whole bars) and
handed over with :meth:`LoopPlayer.queue`. On the audio thread, at the buffer the next bar line
of the clock falls in, the idle slot takes it while the playing slot fades out over
``/loop/xfade``. The new loop enters at the phase that puts its first sample on the bar line
itself, to the sample, not on the edge of the buffer (until the line it plays the end of the
loop, which is what leads into its start).

Loops are read at the rate that makes them last exactly their bars at the clock's tempo of the
moment, the followed source's included, so a tempo change resamples the playing loop and keeps
it on the grid. The player also keeps the loop locked to the clock's position: a drift (a sound
card's clock against a Link session's, a source's small corrections) is pulled in by trimming
the rate by at most :attr:`LoopPlayer.LOCK_MAX_TRIM`; a jump too big to pull in is made good at
the next bar line, where the loop re-enters in place.

When the clock stops (transport), loops fall silent at once; when it plays again they come back
at its first bar line: from their first sample when it is bar 0 (a start), in place otherwise (a
continue from a song position).

The output passes the limiter of :mod:`earengine.synth.bus`; loop tables are checked finite
before they reach the audio thread, so the output never carries NaN or inf.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from earengine.clock.grid import BarClock, BarEvent
from earengine.errors import ParameterError
from earengine.params.registry import Change, Registry
from earengine.synth.bus import OutputBus
from earengine.synth.server import AudioServer
from earengine.units import db_to_amp

__all__ = ["Loop", "LoopPlayer", "fit_bars"]

log = logging.getLogger("earengine.player")


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


def _fill(table, samples: np.ndarray) -> None:
    """Write a loop into a pyo table, guard point included.

    pyo keeps one sample after the table's end, a copy of its first, so that reading across
    the wrap interpolates into the loop's start; a write through the buffer view leaves it at 0
    (every wrap would then dip toward silence), and a table operation (adding 0) sets it again.
    """
    np.asarray(table.getBuffer())[:] = samples
    table.add(0.0)


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
        # The phasor's position at the start of the coming buffer and the rate it was given,
        # followed here as pyo advances it (in double precision, as pyo does), so the player
        # knows where the loop is without asking the audio engine.
        self.phase = 0.0
        self.freq = 0.0


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

    #: Time constant (s) over which a drift of the loop from the clock's position is pulled in.
    LOCK_TAU_S = 0.25
    #: A drift is pulled in once it passes this (s), then down to a sample: a source's tiny
    #: corrections do not wobble the pitch.
    LOCK_DEADBAND_S = 0.0002
    #: Largest rate trim (relative) the lock applies: 0.2 % is 3.5 cents, and takes in 2 ms a second.
    LOCK_MAX_TRIM = 0.002
    #: A drift beyond this (s) is a jump (of the source, or of the sound card's time lost in an
    #: xrun) and would take the trim seconds to pull in: the loop re-enters in place at the next
    #: bar line instead, crossfaded like any new loop.
    RESYNC_S = 0.005

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
        self.loop_starts: list[tuple[int, int, float]] = []  # (bar, clock sample, error) — last 64
        self._pending: Optional[tuple[Loop, object]] = None
        self._tempo: Optional[tuple[float, int]] = None
        self._fade_done_at: Optional[int] = None
        self._lock = threading.Lock()  # guards _pending between queue() callers only
        self._retired: list = []  # tables replaced on the audio thread, freed off it
        self._origin_bar: Optional[int] = None  # bar where the current sequence of loops began
        self._held = False  # the clock stopped: loops are silent until its next bar line
        self._resync = False  # the loop is off the clock's position: re-enter at the next bar line
        self._locking = False  # pulling a drift in

        self.master = pyo.SigTo(db_to_amp(registry.get("/loop/gain")), time=self._ramp_s("/loop/gain"))
        self.mute = pyo.SigTo(0.0 if registry.get("/loop/mute") else 1.0, time=self._ramp_s("/loop/mute"))
        mix = pyo.Mix([s.reader for s in self.slots], voices=1)
        self._pre = pyo.Sig(mix, mul=self.master * self.mute)
        # one stream per output channel, so the engine's bus can sum it with other sources
        self.stereo = pyo.Sig(self._pre, mul=[1.0] * audio.nchnls)
        self.bus = OutputBus(audio, [self.stereo]) if out else None
        self._sub = registry.bind({
            "/loop/gain": self._on_gain,
            "/loop/mute": self._on_mute,
            "/clock/bpm": self._on_tempo,
            "/clock/beats_per_bar": self._on_tempo,
        })
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
                _fill(pending[1], loop.samples)
                self._pending = (loop, pending[1], True)
                return
        table = pyo.DataTable(size=loop.samples.size)
        _fill(table, loop.samples)
        with self._lock:
            self._pending = (loop, table, keep_phase)
            # free tables the audio thread retired more than one swap ago
            del self._retired[:-2]

    @property
    def current(self) -> Optional[Loop]:
        return self.slots[self.active].loop

    @property
    def phase(self) -> float:
        """Where the playing loop is, in [0, 1): the value its read position reached at the end
        of the last audio buffer (read it on the audio thread to pair it with :attr:`current`)."""
        return float(self.slots[self.active].phasor.get())

    @property
    def origin_bar(self) -> Optional[int]:
        """The bar where the playing sequence of loops began: a dreamed loop's place in its cycle
        is counted from it (None before the first loop)."""
        return self._origin_bar

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def heard(self) -> Optional[np.ndarray]:
        """The playing loop as heard now (resampled to its bars at the current tempo)."""
        loop = self.current
        if loop is None:
            return None
        return loop.rendered(bpm=self.clock.bpm, beats_per_bar=self.clock.beats_per_bar, sr=self.sr)

    def _on_gain(self, change: Change) -> None:
        self.master.value = db_to_amp(change.value)

    def _on_mute(self, change: Change) -> None:
        self.mute.value = 0.0 if change.value else 1.0

    def _on_tempo(self, change: Change) -> None:
        # applied on the audio thread at the next buffer, together with the readers' rates
        self._tempo = (self.registry.get("/clock/bpm"), self.registry.get("/clock/beats_per_bar"))

    # -- audio thread -------------------------------------------------------------------------
    def _rate(self, loop: Loop) -> float:
        return 1.0 / (loop.bars * self.clock.bar_s)

    def _on_buffer(self) -> None:
        tempo, self._tempo = self._tempo, None
        if tempo is not None:
            self.clock.set_tempo(*tempo)
        n = self.audio.buffersize
        if self._fade_done_at is not None and self.clock.samples >= self._fade_done_at:
            idle = self.slots[1 - self.active]
            idle.reader.stop()
            idle.phasor.stop()
            idle.loop = None
            self._fade_done_at = None
        event = self.clock.tick(n)
        if not self.clock.playing:
            if not self._held:
                self._hold()
        elif event is not None:
            pending, self._pending = self._pending, None
            current = self.slots[self.active]
            if pending is None and (self._held or self._resync) and current.loop is not None:
                # back after a stop, or off the clock's position: the same loop enters again, in
                # place unless the clock starts from the top (both slots may share one table)
                pending = (current.loop, current.table, self._resync or event.bar != 0)
            self._held = self._resync = False
            if pending is not None:
                self._start(pending, event)
        self._follow(n)

    def _hold(self) -> None:
        """The clock stopped: silence both slots now (a short fade, no click)."""
        self._held = True
        for slot in self.slots:
            slot.gain.time = 0.005
            slot.gain.value = 0.0

    def _follow(self, n: int) -> None:
        """Give each slot the rate of the clock's tempo; trim the heard slot's toward the
        clock's position. Then account for the buffer pyo is about to compute."""
        active = self.slots[self.active]
        for slot in self.slots:
            loop = slot.loop
            if loop is None:
                continue
            freq = self._rate(loop)
            if slot is active and not self._held and self._origin_bar is not None:
                loop_s = loop.bars * self.clock.bar_s
                bars = self.clock.buffer_beat / self.clock.beats_per_bar - self._origin_bar
                drift = ((bars / loop.bars - slot.phase + 0.5) % 1.0 - 0.5) * loop_s  # s; > 0: behind
                if abs(drift) > self.RESYNC_S:
                    self._resync = True
                    self._locking = False
                else:
                    if abs(drift) > self.LOCK_DEADBAND_S:
                        self._locking = True
                    elif abs(drift) < 1.0 / self.sr:
                        self._locking = False
                    if self._locking:
                        trim = min(self.LOCK_MAX_TRIM, abs(drift) / self.LOCK_TAU_S)
                        freq *= 1.0 + (trim if drift > 0 else -trim)
            if freq != slot.freq:
                slot.phasor.freq = freq
                slot.freq = freq
            slot.phase = (slot.phase + freq * n / self.sr) % 1.0

    def _start(self, pending: tuple, event: BarEvent) -> None:
        loop, table, keep_phase = pending
        if not keep_phase or self._origin_bar is None:
            self._origin_bar = event.bar
        # Where the loop is at this buffer's first sample had it been playing since the bar where
        # its sequence began: the bar line lies -error samples into the buffer, so a loop that
        # starts there enters that far before its end and reaches its first sample on the line.
        loop_samples = loop.bars * self.clock.bar_s * self.sr
        phase = (((event.bar - self._origin_bar) % loop.bars) / loop.bars + event.error_samples / loop_samples) % 1.0
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
        new.freq = self._rate(loop)
        new.phasor.freq = new.freq
        new.phasor.phase = phase
        new.phasor.reset()
        new.phase = phase
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
        # (bar, clock sample of the bar line, where the buffer began against it)
        bar_sample = int(round(self.clock.samples - self.audio.buffersize - event.error_samples))
        self.loop_starts = (self.loop_starts + [(event.bar, bar_sample, event.error_samples)])[-64:]
