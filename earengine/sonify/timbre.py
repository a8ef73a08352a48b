"""Timbres of the layer voices and the NaN cue, shared by the offline renderer and the pyo voices.

Every wave is a short sum of harmonics (band-limited, so high notes do not alias) whose weights
add up to 1: a voice's peak never exceeds its amplitude. The NaN cue is a fixed, bounded sound
nothing else makes: a buzzing falling minor third (odd harmonics, 30 Hz tremolo), about a fifth of
a second long.
"""

from __future__ import annotations

from earengine.params.registry import check_choices
from earengine.params.spec import row
from earengine.sonify.params import SON_PARAMS, WAVES

__all__ = ["harmonics", "run_wave", "WAVE_HARMONICS", "CUE_NOTES_HZ", "CUE_NOTE_S", "CUE_TREMOLO_HZ", "CUE_HARMONICS",
           "CUE_GAP_S", "NYQUIST_MARGIN"]

#: Harmonics stay below this fraction of the sample rate (faded out before it).
NYQUIST_MARGIN = 0.45

#: ``/son/wave`` choice -> ``{harmonic number: weight}`` before normalisation (checked against the
#: row: a wave added to it needs its harmonics here).
WAVE_HARMONICS: dict[str, dict[int, float]] = check_choices(row(SON_PARAMS, "/son/wave"), {
    "sine": {1: 1.0},
    "triangle": {k: (-1.0) ** ((k - 1) // 2) / k**2 for k in (1, 3, 5, 7, 9)},
    "square": {k: 1.0 / k for k in (1, 3, 5, 7, 9)},
    "saw": {k: 1.0 / k for k in range(1, 9)},
    "organ": {1: 1.0, 2: 0.5, 3: 0.3, 4: 0.2},
})


def harmonics(wave: str) -> tuple[tuple[int, float], ...]:
    """``(harmonic number, weight)`` pairs of a wave; the absolute weights sum to 1.

    >>> harmonics("sine")
    ((1, 1.0),)
    >>> round(sum(abs(w) for _, w in harmonics("saw")), 12)
    1.0
    """
    raw = WAVE_HARMONICS[wave]
    total = sum(abs(w) for w in raw.values())
    return tuple((k, w / total) for k, w in raw.items())


def run_wave(first: str, slot: int) -> str:
    """The wave of the engine's run slot ``slot`` when the first run uses ``first``.

    >>> run_wave("sine", 1)
    'triangle'
    """
    return WAVES[(WAVES.index(first) + slot) % len(WAVES)]


#: The cue: two notes falling a minor third, each this long, with a fast tremolo.
CUE_NOTES_HZ = (740.0, 622.25)
CUE_NOTE_S = 0.1
CUE_TREMOLO_HZ = 30.0
CUE_HARMONICS = harmonics("square")
#: A new cue starts at most this often per run, so a run of NaN steps is a steady alarm.
CUE_GAP_S = 0.25
