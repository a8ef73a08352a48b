"""Differentiable constant-Q scaleogram: the ear's front end.

The transform follows the Immersions front end: for every bin ``k`` a Hann-windowed complex
exponential at the bin frequency ``f_k = fmin_hz * 2 ** (k / bins_per_octave)``, with a
librosa-style length ``L_k = Q * sr / f_k`` where ``Q = filter_scale / (2 ** (1 / bins_per_octave) - 1)``,
normalised to unit L1 norm. Frame ``m`` is centred at sample ``m * hop_length``:

    X[k, m] = sum_n x[m * hop_length + n] * conj(kernel_k[n]),   |n| < L_k / 2

with ``x`` extended by zeros on both sides (a linear, not circular, transform). The kernel is
``kernel_k[n] = w_k[n] * exp(2j * pi * f_k * n / sr) / sum(w_k)`` with the zero-phase Hann window
``w_k[n] = cos(pi * n / L_k) ** 2``, so a sine at a bin frequency of amplitude ``a`` has
``|X| ~= a / 2`` and advances in phase by exactly ``2 * pi * f_k * hop_length / sr`` per frame.

How it is computed (the fast path, float32): a per-octave multi-rate scheme with exact,
FFT-based rate reduction. The signal is zero-padded to ``P`` samples (``P >= n_samples +`` the
longest half-kernel, so the circular transform never wraps real samples into a frame) and
transformed by one real FFT. Each group of bins (about one octave) gets its own decimation factor
``D``, a power of two dividing ``hop_length``: the first ``P / (2 D)`` FFT bins, inverse-transformed
with ``P / D`` points, are the signal band-limited to ``sr / (2 D)`` and sampled every ``D``
samples. ``D`` is chosen so that each kernel's spectrum, out to ``SUPPORT_MAIN_LOBES`` main-lobe
widths ``sr / L_k`` beyond its centre, lies inside that band; the kernel sampled every ``D``
taps, applied at stride ``hop_length / D`` as one matrix product per group, then gives the same
inner products except for the kernel's far sidelobes (cut off and aliased, below ~2e-4 of the
peak). The top three octaves (kernels of at most ``FULL_RATE_MAX_TAPS`` taps) are applied to the
signal itself, exactly. So every decimated kernel has 50 to 130 taps at its own rate, the work is
one FFT of the signal plus one inverse FFT per low octave, of geometrically shrinking length, and
about ten matrix products; the run time holds no Python loop over bins. On CPU, real FFTs of
one or two signals go through complex FFTs of half the length, which torch runs 2-4x faster.
The transform is linear (zero padding); a signal meant as a loop should be given with some of its
periodic context on both sides.

Accuracy is measured against :func:`reference_magnitude`, a float64 direct computation of the
formula above, with :func:`relative_error` (maximum absolute error over the maximum reference
magnitude); the fast path stays below 1e-3 on noise, sweeps and tones.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from earengine.errors import ConfigError, ParameterError

__all__ = [
    "ScaleogramConfig",
    "Scaleogram",
    "reference_magnitude",
    "relative_error",
    "bin_frequencies_hz",
    "kernel_lengths",
]

# Spectral margin kept around each bin, in units of sr / L_k (a Hann main lobe is 2 wide): the
# Hann sidelobes beyond 12 units are below 1.7e-4 of the peak, which bounds the error of rate
# reduction.
SUPPORT_MAIN_LOBES = 12.0

# Kernels up to this many taps run at the full rate even where a lower rate would do: there a
# matrix product is cheaper than an inverse FFT of a half or a quarter of the signal (measured).
FULL_RATE_MAX_TAPS = 432


@dataclass(frozen=True)
class ScaleogramConfig:
    """Settings of the constant-Q scaleogram (defaults: the Immersions paper).

    Parameters
    ----------
    sr : int > 0
        Sample rate in Hz.
    fmin_hz : float, 0 < fmin_hz < sr / 2
        Centre frequency of the lowest bin.
    n_bins : int > 0
        Number of bins; the top bin ``fmin_hz * 2 ** ((n_bins - 1) / bins_per_octave)`` must be
        below ``sr / 2``.
    bins_per_octave : int > 0
        Bins per octave.
    hop_length : int > 0
        Samples between frames.
    filter_scale : float > 0
        Scale of the kernel lengths (Immersions: 0.43).
    phase_channel : bool
        Add a second channel: the frame-to-frame phase advance minus the advance expected for the
        bin frequency, wrapped to [-pi, pi].
    log_floor : float > 0
        Power floor inside the logarithm; silence maps to ``log(log_floor)``.
    log_offset : float
        Added after the logarithm (Immersions: 20.72, so silence is ~0).
    log_scale : float > 0
        Multiplies ``log(power + log_floor) + log_offset``.
    max_decimation : int >= 1
        Largest rate reduction used for the low bins (a speed setting: the result differs by
        less than 2e-4 of the peak); 1 computes every bin at the full rate.
    """

    sr: int = 44100
    fmin_hz: float = 40.0
    n_bins: int = 216
    bins_per_octave: int = 24
    hop_length: int = 1024
    filter_scale: float = 0.43
    phase_channel: bool = False
    log_floor: float = 1e-9
    log_offset: float = 20.72
    log_scale: float = 1.0
    max_decimation: int = 128

    def __post_init__(self) -> None:
        def positive(name: str, hint: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
                    or not math.isfinite(value):
                raise ConfigError(f"{name}={value!r} must be a finite number > 0 ({hint})")

        for name in ("sr", "n_bins", "bins_per_octave", "hop_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"{name}={value!r} must be an integer > 0")
        positive("sr", "samples per second, e.g. 44100")
        positive("n_bins", "e.g. 216")
        positive("bins_per_octave", "e.g. 24")
        positive("hop_length", "samples between frames, e.g. 1024")
        positive("fmin_hz", "lowest bin frequency in Hz, e.g. 40")
        positive("filter_scale", "e.g. 0.43")
        positive("log_floor", "e.g. 1e-9")
        positive("log_scale", "e.g. 1.0")
        if not math.isfinite(self.log_offset):
            raise ConfigError(f"log_offset={self.log_offset!r} must be finite (e.g. 20.72)")
        if isinstance(self.max_decimation, bool) or not isinstance(
                self.max_decimation, (int, np.integer)) or self.max_decimation < 1:
            raise ConfigError(f"max_decimation={self.max_decimation!r} must be an integer >= 1 (e.g. 128)")
        nyquist = self.sr / 2
        if self.fmin_hz >= nyquist:
            raise ConfigError(
                f"fmin_hz={self.fmin_hz} must be below sr/2={nyquist:g}; lower fmin_hz or raise sr")
        top = self.fmin_hz * 2.0 ** ((self.n_bins - 1) / self.bins_per_octave)
        if top >= nyquist:
            max_bins = int(math.floor(self.bins_per_octave * math.log2(nyquist / self.fmin_hz) - 1e-9)) + 1
            raise ConfigError(
                f"n_bins={self.n_bins} must be at most {max_bins} so that the top bin stays below "
                f"sr/2={nyquist:g} Hz (it would be {top:.0f} Hz); lower n_bins or fmin_hz, or raise sr")

    @property
    def q(self) -> float:
        """Quality factor ``filter_scale / (2 ** (1 / bins_per_octave) - 1)``."""
        return self.filter_scale / (2.0 ** (1.0 / self.bins_per_octave) - 1.0)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; :meth:`from_dict` inverts it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ScaleogramConfig":
        """Build from a dict as written by :meth:`to_dict`; missing keys take their defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in known:
                raise ConfigError(
                    f"{key}={data[key]!r} must be one of the ScaleogramConfig fields: {', '.join(sorted(known))}")
        return cls(**dict(data))


def bin_frequencies_hz(config: ScaleogramConfig) -> np.ndarray:
    """Centre frequency of each bin in Hz, float64 array of shape (n_bins,)."""
    return config.fmin_hz * 2.0 ** (np.arange(config.n_bins) / config.bins_per_octave)


def kernel_lengths(config: ScaleogramConfig) -> np.ndarray:
    """Kernel length ``L_k = Q * sr / f_k`` of each bin in samples (float64; taps are ``|n| < L_k / 2``)."""
    return config.q * config.sr / bin_frequencies_hz(config)


def _half_taps(length: float) -> int:
    """Largest integer n with n < length / 2."""
    return int(math.ceil(length / 2.0)) - 1


def _kernel(freq_hz: float, length: float, sr: int) -> np.ndarray:
    """Complex float64 kernel at taps n = -M..M (M = _half_taps(length)), unit L1 norm."""
    m = _half_taps(length)
    n = np.arange(-m, m + 1, dtype=np.float64)
    window = 0.5 + 0.5 * np.cos(2.0 * np.pi * n / length)
    return window * np.exp(2j * np.pi * freq_hz * n / sr) / window.sum()


def reference_magnitude(x: np.ndarray, config: ScaleogramConfig) -> np.ndarray:
    """Float64 direct computation of ``|X|``: plain inner products of each kernel with the signal.

    Parameters
    ----------
    x : np.ndarray, shape (n_samples,) or (batch, n_samples)
        Signal; computed in float64.
    config : ScaleogramConfig

    Returns
    -------
    np.ndarray, float64, shape (n_bins, n_frames) or (batch, n_bins, n_frames)
        Linear magnitude, frame ``m`` centred at sample ``m * hop_length``, zeros outside ``x``.
    """
    x = np.asarray(x, dtype=np.float64)
    squeeze = x.ndim == 1
    x = np.atleast_2d(x)
    n_frames = _n_frames(x.shape[-1], config)
    hop = config.hop_length
    out = np.empty((x.shape[0], config.n_bins, n_frames))
    for k, (freq, length) in enumerate(zip(bin_frequencies_hz(config), kernel_lengths(config))):
        kern = _kernel(freq, length, config.sr)
        m = (len(kern) - 1) // 2
        padded = np.pad(x, ((0, 0), (m, m + hop)))
        frames = np.lib.stride_tricks.sliding_window_view(padded, len(kern), axis=-1)[:, ::hop][:, :n_frames]
        out[:, k] = np.abs(frames @ np.conj(kern))
    return out[0] if squeeze else out


def relative_error(estimate: np.ndarray | Tensor, reference: np.ndarray) -> float:
    """Error measure of the scaleogram: ``max |estimate - reference| / max |reference|``.

    Both are linear magnitudes of the same shape; the maximum runs over every bin, frame and
    batch element.
    """
    if isinstance(estimate, Tensor):
        estimate = estimate.detach().cpu().double().numpy()
    estimate = np.asarray(estimate, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    scale = np.max(np.abs(reference))
    return float(np.max(np.abs(estimate - reference)) / (scale if scale > 0 else 1.0))


def _n_frames(n_samples: int, config: ScaleogramConfig) -> int:
    n = int(n_samples) // config.hop_length
    if n < 1:
        raise ParameterError(
            f"n_samples={n_samples} must be at least hop_length={config.hop_length} (one frame)")
    return n


def _smooth_at_least(n: int) -> int:
    """Smallest 2-3-5-smooth integer >= n (fast FFT sizes)."""
    best = None
    p2 = 1
    while p2 < 2 * n:
        p3 = p2
        while p3 < 2 * n:
            p5 = p3
            while p5 < 2 * n:
                if p5 >= n and (best is None or p5 < best):
                    best = p5
                p5 *= 5
            p3 *= 3
        p2 *= 2
    return best if best is not None else n


# Real FFTs of small batches through complex FFTs of half the length (even samples as real parts,
# odd samples as imaginary parts): torch's CPU real FFT of one long signal runs 2-4x slower.
_Twiddles = dict[tuple[int, str, bool], tuple[Tensor, Tensor]]


def _twiddles(n: int, device: torch.device, inverse: bool, cache: _Twiddles) -> tuple[Tensor, Tensor]:
    key = (n, str(device), inverse)
    if key not in cache:
        f = np.arange(n // 2 + 1)
        tw = np.exp(-2j * np.pi * f / n)
        if inverse:
            # E + i O with E = (Y + Yr) / 2, O = (Y - Yr) conj(tw) / 2, Yr[f] = conj(Y[n/2 - f]).
            a, b = 0.5 * (1 + 1j * np.conj(tw)), 0.5 * (1 - 1j * np.conj(tw))
            a, b = a[:-1], b[:-1]
        else:
            # E + tw O with E = (Z + Zr) / 2, O = (Z - Zr) / 2i, Zr[f] = conj(Z[n/2 - f]).
            a, b = 0.5 * (1 - 1j * tw), 0.5 * (1 + 1j * tw)
        cache[key] = (torch.from_numpy(a).to(torch.complex64).to(device),
                      torch.from_numpy(b).to(torch.complex64).to(device))
    return cache[key]


# Up to this batch size real FFTs go through half-length complex FFTs; above it the elementwise
# unpacking costs more than it saves.
PACKED_FFT_MAX_BATCH = 2


class _RealFFT(torch.autograd.Function):
    """``torch.fft.rfft(x, n)`` whose backward is one inverse real FFT (autograd's own backward
    is a complex FFT of the full length, twice the work)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, n: int) -> Tensor:
        ctx.n_in, ctx.n = x.shape[-1], n
        return torch.fft.rfft(x, n=n)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        # d loss / d x[t] = Re(sum_f grad[f] exp(2j pi f t / n)) over f = 0 .. n/2; irfft counts
        # the inner bins twice and DC (and Nyquist for even n) once, hence the doubling there.
        grad = grad.clone()
        grad[..., 0] *= 2
        if ctx.n % 2 == 0:
            grad[..., -1] *= 2
        return torch.fft.irfft(grad, n=ctx.n)[..., : ctx.n_in] * (ctx.n / 2), None


def _real_fft(x: Tensor, n: int, cache: _Twiddles) -> Tensor:
    """``torch.fft.rfft(x, n=n)`` for float32 ``x`` of shape (batch, <= n samples)."""
    if x.shape[0] > PACKED_FFT_MAX_BATCH or x.device.type != "cpu" or n % 2:
        return _RealFFT.apply(x, n)
    a, b = _twiddles(n, x.device, False, cache)
    padded = torch.nn.functional.pad(x, (0, n - x.shape[-1]))
    z = torch.fft.fft(torch.view_as_complex(padded.reshape(x.shape[0], n // 2, 2)))
    z = torch.cat([z, z[:, :1]], dim=-1)
    return z * a + z.flip(-1).conj() * b


def _real_ifft(spectrum: Tensor, n: int, cache: _Twiddles) -> Tensor:
    """``torch.fft.irfft(spectrum, n=n)`` for ``spectrum`` of shape (batch, <= n/2 + 1 bins)."""
    if spectrum.shape[0] > PACKED_FFT_MAX_BATCH or spectrum.device.type != "cpu" or n % 2:
        return torch.fft.irfft(spectrum, n=n)
    a, b = _twiddles(n, spectrum.device, True, cache)
    y = torch.nn.functional.pad(spectrum, (0, n // 2 + 1 - spectrum.shape[-1]))
    z = y[:, :-1] * a + y.flip(-1)[:, :-1].conj() * b
    return torch.view_as_real(torch.fft.ifft(z)).reshape(spectrum.shape[0], n)


class Scaleogram(torch.nn.Module):
    """Differentiable constant-Q scaleogram (log power, optional phase-derivative channel).

    Parameters
    ----------
    config : ScaleogramConfig
        Transform settings; see the module docstring for the exact definition.

    Attributes
    ----------
    n_channels : int
        1, or 2 with ``config.phase_channel``.
    silence_value : float
        Output of the log-power channel for a silent input:
        ``(log(log_floor) + log_offset) * log_scale``.

    Examples
    --------
    >>> s = Scaleogram(ScaleogramConfig(n_bins=48, fmin_hz=110.0, hop_length=512))
    >>> s(torch.zeros(2, 4096)).shape
    torch.Size([2, 1, 48, 8])
    """

    def __init__(self, config: ScaleogramConfig = ScaleogramConfig()) -> None:
        super().__init__()
        if not isinstance(config, ScaleogramConfig):
            raise ConfigError(f"config={type(config).__name__} must be a ScaleogramConfig")
        self.config = config
        self.n_channels = 2 if config.phase_channel else 1
        # Evaluated as forward() does, in float32, so a silent input gives exactly this value.
        zero = torch.zeros((), dtype=torch.float32)
        self.silence_value = float((torch.log(zero + config.log_floor) + config.log_offset) * config.log_scale)
        freqs = bin_frequencies_hz(config)
        lengths = kernel_lengths(config)
        hop = config.hop_length
        # Rate reduction per bin: the largest power of two D dividing hop (and <= max_decimation)
        # whose band sr / (2 D) holds the kernel's spectrum out to the margin.
        band_top_hz = freqs * (1.0 + SUPPORT_MAIN_LOBES / config.q)
        factors = []
        for top in band_top_hz:
            d = 1
            while (2 * d <= config.max_decimation and hop % (2 * d) == 0
                   and top <= config.sr / (2.0 * 2 * d)):
                d *= 2
            factors.append(d)
        self._groups: list[tuple[int, int, int]] = []  # (decimation, half taps at that rate, bins)
        order: list[int] = []
        # Largest decimation first: the groups then hold bins 0, 1, ... in order.
        for i, d_max in enumerate(sorted(set(factors), reverse=True)):
            bins = [k for k in range(config.n_bins) if factors[k] == d_max]
            # Short kernels are cheaper as plain matrix products at the full rate than an
            # inverse FFT of half or a quarter of the signal's length.
            d = 1 if 2 * _half_taps(lengths[bins[0]]) + 1 <= FULL_RATE_MAX_TAPS else d_max
            half = max(_half_taps(lengths[k]) // d for k in bins)
            taps = np.arange(-half, half + 1) * d
            mat = np.zeros((2 * half + 1, 2 * len(bins)))
            for j, k in enumerate(bins):
                kern = _kernel(freqs[k], lengths[k], config.sr)
                m = (len(kern) - 1) // 2
                inside = np.abs(taps) <= m
                # conj(kernel) sampled every d taps: real parts, then imaginary parts.
                mat[inside, j] = kern.real[taps[inside] + m]
                mat[inside, len(bins) + j] = -kern.imag[taps[inside] + m]
            self.register_buffer(f"kernel_{i}", torch.from_numpy(mat.T.copy()).float(), persistent=False)
            self._groups.append((d, half, len(bins)))
            order.extend(bins)
        self._longest_half_taps = max((half * d for d, half, _ in self._groups if d > 1), default=0)
        assert order == list(range(config.n_bins))
        self._twiddle_cache: _Twiddles = {}
        advance = 2.0 * np.pi * freqs * hop / config.sr
        self.register_buffer("expected_advance",
                             torch.from_numpy(np.angle(np.exp(1j * advance))).float()[:, None],
                             persistent=False)

    def n_frames(self, n_samples: int) -> int:
        """Number of frames for a signal of ``n_samples`` samples: ``n_samples // hop_length``."""
        return _n_frames(n_samples, self.config)

    def fft_length(self, n_samples: int) -> int:
        """Length of the zero-padded FFT used for a signal of ``n_samples`` samples."""
        hop = self.config.hop_length
        return _smooth_at_least(-(-(n_samples + self._longest_half_taps + 1) // hop)) * hop

    def parts(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Real and imaginary parts of ``X``, each (batch, n_bins, n_frames) float32."""
        if x.ndim != 2:
            raise ParameterError(
                f"x.ndim={x.ndim} must be 2 (batch, n_samples); add a batch axis with x[None]")
        x = x.float()
        n_samples = x.shape[-1]
        n_frames = self.n_frames(n_samples)
        hop = self.config.hop_length
        bands: dict[int, Tensor] = {}
        if any(d > 1 for d, _, _ in self._groups):
            fft_len = self.fft_length(n_samples)
            band = _real_fft(x, fft_len, self._twiddle_cache)
            # Each band is cut from the previous, wider one, so the backward pass pads
            # geometrically shrinking gradients instead of one full-length one per octave.
            for d in sorted(d for d, _, _ in self._groups if d > 1):
                band = band[:, : fft_len // (2 * d)]
                bands[d] = band
        re_parts, im_parts = [], []
        for i, (d, half, n_g) in enumerate(self._groups):
            stride = hop // d
            if d == 1:
                signal = torch.nn.functional.pad(x, (half, half + hop))
            else:
                # Band-limited to sr / (2 d) and sampled every d samples; the 1/d that belongs to
                # the inverse FFT cancels the d of the sparser inner product.
                low = _real_ifft(bands[d], fft_len // d, self._twiddle_cache)
                # Circular context: samples before 0 are the (zero) padding at the end.
                signal = torch.cat([low[:, low.shape[-1] - half:],
                                    low[:, : (n_frames - 1) * stride + half + 1]], dim=-1)
            frames = signal.unfold(-1, 2 * half + 1, stride)[:, :n_frames]
            kernel = getattr(self, f"kernel_{i}").float()  # float32 even after module.double()
            out = torch.matmul(kernel, frames.transpose(1, 2))  # (batch, 2 n_g, n_frames)
            re_parts.append(out[:, :n_g])
            im_parts.append(out[:, n_g:])
        return torch.cat(re_parts, dim=1), torch.cat(im_parts, dim=1)

    def complex(self, x: Tensor) -> Tensor:
        """Complex constant-Q transform ``X``, (batch, n_bins, n_frames) complex64."""
        return torch.complex(*self.parts(x))

    def magnitude(self, x: Tensor) -> Tensor:
        """Linear magnitude ``|X|``, (batch, n_bins, n_frames) float32 (not differentiable at 0)."""
        re, im = self.parts(x)
        return torch.sqrt(re.square() + im.square())

    def forward(self, x: Tensor) -> Tensor:
        """Log-power scaleogram.

        Parameters
        ----------
        x : Tensor, shape (batch, n_samples), float32 in [-1, 1]
            At least ``hop_length`` samples.

        Returns
        -------
        Tensor, shape (batch, n_channels, n_bins, n_frames), float32
            Channel 0: ``(log(|X|**2 + log_floor) + log_offset) * log_scale``. Channel 1 (with
            ``phase_channel``): phase advance from the previous frame minus the expected advance
            ``2 pi f_k hop / sr``, wrapped to [-pi, pi]; 0 in frame 0 and where the power of
            either frame is at most ``log_floor`` (there the phase is noise). Finite everywhere,
            with a finite gradient also at exact silence.
        """
        cfg = self.config
        re, im = self.parts(x)
        power = torch.addcmul(re.square(), im, im)
        logp = torch.log(power + cfg.log_floor)
        logp = logp + cfg.log_offset if cfg.log_scale == 1.0 else (logp + cfg.log_offset) * cfg.log_scale
        if not cfg.phase_channel:
            return logp[:, None]
        return torch.stack([logp, self._phase_derivative(re, im, power)], dim=1)

    def _phase_derivative(self, zr: Tensor, zi: Tensor, power: Tensor) -> Tensor:
        # X[m] * conj(X[m-1]): its angle is the phase advance.
        re = zr[..., 1:] * zr[..., :-1] + zi[..., 1:] * zi[..., :-1]
        im = zi[..., 1:] * zr[..., :-1] - zr[..., 1:] * zi[..., :-1]
        floor = self.config.log_floor
        tiny = (power[..., 1:] <= floor) | (power[..., :-1] <= floor)
        # The angle's gradient grows as 1 / |X|, without bound at 0 (0/0 in atan2): below the
        # floor feed atan2 a harmless point instead, which bounds it by 1 / sqrt(log_floor) like
        # the gradient of the log power.
        re_safe = torch.where(tiny, torch.ones_like(re), re)
        im_safe = torch.where(tiny, torch.zeros_like(im), im)
        advance = torch.atan2(im_safe, re_safe) - self.expected_advance.float()
        wrapped = torch.remainder(advance + math.pi, 2.0 * math.pi) - math.pi
        wrapped = torch.where(tiny, torch.zeros_like(wrapped), wrapped)
        return torch.nn.functional.pad(wrapped, (1, 0))
