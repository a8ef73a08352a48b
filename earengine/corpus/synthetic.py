"""The synthetic corpus: a seeded, procedurally composed and rendered music corpus.

:class:`SyntheticCorpus` is a :class:`~earengine.corpus.clips.ClipSource` that needs no download,
so that training the ear, its probe and the tests work offline. ``earengine train --data
synthetic:N`` trains on it (see :func:`earengine.corpus.sources.open_source`).

Design
------
The ear is judged by a linear probe that names the track a held-out clip comes from, and a trained
ear has to beat the same network with random weights. Random convolutions already tell tracks apart
by a static timbre, key or loudness, so the corpus puts a track's identity into what it *plays over
time* and deals what it *sounds like* afresh in every section:

* **What belongs to a track** (its :class:`TrackSpec`): tempo, spread over 80–160 BPM by a
  golden-ratio sequence so no two tracks share one; 4/4 or 3/4 metre and swing; a home key and a
  mode (major, minor, dorian, mixolydian, phrygian, lydian, harmonic minor; the first 84 tracks all
  differ in (key, mode)); two chord progressions (A and B sections) and a harmonic rhythm; a drum
  pattern for A and another for B; two bass figures; a comping rhythm; two melodic motifs and how
  often they mutate; whether an arpeggio plays; a section form (e.g. AABA); and a palette of six of
  the eight shared timbres (two for bass, four for chords, melody and arpeggio), each varied a
  little for the track (spectral tilt, envelope times, FM index, chorus detune).
* **What each section deals afresh** (each section after the first, with probability
  ``section_variety``, 1 by default; otherwise it keeps the first section's sound): its key (the
  first section is in the home key, later ones modulate anywhere), which palette timbre plays which
  part, which of three shared drum kits plays, the balance of the parts (±1.5 dB) and the register
  of the chords. Registers are folded into fixed ranges whatever the key, and every track is
  normalised to the same RMS (peak ≤ 0.9).
* **Variation inside a track.** Sections of four or eight bars follow the form; drum fills lead into
  the next section and a crash marks it; some sections break the drums down for a while; melodies
  are two-bar motifs (a random walk in the scale, strong beats snapped to chord tones) repeated with
  random mutations, so no clip is an identical loop; onsets and velocities are humanised.

The sounds: a shared pool of eight timbres — pluck, pad, brass-like saw, square, organ, reed
(band-limited wavetables that move from a bright to a dark table: a cheap stand-in for a filter
sweep), electric piano and bell (two-operator FM) — with ADSR envelopes, vibrato and chorus; three
shared drum kits (pitch-swept sine kicks and toms, noise-and-tone snares, filtered-noise hats and
crash). With 4 s clips of the default corpus, a ridge classifier on each clip's mean log spectrum
(a stand-in for static sound) names the held-out clips' track about 30 % of the time (97 % with
``section_variety=0``), while one on onset-envelope autocorrelations (rhythm) names all of them.

The plans live in :mod:`earengine.corpus.track_plan` and the sounds in
:mod:`earengine.corpus.instruments`; this module arranges a plan into sections and note events and
renders them, numpy-vectorised: identical notes within a track are rendered once and reused,
drums are one-shots placed at their onsets, and a convolution reverb sits on a send. A track
depends only on ``(seed, index, track_duration_s, sr)`` and is bit-identical for the same values;
it is generated the first time it is asked for and cached.

Examples
--------
>>> corpus = SyntheticCorpus(n_tracks=16, seed=0, track_duration_s=8.0)
>>> x = corpus.clip(3, 1.0, 0.5)
>>> x.dtype, x.shape
(dtype('float32'), (22050,))
>>> corpus.specs[3].name == corpus.track_names[3]
True
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal as sps

from earengine.corpus.clips import SR, check_clip_args, check_sr, n_samples, slice_padded
from earengine.corpus.instruments import KIT_NAMES, TIMBRES, Voice, drum_shots, reverb_ir, vary_timbre
from earengine.corpus.track_plan import BASS_FIGURES, COMP_RHYTHMS, DRUM_PATTERNS, MODES, TrackSpec, plan_track
from earengine.errors import ConfigError
from earengine.units import db_to_gain

__all__ = ["GENERATOR_VERSION", "SyntheticCorpus"]

GENERATOR_VERSION = 1
"""Bumped whenever the synthetic corpus would sound different for the same seed."""


# --------------------------------------------------------------------------------------------
# Arrangement and rendering
# --------------------------------------------------------------------------------------------


def _degree_midi(degree: int, tonic_midi: int, mode: tuple) -> int:
    return tonic_midi + 12 * (degree // 7) + mode[degree % 7]


def _fold(pc: int, low: int) -> int:
    """The pitch of pitch class ``pc`` in the octave starting at MIDI ``low``."""
    return low + (pc - low) % 12


def _motif(spec: TrackSpec, rng: np.random.Generator) -> list:
    """A two-bar melodic idea: [(step, length in steps, scale degree, accent)]."""
    spb = spec.steps_per_bar
    n = 2 * spb
    steps = np.arange(n)
    weight = np.where(steps % spb == 0, 1.0,
                      np.where(steps % 4 == 0, 0.8, np.where(steps % 2 == 0, 0.5, 0.22)))
    onsets = np.flatnonzero(rng.random(n) < np.clip(spec.melody_density * weight * 1.6, 0.0, 0.95))
    if onsets.size == 0 or onsets[0] != 0:
        onsets = np.concatenate([[0], onsets])
    notes = []
    degree = int(rng.choice([4, 7, 9]))
    for i, s in enumerate(onsets):
        nxt = onsets[i + 1] if i + 1 < onsets.size else n
        length = int(min(nxt - s, 8))
        if i:
            degree += int(rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3]))
            degree = int(np.clip(degree, 2, 13))
        notes.append((int(s), length, degree, float(weight[s])))
    return notes


def _snap_to_chord(degree: int, chord_root: int) -> int:
    """Nearest scale degree that is a tone of the triad on ``chord_root``."""
    for delta in (0, -1, 1, -2, 2):
        if (degree + delta - chord_root) % 7 in (0, 2, 4):
            return degree + delta
    return degree


class _Events:
    """Note events of one part, gathered before rendering: timbre, gain, onset (s), gate (samples),
    pitch, velocity."""

    def __init__(self) -> None:
        self.rows: list = []

    def add(self, timbre: str, gain: float, onset_s: float, gate_n: int, midi: int, velocity: float) -> None:
        self.rows.append((timbre, gain, onset_s, gate_n, midi, velocity))


class _Arranger:
    """Arranges one track's plan into sections and note events, one named step at a time.

    Every step draws from the track's one random stream (``rng``) in a fixed order: the order of
    the draws is part of what a seed sounds like, so a step that moved or drew once more would
    change every track (and :data:`GENERATOR_VERSION` would have to be bumped).
    """

    def __init__(self, spec: TrackSpec, seed: int, n_total: int, sr: int) -> None:
        self.spec = spec
        self.sr = sr
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED, 2, spec.index]))
        self.spb = spec.steps_per_bar
        self.step_s = 60.0 / spec.tempo_bpm / 4.0
        bar_s = self.spb * self.step_s
        self.n_bars = int(math.ceil(n_total / sr / bar_s)) + 1
        self.mode = MODES[spec.mode]
        self.parts = {role: _Events() for role in ("bass", "chords", "melody", "arp")}
        self.drums: list = []  # (onset_s, kit, gain, shot name, take, velocity)

    # -- time, feel and harmony ----------------------------------------------------------------
    def at(self, bar: int, step: float) -> float:
        """Onset (s) of a step of a bar, swung on the off sixteenths."""
        s = bar * self.spb + step
        swing = self.spec.swing * self.step_s if (int(step) % 2 == 1 and float(step).is_integer()) else 0.0
        return s * self.step_s + swing

    def human(self, sd_s: float = 0.004) -> float:
        return float(self.rng.normal(0.0, sd_s))

    def vel(self, base: float) -> float:
        return float(np.clip(base * (1.0 + self.rng.normal(0.0, 0.08)), 0.05, 1.0))

    def gate(self, steps: float, fraction: float) -> int:
        return max(1, int(steps * self.step_s * fraction * self.sr))

    def chord_at(self, label: str, bar_in_section: int, step: float) -> tuple:
        """(current chord degree, next chord degree) at a step of a bar of a section."""
        spec = self.spec
        prog = spec.progression_a if label == "A" else spec.progression_b
        slot = bar_in_section * spec.chords_per_bar + int(step * spec.chords_per_bar // self.spb)
        return prog[slot % len(prog)], prog[(slot + 1) % len(prog)]

    # -- the steps -----------------------------------------------------------------------------
    def sections(self, section_variety: float) -> list:
        """The form, repeated until the track is covered; each section with its sound and events."""
        spec, rng = self.spec, self.rng
        sections = []
        bar = 0
        i = 0
        while bar < self.n_bars:
            label = spec.form[i % len(spec.form)]
            # What a section sounds like (key, instruments, kit, balance) may be dealt afresh; what it
            # plays (tempo, groove, progression, figures, motifs) belongs to the track.
            upper = [spec.timbres[int(j)] for j in rng.permutation(len(spec.timbres))]
            sound = {
                "key": int(rng.integers(12)),
                "timbres": {"bass": spec.bass_timbres[int(rng.integers(2))], "chords": upper[0],
                            "melody": upper[1], "arp": upper[2]},
                "kit": KIT_NAMES[int(rng.integers(len(KIT_NAMES)))],
                "gain_db": {role: float(rng.normal(0.0, 1.5))
                            for role in ("bass", "chords", "melody", "arp", "drums")},
                "chord_center": 60 + int(rng.integers(-3, 4)),
            }
            if i == 0:
                sound["key"] = spec.key
                home = sound
            elif rng.random() >= section_variety:
                sound = home
            sections.append({
                "label": label, "bar": bar, "bars": spec.bars_per_section, **sound,
                "fill": rng.random() < 0.75,
                "breakdown": i > 0 and rng.random() < 0.15,
                "intro": i == 0 and rng.random() < 0.5,
                "shift": int(rng.choice([0, 0, 0, 2, -1])) if i >= len(spec.form) else 0,
            })
            bar += spec.bars_per_section
            i += 1
        return sections

    def section(self, sec: dict, motif: list) -> None:
        """Every part of one section, bar by bar, then its melody."""
        gain = {role: db_to_gain(db) for role, db in sec["gain_db"].items()}
        for b in range(sec["bars"]):
            bar = sec["bar"] + b
            if bar >= self.n_bars:
                break
            self.drum_bar(sec, gain["drums"], b, bar)
            self.bass_bar(sec, gain["bass"], b, bar)
            self.chord_bar(sec, gain["chords"], b, bar)
            self.arp_bar(sec, gain["arp"], b, bar)
        self.melody(sec, gain["melody"], motif)

    def drum_bar(self, sec: dict, gain: float, b: int, bar: int) -> None:
        """The section's drum pattern for one bar: a crash on its first bar, a fill into the next
        section on its last, nothing but hats in the first half of a breakdown."""
        spec, rng, spb, at, vel = self.spec, self.rng, self.spb, self.at, self.vel
        kick, snare, hats = DRUM_PATTERNS[spb][spec.drums_a if sec["label"] == "A" else spec.drums_b]

        def hit(onset_s: float, name: str, take: int, velocity: float) -> None:
            self.drums.append((onset_s + self.human(0.0025), sec["kit"], gain, name, take, velocity))

        fill_from = spb
        if b == sec["bars"] - 1 and sec["fill"]:
            fill_from = spb - (8 if spb == 16 and rng.random() < 0.4 else spb // 4)
        drums_on = not (sec["breakdown"] and b < sec["bars"] // 2)
        if b == 0 and sec["bar"] > 0:
            hit(at(bar, 0), "crash", int(rng.integers(2)), vel(0.8))
        for s in range(fill_from):
            if drums_on and kick[s] == "x":
                hit(at(bar, s), "kick", int(rng.integers(2)), vel(0.95 if s % 4 == 0 else 0.8))
            if drums_on and snare[s] in "xg":
                hit(at(bar, s), "snare", int(rng.integers(2)), vel(0.9 if snare[s] == "x" else 0.3))
            if hats[s] != ".":
                level = {"x": 0.75, "-": 0.4, "o": 0.6}[hats[s]] * (1.0 if s % 4 == 0 else 0.85)
                hit(at(bar, s), "open" if hats[s] == "o" else "hat", int(rng.integers(2)), vel(level))
        toms = rng.random() < 0.5
        for j, s in enumerate(range(fill_from, spb)):
            if rng.random() < 0.15:
                continue  # a gap makes the fill breathe
            ramp = vel(0.45 + 0.55 * j / max(1, spb - fill_from - 1))
            if toms:  # high tom down to low tom
                hit(at(bar, s), "tom", 2 - min(2, 3 * j // (spb - fill_from)), ramp)
            else:
                hit(at(bar, s), "snare", int(rng.integers(2)), ramp)

    def bass_bar(self, sec: dict, gain: float, b: int, bar: int) -> None:
        """The section's bass figure for one bar, on the chord's root, third, fifth or octave."""
        spec, label = self.spec, sec["label"]
        tonic = _fold(sec["key"], 28)  # E1 … Eb2: registers stay put when the key moves
        for s, role, length in BASS_FIGURES[self.spb][spec.bass if label == "A" else spec.bass_b]:
            cur, nxt = self.chord_at(label, b, s)
            if role == "a":
                midi = _degree_midi(nxt, tonic, self.mode) + int(self.rng.choice([-1, 2]))
            else:
                midi = _degree_midi(cur + {"r": 0, "t": 2, "f": 4, "o": 7}[role], tonic, self.mode)
            self.parts["bass"].add(sec["timbres"]["bass"], gain, self.at(bar, s) + self.human(),
                                   self.gate(length, 0.85), midi, self.vel(0.9 if s == 0 else 0.75))

    def chord_bar(self, sec: dict, gain: float, b: int, bar: int) -> None:
        """The comping rhythm for one bar: close voicings around the section's centre, so voices
        move little."""
        spec, spb = self.spec, self.spb
        comp = COMP_RHYTHMS[spb][spec.comp]
        hits = comp if comp is not None else tuple(
            (c * spb / spec.chords_per_bar, spb / spec.chords_per_bar) for c in range(spec.chords_per_bar)
        )
        for s, length in hits:
            cur, _ = self.chord_at(sec["label"], b, s)
            t0 = self.at(bar, s) + self.human()
            level = self.vel(0.7 if comp is None else 0.6)
            for d in (0, 2, 4):
                midi = _fold((sec["key"] + self.mode[(cur + d) % 7]) % 12, sec["chord_center"] - 6)
                self.parts["chords"].add(sec["timbres"]["chords"], gain, t0,
                                         self.gate(length, 0.95 if comp is None else 0.7), midi, level)

    def arp_bar(self, sec: dict, gain: float, b: int, bar: int) -> None:
        """The arpeggio for one bar, where the track has one: chord tones up and down over two octaves."""
        spec = self.spec
        if not (spec.arp == "all" or (spec.arp == "B" and sec["label"] == "B")):
            return
        tonic = _fold(sec["key"], 55)  # G3 … Gb4
        rate = 2 if spec.tempo_bpm > 125 else 1
        for k, s in enumerate(range(0, self.spb, rate)):
            cur, _ = self.chord_at(sec["label"], b, s)
            ladder = (0, 2, 4, 7, 9, 7, 4, 2)
            midi = _degree_midi(cur + ladder[k % len(ladder)], tonic, self.mode)
            self.parts["arp"].add(sec["timbres"]["arp"], gain, self.at(bar, s) + self.human(),
                                  self.gate(rate, 0.6), midi, self.vel(0.55 if s % 4 else 0.7))

    def melody(self, sec: dict, gain: float, motif: list) -> None:
        """The section's two-bar motif, repeated with mutations; its last note rests on the tonic."""
        spec, rng, spb = self.spec, self.rng, self.spb
        tonic = _fold(sec["key"], 55)  # G3 … Gb4
        reps = sec["bars"] // 2
        for r in range(reps):
            if sec["intro"] and r < reps // 2:
                continue
            for s, length, degree, accent in motif:
                if rng.random() < spec.variation * 0.5:
                    continue  # a dropped note
                if rng.random() < spec.variation:
                    degree += int(rng.choice([-2, -1, 1, 2]))
                b, s_in_bar = 2 * r + s // spb, s % spb
                if sec["bar"] + b >= self.n_bars:
                    continue
                cur, _ = self.chord_at(sec["label"], b, s_in_bar)
                degree += sec["shift"]
                if s_in_bar % 4 == 0:
                    degree = _snap_to_chord(degree, cur)
                if r == reps - 1 and s == motif[-1][0]:
                    degree = 7 if degree > 3 else 0
                midi = _degree_midi(int(np.clip(degree, 0, 16)), tonic, self.mode)
                self.parts["melody"].add(sec["timbres"]["melody"], gain,
                                         self.at(sec["bar"] + b, s_in_bar) + self.human(),
                                         self.gate(length, 0.85), midi, self.vel(0.55 + 0.4 * accent))


_PART_GAINS = {"bass": 0.55, "chords": 0.2, "melody": 0.38, "arp": 0.17}
_PART_SENDS = {"bass": 0.0, "chords": 0.35, "melody": 0.3, "arp": 0.4}
_DRUM_GAINS = {"kick": 0.9, "snare": 0.55, "hat": 0.22, "open": 0.2, "crash": 0.22, "tom": 0.5}


def _mix(arranged: _Arranger, n_total: int) -> np.ndarray:
    """The arranged events rendered and summed: dry parts and drums, plus a convolution reverb on
    a send. One player per timbre (its per-track variant), whatever role it plays."""
    spec, rng, sr = arranged.spec, arranged.rng, arranged.sr
    tail = 3 * sr
    dry = np.zeros(n_total + tail, dtype=np.float32)
    send = np.zeros_like(dry)

    def place(buf: np.ndarray, onset_s: float, x: np.ndarray, scale: float) -> None:
        o = int(round(onset_s * sr))
        if o >= n_total or o + x.size <= 0:
            return
        lo = max(0, -o)
        hi = min(x.size, buf.size - o)
        buf[o + lo:o + hi] += np.float32(scale) * x[lo:hi]

    players = {}
    for name in spec.bass_timbres + spec.timbres:
        players[name] = Voice(vary_timbre(TIMBRES[name], rng), sr)
    for role, events in arranged.parts.items():
        for name, g, onset_s, gate_n, midi, v in events.rows:
            x = players[name].note(int(midi), int(gate_n), v)
            place(dry, onset_s, x, _PART_GAINS[role] * g * v)
            if _PART_SENDS[role]:
                place(send, onset_s, x, _PART_GAINS[role] * g * v * _PART_SENDS[role])

    for onset_s, kit, g, name, take, v in arranged.drums:
        takes = drum_shots(kit, sr)[name]
        x = takes[take % len(takes)]
        place(dry, onset_s, x, _DRUM_GAINS[name] * g * v)
        if name in ("snare", "tom"):
            place(send, onset_s, x, _DRUM_GAINS[name] * g * v * 0.2)

    wet = sps.oaconvolve(send, reverb_ir(rng, sr), mode="full")[: dry.size]
    mix = dry + wet.astype(np.float32)
    return mix[:n_total]


def _normalised(mix: np.ndarray) -> np.ndarray:
    """Equal loudness across tracks (RMS 0.12), unless a peak would pass 0.9."""
    rms = float(np.sqrt(np.mean(mix.astype(np.float64) ** 2)))
    peak = float(np.max(np.abs(mix)))
    scale = min(0.12 / rms, 0.9 / peak) if rms > 0 else 0.0
    return (mix * scale).astype(np.float32)


def _render_track(
    spec: TrackSpec, seed: int, n_total: int, sr: int, section_variety: float
) -> np.ndarray:
    """One track: its sections, its two motifs, every section's events, then the mix."""
    arranger = _Arranger(spec, seed, n_total, sr)
    sections = arranger.sections(section_variety)
    motifs = {"A": _motif(spec, arranger.rng), "B": _motif(spec, arranger.rng)}
    for sec in sections:
        arranger.section(sec, motifs[sec["label"]])
    return _normalised(_mix(arranger, n_total))


class SyntheticCorpus:
    """A seeded, procedurally generated music corpus, a :class:`~earengine.corpus.clips.ClipSource`
    (see the module docstring for its design).

    Parameters
    ----------
    n_tracks : int >= 1
        Number of tracks; 16 by default.
    seed : int >= 0
        Everything (plans and audio) follows from it; the same seed gives bit-identical audio.
    track_duration_s : float in [1, 3600]
        Length of every track.
    sr : int in [8000, 384000]
        Sample rate, 44100 by default.
    section_variety : float in [0, 1]
        Chance that a section after the first deals its sound afresh (key, which palette timbre
        plays which part, drum kit, balance, chord register) instead of keeping the track's first
        one. 1 (the default) leaves a track's identity to what it plays; 0 gives every track one
        fixed sound, which a network with random weights already tells apart well.

    Attributes
    ----------
    specs : list of TrackSpec
        The musical plan of every track (tempo, key, mode, progressions, patterns, voices, …).
    """

    def __init__(
        self,
        n_tracks: int = 16,
        seed: int = 0,
        track_duration_s: float = 60.0,
        sr: int = SR,
        section_variety: float = 1.0,
    ) -> None:
        if isinstance(n_tracks, bool) or not isinstance(n_tracks, (int, np.integer)) or n_tracks < 1:
            raise ConfigError(f"n_tracks={n_tracks!r} must be an integer >= 1")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed={seed!r} must be an integer >= 0")
        try:
            dur = float(track_duration_s)
        except (TypeError, ValueError):
            dur = float("nan")
        if not math.isfinite(dur) or not 1.0 <= dur <= 3600.0:
            raise ConfigError(f"track_duration_s={track_duration_s!r} must be between 1 and 3600 seconds")
        if (isinstance(section_variety, bool) or not isinstance(section_variety, (int, float))
                or not 0.0 <= float(section_variety) <= 1.0):
            raise ConfigError(f"section_variety={section_variety!r} must be a number in [0, 1]")
        self.section_variety = float(section_variety)
        self.sr = check_sr(sr)
        self.n_tracks = int(n_tracks)
        self.seed = int(seed)
        self.track_duration_s = dur
        self._n_total = n_samples(dur, self.sr)
        self.specs = [plan_track(self.seed, i) for i in range(self.n_tracks)]
        self.track_names = [s.name for s in self.specs]
        self._audio: dict = {}

    def __repr__(self) -> str:
        return (f"SyntheticCorpus(n_tracks={self.n_tracks}, seed={self.seed}, "
                f"track_duration_s={self.track_duration_s:g}, sr={self.sr}, "
                f"section_variety={self.section_variety:g})")

    def duration_s(self, track: int) -> float:
        """Length of ``track`` in seconds (the same for every track)."""
        check_clip_args(self.n_tracks, track, 0.0, 1.0)
        return self._n_total / self.sr

    def track(self, track: int) -> np.ndarray:
        """The whole of ``track`` (float32, read-only), generated on first use and cached."""
        track, _, _ = check_clip_args(self.n_tracks, track, 0.0, 1.0)
        audio = self._audio.get(track)
        if audio is None:
            audio = _render_track(
                self.specs[track], self.seed, self._n_total, self.sr, self.section_variety
            )
            audio.setflags(write=False)
            self._audio[track] = audio
        return audio

    def clip(self, track: int, start_s: float, duration_s: float) -> np.ndarray:
        """Mono float32 ``(n_samples(duration_s, sr),)`` from ``start_s``; zero past the end."""
        track, start, dur = check_clip_args(self.n_tracks, track, start_s, duration_s)
        return slice_padded(self.track(track), n_samples(start, self.sr), n_samples(dur, self.sr))

    def describe(self) -> dict:
        """Everything needed to regenerate the corpus, plus a summary of each track's plan."""
        return {
            "kind": "synthetic",
            "generator_version": GENERATOR_VERSION,
            "seed": self.seed,
            "n_tracks": self.n_tracks,
            "track_duration_s": self.track_duration_s,
            "sr": self.sr,
            "section_variety": self.section_variety,
            "tracks": [
                {"name": s.name, "tempo_bpm": s.tempo_bpm, "key": s.key_name, "mode": s.mode,
                 "meter": s.meter}
                for s in self.specs
            ],
        }
