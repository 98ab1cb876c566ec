"""``LogMelSpectrogram``: the log-mel front-end as a fixed, non-trainable Keras layer.

For models that take waveforms (a deployable graph from raw audio, notebooks, quick experiments).
It computes exactly ``tfasc.data.features.log_mel_spectrogram`` — one code path for the cached
features of the training pipeline and for this layer.

Layouts: input ``[batch, samples]`` (mono) or ``[batch, samples, channels]``; output
``[batch, n_mels, frames, channels]`` (the ``[batch, freq, time, channels]`` layout of tfasc
models). 256 log-mel bands of stereo 48 kHz scenes are the input of the DCASE 2020 Task 1B
report of entry Chang_QTI_task1b, Sec. 6.1; ``channel_mode="mid_side"`` is the average/difference
representation of Wu & Lee, "Searching for efficient network architectures for ASC", Sec. 4.2.
"""

from __future__ import annotations

from typing import Any, Optional

import tensorflow as tf  # the tfasc package __init__ has set TF_USE_LEGACY_KERAS already
import tf_keras as keras

from tfasc.data import features
from tfasc.layers.contract import LayerContract


@keras.saving.register_keras_serializable(package="tfasc")
class LogMelSpectrogram(LayerContract, keras.layers.Layer):
    """Log-mel spectrogram in dB of a waveform batch, matching librosa (see ``features``).

    Input ``[batch, samples]`` or ``[batch, samples, channels]`` float in [-1, 1]; output
    ``[batch, n_mels, frames, channels]`` float32, ``frames = features.num_frames(samples, ...)``
    and ``channels`` 1 for mono input or ``channel_mode="mono"``. No weights; always
    ``trainable=False``. Arguments: ``sample_rate`` and the fields of ``features.LogMelParams``.
    """

    def __init__(self, *, sample_rate: float, **kwargs: Any) -> None:
        # Log-mel arguments (defaults in ``features.LogMelParams``) and Keras layer arguments.
        params = {name: kwargs.pop(name) for name in features.LogMelParams.names() if name in kwargs}
        kwargs["trainable"] = False  # a fixed transform: nothing to train, whatever a config says
        super().__init__(**kwargs)
        self.sample_rate = sample_rate
        self.params = features.LogMelParams(**params)
        self.params.check(sample_rate)  # fail here, not at a call

    # Contract (tfasc.layers.contract): the float front-end (RFFT, log), in front of the int8 graph;
    # QAT refuses it. No kernels, and feature extraction is not counted in MACs.
    kernel_attributes = ()
    in_int8_graph = False

    def count_macs(self, input_shape, output_shape) -> int:
        return 0

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return features.log_mel_spectrogram(inputs, sample_rate=self.sample_rate, params=self.params, batched=True)

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
                samples, n_fft=self.params.n_fft, hop_length=self.params.hop_length, center=self.params.center
            )
        )
        if input_shape.rank == 2 or self.params.channel_mode == "mono":
            channels = 1
        else:
            channels = input_shape[2]
        return tf.TensorShape([input_shape[0], self.params.n_mels, frames, channels])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"sample_rate": self.sample_rate, **self.params.as_kwargs()})
        return config
