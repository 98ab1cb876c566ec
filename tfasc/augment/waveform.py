"""Per-example waveform augmentations: speed, pitch, time shift, impulse responses, noise, gain,
and AclNet's random window, standardization and crop.

Layout: one example at a time, ``x [samples, channels]`` float32; every transform but the window
and the crop returns a tensor of the same shape, so the chain runs inside ``tf.data.Dataset.map``
(graph mode) before batching, or over a batch with :func:`augment_batch`; its output length is
:meth:`WaveformAugmentPolicy.output_samples`.

Randomness is stateless: every random function takes a ``seed`` (a shape-``[2]`` integer tensor,
see :func:`tfasc.augment.masking.as_seed`) and is a pure function of it. :func:`make_waveform_augmenter`
derives one seed per example and transform from ``(base_seed, example_index, transform id)`` with
``tf.random.experimental.stateless_fold_in``, so an example's augmentation does not depend on which
other examples were processed before it, in which order, or on how many threads ran them.

What each is for (references in the functions' docstrings):

* :func:`speed_perturb` -- resampling by a factor, changing tempo and pitch together: the speed
  perturbation of Ko et al. (2015), "Audio augmentation for speech recognition", Interspeech.
* :func:`pitch_shift` -- pitch without duration (phase vocoder + resampling), as
  ``librosa.effects.pitch_shift``; Salamon & Bello (2017), "Deep convolutional neural networks and
  data augmentation for environmental sound classification", IEEE SPL.
* :func:`time_shift`, :func:`gain` -- position and level invariance.
* :func:`random_crop`, :func:`standardize` -- AclNet's training examples (Huang & Leanos (2018),
  "AclNet: efficient end-to-end audio classification CNN", Sec. 3.2): a random 2 s window,
  standardized, resampled, cropped to 1.5 s, then a random gain.
* :func:`add_noise` with a :class:`NoiseBank` -- background noise at a random SNR (Salamon & Bello
  2017; the DCASE acoustic-scene systems' recording-condition simulation).
* :func:`convolve_ir` with an :class:`ImpulseResponseBank` -- room / recording-device simulation by
  impulse responses, as the DCASE Task 1 device-robust systems do (e.g. Morocutti et al. (2023),
  "Device-robust acoustic scene classification via impulse response augmentation", EUSIPCO).

After the chain, the policy's ``mix`` mixes the batch's clips in pairs, targets alike (between-class
mixing or mixup on the waveform: :mod:`tfasc.augment.between_class`).

Costs are stated per function as clips per second through ``tf.data.Dataset.map`` (AUTOTUNE) of
1 s, 16 kHz mono clips on a 2-core CPU shared with other jobs (so +-30 %): gain ~12000, time
shift ~5000, noise ~3000, speed ~2000, impulse response (0.5 s IRs) ~1200, pitch ~400; all six
on every clip ~220-290, each with probability 0.5 ~440 (no augmentation: ~17000).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np

import tfasc  # noqa: F401  (selects tf_keras before TensorFlow is imported)

import tensorflow as tf

from tfasc.augment.between_class import MIX_KINDS, MIX_PARTNERS
from tfasc.augment.masking import as_seed, split_seed
from tfasc.data.audio import load_audio
from tfasc.data.normalization import VARIANCE_FLOOR
from tfasc.errors import UserError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
SHIFT_MODES = ("zero", "roll")
IR_ALIGNS = ("peak", "start")
SPEED_DISTRIBUTIONS = ("log_uniform", "uniform")

# The transforms that run with a probability (``<name>_prob``), in their order.
TRANSFORM_ORDER = ("speed", "pitch", "shift", "ir", "noise", "gain")
# Every step of make_waveform_augmenter, in order: AclNet's window, standardization and crop around them.
STEP_ORDER = ("window", "standardize", "speed", "pitch", "shift", "ir", "noise", "crop", "gain")
# The id folded into each step's seed. The AclNet steps are numbered after the first six, so
# recipes without them draw exactly what they drew before those steps existed.
TRANSFORM_IDS = {name: i + 1 for i, name in enumerate((*TRANSFORM_ORDER, "window", "standardize", "crop"))}
# Second word of the augmenter's root seed: keeps its streams apart from the batch augmenter's
# seeds [base_seed, batch_index] (make_batch_augmenter) with the same base_seed.
_WAVEFORM_STREAM = 0x57415645  # "WAVE"


class AugmentBankError(UserError):
    """A noise or impulse-response folder that cannot be used (missing, empty, unusable files)."""


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _waveform(x, name: str = "x") -> tf.Tensor:
    x = tf.convert_to_tensor(x)
    if x.shape.rank != 2:
        raise ValueError(f"{name} must be one example [samples, channels], got shape {x.shape}")
    return tf.cast(x, tf.float32) if x.dtype != tf.float32 else x


def _same_shape(out: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    out.set_shape(x.shape)  # dynamic-length steps lose the static shape that x had
    return out


def _range(values, key: str) -> tuple[float, float]:
    low, high = (float(v) for v in values)
    if not low <= high:
        raise ValueError(f"{key}: expected (low, high) with low <= high, got {tuple(values)!r}")
    return low, high


def _uniform(seed, low: float, high: float) -> tf.Tensor:
    """A float32 scalar uniform in ``[low, high)`` (``low`` when they are equal)."""
    return tf.random.stateless_uniform([], as_seed(seed), minval=low, maxval=high, dtype=tf.float32)


def _fft_size(value):
    """The smallest FFT length >= ``value`` with no prime factor above 13 (:func:`fast_fft_sizes`)."""
    static = tf.get_static_value(value)
    if static is not None:
        sizes = fast_fft_sizes()
        static = max(int(static), 1)
        return int(sizes[np.searchsorted(sizes, static)]) if static <= sizes[-1] else static
    value = tf.cast(value, tf.float64)
    table = _fast_sizes_tensor()
    row = tf.minimum(tf.searchsorted(table, tf.reshape(value, [1]))[0], int(fast_fft_sizes().size) - 1)
    return tf.cast(tf.maximum(table[row], value), tf.int32)


def _samples(seconds: float, sample_rate: int) -> int:
    """Whole samples in ``seconds`` at ``sample_rate`` (at least one)."""
    return max(int(round(float(seconds) * sample_rate)), 1)


def _power(x: tf.Tensor) -> tf.Tensor:
    """Mean square over every sample and channel (float32 scalar, accumulated in float64)."""
    return tf.cast(tf.reduce_mean(tf.square(tf.cast(x, tf.float64))), tf.float32)


# --------------------------------------------------------------------------------------------
# Resampling and speed perturbation
# --------------------------------------------------------------------------------------------


def resample(x, num_samples) -> tf.Tensor:
    """Fourier-resample ``x [samples, channels]`` to ``[num_samples, channels]`` (same duration).

    The algorithm of ``scipy.signal.resample`` (real input) in TensorFlow ops: ``rfft``, keep or
    zero-pad the first ``min(samples, num_samples) // 2 + 1`` bins (splitting or joining an even
    length's Nyquist bin as scipy does), ``irfft`` to ``num_samples`` and scale by
    ``num_samples / samples``. Band-limited by construction: an ideal low-pass at the lower of the
    two Nyquist frequencies, so nothing aliases. The clip is treated as one period of a periodic
    signal (as scipy does): content near the end rings into the start and back, at the level of
    the step between the last and first samples. ``num_samples`` may be a tensor (the FFT sizes
    then are dynamic). Cost: one ``rfft`` and one ``irfft``.
    """
    x = _waveform(x)
    n = tf.shape(x)[0]
    m = tf.cast(num_samples, tf.int32)
    spectrum = tf.signal.rfft(tf.transpose(x), tf.reshape(n, [1]))  # [channels, n // 2 + 1]
    kept = tf.minimum(n, m)
    nyquist = kept // 2  # the bin that holds the Nyquist frequency of the shorter length, if even
    spectrum = spectrum[:, : nyquist + 1]
    spectrum = tf.pad(spectrum, tf.stack([[0, 0], [0, m // 2 - nyquist]]))
    # An even kept length's Nyquist bin: doubled when downsampling, halved when upsampling (scipy).
    split = tf.where(m < n, 2.0, tf.where(m > n, 0.5, 1.0))
    weight = tf.where(
        (tf.range(m // 2 + 1) == nyquist) & (kept % 2 == 0), split, tf.ones([m // 2 + 1], tf.float32)
    )
    spectrum = spectrum * tf.complex(weight, tf.zeros_like(weight))
    out = tf.signal.irfft(spectrum, tf.reshape(m, [1])) * (tf.cast(m, tf.float32) / tf.cast(n, tf.float32))
    return tf.transpose(out)


def _fit(x: tf.Tensor, num_samples) -> tf.Tensor:
    """Crop ``[samples, channels]`` to ``num_samples`` or zero-pad it at the end."""
    x = x[:num_samples]
    return tf.pad(x, tf.stack([[0, num_samples - tf.shape(x)[0]], [0, 0]]))


# FFT lengths whose prime factors are all <= 13 run at full speed in TensorFlow's CPU FFT; a
# length with a large prime factor goes through Bluestein's algorithm, measured 3-4x slower.
FAST_FFT_PRIMES = (2, 3, 5, 7, 11, 13)
_FAST_SIZE_LIMIT = 1 << 26
_FAST_SIZE_CANDIDATES = 8
_FAST_SIZES: dict[str, tf.Tensor] = {}


@functools.lru_cache(maxsize=None)
def fast_fft_sizes() -> np.ndarray:
    """Sorted int64 array of the lengths ``<= 2**26`` with no prime factor above 13."""
    sizes = np.array([1], np.int64)
    for p in FAST_FFT_PRIMES:
        powers = p ** np.arange(int(math.log(_FAST_SIZE_LIMIT, p)) + 1, dtype=np.int64)
        sizes = np.unique((sizes[:, None] * powers[None, :]).ravel())
        sizes = sizes[sizes <= _FAST_SIZE_LIMIT]
    return sizes


def _fast_sizes_tensor() -> tf.Tensor:
    if "sizes" not in _FAST_SIZES:
        with tf.init_scope():  # eager even when first used while tracing
            _FAST_SIZES["sizes"] = tf.constant(fast_fft_sizes().astype(np.float64))
    return _FAST_SIZES["sizes"]


def resample_sizes(length, factor) -> tuple[tf.Tensor, tf.Tensor]:
    """FFT-friendly ``(L, M)`` (int32) for reading a clip of ``length`` samples ``factor`` times faster.

    ``L >= length`` and ``M`` both have no prime factor above 13; of the 8 smallest such ``L`` and
    each one's nearest ``M ~ L / factor``, the pair with ``L / M`` closest to ``factor`` is chosen.
    Measured over lengths 8000-40000 and factors 0.7-1.4: ``|L / (M factor) - 1|`` at most 1.1e-3
    (mean 1.6e-4), ``L`` at most 3.3 % above ``length`` (mean 0.9 %); over lengths 100-50000 at
    most 1.5e-3 and 6.3 %. ``length`` and ``factor`` may be tensors.
    """
    table = _fast_sizes_tensor()
    count = int(fast_fft_sizes().size)
    length = tf.cast(length, tf.float64)
    factor = tf.cast(factor, tf.float64)
    first = tf.searchsorted(table, tf.reshape(length, [1]), side="left")[0]
    rows = tf.minimum(first + tf.range(_FAST_SIZE_CANDIDATES, dtype=first.dtype), count - 1)
    big = tf.maximum(tf.gather(table, rows), length)  # beyond the table (2**26): the exact length
    target = big / factor
    upper = tf.clip_by_value(tf.searchsorted(table, target, side="left"), 1, count - 1)
    above, below = tf.gather(table, upper), tf.gather(table, upper - 1)
    small = tf.where(tf.abs(above - target) < tf.abs(below - target), above, below)
    error = tf.abs(big / (small * factor) - 1.0)
    best = tf.argmin(error, output_type=tf.int32)  # the first (smallest L) among ties
    return tf.cast(big[best], tf.int32), tf.cast(small[best], tf.int32)


def _resample_by(x: tf.Tensor, factor, fast_sizes: bool, *, trim: bool = False) -> tf.Tensor:
    """``x`` read ``factor`` times faster (band-limited), any length: the exact or the fast sizes.

    ``trim``: drop the fast sizes' tail resampled from the FFT padding (``M`` of ``L`` output
    samples per input sample: ``round(samples M / L)`` come from ``x``).
    """
    n = tf.shape(x)[0]
    if not fast_sizes:
        m = tf.cast(tf.round(tf.cast(n, tf.float64) / tf.cast(factor, tf.float64)), tf.int32)
        return resample(x, tf.maximum(m, 1))
    big, small = resample_sizes(n, factor)
    out = resample(tf.pad(x, tf.stack([[0, big - n], [0, 0]])), small)
    if not trim:
        return out
    ratio = tf.cast(small, tf.float64) / tf.cast(big, tf.float64)
    return out[: tf.maximum(tf.cast(tf.round(tf.cast(n, tf.float64) * ratio), tf.int32), 1)]


def speed_perturb(x, factor, *, fast_sizes: bool = True, keep_length: bool = True) -> tf.Tensor:
    """Play ``x [samples, channels]`` ``factor`` times faster, keeping its length.

    Speed perturbation (Ko et al. 2015): the clip is resampled (:func:`resample`, band-limited) and
    played at the original rate, so tempo and pitch both change by the factor (``> 1``: faster and
    higher). The result starts where the input starts and is cropped (``factor < 1``) or
    zero-padded at the end (``factor > 1``) to the input length. ``factor`` may be a tensor.
    ``keep_length=False``: neither; the ``~round(samples / factor)`` resampled samples (dynamic
    length), for a crop that should not reach into padding.

    * ``fast_sizes=False``: exactly ``scipy.signal.resample(x, round(samples / factor))``,
      cropped / padded. Its FFT lengths are whatever they are; one with a large prime factor costs
      3-4x more.
    * ``fast_sizes=True`` (default): ``x`` zero-padded to ``L`` samples, resampled to ``M`` with
      ``(L, M) = resample_sizes(samples, factor)``, cropped / padded: the realized factor ``L / M``
      is within 0.15 % of ``factor`` (0.11 % for 8000-40000 samples): jitter on a random draw,
      below what one hears.

    Cost: one ``rfft`` and one ``irfft`` of ~``samples`` points per channel: ~2000 clips/s
    (1 s, 16 kHz; see the module docstring) with ``fast_sizes``, ~600 without.
    """
    x = _waveform(x)
    if not keep_length:
        return _resample_by(x, factor, fast_sizes, trim=True)
    return _same_shape(_fit(_resample_by(x, factor, fast_sizes), tf.shape(x)[0]), x)


def random_speed_perturb(
    x, factor_range: Sequence[float], seed, *, distribution: str = "log_uniform", keep_length: bool = True
) -> tf.Tensor:
    """:func:`speed_perturb` by a factor drawn from ``factor_range`` (e.g. ``(0.8, 1.25)``).

    ``distribution="log_uniform"``: speeding up and slowing down by the same ratio are equally
    likely; ``"uniform"``: uniform factors, as AclNet (Huang & Leanos 2018, Sec. 3.2) states.
    """
    low, high = _range(factor_range, "speed factor range")
    if not low > 0:
        raise ValueError(f"speed factors must be > 0, got {tuple(factor_range)!r}")
    if distribution not in SPEED_DISTRIBUTIONS:
        raise ValueError(f"speed factor distribution: expected one of {SPEED_DISTRIBUTIONS}, got {distribution!r}")
    if distribution == "uniform":
        factor = _uniform(seed, low, high)
    else:
        factor = tf.exp(_uniform(seed, math.log(low), math.log(high)))
    return speed_perturb(x, factor, keep_length=keep_length)


# --------------------------------------------------------------------------------------------
# Phase vocoder and pitch shift
# --------------------------------------------------------------------------------------------


def default_n_fft(sample_rate: int) -> int:
    """The power of two nearest 64 ms at ``sample_rate`` (1024 at 16 kHz, 512 at 8 kHz)."""
    return 1 << max(int(round(math.log2(0.064 * sample_rate))), 4)


def time_stretch(x, rate, *, n_fft: int = 1024, hop_length: int | None = None) -> tf.Tensor:
    """Phase-vocoder time stretch of ``x [samples, channels]`` to ``round(samples / rate)`` samples.

    The algorithm of ``librosa.effects.time_stretch`` step for step: centred STFT (zero padding,
    periodic Hann window, hop ``n_fft // 4`` by default), frames read at ``0, rate, 2 rate, ...``
    with linearly interpolated magnitudes and accumulated phase differences, and an inverse STFT
    normalized by the overlapping windows' sum of squares. ``rate > 1`` shortens. ``rate`` may be a
    tensor (the output length then is dynamic).
    """
    x = _waveform(x)
    hop = int(hop_length or n_fft // 4)
    n = tf.shape(x)[0]
    pad = n_fft // 2
    signals = tf.pad(tf.transpose(x), [[0, 0], [pad, pad]])  # [channels, samples + n_fft]
    window_fn = functools.partial(tf.signal.hann_window, periodic=True)
    spec = tf.signal.stft(signals, n_fft, hop, fft_length=n_fft, window_fn=window_fn)  # [C, T, F]
    frames = tf.shape(spec)[1]
    rate = tf.cast(rate, tf.float64)
    steps = tf.range(tf.constant(0.0, tf.float64), tf.cast(frames, tf.float64), rate)  # [S]
    spec = tf.pad(spec, [[0, 0], [0, 2], [0, 0]])
    # librosa accumulates phase += advance + princarg(phase[t + 1] - phase[t] - advance), which is
    # phase[t + 1] - phase[t] modulo 2 pi: as unit phasors, a running product of
    # unit[t + 1] * conj(unit[t]), with no atan2, sin or cos (the costly ops on a CPU).
    magnitudes = tf.abs(spec)
    units = tf.where(
        magnitudes > 0.0, spec / tf.complex(tf.where(magnitudes > 0.0, magnitudes, 1.0), 0.0), tf.ones_like(spec)
    )  # angle(0) = 0, as numpy
    index = tf.cast(tf.floor(steps), tf.int32)
    alpha = tf.cast(steps - tf.floor(steps), tf.float32)[tf.newaxis, :, tf.newaxis]
    magnitude = (1.0 - alpha) * tf.gather(magnitudes, index, axis=1) + alpha * tf.gather(magnitudes, index + 1, axis=1)
    increment = tf.gather(units, index + 1, axis=1) * tf.math.conj(tf.gather(units, index, axis=1))
    phasor = units[:, :1, :] * tf.math.cumprod(increment, axis=1, exclusive=True)
    stretched = tf.complex(magnitude, tf.zeros_like(magnitude)) * phasor  # [C, S, F]
    window = window_fn(n_fft)
    pieces = tf.signal.irfft(stretched, fft_length=[n_fft]) * window
    out = tf.signal.overlap_and_add(pieces, hop)  # [C, (S - 1) * hop + n_fft]
    count = tf.shape(stretched)[1]
    norm = tf.signal.overlap_and_add(tf.tile(tf.square(window)[tf.newaxis], tf.stack([count, 1])), hop)
    tiny = np.finfo(np.float32).tiny
    out = tf.where(norm > tiny, out / tf.where(norm > tiny, norm, 1.0), out)
    length = tf.cast(tf.round(tf.cast(n, tf.float64) / rate), tf.int32)
    out = out[:, pad : pad + length]
    out = tf.pad(out, tf.stack([[0, 0], [0, length - tf.shape(out)[1]]]))
    return tf.transpose(out)


def pitch_shift(
    x, semitones, sample_rate: int, *, n_fft: int | None = None, hop_length: int | None = None,
    fast_sizes: bool = True,
) -> tf.Tensor:
    """Shift the pitch of ``x [samples, channels]`` by ``semitones``, keeping its duration.

    ``librosa.effects.pitch_shift(..., res_type="fft")`` in TensorFlow ops: :func:`time_stretch` by
    ``rate = 2 ** (-semitones / 12)`` to ``len = round(samples / rate)`` samples, then resampled
    back by ``rate`` and cropped / zero-padded to the input length. ``fast_sizes=False`` resamples
    to ``ceil(len * rate)`` samples exactly as librosa; ``True`` (default) uses FFT-friendly sizes
    as :func:`speed_perturb` does (pitch within 0.15 %, 0.026 semitone). Pitch shifting is
    one of Salamon & Bello's (2017) augmentations for environmental sounds. ``n_fft`` defaults to
    :func:`default_n_fft` of ``sample_rate`` (its only use: a shift in semitones does not depend on
    the rate); librosa's default is 2048 at any rate. ``semitones`` may be a tensor.

    Cost: an STFT, the phase vocoder and an inverse STFT of ``~samples / hop`` frames, plus the
    resampling: the most expensive transform here, ~400 clips/s (1 s, 16 kHz, ``n_fft`` 1024).
    """
    x = _waveform(x)
    n_fft = int(n_fft or default_n_fft(sample_rate))
    rate = tf.pow(tf.constant(2.0, tf.float64), -tf.cast(semitones, tf.float64) / 12.0)
    stretched = time_stretch(x, rate, n_fft=n_fft, hop_length=hop_length)
    if fast_sizes:
        out = _resample_by(stretched, 1.0 / rate, True)
    else:
        m = tf.cast(tf.math.ceil(tf.cast(tf.shape(stretched)[0], tf.float64) * rate), tf.int32)
        out = resample(stretched, m)
    return _same_shape(_fit(out, tf.shape(x)[0]), x)


def random_pitch_shift(
    x, semitone_range: Sequence[float], sample_rate: int, seed, *, n_fft: int | None = None
) -> tf.Tensor:
    """:func:`pitch_shift` by a number of semitones drawn uniformly from ``semitone_range``."""
    low, high = _range(semitone_range, "pitch semitone range")
    return pitch_shift(x, _uniform(seed, low, high), sample_rate, n_fft=n_fft)


# --------------------------------------------------------------------------------------------
# Gain and time shift
# --------------------------------------------------------------------------------------------


def gain(x, db) -> tf.Tensor:
    """``x * 10 ** (db / 20)``: level change by ``db`` decibels. Cost: negligible."""
    x = _waveform(x)
    return x * tf.pow(10.0, tf.cast(db, tf.float32) / 20.0)


def random_gain(x, db_range: Sequence[float], seed) -> tf.Tensor:
    """:func:`gain` by ``db`` uniform in ``db_range``."""
    low, high = _range(db_range, "gain dB range")
    return gain(x, _uniform(seed, low, high))


def time_shift(x, shift, *, mode: str = "zero") -> tf.Tensor:
    """Delay ``x [samples, channels]`` by ``shift`` samples (negative: advance), same length.

    ``mode="zero"``: samples shifted out are dropped and the gap is zero-filled; ``"roll"``: they
    wrap around (circular shift). Cost: one gather.
    """
    if mode not in SHIFT_MODES:
        raise ValueError(f"time_shift: mode must be one of {SHIFT_MODES}, got {mode!r}")
    x = _waveform(x)
    shift = tf.cast(shift, tf.int32)
    if mode == "roll":
        return tf.roll(x, shift, axis=0)
    n = tf.shape(x)[0]
    source = tf.range(n) - shift
    valid = (source >= 0) & (source < n)
    moved = tf.gather(x, tf.clip_by_value(source, 0, tf.maximum(n - 1, 0)))
    return tf.where(valid[:, tf.newaxis], moved, tf.zeros_like(moved))


def random_time_shift(x, shift_range: Sequence[int], seed, *, mode: str = "zero") -> tf.Tensor:
    """:func:`time_shift` by an integer number of samples uniform in ``[low, high]`` (inclusive)."""
    low, high = (int(v) for v in shift_range)
    if low > high:
        raise ValueError(f"shift range: expected (low, high) with low <= high, got {tuple(shift_range)!r}")
    shift = tf.random.stateless_uniform([], as_seed(seed), minval=low, maxval=high + 1, dtype=tf.int32)
    return time_shift(x, shift, mode=mode)


# --------------------------------------------------------------------------------------------
# Window / crop and standardization (AclNet)
# --------------------------------------------------------------------------------------------


def random_crop(x, num_samples: int, seed) -> tf.Tensor:
    """``num_samples`` consecutive samples of ``x [samples, channels]``, the start uniform over whole
    samples ``0 .. samples - num_samples``; a shorter ``x`` is zero-padded at the end.

    AclNet (Huang & Leanos 2018) Sec. 3.2 steps 1 (a random 2 s of the clip) and 4 (crop to
    1.5 s). The output has the static shape ``[num_samples, channels]``. Cost: one slice.
    """
    x = _waveform(x)
    num_samples = int(num_samples)
    spare = tf.maximum(tf.shape(x)[0] - num_samples, 0)
    start = tf.random.stateless_uniform([], as_seed(seed), minval=0, maxval=spare + 1, dtype=tf.int32)
    out = _fit(x[start:], num_samples)
    out.set_shape([num_samples, x.shape[1]])
    return out


def standardize(x) -> tf.Tensor:
    """Zero mean and unit variance over every sample and channel of ``x [samples, channels]``.

    AclNet (Huang & Leanos 2018) Sec. 3.2 step 2, with the arithmetic of ``features.normalization:
    per_clip`` (:mod:`tfasc.data.normalization`: float64 statistics, the variance floored at
    ``VARIANCE_FLOOR``, ``float32(x - float32(m)) * float32(1 / s)``), so a training example is
    standardized as an evaluation clip is. A silent ``x`` stays silent. Cost: two reductions.
    """
    x = _waveform(x)
    wide = tf.cast(x, tf.float64)
    mean = tf.reduce_mean(wide)
    variance = tf.reduce_mean(tf.square(wide - mean))
    scale = tf.cast(1.0 / tf.sqrt(tf.maximum(variance, VARIANCE_FLOOR)), tf.float32)
    return (x - tf.cast(mean, tf.float32)) * scale


# --------------------------------------------------------------------------------------------
# Banks of recordings
# --------------------------------------------------------------------------------------------


def _audio_files(folder, what: str, extensions: Sequence[str]) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise AugmentBankError(f"{what} folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
    if not files:
        raise AugmentBankError(f"{what} folder {folder} holds no audio files ({', '.join(extensions)})")
    return files


def _load_clip(path: Path, sample_rate: int, channels: int, max_seconds: float | None) -> np.ndarray:
    """Decode like training (:func:`tfasc.data.audio.load_audio`), the whole clip, at most ``max_seconds``."""
    audio = load_audio(path, sample_rate=sample_rate, channels=channels, num_samples=None)
    if max_seconds is not None:
        audio = audio[: _samples(max_seconds, sample_rate)]
    return audio


class _Bank:
    """Clips held in memory as one eager tensor, created once outside any graph being traced."""

    def _constant(self, name: str, value: np.ndarray) -> tf.Tensor:
        cache = self.__dict__.setdefault("_tensors", {})
        if name not in cache:
            with tf.init_scope():  # eager even when first used while tracing a tf.data function
                cache[name] = tf.constant(value)
        return cache[name]

    def _pick(self, seed) -> tf.Tensor:
        count = len(self.names)
        return tf.random.stateless_uniform([], as_seed(seed), minval=0, maxval=count, dtype=tf.int64)


@dataclasses.dataclass(frozen=True, eq=False)
class NoiseBank(_Bank):
    """Background recordings for :func:`add_noise`, concatenated ``[total_samples, channels]``.

    Build it once (:meth:`from_folder` decodes every file); :meth:`segment` then cuts a random
    excerpt per example in graph mode. The whole bank stays in memory (4 bytes per sample and
    channel: ~3.8 MB per minute of 16 kHz mono).
    """

    samples: np.ndarray
    """``[total_samples, channels]`` float32, the clips one after another."""
    starts: np.ndarray
    """``[clips]`` int64: where each clip starts in ``samples``."""
    lengths: np.ndarray
    """``[clips]`` int64: each clip's length (>= 1)."""
    names: tuple[str, ...]
    sample_rate: int

    @classmethod
    def from_clips(
        cls, clips: Sequence[np.ndarray], sample_rate: int, names: Sequence[str] | None = None
    ) -> "NoiseBank":
        """A bank of ``clips`` (each ``[samples, channels]``, the same channel count)."""
        clips = [np.asarray(c, np.float32) for c in clips]
        if not clips:
            raise AugmentBankError("a noise bank needs at least one clip")
        if any(c.ndim != 2 or len(c) == 0 for c in clips) or len({c.shape[1] for c in clips}) != 1:
            raise AugmentBankError(
                "noise clips must be non-empty [samples, channels] with one channel count, "
                f"got {[c.shape for c in clips]}"
            )
        lengths = np.array([len(c) for c in clips], np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        names = tuple(names) if names is not None else tuple(f"clip{i}" for i in range(len(clips)))
        return cls(np.concatenate(clips), starts, lengths, names, int(sample_rate))

    @classmethod
    def from_folder(
        cls, folder, sample_rate: int, channels: int, *, max_seconds: float | None = None,
        extensions: Sequence[str] = AUDIO_EXTENSIONS,
    ) -> "NoiseBank":
        """Decode every audio file under ``folder`` (recursively, sorted) to ``sample_rate`` and ``channels``.

        ``max_seconds`` keeps only the start of longer files (bounds memory). Undecodable files
        raise :class:`tfasc.data.audio.AudioDecodeError` naming the file.
        """
        files = _audio_files(folder, "noise", extensions)
        clips = [_load_clip(path, sample_rate, channels, max_seconds) for path in files]
        return cls.from_clips(clips, sample_rate, [str(p) for p in files])

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    def segment(self, num_samples, seed) -> tf.Tensor:
        """A random excerpt ``[num_samples, channels]``: a clip uniform over the bank, a start uniform
        over the clip, and the clip tiled (wrapping to its beginning) where it is too short."""
        clip_seed, offset_seed = tf.unstack(split_seed(seed, 2))
        clip = self._pick(clip_seed)
        length = tf.gather(self._constant("lengths", self.lengths), clip)
        start = tf.gather(self._constant("starts", self.starts), clip)
        offset = tf.random.stateless_uniform([], offset_seed, minval=0, maxval=length, dtype=tf.int64)
        index = start + tf.math.floormod(offset + tf.range(tf.cast(num_samples, tf.int64), dtype=tf.int64), length)
        return tf.gather(self._constant("samples", self.samples), index)


def add_noise(x, noise, snr_db) -> tf.Tensor:
    """``x + s * noise`` with ``s`` such that ``10 log10(P_x / P_{s noise}) = snr_db`` exactly.

    ``P`` is the mean square over all samples and channels of the clip. ``noise`` is
    ``[samples, channels]`` or ``[samples, 1]`` (the same noise on every channel). A silent ``x``
    (or a silent excerpt of noise) gets no noise: ``s = 0``, never NaN. Cost: two reductions;
    with :func:`random_noise`'s gather ~3000 clips/s (1 s, 16 kHz).
    """
    x = _waveform(x)
    noise = _waveform(noise, "noise")
    target = _power(noise) * tf.pow(10.0, tf.cast(snr_db, tf.float32) / 10.0)
    scale = tf.sqrt(tf.math.divide_no_nan(_power(x), target))
    return x + scale * noise


def random_noise(x, bank: NoiseBank, snr_range_db: Sequence[float], seed) -> tf.Tensor:
    """Mix an excerpt of ``bank`` (:meth:`NoiseBank.segment`) into ``x`` at an SNR uniform in ``snr_range_db``."""
    low, high = _range(snr_range_db, "noise SNR range")
    x = _waveform(x)
    segment_seed, snr_seed = tf.unstack(split_seed(seed, 2))
    noise = bank.segment(tf.shape(x)[0], segment_seed)
    return add_noise(x, noise, _uniform(snr_seed, low, high))


@dataclasses.dataclass(frozen=True, eq=False)
class ImpulseResponseBank(_Bank):
    """Impulse responses for :func:`convolve_ir`, zero-padded to one length ``[irs, max_length, channels]``."""

    irs: np.ndarray
    """``[irs, max_length, channels]`` float32 (zeros after each IR's end)."""
    peaks: np.ndarray
    """``[irs]`` int64: each IR's direct-path peak, ``argmax`` of its absolute value over channels."""
    names: tuple[str, ...]
    sample_rate: int

    @classmethod
    def from_clips(
        cls, clips: Sequence[np.ndarray], sample_rate: int, names: Sequence[str] | None = None
    ) -> "ImpulseResponseBank":
        """A bank of ``clips`` (each ``[samples, channels]``, the same channel count, not all zeros)."""
        clips = [np.asarray(c, np.float32) for c in clips]
        if not clips:
            raise AugmentBankError("an impulse-response bank needs at least one IR")
        if any(c.ndim != 2 or len(c) == 0 for c in clips) or len({c.shape[1] for c in clips}) != 1:
            raise AugmentBankError(
                f"IRs must be non-empty [samples, channels] with one channel count, got {[c.shape for c in clips]}"
            )
        names = tuple(names) if names is not None else tuple(f"ir{i}" for i in range(len(clips)))
        silent = [name for name, c in zip(names, clips) if not np.any(c)]
        if silent:
            raise AugmentBankError(f"impulse responses that are all zeros: {silent}")
        longest = max(len(c) for c in clips)
        irs = np.zeros((len(clips), longest, clips[0].shape[1]), np.float32)
        for i, c in enumerate(clips):
            irs[i, : len(c)] = c
        peaks = np.array([int(np.argmax(np.abs(c).max(axis=1))) for c in clips], np.int64)
        return cls(irs, peaks, names, int(sample_rate))

    @classmethod
    def from_folder(
        cls, folder, sample_rate: int, channels: int, *, max_seconds: float | None = None,
        extensions: Sequence[str] = AUDIO_EXTENSIONS,
    ) -> "ImpulseResponseBank":
        """Decode every audio file under ``folder`` (recursively, sorted) as an IR at ``sample_rate``.

        ``max_seconds`` truncates longer IRs (the FFT size grows with the longest one).
        """
        files = _audio_files(folder, "impulse-response", extensions)
        clips = [_load_clip(path, sample_rate, channels, max_seconds) for path in files]
        return cls.from_clips(clips, sample_rate, [str(p) for p in files])

    @property
    def channels(self) -> int:
        return int(self.irs.shape[2])

    def pick(self, seed) -> tuple[tf.Tensor, tf.Tensor]:
        """A random IR ``[max_length, channels]`` (uniform over the bank) and its peak index."""
        i = self._pick(seed)
        return tf.gather(self._constant("irs", self.irs), i), tf.gather(self._constant("peaks", self.peaks), i)


def convolve_ir(x, ir, *, align="peak", normalize: bool = True) -> tf.Tensor:
    """Convolve ``x [samples, channels]`` with ``ir [ir_samples, channels or 1]``, same length out.

    FFT convolution (``rfft`` of the next length >= ``samples + ir_samples - 1`` with no prime
    factor above 13); of the
    full convolution ``y`` it keeps ``y[a : a + samples]`` with ``a`` the IR's direct-path peak
    (``align="peak"``, ``argmax |ir|`` over samples and channels, or an integer tensor given as
    ``align``): the direct sound stays where it was and the reverberant tail is cut at the clip's
    end. ``align="start"`` keeps ``y[:samples]`` (a plain causal filter, delayed by the IR's
    pre-delay). ``normalize``: scale the output to the input's RMS over the whole clip (a silent
    output stays silent). Cost: three FFTs of that size: ~1200 clips/s (1 s, 16 kHz, 0.5 s IRs).
    """
    x = _waveform(x)
    ir = _waveform(ir, "ir")
    n = tf.shape(x)[0]
    length = tf.shape(ir)[0]
    if isinstance(align, str):
        if align not in IR_ALIGNS:
            raise ValueError(f"convolve_ir: align must be one of {IR_ALIGNS} or an index, got {align!r}")
        start = tf.argmax(tf.reduce_max(tf.abs(ir), axis=1), output_type=tf.int32) if align == "peak" else tf.constant(0)
    else:
        start = tf.cast(align, tf.int32)
    size = _fft_size(n + length - 1)
    spectrum = tf.signal.rfft(tf.transpose(x), [size]) * tf.signal.rfft(tf.transpose(ir), [size])
    full = tf.signal.irfft(spectrum, [size])  # [channels, size]
    out = tf.transpose(full[:, start : start + n])
    if normalize:
        out = out * tf.sqrt(tf.math.divide_no_nan(_power(x), _power(out)))
    return _same_shape(out, x)


def random_ir(x, bank: ImpulseResponseBank, seed, *, align: str = "peak", normalize: bool = True) -> tf.Tensor:
    """:func:`convolve_ir` with an IR drawn uniformly from ``bank`` (aligned to its stored peak)."""
    ir, peak = bank.pick(seed)
    return convolve_ir(x, ir, align=peak if align == "peak" else align, normalize=normalize)


# --------------------------------------------------------------------------------------------
# Policy and augmenter
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class WaveformAugmentPolicy:
    """Per-example waveform augmentation settings; the defaults augment nothing.

    Each transform ``t`` runs with probability ``t_prob`` (independently of the others), in the
    order of :data:`TRANSFORM_ORDER`: speed, pitch, shift, ir, noise, gain (source changes first,
    then its position, then the room/device, then the background, then the level). Ranges are
    ``(low, high)``. AclNet's steps (Huang & Leanos 2018, Sec. 3.2), when set, always run, in the
    order of :data:`STEP_ORDER`: ``window_s``, ``standardize``, the transforms up to noise,
    ``crop_s``, then gain. The paper's recipe: ``window_s: 2.0, standardize: true, speed_prob: 1.0,
    speed_range: [0.8, 1.25], speed_distribution: uniform, crop_s: 1.5, gain_prob: 1.0,
    gain_db: [-6, 6]``.
    """

    window_s: float | None = None
    """First step: a random window of this many seconds of the clip, its start uniform over whole
    samples (a shorter clip is zero-padded at the end to it); None: the whole clip. AclNet Sec. 3.2
    step 1: 2 s. Training inputs then are this long (or ``crop_s`` long) while evaluation inputs
    are whole clips: only a model that accepts any length (input ``(None, channels)``, e.g.
    ``aclnet``) trains on them."""
    standardize: bool = False
    """Second step: zero mean and unit variance over all samples and channels of the example
    (:func:`standardize`, the arithmetic of ``features.normalization: per_clip``). AclNet Sec. 3.2
    step 2. Needs ``features.normalization: per_clip``, which evaluation clips get whole; with
    ``features.kind: waveform`` the training inputs are not normalized again after the chain (that
    would undo the gain)."""
    speed_prob: float = 0.0
    """Probability of speed perturbation (Ko et al. 2015)."""
    speed_range: tuple[float, float] = (0.8, 1.25)
    """Speed factors (> 1: faster and higher)."""
    speed_distribution: Literal["log_uniform", "uniform"] = "log_uniform"
    """How speed factors are drawn from ``speed_range``: "log_uniform" (speeding up and slowing down
    by one ratio equally likely) or "uniform" (AclNet Sec. 3.2 step 3: uniform in [0.8, 1.25])."""
    pitch_prob: float = 0.0
    """Probability of a pitch shift (duration kept)."""
    pitch_semitones: tuple[float, float] = (-2.0, 2.0)
    """Pitch shift in semitones, uniform."""
    pitch_n_fft: int | None = None
    """Phase-vocoder FFT size (None: the power of two nearest 64 ms)."""
    shift_prob: float = 0.0
    """Probability of a time shift."""
    shift_s: tuple[float, float] = (-0.1, 0.1)
    """Time shift in seconds (positive: later), uniform over whole samples."""
    shift_mode: str = "zero"
    """"zero": zero-fill the gap; "roll": circular shift."""
    ir_prob: float = 0.0
    """Probability of convolving with an impulse response from ``ir_dir``."""
    ir_dir: str | None = None
    """Folder of impulse responses (WAV, FLAC, ...), searched recursively."""
    ir_align: str = "peak"
    """"peak": keep the IR's direct path at time 0; "start": plain causal convolution."""
    ir_normalize: bool = True
    """Scale the convolved clip back to the input's RMS."""
    noise_prob: float = 0.0
    """Probability of mixing in background noise from ``noise_dir``."""
    noise_dir: str | None = None
    """Folder of background recordings, searched recursively."""
    noise_snr_db: tuple[float, float] = (5.0, 20.0)
    """Signal-to-noise ratio in dB, uniform."""
    crop_s: float | None = None
    """After speed, pitch, shift, ir and noise, before gain: a random crop of exactly this many
    seconds, its start uniform over whole samples; None: no crop. AclNet Sec. 3.2 step 4: 1.5 s.
    With it, speed perturbation keeps the resampled length instead of cropping or zero-padding to
    its input's, so the crop is resampled audio, not padding; only a signal shorter than the crop
    (a window or clip shorter than ``crop_s``, or sped up below it) is zero-padded at the end.
    ``crop_s`` may exceed ``window_s``. Lengths differ from evaluation inputs as for ``window_s``."""
    gain_prob: float = 0.0
    """Probability of a gain change."""
    gain_db: tuple[float, float] = (-6.0, 6.0)
    """Gain in dB, uniform."""
    bank_max_seconds: float | None = None
    """Keep only this many seconds of each noise / IR file (bounds memory; None: all)."""
    mix: Literal["none", "mixup", "between_class"] = "none"
    """After the per-example chain, before the front-end: mix each training clip with a partner
    from its batch (:mod:`tfasc.augment.between_class`), targets ``r y1 + (1 - r) y2``. "mixup":
    ``r x1 + (1 - r) x2`` (Zhang et al. 2018); "between_class": the mix that accounts for the two
    sounds' A-weighted gains (Tokozume et al. 2018, Sec. 3.3.2). ERANNs Sec. 4.2.1, Table 3:
    none / standard mixup on the waveform / modified mixup on the waveform (= "between_class";
    AudioSet mAP 0.430 / 0.443 / 0.446)."""
    mix_prob: float = 1.0
    """Fraction of the training examples that are mixed (drawn per example); the others keep their
    clip and target. BC learning and ERANNs mix every example (1.0)."""
    mix_alpha: float = 1.0
    """The ratio ``r ~ Beta(mix_alpha, mix_alpha)``; 1.0 is ``U(0, 1)``, BC learning's ratio
    (Tokozume et al. 2018, Sec. 3.3.1). ERANNs does not state it."""
    mix_partners: Literal["auto", "any", "different_targets"] = "auto"
    """How partners are paired: "any" (a random permutation of the batch, as mixup), or
    "different_targets" (the next example along that permutation whose target differs: another
    class for one-hot targets, another label set for multi-hot ones; BC learning mixes two
    different classes, Sec. 3.3.1). "auto": "different_targets" for between_class, "any" for mixup."""

    def __post_init__(self) -> None:
        for name in TRANSFORM_ORDER:
            key = f"{name}_prob"
            value = getattr(self, key)
            if isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"augment.waveform.{key}: expected a probability in [0, 1], got {value!r}")
        for key in ("speed_range", "pitch_semitones", "shift_s", "noise_snr_db", "gain_db"):
            value = getattr(self, key)
            if isinstance(value, (str, bytes)) or len(value) != 2:
                raise ValueError(f"augment.waveform.{key}: expected [low, high], got {value!r}")
            object.__setattr__(self, key, _range(value, f"augment.waveform.{key}"))  # YAML lists -> tuples
        if not self.speed_range[0] > 0.0:
            raise ValueError(f"augment.waveform.speed_range: factors must be > 0, got {self.speed_range!r}")
        for key, choices in (("shift_mode", SHIFT_MODES), ("ir_align", IR_ALIGNS),
                             ("speed_distribution", SPEED_DISTRIBUTIONS)):
            if getattr(self, key) not in choices:
                raise ValueError(f"augment.waveform.{key}: expected one of {choices}, got {getattr(self, key)!r}")
        if self.pitch_n_fft is not None and (int(self.pitch_n_fft) != self.pitch_n_fft or self.pitch_n_fft < 16):
            raise ValueError(f"augment.waveform.pitch_n_fft: expected an integer >= 16 or null, got {self.pitch_n_fft!r}")
        for key in ("window_s", "crop_s", "bank_max_seconds"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not float(value) > 0):
                raise ValueError(f"augment.waveform.{key}: expected seconds > 0 or null, got {value!r}")
        if not isinstance(self.standardize, bool):
            raise ValueError(f"augment.waveform.standardize: expected true or false, got {self.standardize!r}")
        for key, choices in (("mix", MIX_KINDS), ("mix_partners", MIX_PARTNERS)):
            if getattr(self, key) not in choices:
                raise ValueError(f"augment.waveform.{key}: expected one of {choices}, got {getattr(self, key)!r}")
        if isinstance(self.mix_prob, bool) or not 0.0 <= float(self.mix_prob) <= 1.0:
            raise ValueError(f"augment.waveform.mix_prob: expected a probability in [0, 1], got {self.mix_prob!r}")
        if isinstance(self.mix_alpha, bool) or not float(self.mix_alpha) > 0.0:
            raise ValueError(f"augment.waveform.mix_alpha: expected a Beta concentration > 0, got {self.mix_alpha!r}")
        for kind in ("noise", "ir"):
            if getattr(self, f"{kind}_prob") > 0.0 and not getattr(self, f"{kind}_dir"):
                raise ValueError(f"augment.waveform.{kind}_prob > 0 needs augment.waveform.{kind}_dir (a folder of recordings)")

    @property
    def per_example(self) -> bool:
        """Whether the per-example chain (:func:`make_waveform_augmenter`) changes anything."""
        return (any(getattr(self, f"{name}_prob") > 0.0 for name in TRANSFORM_ORDER) or self.standardize
                or self.window_s is not None or self.crop_s is not None)

    @property
    def mixes(self) -> bool:
        """Whether training clips are mixed in pairs (``mix``) before the front-end."""
        return self.mix != "none" and self.mix_prob > 0.0

    @property
    def enabled(self) -> bool:
        """Whether training goes through the decoded clips (the chain or the mixing runs)."""
        return self.per_example or self.mixes

    def output_samples(self, input_samples: int | None, sample_rate: int) -> int | None:
        """Samples of an augmented example of a clip of ``input_samples``: ``crop_s``'s when set,
        else ``window_s``'s, else ``input_samples`` (every other step keeps the length)."""
        seconds = self.crop_s if self.crop_s is not None else self.window_s
        return input_samples if seconds is None else _samples(seconds, int(sample_rate))


def example_seed(base_seed: int, example_index) -> tf.Tensor:
    """The shape-``[2]`` seed of one example: ``fold_in([base_seed, "WAVE"], example_index)``."""
    root = tf.constant([int(base_seed), _WAVEFORM_STREAM], tf.int64)
    return tf.random.experimental.stateless_fold_in(root, tf.cast(example_index, tf.int64))


def make_waveform_augmenter(
    policy: WaveformAugmentPolicy, base_seed: int, sample_rate: int, *, channels: int = 1,
    noise_bank: NoiseBank | None = None, ir_bank: ImpulseResponseBank | None = None,
) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """``fn(x [samples, channels], example_index) -> x`` applying ``policy`` to one example.

    The output has ``fn.output_samples(samples)`` samples (:meth:`WaveformAugmentPolicy.output_samples`).
    Step ``t`` of example ``i`` draws from ``fold_in(example_seed(base_seed, i), id(t))``
    (:data:`TRANSFORM_IDS`): whether it runs (``u < t_prob``) and its parameters. Same
    ``(base_seed, example_index)``: the same output; ``example_index`` must be unique over the run
    (e.g. ``batch_index * batch_size + position``) for fresh draws every epoch. Transforms that do
    not run cost nothing (``tf.cond``). The noise and IR banks are decoded here, once, at
    ``sample_rate`` with ``channels`` (or passed in prebuilt); a mono bank serves any channel count.

    Cost for 1 s, 16 kHz mono clips through ``Dataset.map`` on 2 CPU cores: ~220-290 clips/s with
    all six transforms on every clip, ~440 with each at probability 0.5; pitch shifting is most of
    it (module docstring).
    """
    sample_rate = int(sample_rate)
    if policy.noise_prob > 0.0 and noise_bank is None:
        noise_bank = NoiseBank.from_folder(policy.noise_dir, sample_rate, channels, max_seconds=policy.bank_max_seconds)
    if policy.ir_prob > 0.0 and ir_bank is None:
        ir_bank = ImpulseResponseBank.from_folder(policy.ir_dir, sample_rate, channels, max_seconds=policy.bank_max_seconds)
    shift_low, shift_high = (int(round(s * sample_rate)) for s in policy.shift_s)
    window, crop = (None if s is None else _samples(s, sample_rate) for s in (policy.window_s, policy.crop_s))
    probs = {name: float(getattr(policy, f"{name}_prob")) for name in TRANSFORM_ORDER}
    probs.update(window=float(window is not None), standardize=float(policy.standardize), crop=float(crop is not None))
    # Steps whose output length differs from their input's: speed too when a crop follows (it
    # keeps the resampled length so that the crop need not reach into padding).
    resizing = {"window", "crop"} | ({"speed"} if crop is not None else set())

    transforms = {
        "window": lambda x, seed: random_crop(x, window, seed),
        "standardize": lambda x, seed: standardize(x),
        "speed": lambda x, seed: random_speed_perturb(x, policy.speed_range, seed, distribution=policy.speed_distribution,
                                                      keep_length=crop is None),
        "pitch": lambda x, seed: random_pitch_shift(x, policy.pitch_semitones, sample_rate, seed, n_fft=policy.pitch_n_fft),
        "shift": lambda x, seed: random_time_shift(x, (shift_low, shift_high), seed, mode=policy.shift_mode),
        "ir": lambda x, seed: random_ir(x, ir_bank, seed, align=policy.ir_align, normalize=policy.ir_normalize),
        "noise": lambda x, seed: random_noise(x, noise_bank, policy.noise_snr_db, seed),
        "crop": lambda x, seed: random_crop(x, crop, seed),
        "gain": lambda x, seed: random_gain(x, policy.gain_db, seed),
    }

    def augment(x, example_index):
        x = _waveform(x)
        if not policy.per_example:
            return x
        for bank in (noise_bank, ir_bank):
            if bank is not None and bank.channels not in (1, x.shape[-1]):
                raise ValueError(f"a {bank.channels}-channel bank cannot augment {x.shape[-1]}-channel audio")
        seed = example_seed(base_seed, example_index)
        for name in STEP_ORDER:
            prob = probs[name]
            if prob <= 0.0:
                continue
            run_seed, draw_seed = tf.unstack(split_seed(
                tf.random.experimental.stateless_fold_in(seed, TRANSFORM_IDS[name]), 2))
            transform = transforms[name]
            if prob >= 1.0:
                out = transform(x, draw_seed)
            else:
                run = tf.random.stateless_uniform([], run_seed) < prob
                out = tf.cond(run, lambda: transform(x, draw_seed), lambda: x)
            x = out if name in resizing else _same_shape(out, x)
        return x

    augment.output_samples = lambda samples: policy.output_samples(samples, sample_rate)
    return augment


def augment_batch(augmenter: Callable, x, first_index, *, parallel_iterations: int = 8) -> tf.Tensor:
    """Apply a per-example ``augmenter`` to a batch ``[batch, samples, channels]``.

    Example ``j`` gets index ``first_index + j`` (``tf.map_fn``; graph-compatible, e.g. inside
    ``make_dataset``'s batch ``augment`` with ``first_index = batch_index * batch_size``). The
    output has ``augmenter.output_samples(samples)`` samples (:func:`make_waveform_augmenter`;
    an augmenter without that attribute keeps the length).
    """
    x = tf.convert_to_tensor(x)
    output_samples = getattr(augmenter, "output_samples", lambda samples: samples)
    example = tf.TensorShape([output_samples(x.shape[1]), *x.shape[2:]])
    indices = tf.cast(first_index, tf.int64) + tf.range(tf.shape(x)[0], dtype=tf.int64)
    out = tf.map_fn(
        lambda args: augmenter(args[0], args[1]), (x, indices),
        fn_output_signature=tf.TensorSpec(example, tf.float32), parallel_iterations=parallel_iterations,
    )
    out.set_shape([x.shape[0], *example])
    return out
