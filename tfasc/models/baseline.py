"""A small baseline CNN, so the pipeline is usable before the paper models.

Three blocks of (3×3 conv, BatchNorm, ReLU, 2×2 max pooling) with ``width``, ``2·width`` and
``4·width`` channels, global average pooling, dropout and a dense classifier; in the spirit of the
DCASE 2020 Task 1B official baseline, but smaller. Input ``[batch, freq, time, channels]``, output
logits ``[batch, num_classes]``. ``conv_blocks`` and ``classifier_head`` are shared with other
families that end in the same 2-D blocks (``tfasc.models.waveform``).
"""

from __future__ import annotations

import tfasc  # noqa: F401
import tf_keras as keras

from tfasc.models.registry import register


def conv_blocks(x, *, width: int, blocks: int, bn_momentum: float = 0.99):
    """``blocks`` × (3×3 conv without bias, BatchNorm, ReLU, 2×2 max pooling), ``width·2^i`` channels.

    ``x``: ``[batch, freq, time, channels]``; returns ``[batch, freq / 2^blocks, time / 2^blocks,
    width·2^(blocks-1)]`` (rounded up: "same" pooling). Layers are named ``block{i}_conv/bn/relu/pool``.
    ``bn_momentum``: of the BatchNorms' moving statistics (Keras convention).
    """
    if width < 1 or blocks < 1:
        raise ValueError(f"conv_blocks: width and blocks must be >= 1, got width={width}, blocks={blocks}")
    for i in range(blocks):
        x = keras.layers.Conv2D(width * 2**i, 3, padding="same", use_bias=False, name=f"block{i + 1}_conv")(x)
        x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"block{i + 1}_bn")(x)
        x = keras.layers.ReLU(name=f"block{i + 1}_relu")(x)
        x = keras.layers.MaxPooling2D(2, padding="same", name=f"block{i + 1}_pool")(x)
    return x


def classifier_head(x, *, num_classes: int, dropout: float):
    """``[batch, freq, time, channels]`` -> global average pooling, dropout, dense logits ``[batch, num_classes]``."""
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.layers.Dense(num_classes, name="logits")(x)


@register("baseline_cnn")
def build_baseline_cnn(input_shape, num_classes: int, *, width: int = 16, blocks: int = 3, dropout: float = 0.2,
                       bn_momentum: float = 0.99):
    """Build the baseline CNN for features ``input_shape = (freq, time, channels)``.

    ``bn_momentum``: of the BatchNorms' moving statistics; with few steps per epoch (small datasets)
    0.9 lets them follow the weights, so the per-epoch evaluation is not stuck on stale statistics.
    """
    inputs = keras.Input(shape=input_shape, name="features")
    x = conv_blocks(inputs, width=width, blocks=blocks, bn_momentum=bn_momentum)
    outputs = classifier_head(x, num_classes=num_classes, dropout=dropout)
    return keras.Model(inputs, outputs, name="baseline_cnn")
