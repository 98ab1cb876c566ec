"""Decision-level attention pooling over time and the multi-level combination of predictions.

Chen et al. (2019), "An End-to-End Audio Classification System based on Raw Waveforms and
Mix-Training Strategy", Sec. 3.1 and 4.2, adopt the multi-level attention model of Yu et al. (2018,
their ref. [2]): at each level one attention module on a block's output and one after two FC(600,
ReLU) layers, the two predictions concatenated, a dense layer to the classes; the network's output
is the mean of the levels' predictions and its loss the mean of the levels' losses
(:mod:`tfasc.training.levels`).

:class:`AttentionPooling` is one attention module's pooling, the decision-level attention of Kong et
al. (2018, ref. [3] of the paper) in the form PANNs use: per time step ``t`` a classification
``cla_t = sigmoid(c_t)`` and an attention weight ``w_t = softmax over t of a_t`` (normalized over
time), pooled as ``sum_t w_t * cla_t``, a probability per class. Yu et al.'s code instead takes
``a_t`` through a softmax over the classes, clips it to ``[1e-7, 1 - 1e-7]`` and divides by its sum
over time. We normalize over time with a softmax because that form survives int8: with 527 classes
a softmax over classes gives weights near 1/527, below the int8 softmax output's step of 1/256, and
a sum over time of weights quantized to 0 would divide by 0 on the device.

:class:`MultiLevelOutput` turns the levels' logits into the logits of the mean of their predictions,
written with LOG_SOFTMAX (which TFLite Micro runs in int8; LOG does not run there).
"""

from __future__ import annotations

import math
from typing import Any

import tfasc  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from tfasc.layers.contract import LayerContract


def _output_only_config():
    from tfasc.layers.quantize_configs import OutputOnlyQuantizeConfig

    return OutputOnlyQuantizeConfig()


def _logsumexp_last(values):
    """``log sum_i exp(values[..., i])`` as ``values[..., 0] - log_softmax(values)[..., 0]``: one
    LOG_SOFTMAX and a SUB in TFLite (the stable identity ``log_softmax(v)_0 = v_0 - LSE(v)``)."""
    return values[..., 0] - tf.nn.log_softmax(values, axis=-1)[..., 0]


@keras.saving.register_keras_serializable(package="tfasc")
class AttentionPooling(LayerContract, keras.layers.Layer):
    """Attention pooling over time (Chen et al. 2019 Sec. 3.1, after Kong et al. 2018 and Yu et al. 2018).

    Input ``[batch, time, 2 * classes]``: per time step, the first half are classification logits
    ``c_t``, the second half attention logits ``a_t`` (one ``Dense(2 * classes)`` makes both).
    Output ``[batch, classes]`` probabilities ``sum_t softmax_t(a)_t * sigmoid(c_t)``: a weighted
    mean over time of the per-step class probabilities, weights normalized over time per class.

    Contract: no weights; ``time * classes`` MACs (the weighted sum); QAT quantizes its output
    only. int8 ops: TRANSPOSE, SPLIT, LOGISTIC, SOFTMAX, MUL, MEAN, all run by TFLite Micro.
    """

    kernel_attributes = ()

    def call(self, inputs):
        channels_first = tf.transpose(inputs, [0, 2, 1])  # [batch, 2K, time]: softmax on the last axis
        classification, attention = tf.split(channels_first, 2, axis=1)
        weights = tf.nn.softmax(attention, axis=-1)
        # The sum over time as T times the mean: TFLite's int8 SUM was off by up to 4.25 on a sum of
        # seven sigmoids (TF 2.17 converter, reference kernels; measured), its MEAN is right.
        steps = inputs.shape[1] if inputs.shape[1] is not None else tf.shape(inputs)[1]
        return tf.reduce_mean(weights * tf.sigmoid(classification), axis=-1) * tf.cast(steps, inputs.dtype)

    def build(self, input_shape):
        channels = tf.TensorShape(input_shape)[-1]
        if len(input_shape) != 3 or channels is None or int(channels) % 2:
            raise ValueError(f"AttentionPooling: expected [batch, time, 2 * classes], got {list(input_shape)}")
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape)
        return tf.TensorShape([shape[0], int(shape[2]) // 2])

    def count_macs(self, input_shape, output_shape) -> int:
        return int(input_shape[1]) * int(output_shape[-1])

    def quantize_config(self):
        return _output_only_config()


@keras.saving.register_keras_serializable(package="tfasc")
class MultiLevelOutput(LayerContract, keras.layers.Layer):
    """The logits of the mean of the levels' predictions (Chen et al. 2019 Sec. 3.1, Fig. 1).

    Input ``[batch, levels, classes]``: each level's logits ``z_l``. Output ``[batch, classes]``
    logits whose sigmoid (``sigmoid=True``) or softmax is the mean over levels of the levels'
    sigmoids or softmaxes:

    - sigmoid: ``logit(mean_l sigmoid(z_l)) = LSE_l(log sigmoid(z_l)) - LSE_l(log sigmoid(-z_l))``
      (the ``log L`` of both means cancels), with ``log sigmoid(z)`` the first entry of
      ``log_softmax([z, 0])`` and ``log sigmoid(-z) = log sigmoid(z) - z``;
    - softmax: ``log(mean_l softmax(z_l)) = LSE_l(log_softmax(z_l)) - log L``.

    ``sigmoid`` follows the data (multi-label or a sigmoid loss, :func:`tfasc.metrics.sigmoid_outputs`),
    the one rule the loss and the evaluation use too. With one level the output is its logits.
    Contract: no weights, no MACs; QAT quantizes its output only. int8 ops: PACK, LOG_SOFTMAX,
    STRIDED_SLICE, SUB, TRANSPOSE (and ADD for the softmax's constant), all run by TFLite Micro.
    """

    kernel_attributes = ()

    def __init__(self, sigmoid: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sigmoid = bool(sigmoid)

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[1] is None:
            raise ValueError(f"MultiLevelOutput: expected [batch, levels, classes], got {list(input_shape)}")
        super().build(input_shape)

    def call(self, inputs):
        levels = int(inputs.shape[1])
        if levels == 1:
            return inputs[:, 0]
        if self.sigmoid:
            log_p = tf.nn.log_softmax(tf.stack([inputs, tf.zeros_like(inputs)], axis=-1), axis=-1)[..., 0]
            log_p = tf.transpose(log_p, [0, 2, 1])  # [batch, classes, levels]
            log_not_p = log_p - tf.transpose(inputs, [0, 2, 1])
            return _logsumexp_last(log_p) - _logsumexp_last(log_not_p)
        log_p = tf.transpose(tf.nn.log_softmax(inputs, axis=-1), [0, 2, 1])
        return _logsumexp_last(log_p) - math.log(levels)

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape)
        return tf.TensorShape([shape[0], shape[2]])

    def count_macs(self, input_shape, output_shape) -> int:
        return 0

    def quantize_config(self):
        return _output_only_config()

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"sigmoid": self.sigmoid})
        return config
