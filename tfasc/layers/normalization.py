"""SubSpectral Normalization (SSN).

As used in 'QTI Submission to DCASE 2020: Model Efficient Acoustic Scene Classification' (DCASE
2020 Task 1B technical report, entry Chang_QTI_task1b), Sec. 2.2, Fig. 2.

Features are laid out ``[batch, freq, time, channels]``. The frequency axis is split into ``S``
contiguous sub-bands and every (sub-band, channel) pair is normalized with its own statistics,
so that a few loud low-frequency bins do not set the scale of the whole spectrum.
"""

from __future__ import annotations

import tfasc  # noqa: F401  (selects tf_keras before TensorFlow is imported)

import tensorflow as tf
import tf_keras as keras

from tfasc.layers.contract import LayerContract

AFFINE_MODES = ("shared", "per_band", "none")


@keras.saving.register_keras_serializable(package="tfasc")
class SubSpectralNormalization(LayerContract, keras.layers.Layer):
    """Batch normalization with separate statistics per frequency sub-band (paper Sec. 2.2).

    Input and output: ``[batch, freq, time, channels]``. ``freq`` must be divisible by
    ``sub_bands``; band ``s`` holds bins ``[s * freq/S, (s + 1) * freq/S)``.

    Training: for every (sub-band, channel) pair the mean and (biased) variance are taken over the
    batch, the time axis and the bins of that sub-band; moving statistics of shape
    ``[sub_bands, channels]`` are updated as Keras' ``BatchNormalization`` does,
    ``moving = momentum * moving + (1 - momentum) * batch`` (biased batch variance, as in Keras'
    non-fused batch norm). Inference: the moving statistics are used.

    Affine transform: ``affine="shared"`` (the paper's choice) learns one ``gamma``/``beta`` per
    channel, shared by all sub-bands, so the layer has as many trainable parameters as a
    ``BatchNormalization``; ``"per_band"`` learns ``[sub_bands, channels]`` of each; ``"none"``
    learns no affine transform.

    Ops: training reshapes ``[B, F, T, C] -> [B, S, (F/S)*T, C]`` (a valid reshape because bands
    are contiguous and frequency is the outer of frequency and time) and takes moments over axes
    0 and 2, staying rank 4. Inference multiplies and adds ``[F, 1, C]`` tensors (per-band scale and
    offset repeated over each band's bins), which the TFLite converter folds to constants: the
    layer becomes MUL + ADD builtins, no rank-5 broadcast.

    Contract (``tfasc.layers.contract``): no kernels (statistics and affine parameters, like a
    BatchNormalization), no MACs counted (normalizations are not counted), an output-only
    QuantizeConfig when QAT meets the layer itself, and an export form of stock layers
    (:func:`sub_spectral_as_depthwise`) that converts to int8 DEPTHWISE_CONV_2D ops.
    """

    kernel_attributes = ()

    def __init__(
        self,
        sub_bands: int = 2,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        affine: str = "shared",
        gamma_initializer="ones",
        beta_initializer="zeros",
        moving_mean_initializer="zeros",
        moving_variance_initializer="ones",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(sub_bands) < 1:
            raise ValueError(f"SubSpectralNormalization: sub_bands must be >= 1, got {sub_bands!r}")
        if affine not in AFFINE_MODES:
            raise ValueError(
                f"SubSpectralNormalization: affine must be one of {AFFINE_MODES}, got {affine!r}"
            )
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"SubSpectralNormalization: momentum must be in [0, 1), got {momentum!r}")
        self.sub_bands = int(sub_bands)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.affine = affine
        self.gamma_initializer = keras.initializers.get(gamma_initializer)
        self.beta_initializer = keras.initializers.get(beta_initializer)
        self.moving_mean_initializer = keras.initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = keras.initializers.get(moving_variance_initializer)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        freq, channels = input_shape[1], input_shape[3]
        if freq is None or channels is None:
            raise ValueError(
                f"SubSpectralNormalization {self.name!r}: the frequency and channel axes of "
                f"[batch, freq, time, channels] must be known, got shape {input_shape}"
            )
        if freq % self.sub_bands != 0:
            raise ValueError(
                f"SubSpectralNormalization {self.name!r}: frequency size {freq} (axis 1 of "
                f"[batch, freq, time, channels], shape {input_shape}) is not divisible by "
                f"sub_bands={self.sub_bands}"
            )
        stats_shape = (self.sub_bands, channels)
        affine_shape = {"shared": (channels,), "per_band": stats_shape}.get(self.affine)
        if affine_shape is not None:
            self.gamma = self.add_weight(
                name="gamma", shape=affine_shape, initializer=self.gamma_initializer, trainable=True
            )
            self.beta = self.add_weight(
                name="beta", shape=affine_shape, initializer=self.beta_initializer, trainable=True
            )
        else:
            self.gamma = self.beta = None
        self.moving_mean = self.add_weight(
            name="moving_mean",
            shape=stats_shape,
            initializer=self.moving_mean_initializer,
            trainable=False,
            synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.MEAN,
        )
        self.moving_variance = self.add_weight(
            name="moving_variance",
            shape=stats_shape,
            initializer=self.moving_variance_initializer,
            trainable=False,
            synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.MEAN,
        )
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={1: freq, 3: channels})
        super().build(input_shape)

    def _band_scale_offset(self, mean: tf.Tensor, variance: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Per-(band, channel) ``scale`` and ``offset`` so that ``y = x * scale + offset``."""
        scale = tf.math.rsqrt(variance + self.epsilon)
        if self.gamma is not None:
            scale = scale * tf.cast(self.gamma, scale.dtype)
        offset = -mean * scale
        if self.beta is not None:
            offset = offset + tf.cast(self.beta, scale.dtype)
        return scale, offset

    def call(self, inputs, training=None):
        if training is None:
            training = keras.backend.learning_phase()
        static_training = tf.get_static_value(training)
        if static_training is not None:
            return self._call_training(inputs) if bool(static_training) else self._call_inference(inputs)
        return tf.cond(
            tf.cast(training, tf.bool),
            lambda: self._call_training(inputs),
            lambda: self._call_inference(inputs),
        )

    def _call_inference(self, inputs):
        freq = inputs.shape[1]
        band = freq // self.sub_bands
        mean = tf.cast(self.moving_mean, inputs.dtype)
        variance = tf.cast(self.moving_variance, inputs.dtype)
        scale, offset = self._band_scale_offset(mean, variance)
        # [S, C] -> [F, 1, C]: every bin gets its band's scale; a plain broadcast MUL/ADD follows.
        scale = tf.repeat(scale, band, axis=0)[:, tf.newaxis, :]
        offset = tf.repeat(offset, band, axis=0)[:, tf.newaxis, :]
        return inputs * scale + offset

    def _call_training(self, inputs):
        freq, time, channels = inputs.shape[1], inputs.shape[2], inputs.shape[3]
        band = freq // self.sub_bands
        dynamic_shape = tf.shape(inputs)
        time = time if time is not None else dynamic_shape[2]
        # [B, F, T, C] -> [B, S, (F/S)*T, C]; bands are contiguous along F.
        grouped = tf.reshape(inputs, [-1, self.sub_bands, band * time, channels])
        stats_inputs = tf.cast(grouped, tf.float32)
        mean, variance = tf.nn.moments(stats_inputs, axes=[0, 2])  # [S, C] each
        self._update_moving(self.moving_mean, mean)
        self._update_moving(self.moving_variance, variance)
        scale, offset = self._band_scale_offset(mean, variance)
        scale = tf.cast(scale, inputs.dtype)[:, tf.newaxis, :]
        offset = tf.cast(offset, inputs.dtype)[:, tf.newaxis, :]
        outputs = grouped * scale + offset
        return tf.reshape(outputs, [-1, freq, time, channels])

    def _update_moving(self, variable: tf.Variable, value: tf.Tensor) -> None:
        decay = tf.cast(1.0 - self.momentum, variable.dtype)
        variable.assign_sub((variable - tf.cast(value, variable.dtype)) * decay)

    def count_macs(self, input_shape, output_shape) -> int:
        # A normalization: not counted, like BatchNormalization (tfasc.deploy.profile conventions).
        return 0

    def quantize_config(self):
        from tfasc.layers.quantize_configs import OutputOnlyQuantizeConfig

        # Left in place, only the output is quantized: the per-band multiply-add stays float
        # between DEQUANTIZE/QUANTIZE unless representative data calibrates it; the export form
        # avoids that.
        return OutputOnlyQuantizeConfig()

    def export_form(self, inputs, *, name: str, trainable: bool):
        """The stock-layer form of this layer on ``inputs``: :func:`sub_spectral_as_depthwise`."""
        return sub_spectral_as_depthwise(inputs, self, name=name, trainable=trainable)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "sub_bands": self.sub_bands,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "affine": self.affine,
                "gamma_initializer": keras.initializers.serialize(self.gamma_initializer),
                "beta_initializer": keras.initializers.serialize(self.beta_initializer),
                "moving_mean_initializer": keras.initializers.serialize(self.moving_mean_initializer),
                "moving_variance_initializer": keras.initializers.serialize(
                    self.moving_variance_initializer
                ),
            }
        )
        return config


def sub_spectral_as_depthwise(
    x: tf.Tensor, ssn: SubSpectralNormalization, name: str, trainable: bool = False
) -> tf.Tensor:
    """``ssn``'s inference transform rebuilt from stock Keras layers, for int8 export.

    ``x``: ``[batch, freq, time, channels]``. For every sub-band ``s``: ``Cropping2D`` to the band's
    bins, a 1x1 ``DepthwiseConv2D(use_bias=True)`` holding ``gamma / sqrt(moving_var + eps)`` and
    ``beta - moving_mean * that`` of the band, then ``Concatenate`` along frequency. Numerically
    equal to ``ssn(x, training=False)``. Why: TF-MOT quantizes these stock layers without any custom
    QuantizeConfig and the converter emits only int8 STRIDED_SLICE, DEPTHWISE_CONV_2D and
    CONCATENATION; the MUL/ADD form of the layer stays float between DEQUANTIZE/QUANTIZE ops in a
    QAT model because its per-band scale is a computed tensor that carries no fake-quant (the same
    idea as the BatchNorm -> frozen depthwise replacement of ``tfasc.compress.export_form``, per band). Layers are named
    ``{name}_band{s}_crop``, ``{name}_band{s}_affine`` and ``{name}_concat``; the affine layers
    are frozen unless ``trainable``.
    """
    if not ssn.built:
        raise ValueError(f"sub_spectral_as_depthwise: SubSpectralNormalization {ssn.name!r} is not built")
    freq = x.shape[1]
    if freq is None or freq % ssn.sub_bands:
        raise ValueError(
            f"sub_spectral_as_depthwise: frequency size {freq} of {x.shape} does not split into "
            f"sub_bands={ssn.sub_bands}"
        )
    band = freq // ssn.sub_bands
    scale, offset = (t.numpy() for t in ssn._band_scale_offset(ssn.moving_mean, ssn.moving_variance))
    outputs = []
    for s in range(ssn.sub_bands):
        part = x
        if ssn.sub_bands > 1:
            part = keras.layers.Cropping2D(((s * band, freq - (s + 1) * band), (0, 0)), name=f"{name}_band{s}_crop")(x)
        affine = keras.layers.DepthwiseConv2D(1, use_bias=True, trainable=trainable, name=f"{name}_band{s}_affine")
        part = affine(part)
        affine.set_weights([scale[s].reshape(1, 1, -1, 1), offset[s]])
        outputs.append(part)
    if len(outputs) == 1:
        return outputs[0]
    return keras.layers.Concatenate(axis=1, name=f"{name}_concat")(outputs)
