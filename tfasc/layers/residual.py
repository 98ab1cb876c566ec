"""Residual blocks of the Shared-ResNet, layout ``[batch, freq, time, channels]``.

From 'QTI Submission to DCASE 2020: Model Efficient Acoustic Scene Classification' (DCASE 2020
Task 1B technical report, entry Chang_QTI_task1b), Sec. 2.1, Table 1, Fig. 1.

Functional builders (:func:`residual_block`, :func:`shared_residual_block`) made only of stock
``Conv2D`` / ``BatchNormalization`` / ``ReLU`` / ``Add`` layers (plus
:class:`~tfasc.layers.normalization.SubSpectralNormalization`). The shared block calls the SAME two
``Conv2D`` objects ``repeats`` times with a fresh ``BatchNormalization`` per repeat. Measured on
this stack: TF-MOT prunes such a model as it is (one mask per shared kernel) and quantizes it once
the per-repeat BNs are annotated, keeping pruning sparsity under prune-preserving QAT. A layer class
owning its convs would need a custom ``QuantizeConfig`` and then loses the pruning sparsity, which is
why blocks are built functionally.

Per-repeat BatchNormalization layers of a shared block are named ``{name}_bn_a_{i}`` and
``{name}_bn_b_{i}``; ``{name}_bn_b_{i}`` feeds the residual add, ``{name}_bn_a_{i}`` a ReLU.
"""

from __future__ import annotations

from typing import Sequence

import tfasc  # noqa: F401  (selects tf_keras before TensorFlow is imported)

import tensorflow as tf
import tf_keras as keras

from tfasc.layers.normalization import SubSpectralNormalization

NORMALIZATIONS = ("ssn", "bn")
DEFAULT_KERNEL_INITIALIZER = "he_normal"  # Kaiming normal, as CP-ResNet [18] initializes its convs


def make_normalization(
    normalization: str,
    *,
    sub_bands: int,
    name: str,
    momentum: float = 0.99,
    epsilon: float = 1e-3,
) -> keras.layers.Layer:
    """``"ssn"`` -> SubSpectralNormalization(sub_bands), ``"bn"`` -> BatchNormalization over channels."""
    if normalization == "ssn":
        return SubSpectralNormalization(
            sub_bands=sub_bands, momentum=momentum, epsilon=epsilon, name=name
        )
    if normalization == "bn":
        return keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon, name=name)
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


def _conv(filters: int, kernel_size: int, name: str, kernel_initializer=DEFAULT_KERNEL_INITIALIZER):
    # A fresh initializer object per conv: one unseeded instance shared by several convs would give
    # them identical initial kernels.
    initializer = keras.initializers.get(
        keras.initializers.serialize(keras.initializers.get(kernel_initializer))
    )
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        padding="same",
        use_bias=False,  # a normalization follows every conv
        kernel_initializer=initializer,
        name=name,
    )


def _check_kernel_sizes(kernel_sizes: Sequence[int], where: str) -> tuple[int, int]:
    sizes = tuple(int(k) for k in kernel_sizes)
    if len(sizes) != 2 or min(sizes) < 1:
        raise ValueError(f"{where}: kernel_sizes must be two positive ints, got {kernel_sizes!r}")
    return sizes


def residual_block(
    x: tf.Tensor,
    *,
    filters: int,
    kernel_sizes: Sequence[int] = (3, 3),
    normalization: str = "ssn",
    sub_bands: int = 2,
    name: str,
    bn_momentum: float = 0.99,
    bn_epsilon: float = 1e-3,
) -> tf.Tensor:
    """An "RB" row of Table 1 on ``x`` of shape ``[batch, freq, time, channels]``.

    ``conv k1 -> BN -> ReLU -> conv k2 -> SSN(S) (or BN)``, added to the shortcut, then ReLU. The
    shortcut is the identity when ``channels == filters``, else a 1x1 conv + BN projection (as in
    CP-ResNet's basic block, which the paper builds on). Strides are 1: Table 1 downsamples with
    separate max pooling.
    """
    k1, k2 = _check_kernel_sizes(kernel_sizes, f"residual_block {name!r}")
    in_channels = x.shape[-1]
    y = _conv(filters, k1, f"{name}_conv1")(x)
    y = keras.layers.BatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon, name=f"{name}_bn1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv(filters, k2, f"{name}_conv2")(y)
    y = make_normalization(
        normalization, sub_bands=sub_bands, name=f"{name}_norm2", momentum=bn_momentum, epsilon=bn_epsilon
    )(y)
    shortcut = x
    if in_channels != filters:
        shortcut = _conv(filters, 1, f"{name}_shortcut_conv")(x)
        shortcut = keras.layers.BatchNormalization(
            momentum=bn_momentum, epsilon=bn_epsilon, name=f"{name}_shortcut_bn"
        )(shortcut)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def shared_convs(
    filters: int, kernel_size: int = 1, *, name: str
) -> tuple[keras.layers.Conv2D, keras.layers.Conv2D]:
    """The two convolutions of a shared residual block, ``{name}_conv_a`` and ``{name}_conv_b``."""
    return _conv(filters, kernel_size, f"{name}_conv_a"), _conv(filters, kernel_size, f"{name}_conv_b")


def shared_residual_block(
    x: tf.Tensor,
    conv_a: keras.layers.Conv2D,
    conv_b: keras.layers.Conv2D,
    repeats: int,
    name: str,
    *,
    bn_momentum: float = 0.99,
    bn_epsilon: float = 1e-3,
) -> tf.Tensor:
    """"SRB" of Table 1 / Fig. 1: ``Shared(conv_a, BN, conv_b, BN)`` applied ``repeats`` times.

    Repeat ``i`` computes ``relu(x + bn_b_i(conv_b(relu(bn_a_i(conv_a(x))))))`` with the same
    ``conv_a``/``conv_b`` objects every time (one set of kernels) and BatchNormalization layers of its
    own (Sec. 2.1: "the batch normalization ... is not shared"). ``x``: ``[batch, freq, time, C]``
    with ``C`` equal to the convs' filters, since the block keeps shape for the identity shortcut.
    """
    if int(repeats) < 1:
        raise ValueError(f"shared_residual_block {name!r}: repeats must be >= 1, got {repeats!r}")
    channels = x.shape[-1]
    for conv in (conv_a, conv_b):
        if conv.filters != channels:
            raise ValueError(
                f"shared_residual_block {name!r}: conv {conv.name!r} has {conv.filters} filters but the "
                f"input has {channels} channels; a shared block must keep the channel count"
            )
    for i in range(int(repeats)):
        y = conv_a(x)
        y = keras.layers.BatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon, name=f"{name}_bn_a_{i}")(y)
        y = keras.layers.ReLU(name=f"{name}_relu_a_{i}")(y)
        y = conv_b(y)
        y = keras.layers.BatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon, name=f"{name}_bn_b_{i}")(y)
        y = keras.layers.Add(name=f"{name}_add_{i}")([x, y])
        x = keras.layers.ReLU(name=f"{name}_out_{i}")(y)
    return x
