"""ERANNs' Audio Residual Block and the time padding that lets the model take any length.

Verbitskiy, Berikov & Vyshegorodtsev (2022), "ERANNs: Efficient Residual Audio Neural Networks for
Audio Pattern Recognition":

- Sec. 3.2, Table 2, Eq. 5: :class:`AudioResidualBlock` ``ARB(x, y, c)``, the basic block of
  ResNet-V2 (pre-activation) with Leaky ReLU (slope 0.01):
  ``BN1 -> LeakyReLU -> Conv1 (K1(x) x K1(y), stride x x y, padding 1 x 1) -> BN2 -> LeakyReLU ->
  Conv2 (K2(x) x K2(y), stride 1, padding P(x) x P(y))``, plus a 1x1 convolution with stride
  ``x x y`` on the shortcut where the shape changes (an identity shortcut otherwise); the sum is
  the block's output. ``(K1, K2, P)(z) = (3, 3, 1)`` for stride ``z`` 1 or 2 and ``(6, 5, 2)`` for
  stride 4. The first block of the network has no BN1 / Leaky ReLU (``preactivation=False``): its
  input is the normalized log-mel. The shortcut convolution reads the block's input (as the
  identity shortcut does), not its pre-activated form; Table 2 does not say which, and the
  parameter counts are the same. Convolutions have no bias: a BatchNorm follows each (BN2, or the
  next block's BN1), and with that the model's parameters are within 0.4 % of Tables 4, 6, 8 and 9.
- Sec. 3.1: the time axis must divide by the product of the temporal strides (the paper pads the
  audio so that ``T = 128 t``); :class:`TimePadding` zero-pads the frames at the end to the next
  multiple, so the model takes any length.

Layouts: ``[batch, freq, time, channels]`` in and out. ``ARB`` maps ``[b, F, T, C] -> [b, F/x, T/y, c]``
(``T`` a multiple of ``y`` when ``y = 4``: Conv1 then gives exactly ``T/4``, as the shortcut does).

Contracts (``tfasc.layers.contract``): the block's kernels are its two or three convolution kernels;
its MACs are each convolution's output elements times its window ``kh*kw*in`` (BN, Leaky ReLU and
the add not counted). Its export form is the stock-layer graph: BN1 as a frozen 1x1
``DepthwiseConv2D`` holding its inference affine transform (it follows an add, so nothing folds it;
tfasc's export form does the same for every such BN), ``LeakyReLU``, ``ZeroPadding2D`` + ``Conv2D``
(valid) for Conv1, BN2 (TF-MOT folds it into Conv1), ``Conv2D`` (same) for Conv2, the shortcut
``Conv2D`` after a 1x1 ``MaxPooling2D`` with the block's strides (subsampling: see ``build``) and
an ``Add``: int8 DEPTHWISE_CONV_2D, LEAKY_RELU, PAD, CONV_2D, MAX_POOL_2D and ADD builtins.
``TimePadding`` is an int8 PAD at the export's fixed length (nothing when no frames are missing).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import tfasc  # noqa: F401  (selects tf_keras before TensorFlow is imported)

import tensorflow as tf
import tf_keras as keras

from tfasc.layers.chain import batchnorm_as_depthwise_weights, export_sublayer
from tfasc.layers.contract import LayerContract

#: Eq. 5: stride -> (K1, K2, P).
KERNELS_BY_STRIDE = {1: (3, 3, 1), 2: (3, 3, 1), 4: (6, 5, 2)}
LEAKY_SLOPE = 0.01  # Sec. 3.2: Leaky ReLU's parameter


def block_geometry(stride: int) -> tuple[int, int, int]:
    """``(K1, K2, P)`` of Eq. 5 for a stride of 1, 2 or 4 along one axis."""
    if stride not in KERNELS_BY_STRIDE:
        raise ValueError(f"AudioResidualBlock: stride {stride!r}: expected one of {sorted(KERNELS_BY_STRIDE)} (Eq. 5)")
    return KERNELS_BY_STRIDE[stride]


def _strided_length(length, stride: int):
    return None if length is None else -(-int(length) // stride)


@keras.saving.register_keras_serializable(package="tfasc")
class AudioResidualBlock(LayerContract, keras.layers.Layer):
    """``ARB(x, y, c)`` of ERANNs (Sec. 3.2, Table 2, Eq. 5); see the module docstring.

    Args:
        filters: ``c``, the output channels.
        strides: ``(x, y)``, the frequency and time strides, each 1, 2 or 4.
        preactivation: BN1 and Leaky ReLU at the start (False only for the network's first block).
        negative_slope: of both Leaky ReLUs (0.01).
        bn_momentum, bn_epsilon: of both BatchNorms.

    ``[batch, F, T, C] -> [batch, ceil(F/x), T/y, filters]``.
    """

    prunable = True

    def __init__(
        self,
        filters: int,
        strides: int | Sequence[int] = 1,
        *,
        preactivation: bool = True,
        negative_slope: float = LEAKY_SLOPE,
        bn_momentum: float = 0.99,
        bn_epsilon: float = 1e-3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(filters) < 1:
            raise ValueError(f"AudioResidualBlock: filters must be >= 1, got {filters}")
        self.filters = int(filters)
        pair = (strides, strides) if isinstance(strides, int) else tuple(int(s) for s in strides)
        if len(pair) != 2:
            raise ValueError(f"AudioResidualBlock: strides {strides!r}: expected an int or a (freq, time) pair")
        self.strides = pair
        self.geometry = tuple(block_geometry(s) for s in pair)  # ((K1, K2, P) freq, (K1, K2, P) time)
        self.preactivation = bool(preactivation)
        self.negative_slope = float(negative_slope)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        self.kernel_attributes = ("conv1.kernel", "conv2.kernel")

    @property
    def conv1_kernel(self) -> tuple[int, int]:
        return (self.geometry[0][0], self.geometry[1][0])

    @property
    def conv2_kernel(self) -> tuple[int, int]:
        return (self.geometry[0][1], self.geometry[1][1])

    def _bn(self, name: str) -> keras.layers.BatchNormalization:
        return keras.layers.BatchNormalization(momentum=self.bn_momentum, epsilon=self.bn_epsilon, name=name)

    def build(self, input_shape):
        shape = tf.TensorShape(input_shape)
        if shape.rank != 4 or shape[-1] is None:
            raise ValueError(f"AudioResidualBlock {self.name!r}: expected [batch, freq, time, channels] with "
                             f"known channels, got {shape}")
        channels = int(shape[-1])
        # Xavier (Glorot) uniform, as PANNs [11] initializes its convolutions. Kaiming's doubles the
        # variance in every residual branch, and the identity shortcuts add it up over 20 blocks with
        # no normalization before the pooling: logits with a standard deviation of 1,711 against
        # 1.7 (measured, W = 0.5, random input), and a model that barely trains.
        init = "glorot_uniform"
        if self.preactivation:
            self.bn1 = self._bn("bn1")
            self.bn1.build(shape)
        self.act1 = keras.layers.LeakyReLU(self.negative_slope, name="act1")
        # Table 2: padding 1 x 1 on both sides then a valid convolution (TensorFlow's "same" would pad
        # a stride-2 kernel of 3 only after the end: another alignment than the paper's).
        self.pad1 = keras.layers.ZeroPadding2D(((1, 1), (1, 1)), name="pad1")
        self.conv1 = keras.layers.Conv2D(self.filters, self.conv1_kernel, strides=self.strides, padding="valid",
                                         use_bias=False, kernel_initializer=init, name="conv1")
        self.conv1.build(self.pad1.compute_output_shape(shape))
        conv1_shape = self.conv1.compute_output_shape(self.pad1.compute_output_shape(shape))
        self.bn2 = self._bn("bn2")
        self.bn2.build(conv1_shape)
        self.act2 = keras.layers.LeakyReLU(self.negative_slope, name="act2")
        # (K2, P) = (3, 1) or (5, 2): the "same" padding of a stride-1 convolution.
        self.conv2 = keras.layers.Conv2D(self.filters, self.conv2_kernel, padding="same", use_bias=False,
                                         kernel_initializer=init, name="conv2")
        self.conv2.build(conv1_shape)
        self.projection = channels != self.filters or self.strides != (1, 1)
        if self.projection:
            # The strided 1x1 convolution as subsampling then a 1x1 convolution: the same function, but
            # training a strided 1x1 Conv2D aborts the process in TensorFlow 2.17's oneDNN kernels on
            # this stack ("free(): invalid size", measured; stride-1 and 3x3 strided ones train).
            self.subsample = keras.layers.MaxPooling2D(1, strides=self.strides, name="subsample")
            self.shortcut = keras.layers.Conv2D(self.filters, 1, use_bias=False, kernel_initializer=init,
                                                name="shortcut")
            self.shortcut.build(self.subsample.compute_output_shape(shape))
            self.kernel_attributes = ("conv1.kernel", "conv2.kernel", "shortcut.kernel")
        super().build(input_shape)

    def _residual_branch(self, x, training=None):
        if self.preactivation:
            x = self.bn1(x, training=training)
        x = self.act1(x) if self.preactivation else x
        x = self.conv1(self.pad1(x))
        x = self.act2(self.bn2(x, training=training))
        return self.conv2(x)

    def call(self, inputs, training=None):
        shortcut = self.shortcut(self.subsample(inputs)) if self.projection else inputs
        return shortcut + self._residual_branch(inputs, training)

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape)
        return tf.TensorShape([shape[0], _strided_length(shape[1], self.strides[0]),
                               _strided_length(shape[2], self.strides[1]), self.filters])

    def count_macs(self, input_shape, output_shape) -> int:
        positions = math.prod(int(d) for d in output_shape[1:-1])
        channels = int(input_shape[-1])
        macs = positions * self.filters * (math.prod(self.conv1_kernel) * channels
                                           + math.prod(self.conv2_kernel) * self.filters)
        return macs + (positions * self.filters * channels if self.projection else 0)

    def export_form(self, inputs, *, name: str, trainable: bool):
        x = inputs
        if self.preactivation:
            x = batchnorm_as_affine(self.bn1, x, name=f"{name}_bn1_affine", trainable=trainable)
            x = export_sublayer(self.act1, x, name=name, trainable=trainable)
        for layer in (self.pad1, self.conv1, self.bn2, self.act2, self.conv2):
            x = export_sublayer(layer, x, name=name, trainable=trainable)
        shortcut = inputs
        if self.projection:
            shortcut = export_sublayer(self.subsample, shortcut, name=name, trainable=trainable)
            shortcut = export_sublayer(self.shortcut, shortcut, name=name, trainable=trainable)
        return keras.layers.Add(name=f"{name}_add")([shortcut, x])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"filters": self.filters, "strides": self.strides, "preactivation": self.preactivation,
                       "negative_slope": self.negative_slope, "bn_momentum": self.bn_momentum,
                       "bn_epsilon": self.bn_epsilon})
        return config


def batchnorm_as_affine(bn: keras.layers.BatchNormalization, x, *, name: str, trainable: bool):
    """``bn``'s inference transform as a 1x1 ``DepthwiseConv2D`` with bias on ``x`` (channels last),
    with the weights tfasc's export form gives every BatchNorm nothing folds
    (:func:`tfasc.layers.chain.batchnorm_as_depthwise_weights`)."""
    affine = keras.layers.DepthwiseConv2D(1, use_bias=True, trainable=trainable, name=name)
    y = affine(x)
    affine.set_weights(list(batchnorm_as_depthwise_weights(bn)))
    return y


@keras.saving.register_keras_serializable(package="tfasc")
class TimePadding(LayerContract, keras.layers.Layer):
    """Zero-pads the time axis at the end to the next multiple of ``multiple`` (ERANN Sec. 3.1).

    ``[batch, freq, T, channels] -> [batch, freq, ceil(T / multiple) * multiple, channels]``. The
    paper pads the audio with zeros so that its frames number ``128 t``; padding the normalized
    features instead keeps the model free of the front-end and adds at most ``multiple - 1`` frames
    at the input's mean (0 after the mel-axis BatchNorm) rather than at the log of silence.
    No kernels, no MACs; QAT gives it no quantizer (its output keeps its input's scale); at the export's
    fixed length it is an int8 PAD, or nothing when no frames are missing. It has no export form
    because QAT runs on the any-length model, where the padding is not known before the call.
    """

    def __init__(self, multiple: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(multiple) < 1:
            raise ValueError(f"TimePadding: multiple must be >= 1, got {multiple}")
        self.multiple = int(multiple)

    def missing(self, frames) -> Any:
        """Frames to add to ``frames`` (a Python int when known, else a tensor)."""
        return (-frames) % self.multiple

    def call(self, inputs):
        frames = inputs.shape[2] if inputs.shape[2] is not None else tf.shape(inputs)[2]
        missing = self.missing(frames)
        if isinstance(missing, int) and missing == 0:
            return inputs  # a fixed length that needs nothing: no PAD op in the export
        return tf.pad(inputs, [[0, 0], [0, 0], [0, missing], [0, 0]])

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape)
        frames = None if shape[2] is None else int(shape[2]) + self.missing(int(shape[2]))
        return tf.TensorShape([shape[0], shape[1], frames, shape[3]])

    def count_macs(self, input_shape, output_shape) -> int:
        return 0

    def quantize_config(self):
        # No quantizer of its own: padding keeps its input's scale (TF-MOT treats ZeroPadding2D so).
        # A second output quantizer on an unpadded pass-through gives the converter two scales for
        # one tensor, which an int8 PAD after it refuses ("same scale constraint", measured).
        from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
            default_8bit_quantize_configs,
        )

        return default_8bit_quantize_configs.NoOpQuantizeConfig()

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"multiple": self.multiple})
        return config
