"""Residual blocks of the Shared-ResNet (Suh et al., DCASE 2020 Task 1B report, Sec. 2.1, Table 1, Fig. 1).

Features are laid out ``[batch, freq, time, channels]``.

Two ways to build each block, on purpose:

* Functional builders (:func:`residual_block`, :func:`shared_residual_block`) made only of stock
  ``Conv2D`` / ``BatchNormalization`` / ``ReLU`` / ``Add`` layers (plus
  :class:`~tfasc.layers.normalization.SubSpectralNormalization`). The shared block calls the SAME two
  ``Conv2D`` objects ``repeats`` times with a fresh ``BatchNormalization`` per repeat. TF-MOT prunes
  such a model as it is (one mask per shared kernel) and quantizes it once the per-repeat BNs are
  annotated (see ``/work/shared/notes/tfmot-tflm-findings.md``, "Shared weights"), keeping pruning
  sparsity under prune-preserving QAT. :mod:`tfasc.models.shared_resnet` uses these by default.
* Layer classes (:class:`ResidualBlock`, :class:`SharedResidualBlock`) for the plain Keras API: one
  object per block. They expose ``get_prunable_weights`` (the convolution kernels) so
  ``tfmot.sparsity.keras.prune_low_magnitude`` accepts them, but QAT of a layer that owns its convs
  needs a custom ``QuantizeConfig`` and then loses the pruning sparsity (same notes), which is why
  the model does not use them by default.

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


# --------------------------------------------------------------------------------------------
# Functional builders (used by the model)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Layer classes (Keras API; prunable through get_prunable_weights)
# --------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="tfasc")
class ResidualBlock(keras.layers.Layer):
    """An "RB" row of Table 1 as one layer; same computation as :func:`residual_block`.

    Input ``[batch, freq, time, in_channels]`` -> output ``[batch, freq, time, filters]``.
    ``conv k1 -> BN -> ReLU -> conv k2 -> SSN(S)`` (``normalization="ssn"``) or BN (``"bn"``), plus
    the identity (or a 1x1 conv + BN projection when ``in_channels != filters``), then ReLU.
    """

    def __init__(
        self,
        filters: int,
        kernel_sizes: Sequence[int] = (3, 3),
        normalization: str = "ssn",
        sub_bands: int = 2,
        bn_momentum: float = 0.99,
        bn_epsilon: float = 1e-3,
        kernel_initializer=DEFAULT_KERNEL_INITIALIZER,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"ResidualBlock {self.name!r}: normalization must be one of {NORMALIZATIONS}, "
                f"got {normalization!r}"
            )
        self.filters = int(filters)
        self.kernel_sizes = _check_kernel_sizes(kernel_sizes, f"ResidualBlock {self.name!r}")
        self.normalization = normalization
        self.sub_bands = int(sub_bands)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        init = self.kernel_initializer
        self.conv1 = _conv(self.filters, self.kernel_sizes[0], "conv1", init)
        self.bn1 = keras.layers.BatchNormalization(momentum=self.bn_momentum, epsilon=self.bn_epsilon, name="bn1")
        self.conv2 = _conv(self.filters, self.kernel_sizes[1], "conv2", init)
        self.norm2 = make_normalization(
            normalization, sub_bands=self.sub_bands, name="norm2", momentum=self.bn_momentum, epsilon=self.bn_epsilon
        )
        self.shortcut_conv = None
        self.shortcut_bn = None

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        if input_shape.rank != 4:
            raise ValueError(
                f"ResidualBlock {self.name!r}: expected [batch, freq, time, channels], got {input_shape}"
            )
        self.conv1.build(input_shape)
        mid_shape = input_shape[:-1].concatenate([self.filters])
        self.bn1.build(mid_shape)
        self.conv2.build(mid_shape)
        self.norm2.build(mid_shape)
        if input_shape[-1] != self.filters:
            self.shortcut_conv = _conv(self.filters, 1, "shortcut_conv", self.kernel_initializer)
            self.shortcut_bn = keras.layers.BatchNormalization(
                momentum=self.bn_momentum, epsilon=self.bn_epsilon, name="shortcut_bn"
            )
            self.shortcut_conv.build(input_shape)
            self.shortcut_bn.build(mid_shape)
        super().build(input_shape)

    def call(self, inputs, training=None):
        y = tf.nn.relu(self.bn1(self.conv1(inputs), training=training))
        y = self.norm2(self.conv2(y), training=training)
        shortcut = inputs
        if self.shortcut_conv is not None:
            shortcut = self.shortcut_bn(self.shortcut_conv(inputs), training=training)
        return tf.nn.relu(shortcut + y)

    def get_prunable_weights(self) -> list[tf.Variable]:
        """Convolution kernels, for ``tfmot.sparsity.keras.prune_low_magnitude``."""
        convs = [self.conv1, self.conv2] + ([self.shortcut_conv] if self.shortcut_conv is not None else [])
        return [conv.kernel for conv in convs]

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)[:-1].concatenate([self.filters])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_sizes": list(self.kernel_sizes),
                "normalization": self.normalization,
                "sub_bands": self.sub_bands,
                "bn_momentum": self.bn_momentum,
                "bn_epsilon": self.bn_epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="tfasc")
class SharedResidualBlock(keras.layers.Layer):
    """"SRB" of Table 1 / Fig. 1 as one layer; same computation as :func:`shared_residual_block`.

    Input and output ``[batch, freq, time, filters]``. Owns two convolutions ``conv_a`` and
    ``conv_b`` (``kernel_size`` x ``kernel_size``, ``filters`` -> ``filters``, no bias) used by every
    repeat, and ``2 * repeats`` BatchNormalization layers ``bn_a_{i}``, ``bn_b_{i}``: adding a repeat
    adds ``2 * 4 * filters`` weights (gamma, beta, moving mean, moving variance of two BNs), nothing
    else (Sec. 2.1).
    """

    def __init__(
        self,
        repeats: int,
        filters: int,
        kernel_size: int = 1,
        bn_momentum: float = 0.99,
        bn_epsilon: float = 1e-3,
        kernel_initializer=DEFAULT_KERNEL_INITIALIZER,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(repeats) < 1:
            raise ValueError(f"SharedResidualBlock {self.name!r}: repeats must be >= 1, got {repeats!r}")
        self.repeats = int(repeats)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.conv_a = _conv(self.filters, self.kernel_size, "conv_a", self.kernel_initializer)
        self.conv_b = _conv(self.filters, self.kernel_size, "conv_b", self.kernel_initializer)
        self.bns_a = [
            keras.layers.BatchNormalization(momentum=self.bn_momentum, epsilon=self.bn_epsilon, name=f"bn_a_{i}")
            for i in range(self.repeats)
        ]
        self.bns_b = [
            keras.layers.BatchNormalization(momentum=self.bn_momentum, epsilon=self.bn_epsilon, name=f"bn_b_{i}")
            for i in range(self.repeats)
        ]

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        if input_shape.rank != 4 or input_shape[-1] != self.filters:
            raise ValueError(
                f"SharedResidualBlock {self.name!r}: expected [batch, freq, time, {self.filters}] "
                f"(a shared block keeps the channel count), got {input_shape}"
            )
        self.conv_a.build(input_shape)
        self.conv_b.build(input_shape)
        for bn in self.bns_a + self.bns_b:
            bn.build(input_shape)
        super().build(input_shape)

    def call(self, inputs, training=None):
        x = inputs
        for bn_a, bn_b in zip(self.bns_a, self.bns_b):
            y = tf.nn.relu(bn_a(self.conv_a(x), training=training))
            y = bn_b(self.conv_b(y), training=training)
            x = tf.nn.relu(x + y)
        return x

    def get_prunable_weights(self) -> list[tf.Variable]:
        """The two shared kernels, for ``tfmot.sparsity.keras.prune_low_magnitude``."""
        return [self.conv_a.kernel, self.conv_b.kernel]

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "repeats": self.repeats,
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "bn_momentum": self.bn_momentum,
                "bn_epsilon": self.bn_epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
