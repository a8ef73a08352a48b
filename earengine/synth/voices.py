"""Gradient voices: the pyo synth that sonifies training runs inside the engine (or on its own).

One step clock (a ``Phasor`` at one cycle per step) is shared by every run, so runs stay in step
with each other and, with ``/son/division``, with the engine's bar clock. Each run slot has up to
``max_voices`` voices; a voice is a band-limited table oscillator whose frequency, level and pan
glide (``SigTo``) and whose gate opens on its window of the step (``Between`` on the step phase)
through a ``Port`` lag of ``/son/ramp`` — a tone never starts or stops on a jump, and its phase
runs on, so there are no clicks. A frame's targets are taken on the audio thread just before the
next step boundary (inside the rest, for sequential voicing), so each step plays one whole frame;
nothing here waits on the thread that submits them.

The NaN cue is one table (the same samples the offline renderer uses) read once per trigger. The
sum of every run and the cue passes a hard clip at the engine's limiter ceiling, and every value
reaching a voice comes out of :func:`earengine.sonify.mapping.map_norms`, which is finite by
construction, so the output is never NaN.
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from earengine.clock.grid import BarClock
from earengine.params.registry import Change, Registry
from earengine.sonify.mapping import Settings, Targets
from earengine.sonify.params import MAX_RUNS, SON_PARAMS, WAVES
from earengine.sonify.render import cue_sound
from earengine.sonify.timbre import NYQUIST_MARGIN, harmonics
from earengine.synth.bus import OutputBus
from earengine.synth.server import AudioServer
from earengine.units import db_to_amp

__all__ = ["GradientVoices", "MAX_VOICES"]

log = logging.getLogger("earengine.voices")

#: Voices per run; runs with more layers are heard in bands (see earengine.sonify.receiver).
MAX_VOICES = 16


def _harm_list(wave: str) -> list[float]:
    """Amplitudes of harmonics 1…K for pyo's HarmTable (peak stays at or under 1)."""
    pairs = harmonics(wave)
    out = [0.0] * max(k for k, _ in pairs)
    for k, w in pairs:
        out[k - 1] = w
    return out


class _Voice:
    def __init__(self, pyo, phasor, table, ramp_s: float) -> None:
        self.freq = pyo.SigTo(220.0, time=ramp_s, init=220.0)
        self.amp = pyo.SigTo(0.0, time=ramp_s, init=0.0)
        self.pan = pyo.SigTo(0.5, time=ramp_s, init=0.5)
        self.gate = pyo.Between(phasor, min=0.0, max=0.0)
        self.env = pyo.Port(self.gate, risetime=ramp_s, falltime=ramp_s)
        self.level = self.amp * self.env
        self.osc = pyo.Osc(table, freq=self.freq, interp=2, mul=self.level)
        self.out = pyo.SPan(self.osc, outs=2, pan=self.pan)
        self.objects = (self.freq, self.amp, self.pan, self.gate, self.env, self.level, self.osc, self.out)

    def set_ramp(self, ramp_s: float) -> None:
        for sig in (self.freq, self.amp, self.pan):
            sig.time = ramp_s
        self.env.risetime = ramp_s
        self.env.falltime = ramp_s


class _Slot:
    def __init__(self, pyo, phasor, table, ramp_s: float, max_voices: int) -> None:
        self.voices = [_Voice(pyo, phasor, table, ramp_s) for _ in range(max_voices)]
        self.gain = pyo.SigTo(1.0, time=0.02, init=1.0)
        self.out = pyo.Mix([v.out for v in self.voices], voices=2, mul=self.gain)
        self.n = 0
        self.pending: Optional[Targets] = None
        self.current: Optional[Targets] = None
        for v in self.voices:
            for obj in v.objects:
                obj.stop()


class GradientVoices:
    """The sonification synth on an :class:`~earengine.synth.server.AudioServer`.

    Parameters
    ----------
    audio : AudioServer
        A started server.
    registry : Registry
        Supplies the ``/son/*`` values and the tempo; followed as they change.
    clock : BarClock, optional
        The engine's bar clock; with ``/son/division`` the step clock is kept on its bar lines.
    max_runs : int > 0
        Run slots, each with its own timbre.
    max_voices : int > 0
        Voices per run slot.
    out : bool
        Send to the outputs through its own limiter, or leave :attr:`stereo` to an OutputBus.
    """

    def __init__(
        self,
        audio: AudioServer,
        registry: Registry,
        *,
        clock: Optional[BarClock] = None,
        max_runs: int = MAX_RUNS,
        max_voices: int = MAX_VOICES,
        out: bool = True,
    ) -> None:
        import pyo

        self.audio, self.registry, self.clock = audio, registry, clock
        self.max_voices = int(max_voices)
        self._top_hz = NYQUIST_MARGIN * audio.sr  # no fundamental above this, at any sample rate
        self.settings = Settings.from_registry(registry)
        self.bpm = float(registry.get("/clock/bpm"))
        self.step_hz = 1.0 / self.settings.step_s(self.bpm)
        ramp_s = self.settings.ramp / 1000.0
        self.phasor = pyo.Phasor(freq=self.step_hz)
        self.tables = {w: pyo.HarmTable(_harm_list(w)) for w in WAVES}
        self.slots = [_Slot(pyo, self.phasor, self.tables["sine"], ramp_s, self.max_voices) for _ in range(max_runs)]
        cue = cue_sound(sr=audio.sr, amp=1.0).astype(np.float32)
        self._cue_table = pyo.DataTable(size=cue.size)
        np.asarray(self._cue_table.getBuffer())[:] = cue
        self._cue_trig = pyo.Trig()
        self._cue_trig.stop()
        self._cue_level = pyo.SigTo(db_to_amp(self.settings.gain), time=0.05)
        self._cue = pyo.TrigEnv(self._cue_trig, self._cue_table, dur=cue.size / audio.sr, interp=1, mul=self._cue_level)
        self._cue_out = pyo.SPan(self._cue, outs=2, pan=0.5)
        self.stereo = pyo.Mix([s.out for s in self.slots] + [self._cue_out], voices=2)
        self.bus = OutputBus(audio, [self.stereo]) if out else None
        self.cues = 0
        self.steps = 0
        self._since = 0
        self._bar = -1
        self._sub = registry.bind({**{spec.address: self._on_son for spec in SON_PARAMS}, "/clock/bpm": self._on_bpm})
        audio.add_callback(self._on_buffer)

    def close(self) -> None:
        self._sub.close()
        self.audio.remove_callback(self._on_buffer)
        if self.bus is not None:
            self.bus.close()

    # -- any thread (the receiver's) -------------------------------------------------------
    def open_run(self, slot: int, n_voices: int, wave: str) -> None:
        """Start ``n_voices`` voices of ``slot`` with a timbre; silent until targets arrive."""
        s = self.slots[slot]
        table = self.tables[wave]
        s.n = min(int(n_voices), self.max_voices)
        s.pending = s.current = None
        for j, v in enumerate(s.voices):
            v.osc.table = table
            v.amp.value = 0.0
            for obj in v.objects:
                if j < s.n:
                    obj.play()
                else:
                    obj.stop()

    def close_run(self, slot: int) -> None:
        """Silence a slot (its voices fade out over the ramp)."""
        s = self.slots[slot]
        s.pending = s.current = None
        for v in s.voices:
            v.amp.value = 0.0
        # the voices fade over the ramp; stopping them now would cut the fade, so they keep
        # running silently until the slot is opened again

    def submit(self, slot: int, targets: Targets) -> None:
        """Newest targets of a run; played from the next step boundary."""
        self.slots[slot].pending = targets

    def cue(self, slot: int) -> None:
        """Sound the NaN cue now."""
        self.cues += 1
        self._cue_trig.play()

    def set_audible(self, slot: int, on: bool) -> None:
        self.slots[slot].gain.value = 1.0 if on else 0.0

    def _on_bpm(self, change: Change) -> None:
        self.bpm = float(change.value)
        self._on_son(change)

    def _on_son(self, change: Change) -> None:
        """Any ``/son/*`` value (or the tempo): the settings, the step rate, the ramps and the cue's level."""
        old, self.settings = self.settings, Settings.from_registry(self.registry)
        self.step_hz = 1.0 / self.settings.step_s(self.bpm)
        self.phasor.freq = self.step_hz
        if self.settings.ramp != old.ramp:
            for s in self.slots:
                for v in s.voices:
                    v.set_ramp(self.settings.ramp / 1000.0)
        self._cue_level.value = db_to_amp(self.settings.gain)

    # -- audio thread ----------------------------------------------------------------------
    def _on_buffer(self) -> None:
        n, sr = self.audio.buffersize, self.audio.sr
        inc = n * self.step_hz / sr
        self._since += n
        boundary = False
        if self.clock is not None and self.settings.on_the_beat:
            bar = int(self.clock.bar_position)
            if bar != self._bar:
                self._bar = bar
                phase = self.phasor.get()
                if min(phase, 1.0 - phase) > inc:  # off the bar grid (start, tempo change): realign
                    self.phasor.reset()
                    boundary = True
        if not boundary:
            boundary = self.phasor.get() + inc >= 1.0
        if boundary and self._since >= 0.5 * sr / self.step_hz:
            self._since = 0
            self.steps += 1
            hold = self.settings.hold
            for s in self.slots:
                targets, s.pending = s.pending, None
                if targets is not None:
                    self._apply(s, targets)
                elif not hold and s.current is not None:
                    for v in s.voices[: s.n]:
                        v.amp.value = 0.0
                    s.current = None

    def _apply(self, s: _Slot, t: Targets) -> None:
        s.current = t
        for j in range(min(s.n, len(t))):
            v = s.voices[j]
            v.freq.value = min(t.freq_hz[j], self._top_hz)
            v.amp.value = t.amp[j]
            v.pan.value = t.pan[j]
            lo, hi = t.gate[j]
            v.gate.min = lo
            v.gate.max = hi
