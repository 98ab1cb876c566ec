"""Tests for tfasc.deploy.tflm: the real TFLite Micro interpreter against TFLite reference kernels."""

import numpy as np
import pytest

import tfasc  # noqa: F401
import tf_keras as keras

from tfasc.compress import qat
from tfasc.deploy import convert, tflm

INPUT_SHAPE = (16, 20, 1)  # [freq, time, channels]


def qat_int8(shared: bool) -> bytes:
    """A QAT'd tiny model (optionally with a shared conv + per-repeat BN) as int8 bytes."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(INPUT_SHAPE)
    x = keras.layers.Conv2D(8, 3, strides=2, name="conv")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    if shared:
        conv = keras.layers.Conv2D(8, 1, use_bias=False, name="shared")
        for i in range(2):
            y = keras.layers.BatchNormalization(name=f"bn_{i}")(conv(x))
            x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = qat.quantize_model(keras.Model(inputs, keras.layers.Dense(3)(x)), preserve_sparsity=False)
    rng = np.random.default_rng(0)
    data = rng.normal(size=(16, *INPUT_SHAPE)).astype(np.float32)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data, rng.integers(0, 3, 16), batch_size=4, verbose=0)
    return convert.to_tflite(model, kind="int8", representative_data=[d[None] for d in data[:8]])


@pytest.fixture(scope="module")
def tflite():
    return qat_int8(shared=False)


def int8_inputs(tflite_bytes: bytes, n: int, seed: int = 0) -> np.ndarray:
    input_q, _ = convert.io_quantization(tflite_bytes)
    return input_q.quantize(np.random.default_rng(seed).normal(size=(n, *INPUT_SHAPE)))


@pytest.mark.parametrize("shared", [False, True])
def test_tflm_is_bit_exact_with_reference_kernels(shared, tflite):
    model = tflite if not shared else qat_int8(shared=True)
    result = tflm.verify_bit_exact(model, int8_inputs(model, 6))
    assert result.examples == 6
    assert result.bit_exact, result.to_dict()
    assert result.tflm_outputs.dtype == np.int8 and result.tflm_outputs.shape == (6, 3)
    # Not trivially equal: the outputs vary across inputs.
    assert len({tuple(row) for row in result.tflm_outputs}) > 1


def test_arena_used_and_smallest_arena_agree(tflite):
    used = tflm.arena_bytes_used(tflite)
    smallest = tflm.smallest_arena(tflite)
    assert used > 0
    assert smallest <= used + 64  # bisection resolution and alignment slack
    assert smallest > used // 2
    with pytest.raises(RuntimeError):
        tflm.run_tflm(tflite, int8_inputs(tflite, 1), arena_size=smallest - 256)
    # The smallest arena runs and gives the same outputs as a generous one.
    x = int8_inputs(tflite, 2, seed=3)
    np.testing.assert_array_equal(tflm.run_tflm(tflite, x, arena_size=smallest), tflm.run_tflm(tflite, x))


def test_wrong_input_dtype_is_rejected(tflite):
    with pytest.raises(ValueError, match="dtype"):
        tflm.run_tflm(tflite, np.zeros((1, *INPUT_SHAPE), np.float32))
