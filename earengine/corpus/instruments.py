"""The synthetic corpus's instruments: eight pitched timbres, three drum kits and a small room.

The pool of timbres (:data:`TIMBRES`) is shared by every track: pluck, pad, brass-like saw,
square, organ, reed (band-limited wavetables that move from a bright to a dark table: a cheap
stand-in for a filter sweep), electric piano and bell (two-operator FM), with ADSR envelopes,
vibrato and chorus. A track plays its own variant of each (:func:`vary_timbre`: spectral tilt,
envelope times, FM index, chorus detune). The three drum kits (:data:`KITS`: pitch-swept sine kicks
and toms, noise-and-tone snares, filtered-noise hats and crash) are the same for every track and
seed, like a drum machine everyone owns. :func:`reverb_ir` is the decaying filtered noise on the
reverb send.

Notes are rendered from band-limited wavetables (one table per octave of fundamental, so nothing
aliases) with linear interpolation at a 32-bit fixed-point phase, and a :class:`Voice` renders an
identical note once and reuses it.

Examples
--------
>>> voice = Voice(TIMBRES["pluck"], 44100)
>>> note = voice.note(60, 4410, 0.8)
>>> note.dtype, note is voice.note(60, 4410, 0.8)
(dtype('float32'), True)
>>> sorted(drum_shots("tight", 44100))
['crash', 'hat', 'kick', 'open', 'snare', 'tom']
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import signal as sps

from earengine.music import midi_to_hz

__all__ = ["Timbre", "TIMBRES", "vary_timbre", "Voice", "Kit", "KITS", "KIT_NAMES", "drum_shots", "reverb_ir"]


@dataclass(frozen=True)
class Timbre:
    """How one instrument of the pool sounds: its oscillator, brightness over time and envelope."""

    kind: str                      # "table" (wavetables) or "fm" (two-operator FM)
    tilt: float = 1.0              # bright table: harmonic k has amplitude k**-tilt
    dark_tilt: float = 2.0         # the table the note settles into
    even: float = 1.0              # weight of even harmonics (0 = odd only)
    partials: tuple = ()           # explicit (harmonic, amplitude) pairs instead of a tilt
    bright_tau_s: float = 0.2
    detune_cents: float = 0.0      # a second, detuned oscillator (chorus); 0 = none
    attack_s: float = 0.005
    decay_s: float = 0.3
    sustain: float = 0.5
    release_s: float = 0.08
    vibrato_cents: float = 0.0
    vibrato_hz: float = 5.0
    fm_ratio: float = 1.0
    fm_index: float = 0.0
    fm_index_sustain: float = 0.0
    fm_tau_s: float = 0.2


TIMBRES = {
    "pluck": Timbre("table", tilt=0.9, dark_tilt=2.6, bright_tau_s=0.06, attack_s=0.002,
                     decay_s=0.35, sustain=0.0, release_s=0.06),
    "pad": Timbre("table", tilt=1.3, dark_tilt=2.2, bright_tau_s=0.8, detune_cents=9.0,
                   attack_s=0.2, decay_s=1.0, sustain=0.8, release_s=0.35, vibrato_cents=4.0),
    "brass": Timbre("table", tilt=1.0, dark_tilt=1.9, bright_tau_s=0.3, detune_cents=5.0,
                     attack_s=0.03, decay_s=0.4, sustain=0.7, release_s=0.1,
                     vibrato_cents=10.0, vibrato_hz=5.5),
    "square": Timbre("table", tilt=1.0, dark_tilt=1.7, even=0.05, bright_tau_s=0.15,
                      attack_s=0.004, decay_s=0.2, sustain=0.6, release_s=0.05),
    "organ": Timbre("table", partials=((1, 1.0), (2, 0.7), (3, 0.5), (4, 0.35), (6, 0.25), (8, 0.18)),
                     attack_s=0.008, decay_s=0.1, sustain=0.9, release_s=0.05),
    "reed": Timbre("table", tilt=1.7, dark_tilt=2.4, even=0.3, bright_tau_s=0.25,
                    attack_s=0.025, decay_s=0.3, sustain=0.8, release_s=0.08,
                    vibrato_cents=7.0, vibrato_hz=4.8),
    "epiano": Timbre("fm", fm_ratio=1.0, fm_index=2.2, fm_index_sustain=0.3, fm_tau_s=0.25,
                      attack_s=0.002, decay_s=1.1, sustain=0.12, release_s=0.15),
    "bell": Timbre("fm", fm_ratio=3.5, fm_index=2.8, fm_index_sustain=0.4, fm_tau_s=0.5,
                    attack_s=0.002, decay_s=1.3, sustain=0.0, release_s=0.4),
}


def vary_timbre(t: Timbre, rng: np.random.Generator) -> Timbre:
    """A per-track variant of a pool timbre: same instrument, a slightly different player."""
    time_scale = float(np.exp(rng.normal(0.0, 0.12)))
    tilt_shift = float(rng.normal(0.0, 0.08))
    return replace(
        t,
        tilt=max(0.5, t.tilt + tilt_shift),
        dark_tilt=max(0.8, t.dark_tilt + tilt_shift),
        bright_tau_s=t.bright_tau_s * float(np.exp(rng.normal(0.0, 0.25))),
        detune_cents=t.detune_cents * float(np.exp(rng.normal(0.0, 0.2))),
        attack_s=t.attack_s * time_scale,
        decay_s=t.decay_s * time_scale,
        release_s=t.release_s * time_scale,
        fm_index=t.fm_index * float(np.exp(rng.normal(0.0, 0.15))),
    )


_TABLE_N = 2048
_LEVEL_F0_HZ = 20.0


def _wavetable(amps: np.ndarray) -> np.ndarray:
    """One cycle from harmonic amplitudes (sine phases), peak 1, with a wrap-around guard sample."""
    spectrum = np.zeros(_TABLE_N // 2 + 1, dtype=np.complex128)
    spectrum[1:amps.size + 1] = -1j * amps
    table = np.fft.irfft(spectrum, n=_TABLE_N)
    table /= np.max(np.abs(table))
    return np.append(table, table[0]).astype(np.float32)


_SINE = _wavetable(np.array([1.0]))


_FRAC_BITS = 32 - int(math.log2(_TABLE_N))


def _phase(n: int, freq_hz: float, sr: int, offset_cycles: float = 0.0) -> np.ndarray:
    """Phase of a steady oscillator as 32-bit fixed point (one cycle = 2**32), wrapping for free."""
    inc = np.uint32(int(round(freq_hz / sr * 2**32)) % 2**32)
    start = np.uint32(int(round((offset_cycles % 1.0) * 2**32)) % 2**32)
    p = np.arange(n, dtype=np.uint32)
    p *= inc
    p += start
    return p


def _to_phase(cycles: np.ndarray) -> np.ndarray:
    """Float cycles (any sign) as a fixed-point phase offset."""
    return (cycles * np.float32(2**32)).astype(np.int64).astype(np.uint32)


def _lookup(table: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Linear-interpolated read of a ``_TABLE_N + 1`` table at a fixed-point ``phase``."""
    i = phase >> np.uint32(_FRAC_BITS)
    frac = (phase & np.uint32((1 << _FRAC_BITS) - 1)).astype(np.float32)
    frac *= np.float32(1.0 / (1 << _FRAC_BITS))
    a = table[i]
    i += np.uint32(1)
    b = table[i]
    b -= a
    b *= frac
    b += a
    return b


class Voice:
    """Renders notes of one timbre, band-limited: one wavetable pair per octave of fundamental."""

    def __init__(self, timbre: Timbre, sr: int) -> None:
        self.t = timbre
        self.sr = sr
        self._tables: dict = {}
        self._notes: dict = {}

    def _tables_for(self, f0_hz: float) -> tuple:
        level = max(0, math.ceil(math.log2(max(f0_hz, 1.0) / _LEVEL_F0_HZ)))
        if level not in self._tables:
            # Keep every harmonic below 0.45 * sr for the highest fundamental of this level.
            k_max = max(1, min(_TABLE_N // 2 - 1, int(0.45 * self.sr / (_LEVEL_F0_HZ * 2**level))))
            k = np.arange(1, k_max + 1, dtype=np.float64)
            if self.t.partials:
                amps = np.zeros(k_max)
                for h, a in self.t.partials:
                    if h <= k_max:
                        amps[h - 1] = a
                bright = dark = amps
            else:
                weight = np.where(k % 2 == 0, self.t.even, 1.0)
                bright = weight * k ** -self.t.tilt
                dark = weight * k ** -self.t.dark_tilt
            self._tables[level] = (_wavetable(bright), _wavetable(dark))
        return self._tables[level]

    def note(self, midi: int, gate_n: int, velocity: float) -> np.ndarray:
        """Unit-velocity-scaled note (velocity only shapes its brightness); cached per value."""
        vel_q = round(velocity * 4) / 4
        key = (midi, gate_n, vel_q)
        if key not in self._notes:
            self._notes[key] = self._render(midi, gate_n, max(0.25, vel_q))
        return self._notes[key]

    def _render(self, midi: int, gate_n: int, vel: float) -> np.ndarray:
        t, sr = self.t, self.sr
        f0 = midi_to_hz(midi)
        n = gate_n + int(4.0 * t.release_s * sr)
        if t.sustain == 0.0:  # percussive: nothing is left after a few decay times
            n = min(n, int((t.attack_s + 5.0 * t.decay_s) * sr))
        n = max(n, 64)
        time = np.arange(n, dtype=np.float32) / np.float32(sr)

        # Envelope, piece by piece, so that each exponential runs only where it matters.
        env = np.empty(n, dtype=np.float32)
        n_att = min(n, max(1, int(t.attack_s * sr)))
        env[:n_att] = time[:n_att] / np.float32(t.attack_s)
        env[n_att:] = np.exp(-(time[n_att:] - np.float32(t.attack_s)) / np.float32(t.decay_s))
        env[n_att:] *= np.float32(1.0 - t.sustain)
        env[n_att:] += np.float32(t.sustain)
        if gate_n < n:
            env[gate_n:] *= np.exp(-(time[gate_n:] - time[gate_n]) / np.float32(t.release_s))
        fade = min(256, n)
        env[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)

        # Fixed-point phase: exact, wraps by itself, and half the memory traffic of float64.
        phase = _phase(n, f0, sr)
        if t.vibrato_cents:
            # Vibrato fades in; its phase offset is the integral of the frequency deviation.
            depth = f0 * t.vibrato_cents * math.log(2.0) / 1200.0
            w = 2.0 * math.pi * t.vibrato_hz
            ramp = np.minimum(time / np.float32(0.4), np.float32(1.0))
            wobble = ramp * np.float32(depth / w) * (np.float32(1.0) - np.cos(np.float32(w) * time))
            phase += _to_phase(wobble)

        if t.kind == "fm":
            n_idx = min(n, int(7.0 * t.fm_tau_s * sr))
            index = np.full(n, t.fm_index_sustain / (2.0 * math.pi), dtype=np.float32)
            index[:n_idx] += np.float32((t.fm_index * vel - t.fm_index_sustain) / (2.0 * math.pi)) * np.exp(
                -time[:n_idx] / np.float32(t.fm_tau_s))
            index *= _lookup(_SINE, _phase(n, f0 * t.fm_ratio, sr))
            phase += _to_phase(index)
            out = _lookup(_SINE, phase)
        else:
            detune = 2.0 ** (t.detune_cents / 1200.0)
            bright, dark = self._tables_for(f0 * detune)
            out = _lookup(dark, phase)
            if bright is not dark:
                m = min(n, int(7.0 * t.bright_tau_s * sr))
                mix = np.float32(0.4 + 0.6 * vel) * np.exp(-time[:m] / np.float32(t.bright_tau_s))
                out[:m] += mix * (_lookup(bright, phase[:m]) - out[:m])
            if t.detune_cents:
                out += _lookup(dark, _phase(n, f0 * detune, sr, 0.37))
                out *= np.float32(0.5)
        out *= env
        return out


@dataclass(frozen=True)
class Kit:
    """How one shared drum kit sounds: kick sweep, snare tone and rattle, hat and crash decays."""

    kick_start_hz: float
    kick_end_hz: float
    kick_pitch_tau_s: float
    kick_decay_s: float
    kick_click: float
    snare_hz: float
    snare_decay_s: float
    snare_snap: float
    snare_band_hz: tuple
    hat_decay_s: float
    hat_cut_hz: float
    open_decay_s: float


KITS = {
    "electro": Kit(180.0, 48.0, 0.035, 0.35, 0.3, 200.0, 0.18, 0.7, (1500.0, 9000.0), 0.04, 8000.0, 0.3),
    "acoustic": Kit(110.0, 55.0, 0.02, 0.22, 0.6, 190.0, 0.15, 0.55, (1000.0, 7000.0), 0.05, 6000.0, 0.35),
    "tight": Kit(220.0, 60.0, 0.015, 0.15, 0.4, 240.0, 0.09, 0.8, (2000.0, 10000.0), 0.025, 9000.0, 0.2),
}


KIT_NAMES = tuple(KITS)


@functools.lru_cache(maxsize=16)
def drum_shots(kit_name: str, sr: int) -> dict:
    """One-shot drum sounds of a shared kit, two takes each so repeated hits are not identical.

    The kits are the same for every track and seed (like a drum machine everyone owns), so they
    are made once per process.
    """
    kit = KITS[kit_name]
    rng = np.random.default_rng(np.random.SeedSequence([0xD2, KIT_NAMES.index(kit_name)]))
    hp_hat = sps.butter(2, min(kit.hat_cut_hz, 0.45 * sr), btype="highpass", fs=sr, output="sos")
    hp_crash = sps.butter(2, min(4000.0, 0.45 * sr), btype="highpass", fs=sr, output="sos")
    band = (kit.snare_band_hz[0], min(kit.snare_band_hz[1], 0.45 * sr))
    bp_snare = sps.butter(2, band, btype="bandpass", fs=sr, output="sos")
    k_start, k_end = kit.kick_start_hz, kit.kick_end_hz
    k_decay, s_decay, s_hz = kit.kick_decay_s, kit.snare_decay_s, kit.snare_hz
    h_decay, o_decay = kit.hat_decay_s, kit.open_decay_s

    def times(dur_s: float) -> np.ndarray:
        return np.arange(int(dur_s * sr)) / sr

    def noise(n: int) -> np.ndarray:
        return rng.standard_normal(n)

    def swept(t: np.ndarray, f_start: float, f_end: float, pitch_tau: float, decay: float) -> np.ndarray:
        f = f_end + (f_start - f_end) * np.exp(-t / pitch_tau)
        return np.sin(2.0 * np.pi * np.cumsum(f) / sr) * np.exp(-t / decay)

    def unit(x: np.ndarray) -> np.ndarray:
        fade = min(128, x.size)
        x = x.copy()
        x[-fade:] *= np.linspace(1.0, 0.0, fade)
        x = (x / np.max(np.abs(x))).astype(np.float32)
        x.setflags(write=False)
        return x

    shots: dict = {name: [] for name in ("kick", "snare", "hat", "open", "crash", "tom")}
    for _ in range(2):
        t = times(max(0.3, 5 * k_decay))
        click = sps.sosfilt(hp_hat, noise(t.size)) * np.exp(-t / 0.004) * kit.kick_click
        shots["kick"].append(unit(swept(t, k_start, k_end, kit.kick_pitch_tau_s, k_decay) + click))
        t = times(max(0.25, 5 * s_decay))
        tone = (np.sin(2 * np.pi * s_hz * t) + 0.5 * np.sin(2 * np.pi * 1.6 * s_hz * t)) * np.exp(-t / 0.06)
        rattle = sps.sosfilt(bp_snare, noise(t.size)) * np.exp(-t / s_decay)
        rattle /= np.max(np.abs(rattle))
        shots["snare"].append(unit((1 - kit.snare_snap) * tone + kit.snare_snap * 1.5 * rattle))
        t = times(6 * h_decay)
        shots["hat"].append(unit(sps.sosfilt(hp_hat, noise(t.size)) * np.exp(-t / h_decay)))
        t = times(5 * o_decay)
        shots["open"].append(unit(sps.sosfilt(hp_hat, noise(t.size)) * np.exp(-t / o_decay)))
        t = times(2.5)
        shots["crash"].append(unit(sps.sosfilt(hp_crash, noise(t.size)) * np.exp(-t / 0.7)))
    # Toms for fills: three pitches, low to high (a "take" picks the pitch).
    t = times(0.6)
    shots["tom"] = [unit(swept(t, 1.6 * f, f, 0.04, 0.2)) for f in (k_end * 2.2, k_end * 3.0, k_end * 4.0)]
    return shots


def reverb_ir(rng: np.random.Generator, sr: int, *, length_s: float = 0.6,
               decay_s: float = 0.2) -> np.ndarray:
    """A small room: decaying noise, darker as it decays, with a short pre-delay."""
    t = np.arange(int(length_s * sr)) / sr
    ir = rng.standard_normal(t.size) * np.exp(-t / decay_s)
    ir = sps.sosfilt(sps.butter(1, min(5000.0, 0.45 * sr), btype="lowpass", fs=sr, output="sos"), ir)
    ir[: int(0.012 * sr)] = 0.0
    fade = int(0.1 * sr)
    ir[-fade:] *= np.linspace(1.0, 0.0, fade)
    return (ir / np.sqrt(np.sum(ir**2))).astype(np.float32)

