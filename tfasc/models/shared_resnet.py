"""Shared-ResNet with SubSpectral Normalization, Table 1 of the DCASE 2020 Task 1B report.

The report: 'QTI Submission to DCASE 2020: Model Efficient Acoustic Scene Classification' (DCASE
2020 Task 1B technical report, entry Chang_QTI_task1b).

Registered as ``"shared_resnet"``. Input ``[batch, freq, time, channels]`` log-mel features (the paper:
256 mel bins, stereo, 10 s at 48 kHz); output logits ``[batch, num_classes]``.

Table 1 (``c = channels``; every conv without bias, padding "same"; RB = residual block as in
:func:`tfasc.layers.residual.residual_block`, SRB = shared residual block):

==========  ==================================  ========
stem        conv 5x5 stride 2, BN, ReLU         c
RB1         3x3, BN, 1x1, SSN(S)                c
pool1       2x2 max pooling
RB2         3x3, BN, 3x3, SSN(S)                c
pool2       2x2 max pooling
RB3, RB4    3x3, BN, 3x3, SSN(S)                c
pool3       2x2 max pooling
RB5         1x1, BN, 1x1, SSN(S) (+1x1 proj)    2c
SRB1        N x Shared(1x1, BN, 1x1, BN)        2c
RB6         1x1, BN, 1x1, SSN(S) (+1x1 proj)    4c
SRB2        N x Shared(1x1, BN, 1x1, BN)        4c
head        conv 1x1, BN                        classes
pool        global average pooling -> logits
==========  ==================================  ========

Parameter count (what the paper's #Params is): PyTorch's ``sum(p.numel() for p in
model.parameters())``, i.e. trainable weights only (conv kernels, BN/SSN gamma and beta; no moving
statistics, which PyTorch keeps as buffers), with the projection shortcuts of RB5/RB6 being
1x1 conv + BN as in CP-ResNet [18]. With c=64, input (256, T, 2), N=3, S=2: 603,668 trainable
weights for 10 classes (Table 3: 604K) and 601,862 for 3 classes (Table 4: 601K, +0.14%). The same
reading reproduces the pruned size: 60 % of the 593,664 conv weights removed leaves 245,664
weights (Table 4: 246K), x 2 bytes (float16) = 491 KB (Table 4: 491KB). Keras' ``count_params()``
also counts the moving statistics (SSN keeps ``[S, C]`` of each): 613,032 (10 classes) and 611,212
(3 classes); 611,752 and 609,932 with ``normalization="bn"``.
The plain ResNet of the same depth (``shared=False``) has 931,348 trainable weights for 10
classes: sharing saves 35.2 % (Sec. 2.1: "more than 30%").

The stem uses "same" padding: with 256 mel bins every SSN then sees an even number of bins
(128, 64, 32, 16); CP-ResNet's padding of 1 would give 127.

Compression (measured on this stack; every block is built functionally from stock layers): TF-MOT
``prune_low_magnitude`` wraps the whole model (one mask per shared kernel). ``quantize_apply``
succeeds once the SSN layers and the ``srb*_bn_*`` BatchNorms are annotated (output-only /
no-op configs), but those un-folded normalizations then run as float MUL/ADD between
DEQUANTIZE/QUANTIZE; for an all-int8 graph, rebuild each SSN with
:func:`tfasc.layers.normalization.sub_spectral_as_depthwise` and each per-repeat BN as a frozen
1x1 depthwise conv before QAT or export.
"""

from __future__ import annotations

from typing import Literal

import tfasc  # noqa: F401  (selects tf_keras before TensorFlow is imported)

import tf_keras as keras

from tfasc.layers.residual import NORMALIZATIONS, residual_block, shared_convs, shared_residual_block
from tfasc.models.registry import register

POOLINGS_BEFORE_SSN = {"rb1": 0, "rb2": 1, "rb3": 2, "rb4": 2, "rb5": 3, "rb6": 3}


def _check_arguments(input_shape, num_classes, channels, sub_bands, repeats, normalization):
    if len(input_shape) != 3 or input_shape[0] is None or input_shape[2] is None:
        raise ValueError(
            f"shared_resnet: input_shape must be (freq, time, channels) with freq and channels known, "
            f"got {input_shape!r}"
        )
    for key, value in (("num_classes", num_classes), ("channels", channels), ("repeats", repeats), ("sub_bands", sub_bands)):
        if int(value) < 1:
            raise ValueError(f"shared_resnet: {key} must be >= 1, got {value!r}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"shared_resnet: normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    # Stride-2 stem ("same" padding -> ceil) then three floor-halving 2x2 poolings.
    freq = -(-int(input_shape[0]) // 2)
    time = input_shape[1]
    if freq // 8 < 1 or (time is not None and -(-int(time) // 2) // 8 < 1):
        raise ValueError(
            f"shared_resnet: input_shape={tuple(input_shape)} is too small for a stride-2 stem and three "
            f"2x2 poolings; freq and time must each be >= 15"
        )
    if normalization == "ssn":
        for block, pools in POOLINGS_BEFORE_SSN.items():
            bins = freq // (2**pools)
            if bins < sub_bands or bins % sub_bands:
                raise ValueError(
                    f"shared_resnet: with input_shape={tuple(input_shape)}, {block} sees {bins} frequency "
                    f"bins, not divisible into sub_bands={sub_bands}; use a frequency size divisible by "
                    f"{16 * sub_bands} (e.g. 256 mel bins)"
                )


@register("shared_resnet")
def build_shared_resnet(
    input_shape,
    num_classes: int,
    *,
    channels: int = 64,
    sub_bands: int = 2,
    repeats: int = 3,
    shared: bool = True,
    normalization: Literal["ssn", "bn"] = "ssn",
    bn_momentum: float = 0.99,
    bn_epsilon: float = 1e-3,
    name: str = "shared_resnet",
) -> keras.Model:
    """Build Table 1's network for ``input_shape = (freq, time, channels)``; returns logits.

    Args:
      channels: base width ``c``.
      sub_bands: ``S`` of every SSN.
      repeats: ``N`` of both shared residual blocks.
      shared: ``False`` gives the ablation of Sec. 2.1: a plain ResNet of the same depth whose
        repeats each own their convolutions.
      normalization: ``"ssn"`` (paper) or ``"bn"`` for the last norm of every RB.
      bn_momentum, bn_epsilon: of every BN and SSN (Keras convention: ``moving = m * moving + ...``).
    """
    input_shape = tuple(input_shape)
    _check_arguments(input_shape, num_classes, channels, sub_bands, repeats, normalization)
    c = int(channels)
    norm = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon)

    def rb(x, filters, kernel_sizes, block_name):
        return residual_block(
            x, filters=filters, kernel_sizes=kernel_sizes, normalization=normalization,
            sub_bands=sub_bands, name=block_name, **norm,
        )

    def srb(x, filters, block_name):
        if not shared:
            # Ablation: same depth, every repeat with its own pair of convs.
            for i in range(repeats):
                conv_a, conv_b = shared_convs(filters, 1, name=f"{block_name}_r{i}")
                x = shared_residual_block(x, conv_a, conv_b, 1, f"{block_name}_r{i}", **norm)
            return x
        conv_a, conv_b = shared_convs(filters, 1, name=block_name)
        return shared_residual_block(x, conv_a, conv_b, repeats, block_name, **norm)

    inputs = keras.Input(shape=input_shape, name="features")
    x = keras.layers.Conv2D(
        c, 5, strides=2, padding="same", use_bias=False, kernel_initializer="he_normal", name="stem_conv"
    )(inputs)
    x = keras.layers.BatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon, name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = rb(x, c, (3, 1), "rb1")
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = rb(x, c, (3, 3), "rb2")
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = rb(x, c, (3, 3), "rb3")
    x = rb(x, c, (3, 3), "rb4")
    x = keras.layers.MaxPooling2D(2, name="pool3")(x)
    x = rb(x, 2 * c, (1, 1), "rb5")
    x = srb(x, 2 * c, "srb1")
    x = rb(x, 4 * c, (1, 1), "rb6")
    x = srb(x, 4 * c, "srb2")
    x = keras.layers.Conv2D(
        num_classes, 1, use_bias=False, kernel_initializer="he_normal", name="head_conv"
    )(x)
    x = keras.layers.BatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon, name="head_bn")(x)
    logits = keras.layers.GlobalAveragePooling2D(name="logits")(x)
    return keras.Model(inputs, logits, name=name)
