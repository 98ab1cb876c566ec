"""Layers that own a chain of sub-layers: build, call and export them in one order.

A module layer (a DSC block, a convolution block, a front-end) lists its sub-layers in call order
once, in ``_layers()``; this mixin builds each on the shape the one before it gives, calls them in
that order, and rebuilds the chain from stock layers for the export form (``tfasc.layers.contract``):
a sub-layer with its own export form (a tfasc layer) exports itself, any other is a fresh copy of
the stock layer with its weights copied, named ``{name}_{sub-layer name}``.
"""

from __future__ import annotations

import tfasc  # noqa: F401  (selects tf_keras before TensorFlow is imported)

import numpy as np
import tensorflow as tf
import tf_keras as keras


class SubLayerChain:
    """Mixin for a ``keras.layers.Layer`` whose computation is its sub-layers applied in order."""

    def _layers(self) -> tuple[keras.layers.Layer, ...]:
        """The sub-layers in call order (created by the subclass's ``build``)."""
        raise NotImplementedError

    def _build_chain(self, input_shape) -> tf.TensorShape:
        """Build every sub-layer on the shape the one before it gives; returns the chain's output shape."""
        shape = tf.TensorShape(input_shape)
        for layer in self._layers():
            layer.build(shape)
            shape = tf.TensorShape(layer.compute_output_shape(shape))
        return shape

    def _call_chain(self, x, training=None):
        for layer in self._layers():
            x = layer(x, training=training) if _takes_training(layer) else layer(x)
        return x

    def _export_chain(self, x, *, name: str, trainable: bool):
        for layer in self._layers():
            x = export_sublayer(layer, x, name=name, trainable=trainable)
        return x


def _takes_training(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, (keras.layers.BatchNormalization, SubLayerChain))


def export_sublayer(layer: keras.layers.Layer, x, *, name: str, trainable: bool):
    """Sub-layer ``layer`` of module ``name`` applied to ``x`` in export form, named ``{name}_{layer.name}``."""
    export_form = getattr(layer, "export_form", None)
    if export_form is not None:
        return export_form(x, name=f"{name}_{layer.name}", trainable=trainable)
    config = {**layer.get_config(), "name": f"{name}_{layer.name}", "trainable": trainable}
    copy = type(layer).from_config(config)
    y = copy(x)
    copy.set_weights(layer.get_weights())
    return y


def batchnorm_as_depthwise_weights(bn: keras.layers.BatchNormalization) -> tuple[np.ndarray, np.ndarray]:
    """``(kernel [1, 1, C, 1], bias [C])`` of a 1x1 depthwise conv equal to ``bn`` at inference.

    ``scale = gamma / sqrt(moving_variance + epsilon)``, ``bias = beta - moving_mean * scale``
    (gamma = 1 / beta = 0 when the BN has ``scale=False`` / ``center=False``), in float32 as
    Keras' BN computes it.
    """
    variance = tf.cast(bn.moving_variance, tf.float32)
    scale = tf.math.rsqrt(variance + tf.cast(bn.epsilon, tf.float32))
    if bn.scale:
        scale = scale * tf.cast(bn.gamma, tf.float32)
    bias = -tf.cast(bn.moving_mean, tf.float32) * scale
    if bn.center:
        bias = bias + tf.cast(bn.beta, tf.float32)
    scale, bias = scale.numpy(), bias.numpy()
    return scale.reshape(1, 1, -1, 1), bias
