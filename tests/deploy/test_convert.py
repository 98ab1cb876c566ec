"""Tests for tfasc.deploy.convert: flatbuffer kinds, int8 conversion, reference runs."""

import numpy as np
import pytest

import tfasc  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from tfasc.deploy import convert, flatbuffer

INPUT_SHAPE = (16, 20, 1)  # [freq, time, channels]


def float_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input(INPUT_SHAPE)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, name="logits")(x)
    return keras.Model(inputs, outputs)


def examples(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *INPUT_SHAPE)).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    return float_model()


def test_float32_matches_keras_and_op_list(model):
    tflite = convert.to_tflite(model, kind="float32")
    x = examples(3)
    np.testing.assert_allclose(convert.run_tflite(tflite, x), model(x).numpy(), rtol=1e-4, atol=1e-5)
    assert flatbuffer.ops_used(tflite) == ["CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "MEAN"]
    with pytest.raises(ValueError, match="full-integer"):
        flatbuffer.check_full_integer(tflite)


def test_float16_halves_weight_storage(model):
    f32 = convert.to_tflite(model, kind="float32")
    f16 = convert.to_tflite(model, kind="float16")
    assert "DEQUANTIZE" in flatbuffer.ops_used(f16)  # float16 weights are dequantized at load
    dtypes = {d["dtype"] for d in tf.lite.Interpreter(model_content=f16).get_tensor_details()}
    assert np.float16 in dtypes and np.float16 not in {
        d["dtype"] for d in tf.lite.Interpreter(model_content=f32).get_tensor_details()
    }
    np.testing.assert_allclose(convert.run_tflite(f16, examples(2)), model(examples(2)).numpy(), atol=1e-2)


def test_int8_post_training_is_full_integer_with_int8_io(model):
    with pytest.raises(ValueError, match="representative_data"):
        convert.to_tflite(model, kind="int8")
    calibration = examples(16, seed=1)
    tflite = convert.to_tflite(model, kind="int8", representative_data=[c[None] for c in calibration])
    input_q, output_q = convert.io_quantization(tflite)
    assert input_q.dtype == "int8" and output_q.dtype == "int8" and input_q.shape == (1, *INPUT_SHAPE)
    assert flatbuffer.check_builtin_only(tflite) == ["CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "MEAN"]
    x = examples(4, seed=2)
    # Same model, 8-bit: logits within a few output quantization steps of the float model.
    np.testing.assert_allclose(convert.run_tflite(tflite, x), model(x).numpy(), atol=4 * output_q.scale + 0.02)
    flatbuffer.check_full_integer(tflite)


def test_unknown_kind_is_refused(model):
    with pytest.raises(ValueError, match="kind"):
        convert.to_tflite(model, kind="int4")


def test_tensor_quantization_round_trip_matches_hand_values():
    q = convert.TensorQuantization(shape=(1, 2), dtype="int8", scale=0.5, zero_point=-3)
    # 1.0 / 0.5 = 2 -> 2 - 3 = -1; 0.25 / 0.5 = 0.5 rounds away from zero -> 1 - 3 = -2; 1000 clamps.
    np.testing.assert_array_equal(q.quantize(np.array([1.0, 0.25, 1000.0, -1000.0])), [-1, -2, 127, -128])
    np.testing.assert_allclose(q.dequantize(np.array([-1, -3], np.int8)), [1.0, 0.0])


def test_keras_reshape_converts_to_one_constant_reshape():
    # Keras' Reshape reads the batch size at run time; converted for one example it must not.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 2))
    x = keras.layers.Reshape((6, 4, 1))(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(3, 2)(x)))
    model = keras.Model(inputs, outputs)
    tflite = convert.to_tflite(model, kind="float32")
    assert flatbuffer.ops_used(tflite) == ["CONV_2D", "FULLY_CONNECTED", "MEAN", "RESHAPE"]
    x = np.random.default_rng(0).normal(size=(3, 12, 2)).astype(np.float32)
    np.testing.assert_allclose(convert.run_tflite(tflite, x), model(x).numpy(), rtol=1e-5, atol=1e-6)
