"""The engine's side of sonification: runs, frames, parts and the NaN cue, without audio or torch.

:class:`SonReceiver` handles ``/son/begin``, ``/son/end``, ``/son/frame``, ``/son/part``,
``/son/nan``, ``/son/mute``, ``/son/solo`` and ``/son/runs``. Every frame is checked against its
run (open? right number of norms? a part inside the run's layers?) and refused with a one-line
reason otherwise — changing nothing. A good frame is mapped (:mod:`earengine.sonify.mapping`)
and its targets handed to the voices, which pick the newest at their next step boundary. The work
per frame is small and never waits for anything, so a flood of frames cannot stall the OSC
dispatch thread; a run of frames faster than the step rate simply keeps the newest.

**Pace.** Because only the newest frame of each sounded step is heard, the engine tells every run's
sender how long a step lasts: ``/son/pace <run> <step_ms>`` answers ``/son/begin`` and follows every
change of ``/son/step_ms``, ``/son/division`` or (with a division) the tempo. A sender may then
capture just often enough that each step gets a fresh frame
(:class:`~earengine.sonify.capture.GradientSonifier` does, with ``pace=True``), so a fast training
loop spends nothing on frames that could never be heard.

Runs with more layers than the voices have are heard in bands: contiguous layers share a voice,
which plays the largest norm of its band (a NaN or inf anywhere in a band makes the band's cue).

The voices are any object with ``max_voices``, ``open_run(slot, n_voices, wave)``, ``close_run(slot)``,
``submit(slot, targets)``, ``cue(slot)`` and ``set_audible(slot, on)``;
:class:`earengine.synth.voices.GradientVoices` is the pyo one.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

from earengine.errors import EarEngineError, ParameterError
from earengine.osc.wire import Reply
from earengine.params.registry import Change, Registry
from earengine.sonify.frame import check_run_name
from earengine.sonify.mapping import Mapper, Settings
from earengine.sonify.params import MAX_LAYERS, MAX_RUNS, SON_PARAMS
from earengine.sonify.timbre import CUE_GAP_S, run_wave

__all__ = ["SonReceiver", "RunError"]

log = logging.getLogger("earengine.sonify")


class RunError(EarEngineError, ValueError):
    """A frame for a run that is not open, or that does not fit the run."""


@dataclass
class _Run:
    name: str
    slot: int
    layers: int
    starts: np.ndarray  # first layer of each voice's band
    mapper: Mapper
    muted: bool = False
    solo: bool = False
    last_cue_s: float = -1e9
    part_step: Optional[int] = None
    part_values: Optional[np.ndarray] = None
    part_filled: Optional[np.ndarray] = None
    sender: Any = None  # where /son/begin came from: pace changes go back there
    pace_ms: float = 0.0  # the step length last told to the sender
    stats: dict = field(default_factory=lambda: {"parts_dropped": 0})


def _bands(layers: int, voices: int) -> np.ndarray:
    """Start index of each of ``min(layers, voices)`` contiguous, nearly equal bands."""
    k = min(layers, voices)
    return (np.arange(k) * layers // k).astype(np.intp)


class SonReceiver:
    """Sonification runs inside the engine.

    Parameters
    ----------
    registry : Registry
        Supplies the ``/son/*`` values and ``/clock/bpm``; followed as they change.
    voices : object
        The synth side (see the module docstring).
    notify : callable, optional
        ``notify(address, args)`` sends an event to the engine's listeners (``/son/nan``).
    max_runs : int > 0
    now : callable
        Monotonic clock in seconds (for the cue's rate limit).
    send : callable, optional
        ``send(sender, address, args)`` sends a message back to the sender of a run's
        ``/son/begin`` (the pace when it changes); without it the pace only answers ``/son/begin``.
    seen : callable, optional
        ``seen(run, step, norms, hz)`` is told every frame delivered, with each layer's norm and
        the pitch it sounds as (its band's, in Hz; NaN where the layer is silent for a NaN or inf),
        so a page can draw what is heard; it must not block.
    """

    def __init__(
        self,
        registry: Registry,
        voices: Any,
        *,
        notify: Optional[Callable[[str, tuple], None]] = None,
        max_runs: int = MAX_RUNS,
        now: Callable[[], float] = time.monotonic,
        send: Optional[Callable[[Any, str, tuple], None]] = None,
        seen: Optional[Callable[[str, int, np.ndarray, np.ndarray], None]] = None,
    ) -> None:
        self.registry = registry
        self.voices = voices
        self.notify = notify or (lambda address, args: None)
        self.max_runs = int(max_runs)
        self.now = now
        self.send = send
        self.seen = seen
        self.runs: dict[str, _Run] = {}
        self.counts = {"frames": 0, "refused": 0, "cues": 0}
        self._lock = threading.Lock()
        self._settings = Settings.from_registry(registry)
        self._bpm = float(registry.get("/clock/bpm"))
        self._sub = registry.bind({
            **{spec.address: self._on_son for spec in SON_PARAMS},
            "/son/wave": self._on_wave,
            "/clock/bpm": self._on_bpm,
        })

    def close(self) -> None:
        self._sub.close()
        with self._lock:
            for run in list(self.runs.values()):
                self.voices.close_run(run.slot)
            self.runs.clear()

    def _on_son(self, change: Change) -> None:
        self._settings = Settings.from_registry(self.registry)
        self._send_pace()

    def _on_wave(self, change: Change) -> None:
        self._settings = Settings.from_registry(self.registry)
        with self._lock:
            for run in self.runs.values():
                self.voices.open_run(run.slot, len(run.starts), run_wave(self._settings.wave, run.slot))
        self._send_pace()

    def _on_bpm(self, change: Change) -> None:
        self._bpm = float(change.value)
        self._send_pace()

    def step_s(self) -> float:
        """Seconds one training step sounds for now (``/son/step_ms`` or ``/son/division`` at the tempo)."""
        return self._settings.step_s(self._bpm)

    def _send_pace(self) -> None:
        """Tell each run's sender the new step length, when it moved by more than 2%."""
        if self.send is None:
            return
        step_ms = 1000.0 * self.step_s()
        with self._lock:
            due = [r for r in self.runs.values()
                   if r.sender is not None and abs(step_ms - r.pace_ms) > 0.02 * r.pace_ms]
            for r in due:
                r.pace_ms = step_ms
        for r in due:
            try:
                self.send(r.sender, "/son/pace", (r.name, float(step_ms)))
            except Exception:  # a sender that went away must not disturb the sound
                log.debug("cannot send /son/pace", exc_info=True)

    def handlers(self) -> dict[str, Callable[[tuple, Any], Any]]:
        """OSC handlers, by address, for :meth:`earengine.control.osc.OscRouter.on`."""
        return {
            "/son/begin": lambda args, sender: self.begin(args[0], args[1], sender=sender),
            "/son/end": lambda args, sender: self.end(args[0]),
            "/son/frame": lambda args, sender: self.frame(args[0], args[1], args[2:]),
            "/son/part": lambda args, sender: self.part(args[0], args[1], args[2], args[3], args[4:]),
            "/son/nan": lambda args, sender: self.nan(args[0], args[1], args[2]),
            "/son/mute": lambda args, sender: self.mute(args[0], args[1]),
            "/son/solo": lambda args, sender: self.solo(args[0], args[1]),
            "/son/runs": lambda args, sender: self._runs_reply(),
        }

    # -- runs --------------------------------------------------------------------------------
    def begin(self, run: str, layers: int, *, sender: Any = None) -> list:
        """Open (or reopen, resetting) a run of ``layers`` layers; answers ``/son/pace``.

        ``sender`` (the OSC sender) is where later pace changes go.
        """
        check_run_name(run)
        if not 1 <= layers <= MAX_LAYERS:
            raise ParameterError(f"/son/begin layers={layers} must be within [1, {MAX_LAYERS}]")
        with self._lock:
            old = self.runs.get(run)
            if old is not None:
                slot = old.slot
            else:
                used = {r.slot for r in self.runs.values()}
                free = [s for s in range(self.max_runs) if s not in used]
                if not free:
                    raise RunError(f"too many runs: {len(self.runs)} are open ({', '.join(self.runs)}); "
                                   f"at most {self.max_runs}; send /son/end <run> first")
                slot = free[0]
            starts = _bands(layers, self.voices.max_voices)
            pace_ms = 1000.0 * self.step_s()
            self.runs[run] = _Run(run, slot, int(layers), starts, Mapper(self._settings), sender=sender,
                                  pace_ms=pace_ms)
            self.voices.open_run(slot, len(starts), run_wave(self._settings.wave, slot))
            self._update_audible()
        return [Reply("/son/pace", (run, float(pace_ms)))]

    def end(self, run: str) -> None:
        with self._lock:
            state = self._get(run)
            del self.runs[run]
            self.voices.close_run(state.slot)
            self._update_audible()

    def mute(self, run: str, on: bool) -> None:
        with self._lock:
            self._get(run).muted = bool(on)
            self._update_audible()

    def solo(self, run: str, on: bool) -> None:
        with self._lock:
            self._get(run).solo = bool(on)
            self._update_audible()

    def _update_audible(self) -> None:
        soloing = any(r.solo for r in self.runs.values())
        for r in self.runs.values():
            self.voices.set_audible(r.slot, not r.muted and (r.solo or not soloing))

    def _get(self, run: str) -> _Run:
        state = self.runs.get(run)
        if state is None:
            self.counts["refused"] += 1
            opened = ", ".join(self.runs) or "none"
            raise RunError(f"run={run!r} is not open (open: {opened}); send /son/begin {run} <layers> first")
        return state

    def _runs_reply(self) -> list:
        return [Reply("/son/runs.reply", tuple(self.runs))]

    # -- frames ------------------------------------------------------------------------------
    def frame(self, run: str, step: int, norms: Sequence[float]) -> None:
        """One whole frame: exactly as many norms as the run's layers."""
        with self._lock:
            state = self._get(run)
            if len(norms) != state.layers:
                self.counts["refused"] += 1
                raise RunError(f"/son/frame for run {run!r} has {len(norms)} norms; the run has "
                               f"{state.layers} layers (send them all, or in /son/part messages)")
            self._deliver(state, int(step), np.asarray(norms, dtype=np.float64))

    def part(self, run: str, step: int, start: int, count: int, norms: Sequence[float]) -> None:
        """Part of a frame: ``count`` norms from layer ``start`` on; delivered once complete."""
        with self._lock:
            state = self._get(run)
            if count != len(norms):
                self.counts["refused"] += 1
                raise RunError(f"/son/part count={count} but {len(norms)} norms follow")
            if start < 0 or start + count > state.layers:
                self.counts["refused"] += 1
                raise RunError(f"/son/part start={start} count={count} must lie within the run's "
                               f"{state.layers} layers")
            if state.part_step is not None and step != state.part_step:
                if step < state.part_step:
                    self.counts["refused"] += 1
                    raise RunError(f"/son/part step={step} is older than the frame being assembled "
                                   f"(step {state.part_step})")
                state.stats["parts_dropped"] += 1  # the older frame never completed
                state.part_step = None
            if state.part_step is None:
                state.part_step = int(step)
                state.part_values = np.zeros(state.layers)
                state.part_filled = np.zeros(state.layers, dtype=bool)
            state.part_values[start : start + count] = norms
            state.part_filled[start : start + count] = True
            if state.part_filled.all():
                values, state.part_step = state.part_values, None
                self._deliver(state, int(step), values)

    def nan(self, run: str, step: int, layer: int) -> None:
        """Sound the cue for a run, as a frame holding NaN would."""
        with self._lock:
            state = self._get(run)
            if not 0 <= layer < state.layers:
                self.counts["refused"] += 1
                raise RunError(f"/son/nan layer={layer} must be within [0, {state.layers - 1}]")
            self._cue(state, int(step), int(layer))

    def _deliver(self, state: _Run, step: int, norms: np.ndarray) -> None:
        settings = self._settings
        if state.mapper.settings is not settings:
            state.mapper.configure(settings)
        finite = np.isfinite(norms)
        bands = norms if len(state.starts) == norms.size else np.maximum.reduceat(norms, state.starts)
        targets = state.mapper(bands, bpm=self._bpm)
        self.voices.submit(state.slot, targets)
        self.counts["frames"] += 1
        if self.seen is not None:
            band = np.searchsorted(state.starts, np.arange(norms.size), side="right") - 1
            hz = np.asarray(targets.freq_hz, dtype=np.float64)[band]
            hz[~finite] = np.nan
            try:
                self.seen(state.name, step, norms, hz)
            except Exception:  # a page that cannot be reached must not stop the sound
                log.debug("cannot show a /son frame", exc_info=True)
        if not finite.all():
            self._cue(state, step, int(np.flatnonzero(~finite)[0]))

    def _cue(self, state: _Run, step: int, layer: int) -> None:
        now = self.now()
        if now - state.last_cue_s < CUE_GAP_S:
            return
        state.last_cue_s = now
        self.counts["cues"] += 1
        self.voices.cue(state.slot)
        try:
            self.notify("/son/nan", (state.name, step, layer))
        except Exception:  # a listener that cannot be reached must not stop the sound
            log.debug("cannot notify /son/nan", exc_info=True)
