"""Raw-waveform ResNet (Chen, Hao, Chen, Xie, Yang & Pu 2019): a 1-D ResNet-18 on the waveform, its
output transposed to an image, a 2-D ResNet-50 with multi-level attention prediction.

"An End-to-End Audio Classification System based on Raw Waveforms and Mix-Training Strategy"
(Interspeech 2019), Sec. 3.1 and 4.2, Fig. 1, Table 3. The mix-training strategy (Sec. 3.2) is a
data matter, not part of the model.

Input ``[batch, samples, channels]`` (or ``[batch, samples]`` for ``input_shape=(samples,)``: a
channel axis is added) of any length: the model is built with an unknown number of samples, so it
trains on crops and evaluates whole clips; an export fixes the length (``tfasc.deploy.convert``'s
``input_shape``). Output logits ``[batch, num_classes]``.

1. Top stage (Sec. 3.1, 4.2: "1D ResNet-18"): stem ``Conv1D(wave_widths[0], wave_stem_kernel,
   stride wave_stride / 16)`` + BN + ReLU + ``MaxPooling1D(2)``; four stages of ``wave_blocks[i]``
   basic blocks (conv3 -> BN -> ReLU -> conv3 -> BN, plus the shortcut, ReLU after the add) at
   ``wave_widths[i]`` channels, the first block of stages 2-4 striding time by 2; a 1x1 conv + BN +
   ReLU to ``wave_channels`` only where ``wave_widths[-1]`` differs. All "same" padding: ``[batch,
   samples, channels] -> [batch, T, C]`` with ``T = ceil(samples / wave_stride)``, ``C =
   wave_channels``. Table 3: 160,000 samples (10 s at 16 kHz) give 128 x 2500 at ``wave_stride``
   64 (the paper's choice) and 128 x 1250 at 128.
2. Transpose (Fig. 1: ``C x 1 x T -> 1 x C x T``): ``Permute`` then ``Reshape`` to the image
   ``[batch, C, T, 1]``, the learned channels in the frequency place of tfasc's
   ``[batch, freq, time, channels]`` layout, so the 2-D convolutions run over "frequency" and time.
3. Bottom stage (Sec. 4.2: "2D ResNet-50"): stem ``Conv2D(stem_filters, 7x7, stride 2)`` + BN +
   ReLU + ``MaxPooling2D(3, stride 2)``; ``len(blocks)`` stages of bottleneck blocks (1x1 to
   ``widths[i]`` -> BN -> ReLU -> 3x3 with the stage's stride -> BN -> ReLU -> 1x1 to
   ``widths[i] * expansion`` -> BN, plus the shortcut, ReLU after the add), stage strides 1, 2, 2,
   2, ... in both axes. The defaults are ResNet-50's body: blocks (3, 4, 6, 3), widths (64, 128,
   256, 512), expansion 4: 16 bottleneck blocks, 53 Conv2D layers.
4. Multi-level prediction (Sec. 3.1, 4.2: after "the 2th, 3th, 4th Block", ``levels`` (2, 3, 4),
   1-based stage numbers). At each level the stage output ``[batch, F, T', D]`` is averaged over
   frequency (``AveragePooling2D((F, 1))``) to per-time-step features ``[batch, 1, T', D]``, then
   the attention structure of Yu et al. 2018 (the paper's ref. [2]): module 1 = a per-step dense
   layer to ``2K`` (``level{n}_att1_dense``) -> :class:`~tfasc.layers.attention.AttentionPooling`
   (``[batch, T', 2K] -> [batch, K]``); module 2 the same after two per-step FC layers
   (``attention_units`` = 600, ReLU; Sec. 4.2; ``level{n}_fc1``, ``_fc2``), each optionally
   followed by dropout; the two ``[batch, K]`` predictions concatenated, ``Dense(K)`` -> the
   level's logits (``level{n}_logits``). The levels' logits ``[batch, L, K]`` go to
   :class:`~tfasc.layers.attention.MultiLevelOutput`, the model's last layer
   (``multi_level_output``): the logits of the mean of the levels' predictions (Fig. 1: "the mean
   of the multi-level prediction results"). The paper trains on "the mean of multi-level prediction
   loss": the training loop finds the levels' logits as the input of the model's last layer.

The per-step dense layers are 1x1 ``Conv2D`` on ``[batch, 1, T', D]`` (the same function as a
``Dense`` on ``[batch, T', D]``), reshaped to ``[batch, T', 2K]`` just before each attention
pooling. Measured reason: a ``Dense`` on a 3-D input converts to an int8 FULLY_CONNECTED with
per-channel weights (TF 2.17's default) and several rows, and TFLite's reference kernel for that
case (``OpResolverType.BUILTIN_REF``, the one TFLite Micro is checked against) returns wrong values
that change from run to run (255 LSB between two runs of the same input; TFLite Micro and the
optimized kernels agree with the float model within 1 LSB). A 1x1 CONV_2D is bit-exact.

Shortcuts: identity where the shape is unchanged, else a 1x1 convolution + BN with the block's
stride, written as a 1x1 max pool with that stride then a stride-1 1x1 convolution: the same
function, but training a strided 1x1 convolution aborts TensorFlow 2.17's oneDNN on this stack
("free(): invalid size", measured; ``tfasc.layers.erann`` does the same). Convolutions have no bias
(a BN follows each) and Keras' Glorot initialization (Kaiming's made deep stacks explode here).

The paper's: ResNet-18 (1-D) and ResNet-50 (2-D) structures, 128 x 2500 for 10 s at 16 kHz, FC 600
ReLU, levels after blocks 2, 3, 4, two attention modules concatenated, the mean of the levels.
Our choices where the paper is silent: the 1-D stem's kernel (11) and stride (``wave_stride / 16``,
so ResNet's stem pooling and three stride-2 stages make up the total), the 1-D widths (64, 64, 128,
128: ResNet-18's doubling capped at the 128 channels of Table 3, so no final 1x1 is needed), the
frequency mean before the attention (Yu et al.'s attention reads a ``[time, features]`` sequence),
BN momentum 0.9 (as ``waveform_cnn``: the waveform stem's scale moves fast while it learns).

int8 (post-training, representative data; measured on a tiny configuration, bit-exact in TFLite
Micro against TFLite's reference kernels, ``tests/models/test_wave_resnet.py``): builtins only,
ADD, AVERAGE_POOL_2D, CONCATENATION, CONV_2D, FULLY_CONNECTED, LOGISTIC, LOG_SOFTMAX, MAX_POOL_2D,
MEAN, MUL, PACK, RESHAPE, SOFTMAX, SPLIT, STRIDED_SLICE, SUB, TRANSPOSE. Conv1D and MaxPooling1D
run as CONV_2D and MAX_POOL_2D between RESHAPEs and every BatchNorm folds into its convolution; the
residual adds are ADD; Fig. 1's transpose is a TRANSPOSE and a constant RESHAPE (the export's fixed
length folds the ``-1``); the frequency mean is AVERAGE_POOL_2D; each attention pooling is
TRANSPOSE, SPLIT, LOGISTIC, SOFTMAX, MUL and the sum over time as MEAN then MUL; the level logits
are CONCATENATION and FULLY_CONNECTED; the levels' mean is MultiLevelOutput's LOG_SOFTMAX,
STRIDED_SLICE, SUB, TRANSPOSE (PACK only with ``sigmoid_outputs``). After TF-MOT QAT
(``tfasc.compress.qat``) the list gains QUANTIZE, and the Conv1D BatchNorms, which TF-MOT does not
fold, stay int8 MUL / ADD; still bit-exact.
"""

from __future__ import annotations

from typing import Sequence

import tfasc  # noqa: F401
import tf_keras as keras

from tfasc.layers.attention import AttentionPooling, MultiLevelOutput
from tfasc.models.registry import register

#: The 1-D ResNet-18's four stages: the strides of their first blocks (after the stem's /(s/16) and /2).
WAVE_STAGE_STRIDES = (1, 2, 2, 2)
#: The total stride of the 1-D stage's fixed part: stem pooling 2, then stages 2-4 by 2 each.
WAVE_FIXED_STRIDE = 16


def _positive_ints(name: str, values, length: int | None = None) -> tuple[int, ...]:
    values = tuple(values)
    if not values or any(int(v) != v or int(v) < 1 for v in values):
        raise ValueError(f"wave_resnet: {name} {values!r}: expected a non-empty sequence of positive integers")
    if length is not None and len(values) != length:
        raise ValueError(f"wave_resnet: {name} {values!r}: expected {length} values")
    return tuple(int(v) for v in values)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"wave_resnet: {name} must be a positive integer, got {value!r}")
    return int(value)


def _bn(name: str, momentum: float) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(momentum=momentum, name=name)


def _basic_block_1d(x, filters: int, stride: int, *, name: str, bn_momentum: float):
    """ResNet's basic block over time: ``[batch, T, C] -> [batch, ceil(T / stride), filters]``."""
    shortcut = x
    if stride != 1 or int(x.shape[-1]) != filters:
        shortcut = keras.layers.MaxPooling1D(1, strides=stride, name=f"{name}_subsample")(shortcut)
        shortcut = keras.layers.Conv1D(filters, 1, use_bias=False, name=f"{name}_shortcut_conv")(shortcut)
        shortcut = _bn(f"{name}_shortcut_bn", bn_momentum)(shortcut)
    y = keras.layers.Conv1D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = _bn(f"{name}_bn1", bn_momentum)(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = keras.layers.Conv1D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = _bn(f"{name}_bn2", bn_momentum)(y)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_relu")(y)


def _bottleneck_block(x, width: int, expansion: int, stride: int, *, name: str, bn_momentum: float):
    """ResNet's bottleneck block: ``[b, F, T, C] -> [b, ceil(F / s), ceil(T / s), width * expansion]``."""
    filters = width * expansion
    shortcut = x
    if stride != 1 or int(x.shape[-1]) != filters:
        shortcut = keras.layers.MaxPooling2D(1, strides=stride, name=f"{name}_subsample")(shortcut)
        shortcut = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_shortcut_conv")(shortcut)
        shortcut = _bn(f"{name}_shortcut_bn", bn_momentum)(shortcut)
    y = keras.layers.Conv2D(width, 1, use_bias=False, name=f"{name}_conv1")(x)
    y = _bn(f"{name}_bn1", bn_momentum)(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = keras.layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = _bn(f"{name}_bn2", bn_momentum)(y)
    y = keras.layers.ReLU(name=f"{name}_relu2")(y)
    y = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_conv3")(y)
    y = _bn(f"{name}_bn3", bn_momentum)(y)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_relu")(y)


def _per_step(x, units: int, *, name: str, activation=None):
    """A dense layer applied per time step of ``[b, 1, T, D]``: a 1x1 ``Conv2D`` (see the module docstring)."""
    return keras.layers.Conv2D(units, 1, activation=activation, name=name)(x)


def _attention_pooling(x, num_classes: int, *, name: str):
    """``[b, 1, T, 2K]`` per-step (classification, attention) logits -> ``[b, K]`` probabilities."""
    x = keras.layers.Reshape((-1, 2 * num_classes), name=f"{name}_frames")(x)  # [b, T, 2K]
    return AttentionPooling(name=name)(x)


def _attention_level(x, num_classes: int, *, level: int, attention_units: int, dropout: float):
    """Yu et al.'s attention structure on a stage output ``[b, F, T, D]`` -> level logits ``[b, K]``."""
    name = f"level{level}"
    features = keras.layers.AveragePooling2D((int(x.shape[1]), 1), name=f"{name}_freq_mean")(x)  # [b, 1, T, D]
    # Module 1: attention on the block's output.
    p1 = _per_step(features, 2 * num_classes, name=f"{name}_att1_dense")
    p1 = _attention_pooling(p1, num_classes, name=f"{name}_att1_pool")
    # Module 2: attention after two FC layers (Sec. 4.2: 600 units, ReLU).
    h = features
    for fc in (1, 2):
        h = _per_step(h, attention_units, name=f"{name}_fc{fc}", activation="relu")
        if dropout > 0:
            h = keras.layers.Dropout(dropout, name=f"{name}_fc{fc}_dropout")(h)
    p2 = _per_step(h, 2 * num_classes, name=f"{name}_att2_dense")
    p2 = _attention_pooling(p2, num_classes, name=f"{name}_att2_pool")
    both = keras.layers.Concatenate(name=f"{name}_concat")([p1, p2])  # [b, 2K]
    return keras.layers.Dense(num_classes, name=f"{name}_logits")(both)


@register("wave_resnet")
def build_wave_resnet(
    input_shape,
    num_classes: int,
    *,
    sigmoid_outputs: bool = True,
    wave_channels: int = 128,
    wave_stride: int = 64,
    wave_widths: Sequence[int] = (64, 64, 128, 128),
    wave_blocks: Sequence[int] = (2, 2, 2, 2),
    wave_stem_kernel: int = 11,
    stem_filters: int = 64,
    widths: Sequence[int] = (64, 128, 256, 512),
    blocks: Sequence[int] = (3, 4, 6, 3),
    expansion: int = 4,
    levels: Sequence[int] = (2, 3, 4),
    attention_units: int = 600,
    dropout: float = 0.0,
    bn_momentum: float = 0.9,
):
    """Build the raw-waveform ResNet for ``input_shape = (samples,)`` or ``(samples, channels)``
    (samples may be None; the model accepts any length either way).

    Args:
        sigmoid_outputs: how :class:`~tfasc.layers.attention.MultiLevelOutput` averages the levels:
            their sigmoids (True) or softmaxes (False). Not a recipe value: the training stage passes
            it from the data, True for multi-label data or a sigmoid loss, False for single-label
            softmax training (:func:`tfasc.metrics.sigmoid_outputs`), so that the model's logits are
            those of the mean of the predictions the loss sees.
        wave_channels: ``C``, the 1-D stage's output channels, the image's height (Table 3: 128).
        wave_stride: the 1-D stage's total temporal stride, a multiple of 16 (Table 3: 64 gives 2500
            frames for 10 s at 16 kHz, 128 gives 1250); the stem convolution strides by
            ``wave_stride / 16``.
        wave_widths, wave_blocks: channels and basic blocks of the 1-D ResNet's four stages
            (ResNet-18: blocks (2, 2, 2, 2)).
        wave_stem_kernel: the 1-D stem convolution's kernel, in samples.
        stem_filters: the 2-D stem convolution's channels (ResNet-50: 64).
        widths, blocks: bottleneck width and number of blocks of each 2-D stage (ResNet-50:
            (64, 128, 256, 512) and (3, 4, 6, 3)).
        expansion: a bottleneck block's output channels are ``width * expansion`` (ResNet-50: 4).
        levels: 1-based 2-D stages after which a level predicts (Sec. 4.2: 2, 3, 4); stages after
            the last level would feed nothing and are not built.
        attention_units: units of the two FC layers before the second attention module (600).
        dropout: after each of those FC layers (0: none; the paper does not say).
        bn_momentum: of every BatchNorm's moving statistics.
    """
    if len(input_shape) not in (1, 2):
        raise ValueError(f"wave_resnet: input_shape {tuple(input_shape)}: expected (samples,) or (samples, channels)")
    if len(input_shape) == 2 and (input_shape[1] is None or int(input_shape[1]) < 1):
        raise ValueError(f"wave_resnet: input_shape {tuple(input_shape)}: the channels must be known and positive")
    num_classes = _positive_int("num_classes", num_classes)
    wave_stride = _positive_int("wave_stride", wave_stride)
    if wave_stride % WAVE_FIXED_STRIDE:
        raise ValueError(f"wave_resnet: wave_stride {wave_stride}: expected a multiple of {WAVE_FIXED_STRIDE} (>= 16): "
                         f"the stem strides by wave_stride / 16, its pooling and stages 2-4 by 16")
    wave_widths = _positive_ints("wave_widths", wave_widths, len(WAVE_STAGE_STRIDES))
    wave_blocks = _positive_ints("wave_blocks", wave_blocks, len(WAVE_STAGE_STRIDES))
    wave_channels = _positive_int("wave_channels", wave_channels)
    wave_stem_kernel = _positive_int("wave_stem_kernel", wave_stem_kernel)
    stem_filters = _positive_int("stem_filters", stem_filters)
    widths = _positive_ints("widths", widths)
    blocks = _positive_ints("blocks", blocks)
    if len(widths) != len(blocks):
        raise ValueError(f"wave_resnet: widths {widths} and blocks {blocks}: expected one width per stage "
                         f"(got {len(widths)} widths for {len(blocks)} stages)")
    expansion = _positive_int("expansion", expansion)
    levels = tuple(levels)
    if not levels:
        raise ValueError("wave_resnet: levels is empty: expected at least one 1-based stage number")
    if any(isinstance(n, bool) or int(n) != n or not 1 <= int(n) <= len(blocks) for n in levels):
        raise ValueError(f"wave_resnet: levels {levels!r}: expected stage numbers in 1..{len(blocks)} (1-based)")
    if len(set(levels)) != len(levels):
        raise ValueError(f"wave_resnet: levels {levels!r}: each stage at most once")
    levels = tuple(sorted(int(n) for n in levels))
    attention_units = _positive_int("attention_units", attention_units)
    if not 0 <= dropout < 1:
        raise ValueError(f"wave_resnet: dropout must be in [0, 1), got {dropout}")
    if not 0 <= bn_momentum < 1:
        raise ValueError(f"wave_resnet: bn_momentum must be in [0, 1), got {bn_momentum}")

    inputs = keras.Input(shape=(None, *input_shape[1:]), name="waveform")  # any length
    x = inputs if len(input_shape) == 2 else keras.layers.Reshape((-1, 1), name="add_channel")(inputs)

    # Top stage: the 1-D ResNet-18 on the waveform, [batch, samples, channels] -> [batch, T, C].
    x = keras.layers.Conv1D(wave_widths[0], wave_stem_kernel, strides=wave_stride // WAVE_FIXED_STRIDE,
                            padding="same", use_bias=False, name="wave_stem_conv")(x)
    x = _bn("wave_stem_bn", bn_momentum)(x)
    x = keras.layers.ReLU(name="wave_stem_relu")(x)
    x = keras.layers.MaxPooling1D(2, padding="same", name="wave_stem_pool")(x)
    for stage, (filters, count, stride) in enumerate(zip(wave_widths, wave_blocks, WAVE_STAGE_STRIDES), start=1):
        for block in range(1, count + 1):
            x = _basic_block_1d(x, filters, stride if block == 1 else 1, name=f"wave_stage{stage}_block{block}",
                                bn_momentum=bn_momentum)
    if wave_widths[-1] != wave_channels:
        x = keras.layers.Conv1D(wave_channels, 1, use_bias=False, name="wave_out_conv")(x)
        x = _bn("wave_out_bn", bn_momentum)(x)
        x = keras.layers.ReLU(name="wave_out_relu")(x)

    # Fig. 1's transpose: [batch, T, C] -> [batch, C, T] -> the image [batch, C, T, 1].
    x = keras.layers.Permute((2, 1), name="channels_first")(x)
    # -1: any length. Exported at a fixed length with batch 1 (tfasc.deploy.convert) the converter
    # folds the target shape to a constant, which TFLite Micro's RESHAPE needs.
    x = keras.layers.Reshape((wave_channels, -1, 1), name="to_image")(x)

    # Bottom stage: the 2-D ResNet-50 layout with multi-level prediction.
    x = keras.layers.Conv2D(stem_filters, 7, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = _bn("stem_bn", bn_momentum)(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    level_logits = []
    for stage, (width, count) in enumerate(zip(widths, blocks), start=1):
        stride = 1 if stage == 1 else 2
        for block in range(1, count + 1):
            x = _bottleneck_block(x, width, expansion, stride if block == 1 else 1, name=f"stage{stage}_block{block}",
                                  bn_momentum=bn_momentum)
        if stage in levels:
            level_logits.append(_attention_level(x, num_classes, level=stage, attention_units=attention_units,
                                                 dropout=dropout))
        if stage == levels[-1]:
            break  # later stages would feed no prediction
    rows = [keras.layers.Reshape((1, num_classes), name=f"level{n}_row")(z) for n, z in zip(levels, level_logits)]
    stacked = rows[0] if len(rows) == 1 else keras.layers.Concatenate(axis=1, name="levels")(rows)  # [b, L, K]
    outputs = MultiLevelOutput(sigmoid=sigmoid_outputs, name="multi_level_output")(stacked)
    return keras.Model(inputs, outputs, name="wave_resnet")
