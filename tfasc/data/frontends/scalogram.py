"""``features.kind: scalogram``: wavelet scalograms ``[bins, frames, channels]`` per example.

The front-end of Wu & Lee, "Searching for efficient network architectures for acoustic scene
classification" (DCASE 2020 Task 1B), Sec. 4.2: an STFT (2048 points, 25 ms window, 10 ms hop at
48 kHz), the natural logarithm of its magnitude, and a bank of Morlet wavelet filters applied along
the frequency axis of every frame::

    S[k, t, c] = sum_f W[f, k] * ln(max(|X_c[t, f]|, amin))

``X_c`` is the STFT of channel ``c`` (:func:`tfasc.data.features.stft_magnitude`, the log-mel
front-end's framing: periodic ``window`` of ``win_length`` samples centred in ``n_fft``, padded by
``n_fft // 2`` on both sides with ``center``) and ``W`` is :func:`wavelet_filter_bank`,
``[n_fft // 2 + 1, bins]``. Frames are :func:`tfasc.data.features.num_frames`, as for log-mel.

The filter bank
---------------
Kymatio's first-order filter bank (``kymatio.scattering1d.filter_bank.scattering_filter_factory``,
identical in Kymatio 0.2 and 0.3) with support ``N = n_fft``, ``J = log2(wavelet_max_scale)`` and
``Q = wavelets_per_octave``, sampled at the ``n_fft // 2 + 1`` non-negative STFT bins. Frequencies
are in cycles per sample of the STFT's signal (bin ``f`` is ``f / n_fft``), so the matrix is the
same at every sample rate and a filter's centre in Hz is ``xi * sample_rate``. In Kymatio's order,
highest frequency first:

- constant-Q Morlets ``k = 0, 1, ...``: ``xi_k = xi_max * 2**(-k/Q)`` with
  ``xi_max = max(1 / (1 + 2**(3/Q)), 0.35)`` and
  ``sigma_k = xi_k * (1 - 2**(-1/Q)) / (1 + 2**(-1/Q)) / sqrt(2 ln(1/r))``, ``r = sqrt(1/2)``
  (adjacent filters cross at 1/sqrt(2) of their peak: half power), for as long as
  ``sigma_k > sigma_min = 0.1 / wavelet_max_scale`` (Kymatio's ``sigma0 / 2**J``): the widest
  wavelet in time has the maximum scale;
- ``Q - 1`` constant-bandwidth Morlets below the last one (the "elbow" ``xi_e``):
  ``xi = xi_e * (1 - q/Q)``, ``q = 1 .. Q-1``, all of width ``sigma_min``;
- the Gaussian low-pass ``phi`` (centre 0, width ``sigma_min``: Kymatio's ``T = 2**J``).

A Morlet is a Gaussian ``exp(-(w - xi)**2 / (2 sigma**2))`` minus ``kappa`` times the Gaussian
around 0 so that it has zero mean (``W[0, k] = 0``), periodized over the frequency period 1 as
Kymatio does, and normalized to unit l1 norm of its impulse response (Kymatio's ``l1``): a filter
wider than an STFT bin then peaks at about 1. The front-end takes the ``bins`` first filters of
that list and orders them low -> high frequency like mel bands: row 0 is the lowest.

With the paper's ``n_fft=2048, wavelet_max_scale=1024, wavelets_per_octave=16`` Kymatio has 112
constant-Q Morlets, 15 constant-bandwidth ones and the low-pass: exactly the paper's 128 bins
(``scalogram_bins: 128``, the default). At 48 kHz their centres are 0 Hz (the low-pass), 11.4 Hz to
171.7 Hz (constant bandwidth, sigma 4.7 Hz) and 183.1 Hz to 22.44 kHz (constant Q, 16 per octave).
The 34 lowest (centres up to 382 Hz at 48 kHz) are narrower than one STFT bin (half-maximum width
below 23.4 Hz) and catch one or two bins each, as in the paper. Asking for more bins than the bank
has (they would need a scale beyond ``wavelet_max_scale``) is a ``ValueError``, as is a
``wavelet_max_scale`` that is not a power of two (``2**J``) or exceeds the ``n_fft`` support.

Channels
--------
``keep`` computes one scalogram per channel; ``mono`` averages the channels' waveforms first;
``mid_side`` (stereo only) is the paper's average and difference **of the two channels' scalogram
features**, ``[(S_L + S_R) / 2, (S_L - S_R) / 2]``. Unlike the log-mel front-end, whose
``mid_side`` mixes the waveforms, this mixes features (the log makes the two differ).

Cached as float16 when every value provably fits (``|S| <= max_k sum_f |W[f, k]| *
max(-ln amin, ln win_length)``, about 1.4e3 with the defaults: float16 keeps ~5e-4 of it relative),
else float32. No C implementation exists: a bundle's device must compute this same scalogram
(:meth:`ScalogramFrontEnd.parameters`) before the int8 model.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

import tensorflow as tf  # the tfasc package __init__ has set TF_USE_LEGACY_KERAS already

from tfasc.data.features import (
    CHANNEL_MODES,
    LogMelParams,
    _check_positive_int,
    _check_stft_parameters,
    num_frames,
    stft_magnitude,
)
from tfasc.data.frontends import register

#: Kymatio's width of the low-pass at scale 1 (``sigma0``): ``sigma_min = SIGMA0 / 2**J``.
SIGMA0 = 0.1
#: Kymatio's ``r_psi``: adjacent wavelets cross at this fraction of their peak (sqrt(1/2)).
R_PSI = math.sqrt(0.5)
#: What ``parameters()`` states the filter bank and logarithm are (device and cache key).
FILTER_BANK = "kymatio_morlet_1d_l1"
LOG = "natural"
_FLOAT16_MAX = float(np.finfo(np.float16).max)
_LOG_MEL_DEFAULTS = LogMelParams()


@dataclass(frozen=True, kw_only=True)
class ScalogramParams:
    """The scalogram's parameters (a recipe's ``features`` fields of the same names).

    STFT fields mean what they mean for log-mel (:class:`tfasc.data.features.LogMelParams`, whose
    defaults they share); the last three are the paper's Kymatio settings.
    """

    n_fft: int = _LOG_MEL_DEFAULTS.n_fft
    win_length: int | None = _LOG_MEL_DEFAULTS.win_length
    hop_length: int = _LOG_MEL_DEFAULTS.hop_length
    window: Literal["hann", "hamming"] = _LOG_MEL_DEFAULTS.window
    center: bool = _LOG_MEL_DEFAULTS.center
    pad_mode: Literal["constant", "reflect", "symmetric"] = _LOG_MEL_DEFAULTS.pad_mode
    amin: float = _LOG_MEL_DEFAULTS.amin
    """Floor of the STFT magnitude before the logarithm: ``ln(max(|X|, amin))``."""
    channel_mode: Literal["keep", "mono", "mid_side"] = _LOG_MEL_DEFAULTS.channel_mode
    """``mid_side``: average and difference of the two channels' scalograms (not waveforms)."""
    scalogram_bins: int = 128
    wavelets_per_octave: int = 16
    wavelet_max_scale: int = 1024

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def of(cls, source: Any) -> "ScalogramParams":
        """The scalogram parameters among the fields of ``source`` (e.g. a recipe's features section)."""
        return cls(**{name: getattr(source, name) for name in cls.names()})

    def as_kwargs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.names()}

    def check(self, sample_rate: float) -> int:
        """Raises ``ValueError`` naming the first bad parameter; returns the effective ``win_length``."""
        if not sample_rate > 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate!r}")
        win_length = _check_stft_parameters(
            self.n_fft, self.hop_length, self.win_length, self.window, self.pad_mode
        )
        if not isinstance(self.center, (bool, np.bool_)):
            raise ValueError(f"center must be True or False, got {self.center!r}")
        if not self.amin > 0:
            raise ValueError(f"amin must be positive, got {self.amin!r}")
        if self.channel_mode not in CHANNEL_MODES:
            raise ValueError(f"channel_mode must be one of {CHANNEL_MODES}, got {self.channel_mode!r}")
        _check_positive_int("scalogram_bins", self.scalogram_bins)
        _check_positive_int("wavelets_per_octave", self.wavelets_per_octave)
        _check_positive_int("wavelet_max_scale", self.wavelet_max_scale)
        scale = int(self.wavelet_max_scale)
        if scale < 2 or scale & (scale - 1):
            raise ValueError(
                f"wavelet_max_scale must be a power of two 2**J >= 2 (Kymatio's J), got {scale}"
            )
        if scale > self.n_fft:
            raise ValueError(
                f"wavelet_max_scale={scale} exceeds the n_fft={self.n_fft} support of the filters: "
                "lower wavelet_max_scale or raise n_fft"
            )
        available = len(_kymatio_filters(int(self.wavelets_per_octave), scale)[0])
        if self.scalogram_bins > available:
            raise ValueError(
                f"scalogram_bins={self.scalogram_bins} exceeds the {available} filters of the wavelet "
                f"bank with wavelets_per_octave={self.wavelets_per_octave} and wavelet_max_scale="
                f"{scale} (more would need a scale beyond wavelet_max_scale): lower scalogram_bins, "
                "or raise wavelet_max_scale or wavelets_per_octave"
            )
        return win_length

    def output_shape(self, num_samples: int, channels: int) -> tuple[int, int, int]:
        """``(scalogram_bins, frames, channels)`` of one clip of ``num_samples`` x ``channels``."""
        if self.channel_mode == "mid_side" and channels != 2:
            raise ValueError(f"channel_mode='mid_side' needs 2 channels, got {channels}")
        frames = num_frames(num_samples, n_fft=self.n_fft, hop_length=self.hop_length, center=self.center)
        out_channels = {"mono": 1, "mid_side": 2}.get(self.channel_mode, channels)
        return self.scalogram_bins, frames, out_channels


# ----------------------------------------------------------------------------------------------
# The filter bank (numpy, float64)


@functools.lru_cache(maxsize=16)
def _kymatio_filters(q: int, max_scale: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(xi, sigma)`` in cycles per sample of Kymatio's first-order filters and then its low-pass
    (``xi = 0``), highest frequency first (``compute_params_filterbank``, step for step)."""
    sigma_min = SIGMA0 / max_scale
    xi_max = max(1.0 / (1.0 + 2.0 ** (3.0 / q)), 0.35)
    factor = 1.0 / 2.0 ** (1.0 / q)
    sigma_max = xi_max * (1.0 - factor) / (1.0 + factor) / math.sqrt(2.0 * math.log(1.0 / R_PSI))
    if sigma_max <= sigma_min:
        xis, sigmas, elbow = [], [], sigma_max
    else:
        xis, sigmas = [xi_max], [sigma_max]
        while sigmas[-1] > sigma_min * 2.0 ** (1.0 / q):  # constant Q
            xis.append(xis[-1] / 2.0 ** (1.0 / q))
            sigmas.append(sigmas[-1] / 2.0 ** (1.0 / q))
        elbow = xis[-1]
    for step in range(1, q):  # constant bandwidth below the elbow
        xis.append(elbow - step / q * elbow)
        sigmas.append(sigma_min)
    xis.append(0.0)  # the low-pass phi
    sigmas.append(sigma_min)
    return tuple(xis), tuple(sigmas)


def _morlet(n: int, xi: float, sigma: float) -> np.ndarray:
    """Kymatio's ``morlet_1d(n, xi, sigma)`` (``xi == 0``: ``gauss_1d``), at ``np.fft.fftfreq(n)`` order."""
    periods = min(int(math.ceil(math.sqrt(-2.0 * sigma**2 * math.log(1e-7)) + 1)), 5)
    freqs = np.arange((1 - periods) * n, periods * n, dtype=np.float64) / n
    freqs_low = np.fft.fftfreq(n) if periods == 1 else freqs
    fold = lambda h: h.reshape(-1, n).mean(axis=0)  # periodize over the frequency period 1
    low_pass = fold(np.exp(-(freqs_low**2) / (2.0 * sigma**2)))
    if xi:
        gabor = fold(np.exp(-((freqs - xi) ** 2) / (2.0 * sigma**2)))
        filter_f = gabor - (gabor[0] / low_pass[0]) * low_pass  # zero mean: filter_f[0] == 0
    else:
        filter_f = low_pass
    return filter_f / np.abs(np.fft.ifft(filter_f)).sum()  # unit l1 norm in time


@functools.lru_cache(maxsize=16)
def _cached_filter_bank(n_fft: int, bins: int, q: int, max_scale: int) -> np.ndarray:
    xis, sigmas = _kymatio_filters(q, max_scale)
    columns = [_morlet(n_fft, xi, sigma)[: n_fft // 2 + 1] for xi, sigma in zip(xis[:bins], sigmas[:bins])]
    bank = np.ascontiguousarray(np.stack(columns[::-1], axis=1))  # low -> high frequency
    bank.setflags(write=False)
    return bank


def wavelet_filter_bank(sample_rate: float, params: ScalogramParams) -> np.ndarray:
    """``W``, ``[n_fft // 2 + 1, scalogram_bins]`` float64: column ``k`` is filter ``k`` (lowest
    frequency first) sampled at the STFT bins ``f / n_fft`` cycles per sample.

    The module docstring defines the bank. It is the same for every sample rate (the filters live
    in cycles per sample); ``sample_rate`` is checked with the parameters and gives the Hz of
    :func:`wavelet_frequencies`.
    """
    params.check(sample_rate)
    return _cached_filter_bank(
        int(params.n_fft), int(params.scalogram_bins), int(params.wavelets_per_octave),
        int(params.wavelet_max_scale),
    ).copy()  # the cached array is read-only


def wavelet_frequencies(sample_rate: float, params: ScalogramParams) -> tuple[np.ndarray, np.ndarray]:
    """``(centre_hz, sigma_hz)`` of the bank's columns (lowest first; the low-pass has centre 0):
    the nominal Gaussian centre and width, ``xi * sample_rate`` and ``sigma * sample_rate``."""
    params.check(sample_rate)
    xis, sigmas = _kymatio_filters(int(params.wavelets_per_octave), int(params.wavelet_max_scale))
    bins = params.scalogram_bins
    return (np.asarray(xis[:bins][::-1]) * sample_rate, np.asarray(sigmas[:bins][::-1]) * sample_rate)


# ----------------------------------------------------------------------------------------------
# The front-end


def scalogram(waveforms, *, sample_rate: float, params: ScalogramParams) -> tf.Tensor:
    """``[batch, samples, channels]`` float32 -> ``[batch, scalogram_bins, frames, channels_out]``
    float32 (a tf graph: eager, ``tf.function`` and ``tf.data``); see the module docstring."""
    win_length = params.check(sample_rate)
    signal = tf.convert_to_tensor(waveforms)
    if not signal.dtype.is_floating:
        raise ValueError(f"waveforms must hold floating-point samples in [-1, 1], got dtype {signal.dtype.name}")
    signal = tf.cast(signal, tf.float32)
    if signal.shape.rank != 3:
        raise ValueError(f"waveforms must be [batch, samples, channels], got shape {signal.shape}")
    if params.channel_mode == "mono":  # librosa.to_mono: mean over channels, before the STFT
        signal = tf.reduce_mean(signal, axis=-1, keepdims=True)
    elif params.channel_mode == "mid_side" and signal.shape[-1] != 2:
        raise ValueError(f"channel_mode='mid_side' needs 2 channels, got {signal.shape[-1]} (shape {signal.shape})")

    magnitude = stft_magnitude(  # float64 STFT inside (power 1), float32 out
        signal, n_fft=params.n_fft, hop_length=params.hop_length, win_length=win_length,
        window=params.window, center=params.center, pad_mode=params.pad_mode, power=1.0,
    )  # [batch, channels, frames, n_fft // 2 + 1]
    log_magnitude = tf.math.log(tf.math.maximum(magnitude, params.amin))
    bins = params.scalogram_bins
    bank = tf.constant(wavelet_filter_bank(sample_rate, params), dtype=tf.float32)
    shape = tf.shape(log_magnitude)
    features = tf.linalg.matmul(tf.reshape(log_magnitude, [-1, params.n_fft // 2 + 1]), bank)
    features = tf.reshape(features, tf.concat([shape[:3], [bins]], axis=0))
    features = tf.transpose(features, [0, 3, 2, 1])  # [batch, bins, frames, channels]
    features = tf.ensure_shape(features, [magnitude.shape[0], bins, magnitude.shape[2], magnitude.shape[1]])
    if params.channel_mode == "mid_side":  # the paper's average and difference of the scalograms
        left, right = features[..., 0], features[..., 1]
        features = tf.stack([(left + right) * 0.5, (left - right) * 0.5], axis=-1)
    return features


def value_bound(params: ScalogramParams) -> float:
    """An upper bound of ``|S|`` for clips in [-1, 1]: ``|ln max(|X|, amin)| <= max(-ln amin,
    ln win_length)`` (``|X|`` is at most the window's sum) times the largest column l1 norm of ``W``."""
    win_length = params.check(1.0)
    bank = _cached_filter_bank(
        int(params.n_fft), int(params.scalogram_bins), int(params.wavelets_per_octave),
        int(params.wavelet_max_scale),
    )
    log_bound = max(-math.log(params.amin), math.log(win_length), 0.0)
    return float(np.abs(bank).sum(axis=0).max()) * log_bound


@dataclasses.dataclass(frozen=True)
class ScalogramFrontEnd:
    params: ScalogramParams = ScalogramParams()
    kind: str = "scalogram"

    @property
    def cache_dtype(self) -> np.dtype:
        """float16 when every value provably stays below half float16's maximum, else float32."""
        return np.dtype(np.float16 if value_bound(self.params) <= _FLOAT16_MAX / 2 else np.float32)

    def output_shape(self, num_samples: int, channels: int) -> tuple[int, int, int]:
        return self.params.output_shape(num_samples, channels)

    def __call__(self, waveforms, *, sample_rate: int):
        return scalogram(waveforms, sample_rate=sample_rate, params=self.params)

    def parameters(self) -> dict[str, Any]:
        """Everything the device must reproduce: the STFT, ``amin``, the Kymatio bank's settings,
        and which filter bank and logarithm (``filter_bank``, ``log``) they define."""
        return {"kind": self.kind, **self.params.as_kwargs(), "filter_bank": FILTER_BANK, "log": LOG}


@register("scalogram")
def make_scalogram(features_config: Any) -> ScalogramFrontEnd:
    return ScalogramFrontEnd(ScalogramParams.of(features_config))
