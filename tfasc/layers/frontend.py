"""``LogMelSpectrogram``: the log-mel front-end as a fixed, non-trainable Keras layer.

For models that take waveforms (a deployable graph from raw audio, notebooks, quick experiments).
It computes exactly ``tfasc.data.features.log_mel_spectrogram`` — one code path for the cached
features of the training pipeline and for this layer.

Layouts: input ``[batch, samples]`` (mono) or ``[batch, samples, channels]``; output
``[batch, n_mels, frames, channels]`` (the ``[batch, freq, time, channels]`` layout of tfasc
models). 256 log-mel bands of stereo 48 kHz scenes are the input of Kim et al., "SSN with shared
residual and FreqMix", Sec. 6.1; ``channel_mode="mid_side"`` is the average/difference
representation of Wu & Lee, "Searching for efficient network architectures for ASC", Sec. 4.2.
"""

from __future__ import annotations

from typing import Any, Optional

import tensorflow as tf  # the tfasc package __init__ has set TF_USE_LEGACY_KERAS already
import tf_keras as keras

from tfasc.data import features


@keras.saving.register_keras_serializable(package="tfasc")
class LogMelSpectrogram(keras.layers.Layer):
    """Log-mel spectrogram in dB of a waveform batch, matching librosa (see ``features``).

    Input ``[batch, samples]`` or ``[batch, samples, channels]`` float in [-1, 1]; output
    ``[batch, n_mels, frames, channels]`` float32, ``frames = features.num_frames(samples, ...)``
    and ``channels`` 1 for mono input or ``channel_mode="mono"``. No weights; always
    ``trainable=False``. Arguments are those of ``features.log_mel_spectrogram``.
    """

    def __init__(
        self,
        *,
        sample_rate: float,
        n_fft: int = 2048,
        win_length: Optional[int] = None,
        hop_length: int = 512,
        window: str = "hann",
        center: bool = True,
        pad_mode: str = "constant",
        n_mels: int = 128,
        fmin: float = 0.0,
        fmax: Optional[float] = None,
        power: float = 2.0,
        amin: float = 1e-10,
        top_db: Optional[float] = 80.0,
        channel_mode: str = "keep",
        **kwargs: Any,
    ) -> None:
        kwargs["trainable"] = False  # a fixed transform: nothing to train, whatever a config says
        super().__init__(**kwargs)
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        self.window = window
        self.center = center
        self.pad_mode = pad_mode
        self.n_mels = n_mels
        self.fmin = fmin
        self.fmax = fmax
        self.power = power
        self.amin = amin
        self.top_db = top_db
        self.channel_mode = channel_mode
        features.check_log_mel_parameters(**self._feature_arguments())  # fail here, not at a call

    def _feature_arguments(self) -> dict[str, Any]:
        return {
            "sample_rate": self.sample_rate,
            "n_fft": self.n_fft,
            "win_length": self.win_length,
            "hop_length": self.hop_length,
            "window": self.window,
            "center": self.center,
            "pad_mode": self.pad_mode,
            "n_mels": self.n_mels,
            "fmin": self.fmin,
            "fmax": self.fmax,
            "power": self.power,
            "amin": self.amin,
            "top_db": self.top_db,
            "channel_mode": self.channel_mode,
        }

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return features.log_mel_spectrogram(inputs, **self._feature_arguments(), batched=True)

    def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
        input_shape = tf.TensorShape(input_shape)
        if input_shape.rank not in (2, 3):
            raise ValueError(
                "LogMelSpectrogram expects [batch, samples] or [batch, samples, channels], "
                f"got {input_shape}"
            )
        samples = input_shape[1]
        frames = (
            None
            if samples is None
            else features.num_frames(
                samples, n_fft=self.n_fft, hop_length=self.hop_length, center=self.center
            )
        )
        if input_shape.rank == 2 or self.channel_mode == "mono":
            channels = 1
        else:
            channels = input_shape[2]
        return tf.TensorShape([input_shape[0], self.n_mels, frames, channels])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(self._feature_arguments())
        return config
