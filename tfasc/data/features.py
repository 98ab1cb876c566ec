"""Log-mel spectrograms with ``tf.signal``, numerically matching librosa.

The features every tfasc model reads: a power (or magnitude) STFT, a Slaney-normalised mel filter
bank and ``10·log10`` with librosa's ``amin`` floor and ``top_db`` clamp. Defaults follow librosa
0.11 (``center=True``, zero padding, periodic Hann window), so that
``log_mel_spectrogram(x, sample_rate=sr, ...)`` equals::

    librosa.power_to_db(
        librosa.feature.melspectrogram(y=x_channels_first, sr=sr, ..., htk=False, norm="slaney"),
        ref=1.0, amin=amin, top_db=top_db)

to within 0.1 dB on every bin above ``max - 80 dB`` of the clip (``tests/data/test_features.py``).
With several channels the ``top_db`` clamp uses the maximum over all channels of one example, as
librosa does for a ``[channels, samples]`` array.

Tensor layouts
--------------
- waveform in: ``[batch, samples, channels]`` (batched), ``[samples, channels]`` (one example, as
  ``tf.data`` maps it), ``[samples]`` (one mono example) or, with ``batched=True``,
  ``[batch, samples]`` (a batch of mono clips). Rank 2 is ambiguous, so it means
  ``[samples, channels]`` unless ``batched=True`` says otherwise.
- features out: ``[batch, n_mels, frames, channels]``, or ``[n_mels, frames, channels]`` for an
  unbatched input — the ``[batch, freq, time, channels]`` layout of every tfasc model.

Stereo front-ends: ``channel_mode="mid_side"`` gives the channels ``[(L+R)/2, (L-R)/2]``, the
average/difference representation of binaural DCASE scenes (Wu & Lee, "Searching for efficient
network architectures for acoustic scene classification", Sec. 4.2, apply it to features; here it is
applied to the waveform, so both channels are ordinary log-mel spectrograms; their scalogram
front-end, :mod:`tfasc.data.frontends.scalogram`, applies it to features). 256 mel bands of a
stereo 48 kHz clip are the input of
'QTI Submission to DCASE 2020: Model Efficient Acoustic Scene Classification' (DCASE 2020 Task 1B technical report, entry Chang_QTI_task1b), Sec. 6.1.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

import numpy as np

import tensorflow as tf  # the tfasc package __init__ has set TF_USE_LEGACY_KERAS already

WINDOWS = ("hann", "hamming")
PAD_MODES = ("constant", "reflect", "symmetric")
CHANNEL_MODES = ("keep", "mono", "mid_side")

# Slaney's auditory-toolbox mel scale (librosa ``htk=False``): linear below 1 kHz, log above.
_SLANEY_HZ_PER_MEL = 200.0 / 3.0
_SLANEY_LOG_START_HZ = 1000.0
_SLANEY_LOG_START_MEL = _SLANEY_LOG_START_HZ / _SLANEY_HZ_PER_MEL
_SLANEY_LOG_STEP = math.log(6.4) / 27.0

Waveform = Union[tf.Tensor, np.ndarray]


# ----------------------------------------------------------------------------------------------
# Parameter checks


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_band(sample_rate: float, fmin: float, fmax: Optional[float]) -> float:
    """Returns the effective ``fmax`` (``sample_rate / 2`` when None) after checking the band."""
    if not sample_rate > 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate!r}")
    nyquist = sample_rate / 2.0
    fmax = nyquist if fmax is None else float(fmax)
    if fmin < 0:
        raise ValueError(f"fmin must be >= 0 Hz, got {fmin!r}")
    if fmax > nyquist:
        raise ValueError(
            f"fmax must be <= sample_rate / 2 = {nyquist:g} Hz, got fmax={fmax!r}"
        )
    if not fmin < fmax:
        raise ValueError(f"fmin must be below fmax, got fmin={fmin!r}, fmax={fmax!r}")
    return fmax


def _check_stft_parameters(
    n_fft: int, hop_length: int, win_length: Optional[int], window: str, pad_mode: str
) -> int:
    """Returns the effective ``win_length`` (``n_fft`` when None) after checking STFT parameters."""
    _check_positive_int("n_fft", n_fft)
    _check_positive_int("hop_length", hop_length)
    win_length = n_fft if win_length is None else win_length
    _check_positive_int("win_length", win_length)
    if win_length > n_fft:
        raise ValueError(f"win_length must be <= n_fft={n_fft}, got win_length={win_length}")
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {WINDOWS}, got {window!r}")
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
    return int(win_length)


def _check_scaling(power: float, amin: float, top_db: Optional[float]) -> None:
    if not power > 0:
        raise ValueError(f"power must be positive (1: magnitude, 2: power), got {power!r}")
    if not amin > 0:
        raise ValueError(f"amin must be positive, got {amin!r}")
    if top_db is not None and not top_db >= 0:
        raise ValueError(f"top_db must be non-negative or None, got {top_db!r}")


def check_log_mel_parameters(
    *,
    sample_rate: float,
    n_fft: int,
    win_length: Optional[int],
    hop_length: int,
    window: str,
    center: bool,
    pad_mode: str,
    n_mels: int,
    fmin: float,
    fmax: Optional[float],
    power: float,
    amin: float,
    top_db: Optional[float],
    channel_mode: str,
) -> tuple[int, float]:
    """Raises ``ValueError`` naming the first bad parameter of ``log_mel_spectrogram``.

    Returns the effective ``(win_length, fmax)``, with None replaced by ``n_fft`` and Nyquist.
    """
    win_length = _check_stft_parameters(n_fft, hop_length, win_length, window, pad_mode)
    if not isinstance(center, (bool, np.bool_)):
        raise ValueError(f"center must be True or False, got {center!r}")
    _check_positive_int("n_mels", n_mels)
    fmax = _check_band(sample_rate, fmin, fmax)
    _check_scaling(power, amin, top_db)
    if channel_mode not in CHANNEL_MODES:
        raise ValueError(f"channel_mode must be one of {CHANNEL_MODES}, got {channel_mode!r}")
    return win_length, fmax


@dataclass(frozen=True, kw_only=True)
class LogMelParams:
    """Parameters of :func:`log_mel_spectrogram` other than the sample rate (librosa's meanings).

    The one place their defaults live: the recipe's ``features`` section, the
    ``LogMelSpectrogram`` layer and the deployment bundle all read them from here. Field metadata
    (``min``, ``gt``) are the ranges the recipe loader checks; :meth:`check` adds the checks that
    need the sample rate.
    """

    n_fft: int = field(default=2048, metadata={"min": 16})
    win_length: int | None = field(default=None, metadata={"min": 1})
    """Window length (default: ``n_fft``), centred in the ``n_fft`` frame."""
    hop_length: int = field(default=512, metadata={"min": 1})
    window: Literal["hann", "hamming"] = "hann"
    center: bool = True
    """Pad ``n_fft // 2`` samples on both sides first (librosa's default)."""
    pad_mode: Literal["constant", "reflect", "symmetric"] = "constant"
    n_mels: int = field(default=128, metadata={"min": 1})
    fmin: float = field(default=0.0, metadata={"min": 0})
    fmax: float | None = field(default=None, metadata={"gt": 0})
    """Upper edge of the mel bank (default: Nyquist)."""
    power: float = field(default=2.0, metadata={"gt": 0})
    """Exponent of the STFT magnitude (2: power, 1: magnitude)."""
    amin: float = field(default=1e-10, metadata={"gt": 0})
    top_db: float | None = field(default=80.0, metadata={"gt": 0})
    """Clamp each example from below at its maximum minus ``top_db`` (None: no clamp)."""
    channel_mode: Literal["keep", "mono", "mid_side"] = "keep"
    """``mid_side`` turns stereo into the average/difference pair (L+R)/2, (L−R)/2."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(LogMelParams))

    @classmethod
    def of(cls, source: Any) -> "LogMelParams":
        """The log-mel parameters among the fields of ``source`` (e.g. a recipe's features section)."""
        return LogMelParams(**{name: getattr(source, name) for name in LogMelParams.names()})

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`log_mel_spectrogram` (sample rate excluded)."""
        return {name: getattr(self, name) for name in self.names()}

    def check(self, sample_rate: float) -> tuple[int, float]:
        """Raises ``ValueError`` naming the first bad parameter; returns the effective ``(win_length, fmax)``."""
        return check_log_mel_parameters(sample_rate=sample_rate, **self.as_kwargs())

    def output_shape(self, num_samples: int, channels: int) -> tuple[int, int, int]:
        """``(n_mels, frames, channels)`` of one clip of ``num_samples`` samples and ``channels`` channels."""
        frames = num_frames(num_samples, n_fft=self.n_fft, hop_length=self.hop_length, center=self.center)
        out_channels = {"mono": 1, "mid_side": 2}.get(self.channel_mode, channels)
        return self.n_mels, frames, out_channels


# ----------------------------------------------------------------------------------------------
# Fixed matrices (numpy, float64; cached because the layer and eager calls ask for them repeatedly)


def _hz_to_slaney_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _SLANEY_HZ_PER_MEL
    logarithmic = _SLANEY_LOG_START_MEL + np.log(
        np.maximum(hz, _SLANEY_LOG_START_HZ) / _SLANEY_LOG_START_HZ
    ) / _SLANEY_LOG_STEP
    return np.where(hz >= _SLANEY_LOG_START_HZ, logarithmic, linear)


def _slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * _SLANEY_HZ_PER_MEL
    logarithmic = _SLANEY_LOG_START_HZ * np.exp(
        _SLANEY_LOG_STEP * (np.maximum(mel, _SLANEY_LOG_START_MEL) - _SLANEY_LOG_START_MEL)
    )
    return np.where(mel >= _SLANEY_LOG_START_MEL, logarithmic, linear)


@functools.lru_cache(maxsize=16)
def _cached_mel_filterbank(
    sample_rate: float, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> np.ndarray:
    fft_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)  # = np.fft.rfftfreq(n_fft, 1/sr)
    edges_hz = _slaney_mel_to_hz(
        np.linspace(_hz_to_slaney_mel(fmin), _hz_to_slaney_mel(fmax), n_mels + 2)
    )
    widths_hz = np.diff(edges_hz)
    distance_hz = edges_hz[:, None] - fft_hz[None, :]  # [n_mels + 2, bins]
    rising = -distance_hz[:-2] / widths_hz[:-1, None]
    falling = distance_hz[2:] / widths_hz[1:, None]
    triangles = np.maximum(0.0, np.minimum(rising, falling))  # [n_mels, bins]
    if not np.all((edges_hz[:-2] == 0) | (triangles.max(axis=1) > 0)):
        # As librosa: a band narrower than the FFT bin spacing catches no bin and stays silent.
        warnings.warn(
            f"{n_mels} mel bands over {fmin:g}-{fmax:g} Hz with n_fft={n_fft} leave some bands "
            "empty: lower n_mels or raise n_fft",
            stacklevel=3,
        )
    # Slaney normalisation: every triangle gets unit area over Hz, so wide bands do not outweigh.
    triangles *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    filterbank = np.ascontiguousarray(triangles.T)
    filterbank.setflags(write=False)
    return filterbank


def mel_filterbank(
    *,
    sample_rate: float,
    n_fft: int,
    n_mels: int,
    fmin: float = 0.0,
    fmax: Optional[float] = None,
) -> np.ndarray:
    """Slaney mel filter bank, ``[n_fft // 2 + 1, n_mels]`` float64 (frequency bins x mel bands).

    Same triangles as ``librosa.filters.mel(htk=False, norm="slaney")`` (transposed, so that
    ``power_spectrum @ mel_filterbank(...)`` maps ``[..., bins]`` to ``[..., n_mels]``). Written in
    numpy rather than calling librosa so that importing the data pipeline does not load librosa
    (about 1.5 s) and so the test against librosa checks something.
    """
    _check_positive_int("n_fft", n_fft)
    _check_positive_int("n_mels", n_mels)
    fmax = _check_band(sample_rate, fmin, fmax)
    filterbank = _cached_mel_filterbank(
        float(sample_rate), int(n_fft), int(n_mels), float(fmin), fmax
    )
    return filterbank.copy()  # the cached array is read-only


@functools.lru_cache(maxsize=16)
def _cached_window(window: str, win_length: int, n_fft: int) -> np.ndarray:
    # Periodic ("fftbins=True") windows as librosa.filters.get_window, centred in n_fft samples as
    # librosa.util.pad_center does when win_length < n_fft.
    phase = 2.0 * np.pi * np.arange(win_length) / win_length
    if window == "hann":
        taper = 0.5 - 0.5 * np.cos(phase)
    else:  # hamming
        taper = 0.54 - 0.46 * np.cos(phase)
    left = (n_fft - win_length) // 2
    padded = np.zeros(n_fft)
    padded[left : left + win_length] = taper
    padded.setflags(write=False)
    return padded


# ----------------------------------------------------------------------------------------------
# Shapes


def num_frames(num_samples: int, *, n_fft: int, hop_length: int, center: bool = True) -> int:
    """Number of STFT frames librosa gives for ``num_samples`` samples.

    ``center=True`` pads ``n_fft // 2`` samples on both sides first; ``center=False`` needs at least
    ``n_fft`` samples.
    """
    _check_positive_int("n_fft", n_fft)
    _check_positive_int("hop_length", hop_length)
    if (
        isinstance(num_samples, bool)
        or not isinstance(num_samples, (int, np.integer))
        or num_samples < 0
    ):
        raise ValueError(f"num_samples must be a non-negative integer, got {num_samples!r}")
    padded = num_samples + 2 * (n_fft // 2) if center else num_samples
    if padded < n_fft:
        raise ValueError(
            f"{num_samples} samples are too few for one frame of n_fft={n_fft} (center={center})"
        )
    return 1 + (padded - n_fft) // hop_length


def _as_batch_samples_channels(
    waveform: Waveform, batched: Optional[bool]
) -> tuple[tf.Tensor, bool]:
    """Returns ``([batch, samples, channels] float32, was_batched)`` for any accepted layout."""
    if not isinstance(waveform, tf.Tensor) or waveform.dtype != tf.float32:
        waveform = tf.convert_to_tensor(waveform)
        if not waveform.dtype.is_floating:
            raise ValueError(
                "waveform must hold floating-point samples in [-1, 1], got dtype "
                f"{waveform.dtype.name}"
            )
        waveform = tf.cast(waveform, tf.float32)
    rank = waveform.shape.rank
    if rank is None:
        raise ValueError("waveform rank must be known (1, 2 or 3), got an unknown rank")
    if batched is None:
        batched = rank == 3
    if batched:
        if rank == 2:  # [batch, samples] mono
            return waveform[:, :, tf.newaxis], True
        if rank == 3:
            return waveform, True
        raise ValueError(
            "batched waveform must be [batch, samples] or [batch, samples, channels], got "
            f"shape {waveform.shape}"
        )
    if rank == 1:
        return waveform[tf.newaxis, :, tf.newaxis], False
    if rank == 2:
        samples, channels = waveform.shape
        if samples is not None and channels is not None and channels > samples:
            raise ValueError(
                f"waveform of shape {waveform.shape} read as [samples, channels] has more channels "
                "than samples: pass batched=True for [batch, samples] mono, or transpose "
                "a [channels, samples] array"
            )
        return waveform[tf.newaxis], False
    raise ValueError(
        f"unbatched waveform must be [samples] or [samples, channels], got shape {waveform.shape}"
    )


def _apply_channel_mode(waveform: tf.Tensor, channel_mode: str) -> tf.Tensor:
    """``[batch, samples, channels]`` -> ``[batch, samples, channels_out]``."""
    if channel_mode == "keep":
        return waveform
    if channel_mode == "mono":  # librosa.to_mono: mean over channels
        return tf.reduce_mean(waveform, axis=-1, keepdims=True)
    channels = waveform.shape[-1]
    if channels != 2:
        raise ValueError(
            f"channel_mode='mid_side' needs 2 channels, got {channels} (shape {waveform.shape})"
        )
    left, right = waveform[..., 0], waveform[..., 1]
    return tf.stack([(left + right) * 0.5, (left - right) * 0.5], axis=-1)


def stft_magnitude(
    signal: tf.Tensor,
    *,
    n_fft: int,
    hop_length: int,
    win_length: int,
    window: str,
    center: bool,
    pad_mode: str,
    power: float,
) -> tf.Tensor:
    """``|STFT|**power`` of ``[batch, samples, channels]`` float32, as
    ``[batch, channels, frames, n_fft // 2 + 1]`` float32.

    ``librosa.stft`` framing: with ``center`` the signal is padded by ``n_fft // 2`` on both sides
    with ``pad_mode``; the periodic ``window`` of ``win_length`` samples is centred in ``n_fft``;
    ``frames = num_frames(samples, ...)``. The parameters must have been checked
    (:func:`check_log_mel_parameters`, ``ScalogramParams.check``); ``win_length`` is the effective
    one (not None). Shared by the log-mel and the scalogram front-ends
    (:mod:`tfasc.data.frontends.scalogram`).
    """
    signal = tf.transpose(signal, [0, 2, 1])  # [batch, channels, samples]: frame the last axis

    num_samples = signal.shape[-1]
    if center:
        half = n_fft // 2
        if pad_mode != "constant" and num_samples is not None and num_samples <= half:
            raise ValueError(
                f"pad_mode={pad_mode!r} needs more than n_fft // 2 = {half} samples, "
                f"got {num_samples}"
            )
        signal = tf.pad(signal, [[0, 0], [0, 0], [half, half]], mode=pad_mode.upper())
    if num_samples is not None:  # ValueError now, rather than zero frames, for too short a clip
        num_frames(num_samples, n_fft=n_fft, hop_length=hop_length, center=center)

    # Precision: log-mel's compared 80 dB of 10·log10(|X|^power) reach amplitudes 10^(-8 / power)
    # of the peak. A float32 STFT resolves about 1e-7 of a frame's peak amplitude: enough for
    # power >= 2 (1e-4), not for power=1 (1e-8; errors of several dB were measured on a chirp).
    # So smaller powers (the scalogram's log magnitude too) take the STFT in float64; the whole
    # log-mel then takes about 2.5x as long (71 ms against 28 ms for 10 s of stereo 48 kHz audio
    # on 2 CPU cores).
    stft_dtype = tf.float32 if power >= 2.0 else tf.float64
    frames = tf.signal.frame(
        tf.cast(signal, stft_dtype), frame_length=n_fft, frame_step=hop_length, axis=-1
    )
    window_taper = tf.constant(_cached_window(window, win_length, n_fft), dtype=stft_dtype)
    spectrum = tf.signal.rfft(frames * window_taper, fft_length=[n_fft])  # [b, c, t, bins]
    if power == 2.0:
        # |X|^2 without the square root (and its rounding)
        spectrum = tf.math.square(tf.math.real(spectrum)) + tf.math.square(tf.math.imag(spectrum))
    elif power == 1.0:
        spectrum = tf.math.abs(spectrum)
    else:
        spectrum = tf.math.pow(tf.math.abs(spectrum), power)
    # float32 from here: every bin keeps its own relative precision, and the mel bands sum
    # positive terms, so nothing is lost below the loudest bin.
    return tf.cast(spectrum, tf.float32)


# ----------------------------------------------------------------------------------------------
# The feature


def log_mel_spectrogram(
    waveform: Waveform,
    *,
    sample_rate: float,
    params: LogMelParams | None = None,
    batched: Optional[bool] = None,
    **overrides: Any,
) -> tf.Tensor:
    """Log-mel spectrogram in dB, ``[batch, n_mels, frames, channels]`` float32.

    Args:
      waveform: ``[batch, samples, channels]``, ``[samples, channels]``, ``[samples]``, or
        ``[batch, samples]`` with ``batched=True``; floating point in [-1, 1].
      sample_rate: in Hz.
      params: the other parameters (default ``LogMelParams()``); keyword ``overrides`` replace
        single fields of it, e.g. ``n_mels=64``:
      n_fft, win_length, hop_length, window, center, pad_mode: STFT as ``librosa.stft``
        (periodic window of ``win_length`` samples centred in ``n_fft``; with ``center`` the signal
        is padded by ``n_fft // 2`` on both sides with ``pad_mode``).
      n_mels, fmin, fmax: Slaney mel filter bank (``mel_filterbank``); ``fmax=None`` is Nyquist.
      power: exponent of the STFT magnitude (2: power, 1: magnitude).
      amin, top_db: as ``librosa.power_to_db(ref=1.0)``: ``10·log10(max(S, amin))``, then clamped
        from below at ``max - top_db`` per example (over all its channels); ``None`` leaves it.
      channel_mode: ``"keep"`` every channel, ``"mono"`` their mean before the STFT (one channel),
        ``"mid_side"`` for stereo ``[(L+R)/2, (L-R)/2]``.
      batched: None infers the layout from the rank (3: batched, 1 or 2: one example); True reads
        rank 2 as ``[batch, samples]`` mono.

    Returns:
      ``[batch, n_mels, frames, channels]``, or ``[n_mels, frames, channels]`` for an unbatched
      input, with ``frames = num_frames(samples, ...)``. Works eagerly, in ``tf.function`` and in
      ``tf.data.Dataset.map``; static input shapes give static output shapes.
    """
    try:
        params = dataclasses.replace(params or LogMelParams(), **overrides)
    except TypeError as error:
        raise TypeError(f"log_mel_spectrogram: {error}; parameters are {LogMelParams.names()}") from None
    win_length, fmax = params.check(sample_rate)
    n_fft, hop_length, window, center = params.n_fft, params.hop_length, params.window, params.center
    pad_mode, n_mels, fmin, power = params.pad_mode, params.n_mels, params.fmin, params.power
    amin, top_db, channel_mode = params.amin, params.top_db, params.channel_mode

    signal, was_batched = _as_batch_samples_channels(waveform, batched)
    signal = _apply_channel_mode(signal, channel_mode)
    spectrum = stft_magnitude(
        signal, n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window,
        center=center, pad_mode=pad_mode, power=power,
    )  # [batch, channels, frames, bins]

    # One dense [rows, bins] @ [bins, n_mels] matmul: the largest cost at 256 mels, so one GEMM.
    filterbank = tf.constant(
        _cached_mel_filterbank(float(sample_rate), int(n_fft), int(n_mels), float(fmin), fmax),
        dtype=tf.float32,
    )
    spectrum_shape = tf.shape(spectrum)
    mel = tf.linalg.matmul(tf.reshape(spectrum, [-1, n_fft // 2 + 1]), filterbank)
    mel = tf.reshape(mel, tf.concat([spectrum_shape[:3], [n_mels]], axis=0))
    mel = tf.transpose(mel, [0, 3, 2, 1])  # [batch, n_mels, frames, channels]
    mel = tf.ensure_shape(mel, [spectrum.shape[0], n_mels, spectrum.shape[2], spectrum.shape[1]])

    log_mel = (10.0 / math.log(10.0)) * tf.math.log(tf.math.maximum(mel, amin))
    if top_db is not None:
        loudest = tf.math.reduce_max(log_mel, axis=[1, 2, 3], keepdims=True)
        log_mel = tf.math.maximum(log_mel, loudest - top_db)
    return log_mel if was_batched else log_mel[0]
