"""A small CNN on raw waveforms: a learned Conv1D filterbank, then the baseline CNN's 2-D blocks.

Input ``[batch, samples, channels]`` (``features.kind: waveform``), output logits
``[batch, num_classes]``. The stem is a strided Conv1D over time (``stem_filters`` filters of
``stem_kernel_ms`` at ``stem_hop_ms`` hops; BatchNorm, ReLU, max pooling by 2), which gives
``[batch, frames, stem_filters]``: a learned time-frequency representation. It is transposed to
``[batch, stem_filters, frames, 1]``, the filter axis in the frequency place of the log-mel layout
``[batch, freq, time, channels]``, and goes through ``tfasc.models.baseline``'s blocks and head.

Every op quantizes with TF-MOT's default 8-bit scheme and runs in TFLite Micro: the converter
turns Conv1D and MaxPooling1D into CONV_2D and MAX_POOL_2D between RESHAPE ops, the transpose into
TRANSPOSE.
"""

from __future__ import annotations

import tfasc  # noqa: F401
import tf_keras as keras

from tfasc.models.baseline import classifier_head, conv_blocks
from tfasc.models.registry import register


def stem_geometry(sample_rate: int, kernel_ms: float, hop_ms: float) -> tuple[int, int]:
    """``(kernel, stride)`` in samples: the durations at ``sample_rate``, rounded, at least 1."""
    if sample_rate < 1 or kernel_ms <= 0 or hop_ms <= 0:
        raise ValueError(
            f"waveform_cnn: sample_rate, stem_kernel_ms and stem_hop_ms must be positive, got "
            f"{sample_rate}, {kernel_ms}, {hop_ms}"
        )
    return max(1, round(sample_rate * kernel_ms / 1000)), max(1, round(sample_rate * hop_ms / 1000))


@register("waveform_cnn")
def build_waveform_cnn(
    input_shape,
    num_classes: int,
    *,
    sample_rate: int = 16000,
    stem_filters: int = 32,
    stem_kernel_ms: float = 10.0,
    stem_hop_ms: float = 5.0,
    width: int = 16,
    blocks: int = 3,
    dropout: float = 0.2,
    bn_momentum: float = 0.9,
):
    """Build the waveform CNN for ``input_shape = (samples, channels)``.

    Args:
        sample_rate: of the input, in Hz (the recipe's ``data.sample_rate``, set under ``model:``);
            converts the stem's kernel and hop from milliseconds to samples.
        stem_filters: learned filters, the "frequency" axis of the 2-D blocks.
        stem_kernel_ms, stem_hop_ms: the stem's kernel length and stride; after its max pooling
            by 2 one frame covers ``2 · stem_hop_ms``.
        width, blocks, dropout: as in ``baseline_cnn``.
        bn_momentum: of every BatchNorm's moving statistics. 0.9, not Keras' 0.99: the stem's
            output scale moves fast while the filterbank learns, and with 0.99 the moving statistics
            lagged so far behind that the quickstart's evaluation accuracy was 41 % with them and
            78 % with the batch's own statistics (measured).
    """
    if len(input_shape) != 2:
        raise ValueError(f"waveform_cnn: input_shape {tuple(input_shape)}: expected (samples, channels)")
    if stem_filters < 1:
        raise ValueError(f"waveform_cnn: stem_filters must be >= 1, got {stem_filters}")
    kernel, stride = stem_geometry(sample_rate, stem_kernel_ms, stem_hop_ms)
    inputs = keras.Input(shape=input_shape, name="waveform")
    x = keras.layers.Conv1D(stem_filters, kernel, strides=stride, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = keras.layers.BatchNormalization(momentum=bn_momentum, name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.MaxPooling1D(2, padding="same", name="stem_pool")(x)  # [batch, frames, filters]
    x = keras.layers.Permute((2, 1), name="filters_first")(x)  # [batch, filters, frames]
    # A static target shape: with -1 the converter computes it at run time (SHAPE, STRIDED_SLICE,
    # PACK), and TFLite Micro's RESHAPE then fails to prepare.
    x = keras.layers.Reshape((stem_filters, int(x.shape[-1]), 1), name="to_image")(x)  # [batch, filters, frames, 1]
    x = conv_blocks(x, width=width, blocks=blocks, bn_momentum=bn_momentum)
    outputs = classifier_head(x, num_classes=num_classes, dropout=dropout)
    return keras.Model(inputs, outputs, name="waveform_cnn")
