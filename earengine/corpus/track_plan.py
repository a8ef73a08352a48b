"""The synthetic corpus's musical plans: what each track plays, before any sound is made.

A track's identity is what it *plays over time*, held in its :class:`TrackSpec`: tempo, spread
over 80–160 BPM by a golden-ratio sequence so no two tracks share one; 4/4 or 3/4 metre and swing;
a home key and a mode (:data:`MODES`: major, minor, dorian, mixolydian, phrygian, lydian,
harmonic minor; the first 84 tracks all differ in (key, mode)); two chord progressions (A and B
sections) and a harmonic rhythm; a drum pattern for A and another for B (:data:`DRUM_PATTERNS`);
two bass figures (:data:`BASS_FIGURES`); a comping rhythm (:data:`COMP_RHYTHMS`); how dense the
melodic motifs are and how often they mutate; whether an arpeggio plays; a section form (e.g.
AABA); and a palette of six of the eight shared timbres of :mod:`earengine.corpus.instruments`
(two for bass, four for chords, melody and arpeggio).

:func:`plan_track` makes the plan from ``(seed, index)`` alone;
:mod:`earengine.corpus.synthetic` arranges and renders it.

Examples
--------
>>> spec = plan_track(0, 0)
>>> TrackSpec.from_dict(spec.to_dict()) == spec
True
>>> spec.meter in ("4/4", "3/4"), 80.0 <= spec.tempo_bpm <= 160.0
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from earengine.corpus.instruments import TIMBRES
from earengine.music import SCALES

__all__ = ["TrackSpec", "plan_track", "MODES", "DRUM_PATTERNS", "BASS_FIGURES", "COMP_RHYTHMS"]

_NOTE_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")

#: The modes a track may be in, as pitch classes above the tonic (the order is part of the seed's meaning).
MODES = {
    "major": SCALES["major"],
    "minor": SCALES["minor"],
    "dorian": SCALES["dorian"],
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
}
_MODE_NAMES = tuple(MODES)

# Chord progressions as scale degrees (0 = tonic), read in the track's mode.
_PROGRESSIONS = (
    (0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 0, 4), (1, 4, 0, 0), (0, 3, 5, 4),
    (0, 2, 3, 4), (0, 5, 1, 4), (3, 4, 2, 5), (0, 0, 3, 3), (0, 6, 3, 0), (5, 4, 3, 4),
    (0, 2, 5, 3), (3, 0, 4, 5), (0, 4, 3, 3), (5, 5, 3, 4),
)

# Drum patterns, one character per sixteenth: k kick, s snare (g ghost), h hats (x closed,
# - soft closed, o open).
DRUM_PATTERNS = {
    16: {
        "four_floor": ("x...x...x...x...", "....x.......x...", "-.o.-.o.-.o.-.o."),
        "rock": ("x.......x.x.....", "....x.......x...", "x.x.x.x.x.x.x.x."),
        "funk": ("x..x..x...x..x..", "....x..g.g..x..g", "x-x-x-x-x-x-x-x-"),
        "halftime": ("x.....x...x.....", "........x.......", "x.x.x.x.x.x.x.xo"),
        "breakbeat": ("x.x.......xx....", "....x..g.g..x..g", "x.x.x.x.x.x.x.x."),
        "dembow": ("x...x...x...x...", "...x..x....x..x.", "x.x.x.x.x.x.x.x."),
        "disco": ("x...x...x...x...", "....x.......x...", "x-o-x-o-x-o-x-o-"),
        "sparse": ("x.........x.....", "....x.......x...", "x...x...x...x..."),
    },
    12: {
        "waltz": ("x...........", "....x...x...", "x.x.x.x.x.x."),
        "six_eight": ("x.....x.....", "......x.....", "x.x.x.x.x.x."),
        "jazz_three": ("x.......x...", "....g...x..g", "x...x.xx..x."),
        "rolling": ("x..x..x.....", "......x..g..", "x-xx-xx-xx-x"),
    },
}

# Bass figures: (step, role, length in steps); roles r root, f fifth, t third, o octave,
# a approach to the next chord's root.
BASS_FIGURES = {
    16: {
        "roots": ((0, "r", 4), (4, "r", 4), (8, "r", 4), (12, "r", 4)),
        "root_fifth": ((0, "r", 6), (6, "r", 2), (8, "f", 6), (14, "r", 2)),
        "octaves": tuple((i, "r" if i % 4 == 0 else "o", 2) for i in range(0, 16, 2)),
        "syncopated": ((0, "r", 3), (3, "r", 3), (6, "r", 2), (10, "f", 2), (12, "o", 2), (14, "r", 2)),
        "long": ((0, "r", 8), (8, "r", 6), (14, "a", 2)),
        "walking": ((0, "r", 4), (4, "t", 4), (8, "f", 4), (12, "a", 4)),
        "offbeat": ((2, "r", 2), (6, "r", 2), (10, "r", 2), (14, "o", 2)),
    },
    12: {
        "waltz": ((0, "r", 4), (4, "f", 4), (8, "f", 4)),
        "long": ((0, "r", 10), (10, "a", 2)),
        "rocking": ((0, "r", 3), (3, "f", 3), (6, "o", 3), (9, "f", 3)),
    },
}

# Comping rhythms: (step, length in steps); "pad" holds each chord for as long as it lasts.
COMP_RHYTHMS = {
    16: {
        "pad": None,
        "offbeats": ((2, 2), (6, 2), (10, 2), (14, 2)),
        "pulse": tuple((i, 1.5) for i in range(0, 16, 2)),
        "charleston": ((0, 3), (3, 5), (10, 2), (12, 4)),
        "syncopated": ((0, 2), (3, 2), (6, 4), (11, 2), (14, 2)),
    },
    12: {
        "pad": None,
        "oom_pah": ((4, 3), (8, 3)),
        "pulse": tuple((i, 1.5) for i in range(0, 12, 2)),
    },
}

_FORMS = ("AABA", "ABAB", "AABB", "ABBA", "ABAA", "AAB")


@dataclass(frozen=True)
class TrackSpec:
    """The musical plan of one synthetic track (what the generator chose; no audio).

    Every field is JSON-able; :meth:`to_dict` / :meth:`from_dict` round-trip.
    """

    index: int
    name: str
    tempo_bpm: float
    key: int                    # pitch class of the tonic, 0 = C
    mode: str
    steps_per_bar: int          # sixteenths per bar: 16 (4/4) or 12 (3/4)
    swing: float                # delay of every second sixteenth, as a fraction of a sixteenth
    progression_a: tuple
    progression_b: tuple
    chords_per_bar: int
    drums_a: str
    drums_b: str
    bass: str
    bass_b: str
    comp: str
    form: str
    bars_per_section: int
    bass_timbres: tuple         # the bass plays one of these in each section
    timbres: tuple              # chords, melody and arpeggio are dealt from these in each section
    arp: str                    # where an arpeggio plays: "none", "B" (B sections) or "all"
    melody_density: float
    variation: float            # chance that a motif note mutates on a repeat

    @property
    def key_name(self) -> str:
        return _NOTE_NAMES[self.key]

    @property
    def meter(self) -> str:
        return "4/4" if self.steps_per_bar == 16 else "3/4"

    def to_dict(self) -> dict:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        for name in _TUPLE_FIELDS:
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrackSpec":
        d = dict(d)
        for name in _TUPLE_FIELDS:
            d[name] = tuple(d[name])
        return cls(**d)


_TUPLE_FIELDS = ("progression_a", "progression_b", "bass_timbres", "timbres")


def plan_track(seed: int, index: int) -> TrackSpec:
    """Plan track ``index`` of the corpus seeded with ``seed``: depends on ``(seed, index)`` only,
    never on the corpus size.

    Examples
    --------
    >>> plan_track(0, 3) == plan_track(0, 3)
    True
    """
    corpus = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED, 0]))
    key_order = corpus.permutation(12)
    mode_order = corpus.permutation(len(_MODE_NAMES))
    prog_order = corpus.permutation(len(_PROGRESSIONS))
    offset = corpus.random()
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED, 1, index]))

    # A golden-ratio sequence spreads tempi evenly and never repeats one.
    tempo = round(80.0 + 80.0 * ((offset + index * 0.6180339887498949) % 1.0), 1)
    # 12 keys and 7 modes: (key, mode) pairs stay distinct for the first 84 tracks.
    key = int(key_order[index % 12])
    mode = _MODE_NAMES[int(mode_order[index % len(_MODE_NAMES)])]
    steps = 12 if rng.random() < 0.2 else 16
    prog_a = _PROGRESSIONS[int(prog_order[index % len(_PROGRESSIONS)])]
    others = [p for p in _PROGRESSIONS if p != prog_a]
    prog_b = others[int(rng.integers(len(others)))]
    bar_s = 60.0 / tempo * steps / 4.0
    chords_per_bar = 2 if steps == 16 and tempo < 115 and rng.random() < 0.5 else 1
    drum_names = list(DRUM_PATTERNS[steps])
    drums_a, drums_b = (drum_names[int(i)] for i in rng.choice(len(drum_names), 2, replace=False))
    bass_names = list(BASS_FIGURES[steps])
    bass_a, bass_b = (bass_names[int(i)] for i in rng.choice(len(bass_names), 2, replace=False))
    comp_names = list(COMP_RHYTHMS[steps])
    comp = comp_names[int(rng.integers(len(comp_names)))]
    swing = float(round(rng.uniform(0.12, 0.33), 3)) if rng.random() < 0.3 else 0.0
    form = _FORMS[int(rng.integers(len(_FORMS)))]
    bars_per_section = 8 if 8 * bar_s <= 16.0 else 4
    pool = list(TIMBRES)
    order = [pool[int(i)] for i in rng.permutation(len(pool))]
    # The bell's inharmonic partials make mud below 100 Hz; it never plays bass.
    bass_timbres = tuple(name for name in order if name != "bell")[:2]
    timbres = tuple(name for name in order if name not in bass_timbres)[:4]
    arp = ("none", "B", "all")[int(rng.integers(3))]
    density = float(round(rng.uniform(0.25, 0.6), 3))
    variation = float(round(rng.uniform(0.08, 0.25), 3))
    name = f"t{index:02d}_{_NOTE_NAMES[key]}_{mode}_{tempo:g}bpm"
    return TrackSpec(
        index=index, name=name, tempo_bpm=float(tempo), key=key, mode=mode, steps_per_bar=steps,
        swing=swing, progression_a=tuple(int(d) for d in prog_a),
        progression_b=tuple(int(d) for d in prog_b), chords_per_bar=chords_per_bar,
        drums_a=drums_a, drums_b=drums_b, bass=bass_a, bass_b=bass_b, comp=comp,
        form=form, bars_per_section=bars_per_section, bass_timbres=bass_timbres, timbres=timbres,
        arp=arp, melody_density=density, variation=variation,
    )

