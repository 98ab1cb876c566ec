"""Efficient convolution modules with Swish: depthwise-separable convolution and the inverted residual.

Wu & Lee, "Searching for efficient network architectures for acoustic scene classification"
(DCASE 2020 Task 1B), Sec. 2, Eq. 1, Fig. 1: the depthwise-separable convolution (DSC) module of
MobileNet V1 and the inverted residual with linear bottleneck (IRwLB) of MobileNet V2 with expansion
ratio 3, every ReLU replaced by Swish ``x * sigmoid(beta * x)`` (the paper sets ``beta = 1``).
Strides are 1 (the search space downsamples with separate 2x2 pooling, Sec. 3.1).

Layout: ``[batch, freq, time, channels]`` in and out.

Contracts (``tfasc.layers.contract``):

- MACs: every convolution's ``output elements x window`` (BatchNorm, Swish and the residual add are
  not counted, as for every tfasc model).
- Kernels: the convolution kernels (pruning zeroes them, MACs are counted for them); BatchNorm
  parameters are not kernels.
- Export form: the same computation rebuilt from stock layers (``DepthwiseConv2D``, ``Conv2D``,
  ``BatchNormalization``, ``Activation("swish")``, ``Add``) with the weights copied, so TF-MOT folds
  every BatchNorm into its convolution and the converter emits only int8 builtins
  (DEPTHWISE_CONV_2D, CONV_2D, LOGISTIC, MUL, ADD); Swish with a ``beta`` other than 1 becomes
  ``swish(beta * x) / beta`` with both scalings as 1x1 ``DepthwiseConv2D``.
- QAT never sees the layers themselves (the export form replaces them first), so they declare no
  QuantizeConfig.

The modules are layer classes owning their sub-layers (one entry per module in a model summary, the
module's hyperparameters in its config) rather than functional builders: pruning reaches their
kernels through ``get_prunable_weights`` and the export form hands stock layers to QAT, which keeps
prune-preserving QAT's sparsity (a custom QuantizeConfig would lose it, ``../shared/notes``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import tfasc  # noqa: F401  (selects tf_keras before TensorFlow is imported)

import tensorflow as tf
import tf_keras as keras

from tfasc.layers.chain import SubLayerChain
from tfasc.layers.contract import LayerContract


def _elements(shape) -> int:
    return int(np.prod([int(d) for d in shape]))


def _check_4d(layer: keras.layers.Layer, input_shape) -> None:
    shape = tf.TensorShape(input_shape)
    if shape.rank != 4 or shape[-1] is None:
        raise ValueError(
            f"{type(layer).__name__} {layer.name!r}: expected input [batch, freq, time, channels] with known "
            f"channels, got {shape}"
        )


def _frozen_channel_scale(x, value: float, *, name: str, trainable: bool):
    layer = keras.layers.DepthwiseConv2D(1, use_bias=False, trainable=trainable, name=name)
    y = layer(x)
    layer.set_weights([np.full((1, 1, int(x.shape[-1]), 1), value, np.float32)])
    return y


def _swish_export_form(x, *, beta: float, name: str, trainable: bool):
    """``x * sigmoid(beta * x)`` from stock layers that quantize to int8 builtins.

    ``beta == 1``: ``Activation("swish")``. Otherwise ``swish(beta * x) / beta``, the scalings as 1x1
    depthwise convolutions (TF-MOT quantizes neither ``Multiply`` nor ``Rescaling``, measured).
    """
    if beta == 1.0:
        return keras.layers.Activation("swish", name=name)(x)
    if x.shape.rank != 4 or beta == 0.0:
        raise ValueError(f"swish {name!r}: beta != 1 exports only for 4-D inputs and beta != 0, got {x.shape}, {beta}")
    y = _frozen_channel_scale(x, beta, name=f"{name}_beta", trainable=trainable)
    y = keras.layers.Activation("swish", name=f"{name}_swish")(y)
    return _frozen_channel_scale(y, 1.0 / beta, name=name, trainable=trainable)


@keras.saving.register_keras_serializable(package="tfasc")
class Swish(LayerContract, keras.layers.Layer):
    """Swish ``x * sigmoid(beta * x)`` (Wu & Lee, Sec. 2, Eq. 1; Ramachandran et al. 2017).

    Any layout (applied elementwise). ``beta`` is the initial value; with ``trainable_beta`` it is
    one scalar weight learned with the model, else a constant.

    Contract: no kernels, no MACs (an activation); export form ``Activation("swish")`` for
    ``beta == 1`` (int8 LOGISTIC + MUL), else ``swish(beta * x) / beta`` with both scalings as frozen 1x1
    ``DepthwiseConv2D`` (4-D inputs).
    """

    kernel_attributes = ()

    def __init__(self, beta: float = 1.0, trainable_beta: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.beta_initial = float(beta)
        self.trainable_beta = bool(trainable_beta)
        self.beta = None

    def build(self, input_shape):
        if self.trainable_beta:
            self.beta = self.add_weight(
                name="beta", shape=(), initializer=keras.initializers.Constant(self.beta_initial), trainable=True
            )
        super().build(input_shape)

    def beta_value(self) -> float:
        return float(self.beta.numpy()) if self.trainable_beta else self.beta_initial

    def call(self, inputs):
        beta = tf.cast(self.beta, inputs.dtype) if self.trainable_beta else self.beta_initial
        return inputs * tf.sigmoid(beta * inputs)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def count_macs(self, input_shape, output_shape) -> int:
        return 0  # an activation, like ReLU

    def export_form(self, inputs, *, name: str, trainable: bool):
        return _swish_export_form(inputs, beta=self.beta_value(), name=name, trainable=trainable)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"beta": self.beta_initial, "trainable_beta": self.trainable_beta})
        return config


class _SwishModule(SubLayerChain, LayerContract, keras.layers.Layer):
    """Shared machinery of the two modules: BatchNorm / Swish factories, config; the chain of sub-layers
    is :class:`tfasc.layers.chain.SubLayerChain`'s."""

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        *,
        beta: float = 1.0,
        trainable_beta: bool = False,
        bn_momentum: float = 0.99,
        bn_epsilon: float = 1e-3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(filters) < 1 or int(kernel_size) < 1:
            raise ValueError(
                f"{type(self).__name__}: filters and kernel_size must be positive, got {filters} and {kernel_size}"
            )
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.beta = float(beta)
        self.trainable_beta = bool(trainable_beta)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)

    def _bn(self, suffix: str) -> keras.layers.BatchNormalization:
        return keras.layers.BatchNormalization(momentum=self.bn_momentum, epsilon=self.bn_epsilon, name=suffix)

    def _swish(self, suffix: str) -> Swish:
        return Swish(beta=self.beta, trainable_beta=self.trainable_beta, name=suffix)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)[:-1].concatenate([self.filters])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "beta": self.beta,
                "trainable_beta": self.trainable_beta,
                "bn_momentum": self.bn_momentum,
                "bn_epsilon": self.bn_epsilon,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="tfasc")
class DepthwiseSeparableModule(_SwishModule):
    """The DSC module of Wu & Lee, Fig. 1 (left): MobileNet V1's block with Swish.

    ``k x k DepthwiseConv2D (stride 1, same) -> BN -> Swish -> 1x1 Conv2D(filters) -> BN -> Swish``.
    ``[batch, freq, time, in] -> [batch, freq, time, filters]``. No shortcut (MobileNet V1 has none; the
    paper gives the residual connection only to the inverted residual). Convolutions have no bias
    (BatchNorm follows). Kernels: ``k*k*in + in*filters`` weights; MACs per call
    ``F*T*in*(k*k + filters)``.
    """

    kernel_attributes = ("depthwise.depthwise_kernel", "pointwise.kernel")

    def build(self, input_shape):
        _check_4d(self, input_shape)
        self.depthwise = keras.layers.DepthwiseConv2D(self.kernel_size, padding="same", use_bias=False, name="depthwise")
        self.depthwise_bn = self._bn("depthwise_bn")
        self.depthwise_swish = self._swish("depthwise_swish")
        self.pointwise = keras.layers.Conv2D(self.filters, 1, use_bias=False, name="pointwise")
        self.pointwise_bn = self._bn("pointwise_bn")
        self.pointwise_swish = self._swish("pointwise_swish")
        self._build_chain(input_shape)
        super().build(input_shape)

    def _layers(self) -> tuple[keras.layers.Layer, ...]:
        return (self.depthwise, self.depthwise_bn, self.depthwise_swish,
                self.pointwise, self.pointwise_bn, self.pointwise_swish)

    def call(self, inputs, training=None):
        return self._call_chain(inputs, training)

    def count_macs(self, input_shape, output_shape) -> int:
        spatial, channels = _elements(input_shape[1:-1]), int(input_shape[-1])
        return spatial * channels * (self.kernel_size**2 + self.filters)

    def export_form(self, inputs, *, name: str, trainable: bool):
        return self._export_chain(inputs, name=name, trainable=trainable)


@keras.saving.register_keras_serializable(package="tfasc")
class InvertedResidualModule(_SwishModule):
    """The IRwLB module of Wu & Lee, Fig. 1 (right): MobileNet V2's block, expansion 3, with Swish.

    ``1x1 Conv2D(expansion*in) -> BN -> Swish -> k x k DepthwiseConv2D -> BN -> Swish ->
    1x1 Conv2D(filters) -> BN`` (linear bottleneck: no activation after the projection), plus the
    input (identity shortcut) when ``filters == in`` (stride is always 1).
    ``[batch, freq, time, in] -> [batch, freq, time, filters]``. Kernels: ``in*e*in + k*k*e*in +
    e*in*filters`` weights (``e`` = expansion); MACs per call ``F*T*e*in*(in + k*k + filters)``.
    """

    kernel_attributes = ("expand.kernel", "depthwise.depthwise_kernel", "project.kernel")

    def __init__(self, filters: int, kernel_size: int = 3, *, expansion: int = 3, **kwargs: Any) -> None:
        super().__init__(filters, kernel_size, **kwargs)
        if int(expansion) < 1:
            raise ValueError(f"InvertedResidualModule: expansion must be >= 1, got {expansion}")
        self.expansion = int(expansion)

    def build(self, input_shape):
        _check_4d(self, input_shape)
        shape = tf.TensorShape(input_shape)
        channels = int(shape[-1])
        hidden = self.expansion * channels
        self.residual = channels == self.filters
        self.expand = keras.layers.Conv2D(hidden, 1, use_bias=False, name="expand")
        self.expand_bn = self._bn("expand_bn")
        self.expand_swish = self._swish("expand_swish")
        self.depthwise = keras.layers.DepthwiseConv2D(self.kernel_size, padding="same", use_bias=False, name="depthwise")
        self.depthwise_bn = self._bn("depthwise_bn")
        self.depthwise_swish = self._swish("depthwise_swish")
        self.project = keras.layers.Conv2D(self.filters, 1, use_bias=False, name="project")
        self.project_bn = self._bn("project_bn")
        self._build_chain(input_shape)
        super().build(input_shape)

    def _layers(self) -> tuple[keras.layers.Layer, ...]:
        return (self.expand, self.expand_bn, self.expand_swish, self.depthwise, self.depthwise_bn,
                self.depthwise_swish, self.project, self.project_bn)

    def call(self, inputs, training=None):
        x = self._call_chain(inputs, training)
        return inputs + x if self.residual else x

    def count_macs(self, input_shape, output_shape) -> int:
        spatial, channels = _elements(input_shape[1:-1]), int(input_shape[-1])
        hidden = self.expansion * channels
        return spatial * hidden * (channels + self.kernel_size**2 + self.filters)

    def export_form(self, inputs, *, name: str, trainable: bool):
        x = self._export_chain(inputs, name=name, trainable=trainable)
        if self.residual:
            x = keras.layers.Add(name=f"{name}_add")([inputs, x])
        return x

    def get_config(self) -> dict:
        config = super().get_config()
        config["expansion"] = self.expansion
        return config
