"""Tests for the ds_cnn model (MLPerf Tiny KWS DS-CNN): layout, hand-counted parameters and MACs,
recipe options, pruning + QAT + int8 bit-exact in TFLite Micro."""

import numpy as np
import pytest

import tfasc  # noqa: F401
import tf_keras as keras

from tfasc import models
from tfasc.deploy import convert, flatbuffer, tflm

INPUT = (40, 101, 1)  # FSDD's 1 s of 40 log-mel bins at a 10 ms hop
#: Conv2D + folded BatchNorm + ReLU run as CONV_2D / DEPTHWISE_CONV_2D with fused activations.
EXPECTED_OPS = ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MEAN"]


def features(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *INPUT)).astype(np.float32)


def small_model(seed: int = 0, **options) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return models.build("ds_cnn", INPUT, 10, **{"width": 16, "blocks": 2, **options})


def test_layout_and_parameters_by_hand():
    model = models.build("ds_cnn", INPUT, 10)  # the MLPerf Tiny size: 64 filters, 4 blocks
    # "same" stride-2 stem: ceil(40 / 2) x ceil(101 / 2)
    assert tuple(model.get_layer("block4_pointwise_relu").output.shape) == (None, 20, 51, 64)
    stem = 10 * 4 * 1 * 64
    block = 3 * 3 * 64 + 64 * 64
    batch_norms = 9 * 4 * 64  # stem + 2 per block; gamma, beta, moving mean, moving variance
    assert model.count_params() == stem + 4 * block + batch_norms + 64 * 10 + 10 == 24_202


def test_macs_by_hand():
    from tfasc.deploy.profile import count_macs

    model = models.build("ds_cnn", INPUT, 10)
    positions = 20 * 51
    expected = positions * (10 * 4 * 64 + 4 * (9 * 64 + 64 * 64)) + 64 * 10
    assert count_macs(model).macs == expected


def test_mlperf_orientation_and_argument_errors():
    model = small_model(stem_kernel=(4, 10), stem_strides=(2, 2))
    assert model.get_layer("stem_conv").kernel_size == (4, 10)
    with pytest.raises(ValueError, match="freq, time, channels"):
        models.build("ds_cnn", (16000, 1), 10)
    with pytest.raises(ValueError, match="stem_kernel"):
        models.build("ds_cnn", INPUT, 10, stem_kernel=(3,))


def test_recipe_options_are_checked(tmp_path):
    from tfasc.config.load import RecipeError, check_options

    check_options("model", {"width": 32, "stem_kernel": [4, 10], "bn_momentum": 0.9}, models.builder("ds_cnn"))
    with pytest.raises(RecipeError, match="model.stem_kernel"):
        check_options("model", {"stem_kernel": "10x4"}, models.builder("ds_cnn"))


def test_pruned_quantization_aware_int8_is_bit_exact_in_tflite_micro():
    from tfasc.compress import prune, qat

    pruned = prune.apply_pruning(small_model(), target_sparsity=0.6, begin_step=0, end_step=2, frequency=1)
    pruned.compile("adam", loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    targets = np.eye(10, dtype=np.float32)[np.arange(16) % 10]
    pruned.fit(features(16), targets, epochs=1, batch_size=8, callbacks=prune.pruning_callbacks(), verbose=0)
    stripped = prune.strip_pruning(pruned)
    kernels = [w.numpy() for w in stripped.weights if "kernel" in w.name]
    zeros = sum(int((k == 0).sum()) for k in kernels) / sum(k.size for k in kernels)
    assert zeros == pytest.approx(0.6, abs=0.02)

    quantized = qat.quantize_model(stripped, preserve_sparsity=True)
    calibration = [example[np.newaxis] for example in features(8, seed=1)]
    tflite = convert.to_tflite(quantized, kind="int8", representative_data=calibration)
    ops = flatbuffer.check_builtin_only(tflite)
    flatbuffer.check_full_integer(tflite)
    assert ops == EXPECTED_OPS
    input_q, _ = convert.io_quantization(tflite)
    result = tflm.verify_bit_exact(tflite, input_q.quantize(features(3, seed=2)))
    assert result.bit_exact, result.to_dict()
