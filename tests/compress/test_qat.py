"""Tests for tfasc.compress.qat: whole-model TF-MOT QAT, custom configs, sparsity preservation."""

import numpy as np
import pytest

import tfasc  # noqa: F401
import tensorflow as tf
import tf_keras as keras
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_configs,
)

from tfasc.compress import prune, qat
from tfasc.deploy import convert, flatbuffer
from tfasc.models.saving import load_weights_into, save_weights

from support.keras_models import INPUT_SHAPE, tiny_model
ALLOWED_INT8_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MEAN", "ADD", "MUL", "RESHAPE", "LOGISTIC", "MAX_POOL_2D"}


def shared_conv_model(repeats: int = 2) -> keras.Model:
    keras.utils.set_random_seed(1)
    inputs = keras.Input(INPUT_SHAPE)
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    conv_a = keras.layers.Conv2D(8, 1, use_bias=False, name="shared_a")
    conv_b = keras.layers.Conv2D(8, 1, use_bias=False, name="shared_b")
    for i in range(repeats):
        y = keras.layers.ReLU(name=f"relu_a_{i}")(keras.layers.BatchNormalization(name=f"bn_a_{i}")(conv_a(x)))
        y = keras.layers.BatchNormalization(name=f"bn_b_{i}")(conv_b(y))
        x = keras.layers.ReLU(name=f"relu_out_{i}")(keras.layers.Add(name=f"add_{i}")([x, y]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))


def random_data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *INPUT_SHAPE)).astype(np.float32), rng.integers(0, 3, size=n)


def fit(model: keras.Model, steps: int, *, learning_rate: float = 1e-2, callbacks=()) -> None:
    x, y = random_data(4 * steps)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=list(callbacks))


def pruned_tiny_model() -> keras.Model:
    pruned = prune.apply_pruning(tiny_model(), target_sparsity=0.5, begin_step=0, end_step=2, frequency=1, mode="per_layer")
    fit(pruned, steps=3, callbacks=prune.pruning_callbacks())
    return prune.strip_pruning(pruned)


def zeros_per_layer(model: keras.Model) -> dict[str, int]:
    return {name: entry["zeros"] for name, entry in prune.sparsity_report(model)["layers"].items()}


def test_sparsity_survives_prune_preserving_qat_and_is_lost_without():
    stripped = pruned_tiny_model()
    before = zeros_per_layer(stripped)
    assert before == {"conv": 36, "dw": 36, "logits": 12}  # half of 72, 72, 24

    preserved = qat.quantize_model(stripped, preserve_sparsity=True)
    fit(preserved, steps=4, learning_rate=0.1)
    assert zeros_per_layer(preserved) == before  # DepthwiseConv2D included (tfasc extension)

    plain = qat.quantize_model(stripped, preserve_sparsity=False)
    fit(plain, steps=4, learning_rate=0.1)
    after = zeros_per_layer(plain)
    assert sum(after.values()) < sum(before.values())


def test_qat_model_converts_to_builtin_int8_and_tracks_keras():
    model = qat.quantize_model(tiny_model(), preserve_sparsity=False)
    fit(model, steps=4)
    tflite = convert.to_tflite(model, kind="int8")
    assert set(flatbuffer.check_builtin_only(tflite)) <= ALLOWED_INT8_OPS
    x, _ = random_data(4, seed=5)
    output_q = convert.io_quantization(tflite)[1]
    # The fake-quant model and the int8 model agree to within a few output steps.
    np.testing.assert_allclose(convert.run_tflite(tflite, x), model(x).numpy(), atol=3 * output_q.scale)


def test_shared_layers_batchnorms_are_annotated_by_consumer():
    model = shared_conv_model(repeats=2)
    plan = qat.plan_annotations(model, {})
    assert plan["stem_bn"] is None  # folded by TF-MOT into the stem conv
    for i in range(2):
        assert isinstance(plan[f"bn_a_{i}"], default_8bit_quantize_configs.NoOpQuantizeConfig)  # -> ReLU
        assert isinstance(plan[f"bn_b_{i}"], default_8bit_quantize_configs.Default8BitOutputQuantizeConfig)  # -> Add

    qat_model = qat.quantize_model(model, preserve_sparsity=True)
    fit(qat_model, steps=3)
    # Every layer is wrapped (none left float) and the shared convs are still shared.
    wrapped = {l.name for l in qat_model.layers if hasattr(l, "quantize_config")}
    assert {"quant_shared_a", "quant_shared_b", "quant_bn_a_0", "quant_bn_b_1", "quant_add_0"} <= wrapped
    assert len(qat_model.get_layer("quant_shared_a")._inbound_nodes) == 2
    x, _ = random_data(8, seed=2)
    tflite = convert.to_tflite(qat_model, kind="int8", representative_data=[x[i: i + 1] for i in range(8)])
    assert set(flatbuffer.check_builtin_only(tflite)) <= ALLOWED_INT8_OPS


class Swishish(keras.layers.Layer):
    """A weight-free custom layer TF-MOT does not know."""

    def call(self, inputs):
        return inputs * tf.sigmoid(inputs)


def model_with_custom_layer() -> keras.Model:
    keras.utils.set_random_seed(2)
    inputs = keras.Input(INPUT_SHAPE)
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = Swishish(name="swishish")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def test_uncovered_layers_are_named_and_registry_covers_them():
    with pytest.raises(qat.QuantizationCoverageError, match="swishish"):
        qat.quantize_model(model_with_custom_layer(), preserve_sparsity=False)

    inputs = keras.Input(INPUT_SHAPE)
    lambda_model = keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs) * 2.0)
    with pytest.raises(qat.QuantizationCoverageError, match="TFOpLambda"):
        qat.quantize_model(lambda_model, preserve_sparsity=False)

    model = qat.quantize_model(
        model_with_custom_layer(), preserve_sparsity=False, extra_configs={Swishish: qat.OutputOnlyQuantizeConfig()}
    )
    fit(model, steps=2)
    assert isinstance(model.get_layer("quant_swishish").quantize_config, qat.OutputOnlyQuantizeConfig)
    ops = flatbuffer.check_builtin_only(convert.to_tflite(model, kind="int8"))
    assert set(ops) <= ALLOWED_INT8_OPS and "LOGISTIC" in ops


def test_sub_spectral_normalization_left_in_place_gets_its_declared_config(tmp_path):
    normalization = pytest.importorskip("tfasc.layers.normalization")
    keras.utils.set_random_seed(3)
    inputs = keras.Input(INPUT_SHAPE)
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = normalization.SubSpectralNormalization(sub_bands=2, name="ssn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    float_model = keras.Model(inputs, keras.layers.Dense(3)(x))
    model = qat.quantize_model(float_model, preserve_sparsity=False)
    assert isinstance(model.get_layer("quant_ssn").quantize_config, qat.OutputOnlyQuantizeConfig)
    fit(model, steps=2)
    with pytest.raises(ValueError, match="representative_data"):
        convert.to_tflite(model, kind="int8")  # SSN's folded statistics are float constants
    x, _ = random_data(4, seed=4)
    tflite = convert.to_tflite(model, kind="int8", representative_data=[x[i: i + 1] for i in range(4)])
    ops = flatbuffer.check_builtin_only(tflite)
    assert set(ops) <= ALLOWED_INT8_OPS

    # A QAT model is stored as weights and rebuilt by code: nothing in the file is deserialized.
    save_weights(model, tmp_path / "qat_weights.h5")
    loaded = load_weights_into(qat.quantize_model(float_model, preserve_sparsity=False), tmp_path / "qat_weights.h5")
    assert isinstance(loaded.get_layer("quant_ssn").layer, normalization.SubSpectralNormalization)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


def test_wrapped_models_are_refused():
    pruned = prune.apply_pruning(tiny_model(), target_sparsity=0.5, begin_step=0, end_step=2, frequency=1)
    with pytest.raises(ValueError, match="strip_pruning"):
        qat.quantize_model(pruned, preserve_sparsity=True)


def test_qat_model_weights_round_trip_into_a_rebuilt_model(tmp_path):
    float_model = model_with_custom_layer()
    configs = {Swishish: qat.OutputOnlyQuantizeConfig()}
    model = qat.quantize_model(float_model, preserve_sparsity=True, extra_configs=configs)
    fit(model, steps=2)
    path = tmp_path / "qat_weights.h5"  # weights only: .keras fails for TF-MOT QuantizeLayer, HDF5 models run code
    save_weights(model, path)
    loaded = load_weights_into(qat.quantize_model(float_model, preserve_sparsity=True, extra_configs=configs), path)
    x, _ = random_data(2, seed=9)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)

