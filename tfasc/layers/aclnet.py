"""AclNet's convolution blocks and its learned waveform front-end (the low-level features, LLF).

Huang & Leanos (2018), "AclNet: efficient end-to-end audio classification CNN":

- Sec. 2.3: every convolution is a block in one of two forms, standard (SC: convolution, BatchNorm,
  ReLU) or depthwise separable (DWSC: depthwise convolution, BN, ReLU, 1x1 pointwise convolution,
  BN, ReLU, as MobileNet), :class:`ConvBlock` and :class:`SeparableConvBlock`. Convolutions have
  no bias (a BatchNorm follows): with BN's scale and offset counted, these are exactly the parameter
  counts of Table 3.
- Sec. 2.1 / Table 1: the LLF, :class:`AclNetFrontEnd`: Conv1 (``c1`` channels, kernel 9, stride
  ``s1``, always SC) and Conv2 (64 channels, kernel 5, stride ``s2``, SC or DWSC) as 1-D
  convolutions over time, then max pooling to a 10 ms frame rate; the result transposed to an image
  with the 64 channels as its frequency-like axis.

Layouts: blocks ``[batch, H, W, channels]`` in and out (``[batch, freq, time, channels]`` in the
back-end); the front-end ``[batch, samples, channels]`` (or ``[batch, samples]``) in,
``[batch, filters, frames, 1]`` out. The front-end runs its 1-D convolutions as 2-D ones over a
``[batch, 1, samples, channels]`` view: TF-MOT quantizes ``DepthwiseConv2D`` but has no
``DepthwiseConv1D`` / ``SeparableConv1D`` path (``tfasc.compress.kernels``), and the converter
lowers a Conv1D to the same CONV_2D anyway.

Contracts (``tfasc.layers.contract``): kernels are the convolution kernels (which ones depends on
the form, so ``kernel_attributes`` is set per instance); MACs are every convolution's output
elements times its window (depthwise: ``kh*kw``; pointwise and standard: ``kh*kw*in``), BatchNorm,
ReLU and pooling not counted. The export form is the chain of stock layers (``Conv2D``,
``DepthwiseConv2D``, ``BatchNormalization``, ``ReLU``, ``MaxPooling2D``, ``Reshape``, ``Permute``)
with the weights copied: TF-MOT folds each BatchNorm into its convolution and the int8 graph is
CONV_2D, DEPTHWISE_CONV_2D, MAX_POOL_2D, RESHAPE and TRANSPOSE builtins.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import tfasc  # noqa: F401  (selects tf_keras before TensorFlow is imported)

import tensorflow as tf
import tf_keras as keras

from tfasc.layers.chain import SubLayerChain
from tfasc.layers.contract import LayerContract

CONV_TYPES = ("sc", "dwsc")
#: Table 1's kernel sizes at 16 kHz; Sec. 2.1 scales them (and the strides) with the sample rate.
REFERENCE_SAMPLE_RATE = 16000
CONV1_KERNEL_16K, CONV2_KERNEL_16K = 9, 5


def _pair(value, what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{what}: expected a positive integer or a pair of them, got {value!r}")
    return pair


def _same_length(length, stride: int):
    return None if length is None else -(-int(length) // stride)


class _ConvBlockBase(SubLayerChain, LayerContract, keras.layers.Layer):
    """Arguments and shapes shared by the two block forms."""

    def __init__(
        self,
        filters: int,
        kernel_size: int | Sequence[int] = 3,
        strides: int | Sequence[int] = 1,
        *,
        bn_momentum: float = 0.99,
        bn_epsilon: float = 1e-3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(filters) < 1:
            raise ValueError(f"{type(self).__name__}: filters must be >= 1, got {filters}")
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size, f"{type(self).__name__} kernel_size")
        self.strides = _pair(strides, f"{type(self).__name__} strides")
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)

    def _bn(self, name: str) -> keras.layers.BatchNormalization:
        return keras.layers.BatchNormalization(momentum=self.bn_momentum, epsilon=self.bn_epsilon, name=name)

    def _check_input(self, input_shape) -> None:
        shape = tf.TensorShape(input_shape)
        if shape.rank != 4 or shape[-1] is None:
            raise ValueError(f"{type(self).__name__} {self.name!r}: expected [batch, H, W, channels] with known "
                             f"channels, got {shape}")

    def call(self, inputs, training=None):
        return self._call_chain(inputs, training)

    def export_form(self, inputs, *, name: str, trainable: bool):
        return self._export_chain(inputs, name=name, trainable=trainable)

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape)
        return tf.TensorShape([shape[0], _same_length(shape[1], self.strides[0]),
                               _same_length(shape[2], self.strides[1]), self.filters])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"filters": self.filters, "kernel_size": self.kernel_size, "strides": self.strides,
                       "bn_momentum": self.bn_momentum, "bn_epsilon": self.bn_epsilon})
        return config


@keras.saving.register_keras_serializable(package="tfasc")
class ConvBlock(_ConvBlockBase):
    """AclNet's standard convolution (SC, Sec. 2.3): ``Conv2D (same, no bias) -> BN -> ReLU``.

    ``[batch, H, W, in] -> [batch, ceil(H/sh), ceil(W/sw), filters]``. Kernel ``kh*kw*in*filters``
    weights; MACs per call ``H'*W'*filters*kh*kw*in``.
    """

    kernel_attributes = ("conv.kernel",)

    def build(self, input_shape):
        self._check_input(input_shape)
        self.conv = keras.layers.Conv2D(self.filters, self.kernel_size, strides=self.strides, padding="same",
                                        use_bias=False, name="conv")
        self.bn = self._bn("bn")
        self.relu = keras.layers.ReLU(name="relu")
        self._build_chain(input_shape)
        super().build(input_shape)

    def _layers(self):
        return (self.conv, self.bn, self.relu)

    def count_macs(self, input_shape, output_shape) -> int:
        out = math.prod(int(d) for d in output_shape[1:])
        return out * self.kernel_size[0] * self.kernel_size[1] * int(input_shape[-1])


@keras.saving.register_keras_serializable(package="tfasc")
class SeparableConvBlock(_ConvBlockBase):
    """AclNet's depthwise-separable convolution (DWSC, Sec. 2.3; MobileNet V1's block):
    ``DepthwiseConv2D (strides, same) -> BN -> ReLU -> 1x1 Conv2D(filters) -> BN -> ReLU``, no biases.

    ``[batch, H, W, in] -> [batch, ceil(H/sh), ceil(W/sw), filters]``. Kernels ``kh*kw*in + in*filters``
    weights; MACs per call ``H'*W'*in*(kh*kw + filters)``.
    """

    kernel_attributes = ("depthwise.depthwise_kernel", "pointwise.kernel")

    def build(self, input_shape):
        self._check_input(input_shape)
        self.depthwise = keras.layers.DepthwiseConv2D(self.kernel_size, strides=self.strides, padding="same",
                                                      use_bias=False, name="depthwise")
        self.depthwise_bn = self._bn("depthwise_bn")
        self.depthwise_relu = keras.layers.ReLU(name="depthwise_relu")
        self.pointwise = keras.layers.Conv2D(self.filters, 1, use_bias=False, name="pointwise")
        self.pointwise_bn = self._bn("pointwise_bn")
        self.pointwise_relu = keras.layers.ReLU(name="pointwise_relu")
        self._build_chain(input_shape)
        super().build(input_shape)

    def _layers(self):
        return (self.depthwise, self.depthwise_bn, self.depthwise_relu,
                self.pointwise, self.pointwise_bn, self.pointwise_relu)

    def count_macs(self, input_shape, output_shape) -> int:
        positions = math.prod(int(d) for d in output_shape[1:-1])
        return positions * int(input_shape[-1]) * (self.kernel_size[0] * self.kernel_size[1] + self.filters)


#: ``conv_type`` -> block class (Sec. 2.3).
CONV_BLOCKS = {"sc": ConvBlock, "dwsc": SeparableConvBlock}


def conv_block(conv_type: str, filters: int, kernel_size=3, strides=1, **kwargs) -> _ConvBlockBase:
    """A block of form ``conv_type`` (``"sc"`` or ``"dwsc"``)."""
    if conv_type not in CONV_BLOCKS:
        raise ValueError(f"conv_type {conv_type!r}: expected one of {CONV_TYPES}")
    return CONV_BLOCKS[conv_type](filters, kernel_size, strides, **kwargs)


@dataclasses.dataclass(frozen=True)
class FrontEndGeometry:
    """Kernels, strides and pooling of the LLF at one sample rate, in samples."""

    conv1_kernel: int
    conv1_stride: int
    conv2_kernel: int
    conv2_stride: int
    pool: int

    @property
    def hop(self) -> int:
        """Samples per output frame, ``conv1_stride * conv2_stride * pool``."""
        return self.conv1_stride * self.conv2_stride * self.pool

    def frames(self, samples: int) -> int:
        """Output frames of ``samples`` input samples ("same" convolutions, "valid" pooling)."""
        return _same_length(_same_length(samples, self.conv1_stride), self.conv2_stride) // self.pool


def front_end_geometry(sample_rate: int, s1: int, s2: int, frame_ms: float = 10.0, *,
                       scale_strides: bool = True) -> FrontEndGeometry:
    """The LLF's geometry at ``sample_rate`` from Table 1's 16 kHz values (Sec. 2.1).

    Kernels 9 and 5 scale linearly with ``sample_rate / 16000``, rounded down (at least 1): at
    44.1 kHz they are 24 and 13, which gives Table 3's LLF parameter counts (1.81k DWSC, 6.99k SC).
    The strides ``s1``, ``s2`` scale the same way with ``scale_strides`` (Sec. 2.1's text), else
    stay as given (what Table 3's LLF MMACS at 44.1 kHz point to; see the README). The pooling is
    the whole number of Conv2 outputs nearest ``frame_ms``, so frames are exactly 10 ms where the
    rate divides (8, 16, 32, 48 kHz) and within a few percent otherwise (44.1 kHz, strides 5 and 11:
    pool 8, 440 samples, 9.98 ms).
    """
    if int(sample_rate) < 1 or int(s1) < 1 or int(s2) < 1 or not frame_ms > 0:
        raise ValueError(f"AclNet front-end: sample_rate, s1, s2 and frame_ms must be positive, got "
                         f"{sample_rate}, {s1}, {s2}, {frame_ms}")
    scale = int(sample_rate) / REFERENCE_SAMPLE_RATE
    scaled = lambda value: max(1, math.floor(value * scale + 1e-9))  # noqa: E731
    stride1, stride2 = (scaled(s1), scaled(s2)) if scale_strides else (int(s1), int(s2))
    pool = max(1, round(int(sample_rate) * frame_ms / 1000 / (stride1 * stride2)))
    return FrontEndGeometry(scaled(CONV1_KERNEL_16K), stride1, scaled(CONV2_KERNEL_16K), stride2, pool)


@keras.saving.register_keras_serializable(package="tfasc")
class AclNetFrontEnd(SubLayerChain, LayerContract, keras.layers.Layer):
    """AclNet's learned front-end, the LLF (Sec. 2.1, Table 1): raw waveform to a 64-row image.

    ``[batch, samples, channels]`` (or ``[batch, samples]``, mono) float waveform in;
    ``[batch, filters, frames, 1]`` out, ``frames = floor(ceil(ceil(samples / S1) / S2) / pool)``
    (:class:`FrontEndGeometry`; 1.28 s at 16 kHz gives Table 1's 128). Conv1: :class:`ConvBlock`,
    ``c1`` channels, kernel 9, stride ``s1``; Conv2: ``conv_type`` block (SC or DWSC), ``filters``
    channels, kernel 5, stride ``s2``; Maxpool1 over ``pool`` frames; all at 16 kHz and scaled with
    ``sample_rate`` (the strides only with ``scale_strides``; :func:`front_end_geometry`). The paper's best settings: ``(c1, s1, s2) =
    (8, 2, 2)`` for SC and ``(16, 2, 4)`` for DWSC (Sec. 4.2).
    """

    def __init__(
        self,
        sample_rate: int,
        c1: int = 16,
        s1: int = 2,
        s2: int = 4,
        conv_type: str = "dwsc",
        filters: int = 64,
        frame_ms: float = 10.0,
        *,
        scale_strides: bool = True,
        bn_momentum: float = 0.99,
        bn_epsilon: float = 1e-3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if conv_type not in CONV_TYPES:
            raise ValueError(f"AclNetFrontEnd: conv_type {conv_type!r}: expected one of {CONV_TYPES}")
        if int(c1) < 1 or int(filters) < 1:
            raise ValueError(f"AclNetFrontEnd: c1 and filters must be >= 1, got {c1} and {filters}")
        self.sample_rate, self.c1, self.s1, self.s2 = int(sample_rate), int(c1), int(s1), int(s2)
        self.conv_type, self.filters, self.frame_ms = conv_type, int(filters), float(frame_ms)
        self.scale_strides = bool(scale_strides)
        self.bn_momentum, self.bn_epsilon = float(bn_momentum), float(bn_epsilon)
        self.geometry = front_end_geometry(self.sample_rate, self.s1, self.s2, self.frame_ms,
                                           scale_strides=self.scale_strides)
        self.kernel_attributes = (*(f"conv1.{name}" for name in ConvBlock.kernel_attributes),
                                  *(f"conv2.{name}" for name in CONV_BLOCKS[conv_type].kernel_attributes))

    def _blocks_input_shape(self, input_shape) -> tf.TensorShape:
        shape = tf.TensorShape(input_shape)
        if shape.rank not in (2, 3) or (shape.rank == 3 and shape[-1] is None):
            raise ValueError(f"AclNetFrontEnd {self.name!r}: expected [batch, samples] or [batch, samples, channels] "
                             f"with known channels, got {shape}")
        return tf.TensorShape([shape[0], 1, shape[1], 1 if shape.rank == 2 else shape[2]])

    def build(self, input_shape):
        g, bn = self.geometry, dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)
        self.conv1 = ConvBlock(self.c1, (1, g.conv1_kernel), (1, g.conv1_stride), name="conv1", **bn)
        self.conv2 = conv_block(self.conv_type, self.filters, (1, g.conv2_kernel), (1, g.conv2_stride), name="conv2", **bn)
        self.pool = keras.layers.MaxPooling2D((1, g.pool), strides=(1, g.pool), padding="valid", name="pool")
        self._build_chain(self._blocks_input_shape(input_shape))
        super().build(input_shape)

    def _layers(self):
        return (self.conv1, self.conv2, self.pool)

    def call(self, inputs, training=None):
        x = inputs[..., tf.newaxis] if inputs.shape.rank == 2 else inputs
        x = self._call_chain(x[:, tf.newaxis], training)  # [batch, 1, frames, filters]
        return tf.transpose(x, [0, 3, 2, 1])

    def export_form(self, inputs, *, name: str, trainable: bool):
        shape = self._blocks_input_shape(inputs.shape)
        # A static length where there is one: TFLite Micro's RESHAPE prepares constant shapes.
        samples = -1 if shape[2] is None else int(shape[2])
        x = keras.layers.Reshape((1, samples, int(shape[3])), name=f"{name}_to_rows")(inputs)
        x = self._export_chain(x, name=name, trainable=trainable)
        return keras.layers.Permute((3, 2, 1), name=f"{name}_to_image")(x)

    def compute_output_shape(self, input_shape):
        shape = self._blocks_input_shape(input_shape)
        frames = None if shape[2] is None else self.geometry.frames(int(shape[2]))
        return tf.TensorShape([shape[0], self.filters, frames, 1])

    def count_macs(self, input_shape, output_shape) -> int:
        shape = tuple(self._blocks_input_shape((1, *input_shape[1:])))
        conv1_out = tuple(self.conv1.compute_output_shape(shape))
        conv2_out = tuple(self.conv2.compute_output_shape(conv1_out))
        return self.conv1.count_macs(shape, conv1_out) + self.conv2.count_macs(conv1_out, conv2_out)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"sample_rate": self.sample_rate, "c1": self.c1, "s1": self.s1, "s2": self.s2,
                       "conv_type": self.conv_type, "filters": self.filters, "frame_ms": self.frame_ms,
                       "scale_strides": self.scale_strides,
                       "bn_momentum": self.bn_momentum, "bn_epsilon": self.bn_epsilon})
        return config


__all__ = ["AclNetFrontEnd", "ConvBlock", "SeparableConvBlock", "CONV_BLOCKS", "conv_block", "front_end_geometry",
           "FrontEndGeometry"]
