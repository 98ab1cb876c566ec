"""SubSpectralNormalization against a numpy reference (DCASE 2020 1B report, Sec. 2.2), layout [batch, freq, time, channels]."""

from __future__ import annotations

import numpy as np
import pytest

import tfasc  # noqa: F401

import tensorflow as tf
import tf_keras as keras

from tfasc.layers.normalization import SubSpectralNormalization
from support.layer_test import run_layer_test


def numpy_band_stats(x: np.ndarray, sub_bands: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and biased variance ``[S, C]`` of every (sub-band, channel) over batch, time and band bins."""
    batch, freq, time, channels = x.shape
    band = freq // sub_bands
    means = np.zeros((sub_bands, channels))
    variances = np.zeros((sub_bands, channels))
    for s in range(sub_bands):
        for c in range(channels):
            values = x[:, s * band:(s + 1) * band, :, c].astype(np.float64)
            means[s, c] = values.mean()
            variances[s, c] = values.var()
    return means, variances


def numpy_ssn(x, sub_bands, mean, variance, gamma, beta, epsilon):
    """Normalize each band with its own ``[S, C]`` statistics; ``gamma``/``beta`` are ``[C]`` or ``[S, C]``."""
    batch, freq, time, channels = x.shape
    band = freq // sub_bands
    gamma = np.broadcast_to(gamma, (sub_bands, channels))
    beta = np.broadcast_to(beta, (sub_bands, channels))
    out = np.empty_like(x, dtype=np.float64)
    for s in range(sub_bands):
        rows = slice(s * band, (s + 1) * band)
        out[:, rows] = (x[:, rows] - mean[s]) / np.sqrt(variance[s] + epsilon) * gamma[s] + beta[s]
    return out


def make_input(shape=(3, 8, 5, 4), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Very different scales per frequency region, the case SSN is for.
    scale = np.linspace(0.1, 10.0, shape[1])[None, :, None, None]
    return (rng.normal(size=shape) * scale + rng.normal(size=(1, shape[1], 1, shape[3]))).astype("float32")


@pytest.mark.parametrize("sub_bands", [1, 2, 4])
@pytest.mark.parametrize("affine", ["shared", "per_band"])
def test_training_mode_matches_numpy(sub_bands, affine):
    x = make_input()
    layer = SubSpectralNormalization(sub_bands=sub_bands, affine=affine, epsilon=1e-3)
    layer.build(x.shape)
    rng = np.random.default_rng(1)
    gamma = rng.uniform(0.5, 2.0, size=layer.gamma.shape)
    beta = rng.normal(size=layer.beta.shape)
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)

    out = layer(x, training=True).numpy()

    mean, variance = numpy_band_stats(x, sub_bands)
    expected = numpy_ssn(x, sub_bands, mean, variance, gamma, beta, 1e-3)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_moving_statistics_update_like_batch_norm():
    x = make_input()
    momentum = 0.9
    layer = SubSpectralNormalization(sub_bands=2, momentum=momentum)
    layer(x, training=True)
    mean, variance = numpy_band_stats(x, 2)
    # Initial moving mean 0, variance 1; one step: m * old + (1 - m) * batch.
    np.testing.assert_allclose(layer.moving_mean.numpy(), (1 - momentum) * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        layer.moving_variance.numpy(), momentum * 1.0 + (1 - momentum) * variance, rtol=1e-5, atol=1e-6
    )
    x2 = make_input(seed=5)
    layer(x2, training=True)
    mean2, variance2 = numpy_band_stats(x2, 2)
    np.testing.assert_allclose(
        layer.moving_mean.numpy(), momentum * (1 - momentum) * mean + (1 - momentum) * mean2, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        layer.moving_variance.numpy(),
        momentum * (momentum + (1 - momentum) * variance) + (1 - momentum) * variance2,
        rtol=1e-5,
        atol=1e-6,
    )


def test_inference_uses_moving_statistics_and_leaves_them_alone():
    x = make_input()
    layer = SubSpectralNormalization(sub_bands=4, affine="per_band", epsilon=1e-3)
    layer.build(x.shape)
    rng = np.random.default_rng(2)
    mean = rng.normal(size=(4, 4))
    variance = rng.uniform(0.5, 3.0, size=(4, 4))
    gamma = rng.uniform(0.5, 2.0, size=(4, 4))
    beta = rng.normal(size=(4, 4))
    for variable, value in ((layer.moving_mean, mean), (layer.moving_variance, variance), (layer.gamma, gamma), (layer.beta, beta)):
        variable.assign(value)

    out = layer(x, training=False).numpy()

    np.testing.assert_allclose(out, numpy_ssn(x, 4, mean, variance, gamma, beta, 1e-3), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=1e-6)


def test_one_sub_band_equals_keras_batch_normalization():
    x = make_input()
    ssn = SubSpectralNormalization(sub_bands=1, momentum=0.8, epsilon=1e-3)
    bn = keras.layers.BatchNormalization(momentum=0.8, epsilon=1e-3, fused=False)
    np.testing.assert_allclose(ssn(x, training=True).numpy(), bn(x, training=True).numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ssn.moving_mean.numpy()[0], bn.moving_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ssn.moving_variance.numpy()[0], bn.moving_variance.numpy(), rtol=1e-5, atol=1e-6)


def test_bands_are_normalized_independently():
    x = make_input()
    x_louder_top = x.copy()
    x_louder_top[:, 4:] = x_louder_top[:, 4:] * 100.0 + 7.0
    layer = SubSpectralNormalization(sub_bands=2)
    out = layer(x, training=True).numpy()
    out_louder = layer(x_louder_top, training=True).numpy()
    # Lower band untouched; upper band is an affine change of its own statistics, so it normalizes
    # to (almost) the same values.
    np.testing.assert_allclose(out_louder[:, :4], out[:, :4], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out_louder[:, 4:], out[:, 4:], rtol=1e-3, atol=1e-3)


def test_affine_parameter_shapes():
    shared = SubSpectralNormalization(sub_bands=2, affine="shared")
    per_band = SubSpectralNormalization(sub_bands=2, affine="per_band")
    none = SubSpectralNormalization(sub_bands=2, affine="none")
    for layer in (shared, per_band, none):
        layer.build((None, 8, None, 6))
    # Shared affine: as many trainable weights as a BatchNormalization (paper: no extra size).
    assert [tuple(w.shape) for w in shared.trainable_weights] == [(6,), (6,)]
    assert [tuple(w.shape) for w in per_band.trainable_weights] == [(2, 6), (2, 6)]
    assert none.trainable_weights == []
    assert [tuple(w.shape) for w in shared.non_trainable_weights] == [(2, 6), (2, 6)]


def test_indivisible_frequency_is_a_clear_error():
    layer = SubSpectralNormalization(sub_bands=3)
    with pytest.raises(ValueError, match="frequency size 8 .* not divisible by sub_bands=3"):
        layer.build((None, 8, 10, 4))


@pytest.mark.parametrize("kwargs", [dict(sub_bands=0), dict(affine="both"), dict(momentum=1.0)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        SubSpectralNormalization(**kwargs)


def test_unknown_time_axis_in_training():
    x = make_input()
    inputs = keras.Input(shape=(8, None, 4))
    model = keras.Model(inputs, SubSpectralNormalization(sub_bands=2)(inputs))
    mean, variance = numpy_band_stats(x, 2)
    expected = numpy_ssn(x, 2, mean, variance, 1.0, 0.0, 1e-3)
    np.testing.assert_allclose(model(x, training=True).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_layer_contract_end_to_end():
    def reference(x, layer):
        mean, variance, gamma, beta = (w.numpy() for w in (layer.moving_mean, layer.moving_variance, layer.gamma, layer.beta))
        return numpy_ssn(x, 2, mean, variance, gamma, beta, 1e-4)

    run_layer_test(
        cls=SubSpectralNormalization,
        init_kwargs=dict(sub_bands=2, momentum=0.9, epsilon=1e-4, affine="per_band", name="ssn"),
        input_data=make_input(shape=(4, 8, 5, 3)),
        expected_output_shape=(4, 8, 5, 3),
        expected_num_trainable_weights=2,  # gamma, beta
        expected_num_non_trainable_weights=2,  # moving mean, moving variance
        reference=reference,
    )


def test_inference_converts_to_tflite_builtins():
    x = make_input(shape=(1, 8, 5, 4))
    inputs = keras.Input(shape=(8, 5, 4), batch_size=1)
    layer = SubSpectralNormalization(sub_bands=2, affine="per_band")
    model = keras.Model(inputs, layer(inputs))
    rng = np.random.default_rng(3)
    model.set_weights([rng.uniform(0.5, 2.0, size=w.shape).astype("float32") for w in model.get_weights()])
    gamma, beta, mean, variance = (w.numpy() for w in (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance))

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    blob = converter.convert()
    interpreter = tf.lite.Interpreter(model_content=blob)
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert ops <= {"MUL", "ADD"}, ops
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(out, numpy_ssn(x, 2, mean, variance, gamma, beta, 1e-3), rtol=1e-5, atol=1e-5)


def test_depthwise_export_form_equals_inference_and_quantizes_to_int8_builtins():
    import tensorflow_model_optimization as tfmot

    from tfasc.layers.normalization import sub_spectral_as_depthwise

    x = make_input(shape=(2, 8, 5, 4))
    layer = SubSpectralNormalization(sub_bands=4, affine="per_band")
    layer.build(x.shape)
    rng = np.random.default_rng(4)
    for variable in layer.weights:
        variable.assign(rng.uniform(0.5, 2.0, size=variable.shape))
    layer.gamma.assign(layer.gamma * rng.choice([-1.0, 1.0], size=layer.gamma.shape))  # negative scales too
    layer.beta.assign(layer.beta - 1.0)
    mean, variance, gamma, beta = (v.numpy() for v in (layer.moving_mean, layer.moving_variance, layer.gamma, layer.beta))

    inputs = keras.Input(shape=(8, 5, 4), batch_size=1)
    model = keras.Model(inputs, sub_spectral_as_depthwise(inputs, layer, name="ssn"))
    expected = numpy_ssn(x, 4, mean, variance, gamma, beta, 1e-3)
    np.testing.assert_allclose(model(x).numpy(), expected, rtol=1e-5, atol=1e-5)
    assert not model.trainable_weights

    quantized = tfmot.quantization.keras.quantize_model(model)
    quantized(x[:1], training=True)  # calibrate the fake-quant ranges once
    converter = tf.lite.TFLiteConverter.from_keras_model(quantized)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert ops == {"STRIDED_SLICE", "DEPTHWISE_CONV_2D", "CONCATENATION"}, ops
    assert all(t["dtype"] in (np.int8, np.int32) for t in interpreter.get_tensor_details())
