"""The mapping instrument: gradient norms to tones, as a pure function of the ``/son/*`` values.

:func:`map_norms` turns one frame's norms and a :class:`Settings` (the ``/son/*`` parameters)
into :class:`Targets` — one frequency, amplitude, stereo position and time window per layer —
plus the layers whose norm was NaN or inf. It holds no state: the running window and the previous
step's norms are inputs. :class:`Mapper` keeps those between steps for the renderer, the engine
and the local synth.

The stages, in order:

1. position ``x`` in [0, 1]: where the norm sits between the fixed ``/son/norm_min`` and
   ``/son/norm_max`` (or the layer's running window), linearly (``linear`` curve) or per decade
   (``log`` and, for loudness only, ``seed``);
2. frequency: ``seed`` is Perone's 200 Hz + 100 Hz × norm, unbounded; ``linear`` spans
   ``/son/base`` to ``base × 2^octaves`` linearly in Hz; ``log`` the same range linearly in pitch;
3. register: layer ``i`` of ``n`` is raised by ``register_spread × i / (n - 1)`` octaves;
4. scale: snapped to the nearest note of ``/son/scale`` above ``/son/root`` (``off`` keeps it);
5. clamp into ``[/son/fmin, /son/fmax]``, itself inside 20 Hz – 16 kHz: no norm, however large,
   leaves the audible band;
6. loudness (flat, from ``x``, or from the change since the previous step) times ``/son/gain``,
   shared so that all voices of a run together never exceed the gain;
7. NaN or inf: that layer is silent and listed in :attr:`Targets.nan` (the cue is a separate
   sound); nothing non-finite ever leaves this function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from earengine.errors import ParameterError
from earengine.music import DIVISIONS, NOTE_NAMES, SCALES
from earengine.params.registry import check_choices
from earengine.sonify.params import AUDIBLE_HZ, SON_PARAMS
from earengine.units import db_to_amp

__all__ = ["Settings", "Targets", "map_norms", "seed_frequency", "Mapper", "RunningWindow", "SEED_PRESET",
           "Curve", "Voicing", "CURVES", "LOUDNESS", "VOICINGS"]

_SPECS = {spec.address: spec for spec in SON_PARAMS}
_DEFAULT = {address.rsplit("/", 1)[1]: spec.default for address, spec in _SPECS.items()}

#: The seed's sound (Perone 2019): 200 Hz + 100·norm, sine tones of amplitude 0.1, 10 ms per layer
#: then a 20 ms rest for four layers, no scale, no register or stereo spread.
SEED_PRESET: dict[str, Any] = {
    "/son/curve": "seed",
    "/son/scale": "off",
    "/son/register_spread": 0.0,
    "/son/pan_spread": 0.0,
    "/son/loudness": "flat",
    "/son/voicing": "sequential",
    "/son/step_ms": 60.0,
    "/son/division": "off",
    "/son/rest": 1.0 / 3.0,
    "/son/wave": "sine",
    "/son/gain": -20.0,
    "/son/window": 0,
}


def seed_frequency(norm: float) -> float:
    """Perone's mapping, exactly: ``200 Hz + 100 Hz × norm`` (unbounded; clamped later).

    >>> seed_frequency(1.5)
    350.0
    """
    return 200.0 + 100.0 * float(norm)


@dataclass(frozen=True)
class Settings:
    """The ``/son/*`` parameters as one immutable value (field ``x`` is ``/son/x``).

    Build it from the registry (:meth:`from_registry`) or from values (:meth:`from_values`), which
    validates each one against its registry row; the defaults are the rows' defaults.

    Examples
    --------
    >>> s = Settings.from_values({"/son/curve": "seed"})
    >>> s.curve, s.base
    ('seed', 220.0)
    >>> Settings.from_dict(s.to_dict()) == s
    True
    """

    curve: str = _DEFAULT["curve"]
    base: float = _DEFAULT["base"]
    octaves: float = _DEFAULT["octaves"]
    norm_min: float = _DEFAULT["norm_min"]
    norm_max: float = _DEFAULT["norm_max"]
    window: int = _DEFAULT["window"]
    scale: str = _DEFAULT["scale"]
    root: str = _DEFAULT["root"]
    register_spread: float = _DEFAULT["register_spread"]
    pan_spread: float = _DEFAULT["pan_spread"]
    loudness: str = _DEFAULT["loudness"]
    voicing: str = _DEFAULT["voicing"]
    step_ms: float = _DEFAULT["step_ms"]
    division: str = _DEFAULT["division"]
    rest: float = _DEFAULT["rest"]
    hold: bool = _DEFAULT["hold"]
    wave: str = _DEFAULT["wave"]
    gain: float = _DEFAULT["gain"]
    ramp: float = _DEFAULT["ramp"]
    fmin: float = _DEFAULT["fmin"]
    fmax: float = _DEFAULT["fmax"]

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _SPECS[f"/son/{f.name}"].validate((getattr(self, f.name),)))

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "Settings":
        """From ``{"/son/x": value}`` (other addresses are ignored); every value is validated."""
        out = {}
        for address, value in values.items():
            if not address.startswith("/son/"):
                continue
            if address not in _SPECS:
                raise ParameterError(f"{address} is not a sonification parameter; see 'earengine params'")
            out[address[5:]] = value
        return cls(**out)

    @classmethod
    def from_registry(cls, registry) -> "Settings":
        return cls.from_values({a: v for a, v in registry.snapshot().items() if a in _SPECS})

    def to_values(self) -> dict[str, Any]:
        return {f"/son/{f.name}": getattr(self, f.name) for f in fields(self)}

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Settings":
        return cls(**dict(data))

    def replace(self, **changes: Any) -> "Settings":
        return type(self)(**{**self.to_dict(), **changes})

    # -- derived ----------------------------------------------------------------------------
    def step_s(self, bpm: float = 120.0) -> float:
        """Seconds per training step: ``/son/step_ms``, or the note value ``/son/division`` at ``bpm``."""
        if self.on_the_beat:
            return DIVISIONS[self.division] * 4.0 * 60.0 / float(bpm)
        return self.step_ms / 1000.0

    @property
    def on_the_beat(self) -> bool:
        """Whether a step is a note value of the clock (``/son/division``) rather than ``/son/step_ms``."""
        return DIVISIONS[self.division] > 0.0

    def limits_hz(self) -> tuple[float, float]:
        """The band every tone is clamped into (``fmin``/``fmax`` in either order, inside 20 Hz–16 kHz)."""
        lo, hi = sorted((self.fmin, self.fmax))
        return max(AUDIBLE_HZ[0], lo), min(AUDIBLE_HZ[1], hi)

    @property
    def root_pc(self) -> int:
        """Pitch class of the root (C = 0)."""
        return NOTE_NAMES.index(self.root)


@dataclass(frozen=True)
class Targets:
    """What the voices should play for one step.

    All sequences have one entry per layer. ``gate`` holds each layer's ``(start, end)`` as
    fractions of the step. ``amp`` already includes ``/son/gain`` and the share that keeps the sum
    of a run's voices at or under it. ``nan`` lists the layers whose norm was NaN or inf (silent
    here; the cue is separate). Every number is finite.
    """

    freq_hz: tuple
    amp: tuple
    pan: tuple
    gate: tuple
    position: tuple
    nan: tuple
    step_s: float

    def __len__(self) -> int:
        return len(self.freq_hz)


# -- the choices: one piece per choice of /son/curve, /son/loudness and /son/voicing ----------------
def _linear_x(norms: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return (norms - lo) / (hi - lo)


def _decade_x(norms: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    tiny = 1e-30
    return np.log(np.maximum(norms, tiny) / np.maximum(lo, tiny)) / np.log(np.maximum(hi, tiny) / np.maximum(lo, tiny))


@dataclass(frozen=True)
class Curve:
    """One ``/son/curve``: where a norm sits in its range, and the pitch of that place.

    ``position(norms, lo, hi)`` is unclipped (clipping and flat ranges are handled once, for all);
    ``frequency(norms, x, settings)`` is the pitch in Hz before register, scale and clamp;
    ``per_decade`` curves ignore zeros in the running window (a dead layer would pin it at 0).
    """

    position: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    frequency: Callable[[np.ndarray, np.ndarray, "Settings"], np.ndarray]
    per_decade: bool


#: ``/son/curve`` choice -> its piece (checked against the row: a new choice needs an entry).
CURVES: dict[str, Curve] = check_choices(_SPECS["/son/curve"], {
    "seed": Curve(_decade_x, lambda norms, x, s: 200.0 + 100.0 * norms, per_decade=True),
    "linear": Curve(_linear_x, lambda norms, x, s: s.base * (1.0 + (2.0 ** s.octaves - 1.0) * x), per_decade=False),
    "log": Curve(_decade_x, lambda norms, x, s: s.base * 2.0 ** (s.octaves * x), per_decade=True),
})


def _loud_by_change(x: np.ndarray, norms: np.ndarray, finite: np.ndarray, previous: Optional[Sequence[float]]) -> np.ndarray:
    n = norms.size
    prev = np.full(n, np.nan) if previous is None else np.asarray(previous, dtype=np.float64)
    both = finite & np.isfinite(prev)
    with np.errstate(all="ignore"):
        ratio = np.abs(np.log2(norms / np.where(both, prev, 1.0)))
    ratio = np.where(both & (norms > 0) & (prev > 0), ratio, np.where(both & ((norms > 0) != (prev > 0)), 1.0, 0.0))
    return 0.3 + 0.7 * np.clip(ratio, 0.0, 1.0)


#: ``/son/loudness`` choice -> ``loudness(x, norms, finite, previous)``, each tone's level in [0, 1]
#: (``norms`` with non-finite ones as 0, ``previous`` the previous step's norms or None).
LOUDNESS: dict[str, Callable[..., np.ndarray]] = check_choices(_SPECS["/son/loudness"], {
    "flat": lambda x, norms, finite, previous: np.ones(norms.size),
    "norm": lambda x, norms, finite, previous: 0.3 + 0.7 * x,
    "change": _loud_by_change,
})


def _in_turn(n: int, sound: float) -> tuple:
    width = sound / n
    return tuple((float(i * width), float((i + 1) * width)) for i in range(n))


@dataclass(frozen=True)
class Voicing:
    """One ``/son/voicing``: each layer's window of the step, and its share of ``/son/gain``.

    ``gates(n, sound)`` gives ``(start, end)`` per layer, ``sound`` being the step's sounding
    fraction; ``share(n)`` the factor on each voice's level, so that the voices that sound at once
    never exceed the gain together. With ``in_turn`` the voices take turns: each changes pitch in
    its own silence rather than gliding.
    """

    gates: Callable[[int, float], tuple]
    share: Callable[[int], float]
    in_turn: bool


#: ``/son/voicing`` choice -> its piece.
VOICINGS: dict[str, Voicing] = check_choices(_SPECS["/son/voicing"], {
    "sequential": Voicing(_in_turn, lambda n: 1.0, in_turn=True),
    "simultaneous": Voicing(lambda n, sound: ((0.0, float(sound)),) * n, lambda n: 1.0 / n, in_turn=False),
})


def _positions(norms: np.ndarray, finite: np.ndarray, curve: Curve, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Where each norm sits in [lo, hi], by the curve's position. Flat ranges give 0.5."""
    safe = np.where(finite, norms, 0.0)
    with np.errstate(all="ignore"):
        x = curve.position(safe, lo, hi)
    x = np.where(hi > lo, x, 0.5)
    return np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)


def _snap(freq_hz: np.ndarray, scale: str, root_pc: int) -> np.ndarray:
    """Nearest note of the scale (ties go down); ``off`` returns the input."""
    classes = SCALES[scale]
    if not classes:
        return freq_hz
    midi = 69.0 + 12.0 * np.log2(freq_hz / 440.0)
    allowed = (np.asarray(classes, dtype=np.float64) + root_pc)[:, None]
    candidates = allowed + 12.0 * np.round((midi[None, :] - allowed) / 12.0)
    distance = np.abs(candidates - midi[None, :]) + 1e-9 * (candidates > midi[None, :])
    best = candidates[np.argmin(distance, axis=0), np.arange(midi.size)]
    return 440.0 * 2.0 ** ((best - 69.0) / 12.0)


def map_norms(
    norms: Sequence[float],
    settings: Settings,
    *,
    lo: Optional[Sequence[float]] = None,
    hi: Optional[Sequence[float]] = None,
    previous: Optional[Sequence[float]] = None,
    bpm: float = 120.0,
) -> Targets:
    """Map one step's norms to voice targets.

    Parameters
    ----------
    norms : sequence of float, length n >= 1
        One gradient norm per layer; NaN or inf allowed.
    settings : Settings
        The ``/son/*`` values.
    lo, hi : sequence of float, length n, optional
        Each layer's running-window bounds (used when ``settings.window > 0``; see
        :class:`RunningWindow`). Without them the fixed ``norm_min``/``norm_max`` apply.
    previous : sequence of float, length n, optional
        The previous step's norms (for ``loudness="change"``).
    bpm : float > 0
        Tempo for a step length given as a note value.

    Returns
    -------
    Targets

    Examples
    --------
    >>> seed = Settings.from_values(SEED_PRESET)
    >>> map_norms([0.0, 1.5, 3.0], seed).freq_hz
    (200.0, 350.0, 500.0)
    >>> map_norms([1e30, float("nan")], seed).freq_hz[0]   # clamped, never out of the audible band
    16000.0
    """
    x_norm = np.asarray(norms, dtype=np.float64).reshape(-1)
    n = x_norm.size
    if n == 0:
        raise ParameterError("norms must hold at least one value")
    finite = np.isfinite(x_norm)
    safe = np.where(finite, x_norm, 0.0)
    s = settings
    if s.window > 0 and lo is not None and hi is not None:
        lo_a, hi_a = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    else:
        lo_a = np.full(n, s.norm_min)
        hi_a = np.full(n, max(s.norm_max, s.norm_min))
    curve = CURVES[s.curve]
    x = _positions(x_norm, finite, curve, lo_a, hi_a)

    index = np.arange(n, dtype=np.float64)
    share = index / (n - 1) if n > 1 else np.zeros(1)
    with np.errstate(all="ignore"):  # a norm near the float limit overflows to inf, then clamps
        freq = curve.frequency(safe, x, s) * 2.0 ** (s.register_spread * share)
    lo_hz, hi_hz = s.limits_hz()
    freq = np.clip(np.nan_to_num(freq, nan=lo_hz, posinf=hi_hz), lo_hz, hi_hz)
    freq = np.clip(_snap(freq, s.scale, s.root_pc), lo_hz, hi_hz)
    freq = np.where(finite, freq, np.clip(s.base, lo_hz, hi_hz))

    loud = LOUDNESS[s.loudness](x, safe, finite, previous)
    voicing = VOICINGS[s.voicing]
    amp = np.where(finite, loud, 0.0) * db_to_amp(s.gain) * voicing.share(n)

    pan = 0.5 + s.pan_spread * (share - 0.5) if n > 1 else np.full(1, 0.5)
    gate = voicing.gates(n, 1.0 - s.rest)
    return Targets(
        freq_hz=tuple(float(f) for f in freq),
        amp=tuple(float(a) for a in amp),
        pan=tuple(float(p) for p in pan),
        gate=gate,
        position=tuple(float(v) for v in x),
        nan=tuple(int(i) for i in np.flatnonzero(~finite)),
        step_s=s.step_s(bpm),
    )


class RunningWindow:
    """Each layer's smallest and largest finite norm over about the last ``steps`` steps.

    The window is tracked in 32 blocks so that memory stays ``33 × n`` whatever ``steps``:
    it covers the last ``steps`` steps, up to one block more. For the per-decade curves the
    lower bound ignores zeros (a dead layer would otherwise pin it at zero).

    Examples
    --------
    >>> w = RunningWindow(4, steps=2)
    >>> for step in ([1.0] * 4, [3.0] * 4, [2.0] * 4):
    ...     w.push(step)
    >>> lo, hi = w.bounds()
    >>> float(lo[0]), float(hi[0])
    (2.0, 3.0)
    """

    BLOCKS = 32

    def __init__(self, n: int, *, steps: int, positive: bool = True) -> None:
        self.n, self.steps, self.positive = int(n), int(steps), positive
        self.block = max(1, math.ceil(self.steps / self.BLOCKS))
        # the block being filled plus enough whole blocks to reach back ``steps`` steps
        rows = 1 + math.ceil((self.steps - 1) / self.block)
        self._lo = np.full((rows, self.n), np.inf)
        self._hi = np.full((rows, self.n), -np.inf)
        self._count = 0

    def push(self, norms: Sequence[float]) -> None:
        v = np.asarray(norms, dtype=np.float64)
        ok = np.isfinite(v) & ((v > 0) if self.positive else True)
        if self._count % self.block == 0:
            # a new block starts: the oldest one falls out of the window
            self._lo = np.roll(self._lo, 1, axis=0)
            self._hi = np.roll(self._hi, 1, axis=0)
            self._lo[0], self._hi[0] = np.inf, -np.inf
        self._lo[0] = np.where(ok, np.minimum(self._lo[0], v), self._lo[0])
        self._hi[0] = np.where(ok, np.maximum(self._hi[0], v), self._hi[0])
        self._count += 1

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` per layer; a layer with no finite norm yet gets ``lo == hi`` (middle pitch)."""
        lo, hi = self._lo.min(axis=0), self._hi.max(axis=0)
        empty = ~np.isfinite(lo)
        return np.where(empty, 1.0, lo), np.where(empty, 1.0, hi)


class Mapper:
    """:func:`map_norms` with the state it needs between steps: the running window and the
    previous norms. One per run.

    Parameters
    ----------
    settings : Settings
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._window: Optional[RunningWindow] = None
        self._previous: Optional[np.ndarray] = None

    def configure(self, settings: Settings) -> None:
        """Use new settings; the running window restarts when its length or curve changes."""
        old, self.settings = self.settings, settings
        if (old.window, old.curve) != (settings.window, settings.curve):
            self._window = None

    def __call__(self, norms: Sequence[float], *, bpm: float = 120.0) -> Targets:
        s = self.settings
        v = np.asarray(norms, dtype=np.float64)
        lo = hi = None
        if s.window > 0:
            if self._window is None or self._window.n != v.size:
                self._window = RunningWindow(v.size, steps=s.window, positive=CURVES[s.curve].per_decade)
            self._window.push(v)
            lo, hi = self._window.bounds()
        previous = self._previous if self._previous is not None and self._previous.size == v.size else None
        targets = map_norms(v, s, lo=lo, hi=hi, previous=previous, bpm=bpm)
        self._previous = v
        return targets
