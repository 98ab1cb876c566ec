"""A small baseline CNN, so the pipeline is usable before the paper models.

Three blocks of (3×3 conv, BatchNorm, ReLU, 2×2 max pooling) with ``width``, ``2·width`` and
``4·width`` channels, global average pooling, dropout and a dense classifier; in the spirit of the
DCASE 2020 Task 1B official baseline, but smaller. Input ``[batch, freq, time, channels]``, output
logits ``[batch, num_classes]``.
"""

from __future__ import annotations

import tfasc  # noqa: F401
import tf_keras as keras

from tfasc.models.registry import register


@register("baseline_cnn")
def build_baseline_cnn(input_shape, num_classes: int, *, width: int = 16, blocks: int = 3, dropout: float = 0.2):
    """Build the baseline CNN for features ``input_shape = (freq, time, channels)``."""
    if width < 1 or blocks < 1:
        raise ValueError(f"baseline_cnn: width and blocks must be >= 1, got width={width}, blocks={blocks}")
    inputs = keras.Input(shape=input_shape, name="features")
    x = inputs
    for i in range(blocks):
        x = keras.layers.Conv2D(width * 2**i, 3, padding="same", use_bias=False, name=f"block{i + 1}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"block{i + 1}_bn")(x)
        x = keras.layers.ReLU(name=f"block{i + 1}_relu")(x)
        x = keras.layers.MaxPooling2D(2, padding="same", name=f"block{i + 1}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="baseline_cnn")
