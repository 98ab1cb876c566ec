"""Tests for the waveform_cnn model: layout, hand-counted parameters, int8 conversion, TFLite Micro."""

import numpy as np
import pytest

import tfasc  # noqa: F401
import tf_keras as keras

from tfasc import models
from tfasc.deploy import bundle, convert, flatbuffer, tflm

RATE = 8000
INPUT = (RATE, 2)  # one second of stereo, [samples, channels]
SMALL = dict(sample_rate=RATE, stem_filters=8, stem_kernel_ms=10.0, stem_hop_ms=5.0, width=4, blocks=2)
#: What the model should become for TFLite Micro: Conv1D / MaxPooling1D run as their 2-D ops
#: between constant reshapes, the filters-first permutation is a TRANSPOSE, BatchNorm is folded.
EXPECTED_OPS = ["CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "MEAN", "RESHAPE", "TRANSPOSE"]


def small_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return models.build("waveform_cnn", INPUT, 3, **SMALL)


def waveforms(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=0.3, size=(n, *INPUT)).astype(np.float32)


def test_output_shape_and_the_filters_first_image():
    model = small_model()
    assert model(waveforms(2)).shape == (2, 3)
    # Stem: kernel 10 ms = 80 samples, stride 5 ms = 40 → ceil(8000 / 40) = 200 frames, pooled to 100;
    # the 8 filters take the frequency place of [batch, freq, time, channels].
    assert model.get_layer("stem_conv").kernel_size == (80,) and model.get_layer("stem_conv").strides == (40,)
    assert tuple(model.get_layer("to_image").output.shape) == (None, 8, 100, 1)
    assert tuple(model.get_layer("block2_pool").output.shape) == (None, 2, 25, 8)
    at_16k = models.build("waveform_cnn", (16000, 1), 3, sample_rate=16000, stem_filters=8, width=4, blocks=1)
    assert at_16k.get_layer("stem_conv").kernel_size == (160,) and at_16k.get_layer("stem_conv").strides == (80,)


def test_parameter_count_by_hand():
    stem = 80 * 2 * 8 + 4 * 8  # Conv1D kernel [80, 2 channels, 8 filters], no bias; BN γ β mean var
    block1 = 3 * 3 * 1 * 4 + 4 * 4  # 3×3 conv 1 -> 4 channels, BN
    block2 = 3 * 3 * 4 * 8 + 4 * 8  # 3×3 conv 4 -> 8 channels, BN
    logits = 8 * 3 + 3
    model = small_model()
    assert model.count_params() == stem + block1 + block2 + logits == 1711
    assert sum(int(np.prod(w.shape)) for w in model.non_trainable_weights) == 2 * (8 + 4 + 8)  # BN statistics


def test_argument_errors():
    with pytest.raises(ValueError, match="samples, channels"):
        models.build("waveform_cnn", (40, 100, 1), 3)
    with pytest.raises(ValueError, match="stem_hop_ms"):
        models.build("waveform_cnn", INPUT, 3, sample_rate=RATE, stem_hop_ms=0)


def check_deployable(tflite: bytes, examples: np.ndarray) -> list[str]:
    """Full-integer builtins TFLite Micro has, and bit-exact against TFLite's reference kernels."""
    ops = flatbuffer.check_builtin_only(tflite)
    flatbuffer.check_full_integer(tflite)
    bundle.resolver_methods(ops)  # raises for an op TFLite Micro has no kernel for
    input_q, _ = convert.io_quantization(tflite)
    assert input_q.shape == (1, *INPUT)
    result = tflm.verify_bit_exact(tflite, input_q.quantize(examples))
    assert result.bit_exact, result.to_dict()
    return ops


def test_post_training_int8_runs_bit_exact_in_tflite_micro():
    model = small_model()
    calibration = [example[np.newaxis] for example in waveforms(8, seed=1)]
    tflite = convert.to_tflite(model, kind="int8", representative_data=calibration)
    assert check_deployable(tflite, waveforms(3, seed=2)) == EXPECTED_OPS


def test_quantization_aware_int8_runs_bit_exact_in_tflite_micro():
    from tfasc.compress import qat

    quantized = qat.quantize_model(small_model(), preserve_sparsity=False)
    quantized(waveforms(6, seed=3), training=True)  # one training-mode pass moves the activation ranges
    calibration = [example[np.newaxis] for example in waveforms(4, seed=4)]  # as tfasc.deploy.export does
    tflite = convert.to_tflite(quantized, kind="int8", representative_data=calibration)
    # TF-MOT folds BatchNorm into Conv2D/DepthwiseConv2D only: the stem's BN after the Conv1D stays
    # an int8 per-filter multiply-add (MUL, ADD) on [1, frames, filters].
    assert check_deployable(tflite, waveforms(3, seed=5)) == sorted(EXPECTED_OPS + ["ADD", "MUL"])
