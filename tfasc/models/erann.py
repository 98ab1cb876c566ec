"""ERANNs (Verbitskiy, Berikov & Vyshegorodtsev 2022): Efficient Residual Audio Neural Networks.

Input: log-mel ``[batch, mels, frames, channels]`` (Sec. 3.1: 128 mels) of any length: the model is
built with an unknown number of frames, so it trains on crops and evaluates whole clips; an export
fixes the length. Output logits ``[batch, num_classes]`` (Sec. 3.2: softmax for classification,
sigmoid for tagging; in tfasc the loss and the data choose, see below).

Table 1, with ``W`` the widening factor and ``s_m`` the decreasing temporal size parameter:

- Extraction: BatchNorm over the mel axis (statistics per mel bin; Sec. 3.2: it replaces data
  standardization), then :class:`tfasc.layers.erann.TimePadding` to a multiple of the product of
  the temporal strides (Sec. 3.1's padding; 16, 32, 64 or 128 for ``s_m`` = 0..3).
- Stage 0: ``ARB(1, 1, 8W) x 4`` (the first without pre-activation); stages ``i`` = 1..3:
  ``ARB(2, s_i, 8W 2^i)`` then ``ARB(1, 1, 8W 2^i) x 3`` with ``s_i = 4`` if ``i <= s_m`` else 2
  (Eq. 3); stage 4: ``ARB(2, 2, 128W)`` then ``x 3``.
- Global pooling (Sec. 3.2, "as in [11]", PANNs' CNN14): the mean over frequency, then the sum of
  the maximum and the mean over time.
- Stage 5: FC1 (128W units, Leaky ReLU 0.01) and FC2 (``num_classes``) producing logits.

Channel counts are ``round(8 W 2^i)`` (``W`` may be a fraction for device-sized models); the
parameter counts reproduce Tables 4, 6, 8 and 9 within 0.4 % (``tests/models/test_erann.py``).
The paper's ``softmax / sigmoid`` head is not a model argument: as for every tfasc model the
recipe's data (multi-label or not) and loss decide it in one place (``tfasc.metrics.sigmoid_outputs``).
"""

from __future__ import annotations

import tfasc  # noqa: F401
import tf_keras as keras

from tfasc.layers.erann import LEAKY_SLOPE, AudioResidualBlock, TimePadding
from tfasc.models.registry import register

#: Table 1: ARBs per stage; stage ``i`` has ``8 W 2^i`` channels.
BLOCKS_PER_STAGE = 4
STAGES = 5
TEMPORAL_PARAMS = (0, 1, 2, 3)  # Eq. 2


def temporal_strides(temporal_param: int) -> tuple[int, ...]:
    """Time strides of the first ARB of stages 1..4 (Eq. 3; stage 4 always 2)."""
    if temporal_param not in TEMPORAL_PARAMS:
        raise ValueError(f"erann: temporal_param {temporal_param!r}: expected one of {list(TEMPORAL_PARAMS)} (Eq. 2)")
    return tuple(4 if i <= temporal_param else 2 for i in (1, 2, 3)) + (2,)


def stage_channels(widening: float) -> tuple[int, ...]:
    """Channels of stages 0..4, ``8 W 2^i`` rounded (at least 1)."""
    if not widening > 0:
        raise ValueError(f"erann: widening must be > 0, got {widening}")
    return tuple(max(1, round(8 * widening * 2 ** i)) for i in range(STAGES))


@register("erann")
def build_erann(
    input_shape,
    num_classes: int,
    *,
    widening: float = 2,
    temporal_param: int = 1,
    negative_slope: float = LEAKY_SLOPE,
    bn_momentum: float = 0.99,
    time_multiple: int | None = None,
):
    """Build ERANN-``temporal_param``-``widening`` for ``input_shape = (mels, frames, channels)``.

    Args:
        widening: ``W`` (Tables 4-9: 3-6; a fraction makes a device-sized model).
        temporal_param: ``s_m`` in 0..3 (Eq. 2-4): stages 1..``s_m`` stride time by 4 instead of 2.
        negative_slope: of every Leaky ReLU (Sec. 3.2: 0.01).
        bn_momentum: of every BatchNorm's moving statistics.
        time_multiple: frames are zero-padded to a multiple of this (default: the product of the
            temporal strides, 2^(4 + s_m); the paper's 128 also works).
    """
    if len(input_shape) != 3:
        raise ValueError(f"erann: input_shape {tuple(input_shape)}: expected (mels, frames, channels)")
    if num_classes < 1:
        raise ValueError(f"erann: num_classes must be >= 1, got {num_classes}")
    strides = temporal_strides(temporal_param)
    total_stride = 2 ** STAGES // 2 * 2 ** sum(s == 4 for s in strides)  # 16 * 2^(number of stride-4 stages)
    multiple = total_stride if time_multiple is None else int(time_multiple)
    if multiple % total_stride:
        raise ValueError(f"erann: time_multiple {multiple} must be a multiple of the temporal strides' product "
                         f"{total_stride}")
    mels, channels_in = int(input_shape[0]), input_shape[2]
    inputs = keras.Input(shape=(mels, None, channels_in), name="log_mel")  # any length
    x = keras.layers.BatchNormalization(axis=1, momentum=bn_momentum, name="mel_bn")(inputs)
    x = TimePadding(multiple, name="time_padding")(x)
    blocks = dict(negative_slope=negative_slope, bn_momentum=bn_momentum)
    for stage, filters in enumerate(stage_channels(widening)):
        first_strides = (1, 1) if stage == 0 else (2, strides[stage - 1])
        for block in range(BLOCKS_PER_STAGE):
            x = AudioResidualBlock(filters, first_strides if block == 0 else (1, 1),
                                   preactivation=(stage, block) != (0, 0), name=f"stage{stage}_arb{block + 1}",
                                   **blocks)(x)
    # PANNs' global pooling: mean over frequency, then max + mean over time.
    x = keras.layers.AveragePooling2D((x.shape[1], 1), name="freq_mean")(x)
    x = keras.layers.Add(name="global_pool")([keras.layers.GlobalMaxPooling2D(name="time_max")(x),
                                              keras.layers.GlobalAveragePooling2D(name="time_mean")(x)])
    x = keras.layers.Dense(max(1, round(128 * widening)), name="fc1")(x)
    x = keras.layers.LeakyReLU(negative_slope, name="fc1_act")(x)
    outputs = keras.layers.Dense(num_classes, name="fc2")(x)
    return keras.Model(inputs, outputs, name="erann")
