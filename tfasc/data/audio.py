"""Audio decoding to float waveforms laid out ``[samples, channels]``.

16-bit PCM WAV is decoded by TensorFlow itself (``tf.audio.decode_wav``); everything else (24/32-bit
and float WAV, FLAC, MP3, Ogg Vorbis) goes through tensorflow-io, whose ``AudioIOTensor`` reads the
container and reports the native rate. Resampling uses ``tfio.audio.resample`` so both paths end in
the same TensorFlow op.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import tfasc  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow as tf

from tfasc.errors import UserError


class AudioDecodeError(UserError):
    """A file that cannot be turned into audio: unreadable, empty, corrupt or of an unknown format."""

    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


# Full-scale value of each integer sample type tensorflow-io returns (24-bit WAV arrives left-aligned in int32).
_INT_FULL_SCALE = {tf.int16: 32768.0, tf.int32: 2147483648.0, tf.uint8: 128.0}


def _first_line(error: Exception) -> str:
    message = getattr(error, "message", None) or str(error)
    # TensorFlow prefixes messages with the wrapped-function name; keep what a user can act on.
    message = message.split("}}")[-1].strip()
    return message.split("[Op:")[0].strip() or type(error).__name__


def _decode_pcm16_wav(data: bytes) -> tuple[tf.Tensor, int]:
    audio, rate = tf.audio.decode_wav(data)
    return audio, int(rate.numpy())


def _decode_with_tfio(path: Path) -> tuple[tf.Tensor, int]:
    import tensorflow_io as tfio  # loaded lazily: its ops add a second of start-up

    reader = tfio.audio.AudioIOTensor(str(path))
    audio = reader.to_tensor()
    if audio.dtype in _INT_FULL_SCALE:
        audio = tf.cast(audio, tf.float32) / _INT_FULL_SCALE[audio.dtype]
    return tf.cast(audio, tf.float32), int(reader.rate.numpy())


def _is_pcm16_wav(data: bytes) -> bool:
    # RIFF/WAVE with a 16-bit PCM fmt chunk at the canonical offset; anything else goes to tensorflow-io.
    return (
        len(data) >= 36
        and data[:4] == b"RIFF"
        and data[8:12] == b"WAVE"
        and data[12:16] == b"fmt "
        and int.from_bytes(data[20:22], "little") == 1
        and int.from_bytes(data[34:36], "little") == 16
    )


def decode_audio(path: Path | str) -> tuple[tf.Tensor, int]:
    """Decode ``path`` to a float32 tensor ``[samples, channels]`` in [-1, 1] and its sample rate.

    Raises:
        AudioDecodeError: naming the file and the reason (missing, empty, corrupt, unknown format,
            NaN or infinite samples).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise AudioDecodeError(path, f"cannot read file ({error.strerror or error})") from error
    if not data:
        raise AudioDecodeError(path, "file is empty (0 bytes)")
    try:
        if _is_pcm16_wav(data):
            audio, rate = _decode_pcm16_wav(data)
        else:
            audio, rate = _decode_with_tfio(path)
    except (tf.errors.OpError, ValueError, RuntimeError) as error:
        raise AudioDecodeError(path, f"not decodable audio ({_first_line(error)})") from error
    if audio.shape.rank != 2 or audio.shape[0] == 0:
        raise AudioDecodeError(path, f"contains no samples (decoded shape {tuple(audio.shape)})")
    if rate <= 0:
        raise AudioDecodeError(path, f"has an invalid sample rate {rate}")
    non_finite = count_non_finite(audio)
    if non_finite:
        # Float WAV/FLAC can carry NaN or inf; one of them would turn every feature of the clip, and
        # then the loss, into NaN. Named here, the file is listed (or skipped) like an undecodable one.
        raise AudioDecodeError(path, f"contains non-finite samples ({non_finite} NaN/inf values)")
    return audio, rate


def count_non_finite(values) -> int:
    """Number of NaN and ±inf entries of a float tensor or array."""
    return int(np.size(values) - np.count_nonzero(np.isfinite(np.asarray(values))))


def convert_channels(audio: tf.Tensor, channels: int) -> tf.Tensor:
    """Give ``[samples, c]`` audio ``channels`` channels: average to mono, or repeat mono to many.

    A stereo recording asked for as stereo keeps both channels; other mismatches are an error
    because no conversion is obviously right.
    """
    have = audio.shape[-1]
    if have == channels:
        return audio
    if channels == 1:
        return tf.reduce_mean(audio, axis=-1, keepdims=True)
    if have == 1:
        return tf.repeat(audio, channels, axis=-1)
    raise ValueError(f"cannot convert {have}-channel audio to {channels} channels")


def fit_length(audio: tf.Tensor, num_samples: int) -> tf.Tensor:
    """Crop ``[samples, channels]`` audio to its first ``num_samples`` or zero-pad it at the end."""
    audio = audio[:num_samples]
    missing = num_samples - tf.shape(audio)[0]
    return tf.pad(audio, [[0, missing], [0, 0]])


def load_audio(
    path: Path | str, *, sample_rate: int, channels: int, num_samples: int | None
) -> np.ndarray:
    """Decode, resample to ``sample_rate``, set ``channels`` and crop/pad to ``num_samples``.

    Returns a float32 array ``[num_samples, channels]``; with ``num_samples=None`` the whole clip
    (prediction windows, augmentation banks).
    """
    audio, rate = decode_audio(path)
    if rate != sample_rate:
        import tensorflow_io as tfio

        audio = tfio.audio.resample(audio, rate_in=rate, rate_out=sample_rate)
    try:
        audio = convert_channels(audio, channels)
    except ValueError as error:
        raise AudioDecodeError(path, str(error)) from error
    if num_samples is None:
        return np.asarray(audio.numpy(), np.float32)
    return fit_length(audio, num_samples).numpy()
