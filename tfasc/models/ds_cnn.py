"""DS-CNN: the depthwise-separable CNN of keyword spotting, the MLPerf Tiny KWS reference model.

Zhang et al., "Hello Edge: Keyword Spotting on Microcontrollers" (2017), DS-CNN-S, as the MLPerf
Tiny benchmark (Banbury et al. 2021) ships it: a strided ``stem_kernel`` convolution with ``width``
filters, then ``blocks`` × (3×3 depthwise conv, BatchNorm, ReLU, 1×1 pointwise conv to ``width``,
BatchNorm, ReLU), global average pooling, dropout and a dense classifier. Input
``[batch, freq, time, channels]`` (log-mel), output logits ``[batch, num_classes]``.

Convolutions have no bias (BatchNorm follows each, and TF-MOT folds it into the int8 kernel). The
MLPerf model's 10×4 stem spans 10 frames × 4 MFCCs of a ``[time, mfcc]`` input; in tfasc's
``[freq, time]`` layout that is ``stem_kernel=(4, 10)``. The default ``(10, 4)`` spans 10 mel bins ×
4 frames, which is what scored best on the leave-one-speaker-out FSDD folds (README benchmark).
Parameters at the defaults: 2,560 + 4 × (576 + 4,096) weights, 5 × 256 BatchNorm values and the
classifier: 24,202 (int8 about 30 KB with TFLite's overhead).
"""

from __future__ import annotations

import tfasc  # noqa: F401
import tf_keras as keras

from tfasc.models.registry import register


@register("ds_cnn")
def build_ds_cnn(
    input_shape,
    num_classes: int,
    *,
    width: int = 64,
    blocks: int = 4,
    stem_kernel: tuple[int, int] = (10, 4),
    stem_strides: tuple[int, int] = (2, 2),
    dropout: float = 0.2,
    bn_momentum: float = 0.99,
):
    """Build the DS-CNN for features ``input_shape = (freq, time, channels)``.

    Args:
        width: filters of the stem and of every pointwise convolution (MLPerf Tiny: 64).
        blocks: depthwise-separable blocks (MLPerf Tiny: 4).
        stem_kernel, stem_strides: ``(freq, time)`` of the first convolution.
        bn_momentum: of every BatchNorm's moving statistics (Keras convention): with few steps per
            epoch, 0.9 lets them follow the weights.
    """
    if len(input_shape) != 3:
        raise ValueError(f"ds_cnn: expected input_shape (freq, time, channels), got {tuple(input_shape)}")
    if width < 1 or blocks < 0:
        raise ValueError(f"ds_cnn: width must be >= 1 and blocks >= 0, got width={width}, blocks={blocks}")
    if len(stem_kernel) != 2 or len(stem_strides) != 2 or min(*stem_kernel, *stem_strides) < 1:
        raise ValueError(f"ds_cnn: stem_kernel and stem_strides must be two positive integers (freq, time), "
                         f"got {list(stem_kernel)} and {list(stem_strides)}")
    if not 0.0 <= dropout < 1.0 or not 0.0 <= bn_momentum < 1.0:
        raise ValueError(f"ds_cnn: dropout and bn_momentum must be in [0, 1), got {dropout} and {bn_momentum}")
    inputs = keras.Input(shape=input_shape, name="features")
    x = keras.layers.Conv2D(width, tuple(stem_kernel), strides=tuple(stem_strides), padding="same", use_bias=False,
                            name="stem_conv")(inputs)
    x = keras.layers.BatchNormalization(momentum=bn_momentum, name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for i in range(1, blocks + 1):
        x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"block{i}_depthwise")(x)
        x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"block{i}_depthwise_bn")(x)
        x = keras.layers.ReLU(name=f"block{i}_depthwise_relu")(x)
        x = keras.layers.Conv2D(width, 1, use_bias=False, name=f"block{i}_pointwise")(x)
        x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"block{i}_pointwise_bn")(x)
        x = keras.layers.ReLU(name=f"block{i}_pointwise_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="ds_cnn")
