"""AclNet (Huang & Leanos 2018): a learned waveform front-end and a width-multiplied VGG back-end.

Input ``[batch, samples, channels]`` (or ``[batch, samples]`` for ``input_shape=(samples,)``) of any
length: the model is built with an unknown number of samples, so it trains on 1.5 s crops and
evaluates whole clips (Sec. 3.2); an export fixes the length (``tfasc.compress.export_form``).
Output logits ``[batch, num_classes]`` (softmax / sigmoid in the loss and evaluation).

- LLF (Sec. 2.1, Table 1): :class:`tfasc.layers.AclNetFrontEnd`, ``[batch, 64, frames, 1]``.
- HLF (Sec. 2.2, Table 2): Conv3 (SC, always) 32 channels; max pool 2x2; Conv4-5 64; pool;
  Conv6-7 128; pool; Conv8-9 256; pool; Conv10-11 512; pool; dropout 0.2; Conv12 1x1 to the classes
  (with bias, no BN); average pooling over the whole remaining map (Table 2's 2x4 at 1.28 s: any
  length works). Conv4-11 are ``conv_type`` blocks (SC or DWSC, Sec. 2.3) and the width multiplier
  scales Conv3-11's channels (Sec. 2.4), rounded, at least 1.

Trainable parameters reproduce Table 3 (``tests/models/test_aclnet.py``). MACs are counted by
``tfasc.deploy.profile`` (every convolution's output elements x window; BN, ReLU, pooling not
counted); Table 3's MMACS follow another, unstated rule (see the README).
"""

from __future__ import annotations

import tfasc  # noqa: F401
import tf_keras as keras

from tfasc.layers.aclnet import AclNetFrontEnd, conv_block
from tfasc.models.registry import register

#: Table 2: the channels of Conv3 .. Conv11 at width multiplier 1, a 2x2 max pool after each group.
HLF_GROUPS = ((32,), (64, 64), (128, 128), (256, 256), (512, 512))


def hlf_channels(width_multiplier: float) -> tuple[tuple[int, ...], ...]:
    """Channels of Conv3 .. Conv11 per pooling group at ``width_multiplier`` (Sec. 2.4)."""
    if not width_multiplier > 0:
        raise ValueError(f"aclnet: width_multiplier must be > 0, got {width_multiplier}")
    return tuple(tuple(max(1, round(c * width_multiplier)) for c in group) for group in HLF_GROUPS)


@register("aclnet")
def build_aclnet(
    input_shape,
    num_classes: int,
    *,
    sample_rate: int = 16000,
    c1: int = 16,
    s1: int = 2,
    s2: int = 4,
    conv_type: str = "dwsc",
    width_multiplier: float = 1.0,
    llf_filters: int = 64,
    frame_ms: float = 10.0,
    scale_strides: bool = True,
    dropout: float = 0.2,
    bn_momentum: float = 0.99,
):
    """Build AclNet for ``input_shape = (samples,)`` or ``(samples, channels)`` (samples may be None).

    Args:
        sample_rate: of the input, in Hz (the recipe's ``data.sample_rate``, set under ``model:``);
            the front-end's kernels and strides scale from their 16 kHz values (Sec. 2.1).
        c1, s1, s2: Conv1's channels and the two strides at 16 kHz (Table 1; Sec. 4.2's best:
            (8, 2, 2) for SC, (16, 2, 4) for DWSC).
        conv_type: ``"sc"`` or ``"dwsc"``, the form of Conv2 and Conv4-Conv11 (Sec. 2.3).
        width_multiplier: scales Conv3-Conv11's channels (Sec. 2.4; Table 3: 0.125-1.5).
        llf_filters: Conv2's channels, the image's height (Table 1: 64).
        frame_ms: the front-end's frame period (Sec. 2.1: 10 ms).
        scale_strides: scale ``s1``, ``s2`` with the sample rate like the kernels (Sec. 2.1's text);
            False keeps them (Table 3's 44.1 kHz LLF MMACS suggest the paper did; README).
        dropout: before Conv12 (Sec. 2.2: 0.2).
        bn_momentum: of every BatchNorm's moving statistics.
    """
    if len(input_shape) not in (1, 2):
        raise ValueError(f"aclnet: input_shape {tuple(input_shape)}: expected (samples,) or (samples, channels)")
    if num_classes < 1:
        raise ValueError(f"aclnet: num_classes must be >= 1, got {num_classes}")
    inputs = keras.Input(shape=(None, *input_shape[1:]), name="waveform")  # any length
    x = AclNetFrontEnd(sample_rate, c1, s1, s2, conv_type, llf_filters, frame_ms, scale_strides=scale_strides,
                       bn_momentum=bn_momentum, name="llf")(inputs)
    number = 3
    for group, channels in enumerate(hlf_channels(width_multiplier)):
        for filters in channels:
            form = "sc" if number == 3 else conv_type  # Conv3 is always standard (Sec. 2.3)
            x = conv_block(form, filters, 3, bn_momentum=bn_momentum, name=f"conv{number}")(x)
            number += 1
        x = keras.layers.MaxPooling2D(2, padding="same", name=f"maxpool{group + 2}")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    x = keras.layers.Conv2D(num_classes, 1, name="conv12")(x)
    outputs = keras.layers.GlobalAveragePooling2D(name="avgpool1")(x)
    return keras.Model(inputs, outputs, name="aclnet")
