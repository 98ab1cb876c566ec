"""Tests for tfasc.deploy.profile against hand-computed parameter, size and MAC counts."""

import numpy as np
import pytest

import tfasc  # noqa: F401
import tf_keras as keras

from tfasc.compress.kernels import UndeclaredLayerError
from tfasc.deploy import convert, profile
from support.keras_models import UndeclaredKernel

INPUT_SHAPE = (16, 20, 1)  # [freq, time, channels]


def shared_model() -> keras.Model:
    """stem 3x3 conv (1->8) -> shared 3x3 conv (8->8, no bias) twice -> two 1x1 twins -> BN -> dense 3."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(INPUT_SHAPE)
    x = keras.layers.Conv2D(8, 3, padding="same", bias_initializer="ones", name="stem")(inputs)
    shared = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="shared")
    x = shared(keras.layers.ReLU()(shared(x)))
    x = keras.layers.Conv2D(8, 1, use_bias=False, name="twin_a")(x)
    x = keras.layers.Conv2D(8, 1, use_bias=False, name="twin_b")(x)
    x = keras.layers.DepthwiseConv2D(3, strides=2, use_bias=False, name="dw")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, bias_initializer="ones", name="logits")(x))
    model.get_layer("twin_b").set_weights(model.get_layer("twin_a").get_weights())
    return model


def test_parameters_and_dcase_sizes_by_hand():
    model = shared_model()
    # stem 72+8, shared 576 (once), twins 64+64, dw 72, dense 24+3.
    expected = 72 + 8 + 576 + 64 + 64 + 72 + 24 + 3
    counts = profile.count_parameters(model)
    assert counts.params == counts.trainable_params == expected == 883
    kernel = model.get_layer("shared").kernel
    kernel.assign(np.where(np.arange(576).reshape(kernel.shape) % 2 == 0, 0.0, kernel.numpy()))
    counts = profile.count_parameters(model)
    assert counts.nonzero_params == expected - 288
    assert counts.dcase_size_bytes(32) == 4 * (expected - 288)
    assert counts.dcase_size_bytes(16) == 2 * (expected - 288)
    assert counts.dcase_size_bytes(8) == expected - 288


def test_macs_per_call_by_hand():
    macs = profile.count_macs(shared_model())
    hw = 16 * 20
    expected = [
        ("stem", hw * 8 * 3 * 3 * 1),
        ("shared", hw * 8 * 3 * 3 * 8),
        ("shared", hw * 8 * 3 * 3 * 8),  # a shared layer costs once per call
        ("twin_a", hw * 8 * 8),
        ("twin_b", hw * 8 * 8),
        ("dw", 7 * 9 * 8 * 3 * 3),  # valid 3x3 stride 2 on 16x20 -> 7x9
        ("logits", 8 * 3),
    ]
    assert list(macs.per_call) == expected
    assert macs.macs == sum(m for _, m in expected) == 437200


def test_profile_report_and_flatbuffer_storage():
    model = shared_model()
    tflite = convert.to_tflite(model, kind="float32")
    report = profile.profile_model(model, clip_seconds=10.0, tflite_int8=tflite)
    assert report["macs_per_second_of_audio"] == pytest.approx(43720.0)
    assert report["dcase_size_kb"]["32bit"] == pytest.approx(883 * 4 / 1024)
    storage = report["tflite_int8"]
    # The shared kernel is one constant (used by two CONV_2D ops) and the identical twins are
    # de-duplicated by the converter: float32 bytes of stem 80 + shared 576 + one twin 64 + dw 72
    # + dense 27, plus the zero bias TFLite gives DEPTHWISE_CONV_2D (8) and MEAN's two int32 axes.
    assert storage["stored_bytes"] == 4 * (80 + 576 + 64 + 72 + 27 + 8) + 8
    assert storage["identical_copy_bytes"] == 0
    assert storage["referenced_bytes"] >= storage["stored_bytes"]


def test_custom_layer_owning_weights_without_a_contract_is_an_error():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, UndeclaredKernel(name="opaque")(inputs))
    with pytest.raises(UndeclaredLayerError, match="opaque"):
        profile.count_macs(model)
    with pytest.raises(ValueError, match="clip_seconds"):
        profile.profile_model(model, clip_seconds=0)


def test_kernel_buffers_and_distinct_kernels_count_a_shared_conv_once():
    from tfasc.deploy.convert import to_tflite
    from tfasc.deploy.flatbuffer import kernel_buffers
    from tfasc.deploy.profile import distinct_kernels

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 4))
    shared = keras.layers.Conv2D(4, 3, padding="same", name="shared")
    x = inputs
    for _ in range(3):  # one kernel, three uses, no per-use BatchNorm to fold
        x = keras.layers.ReLU()(shared(x))
    x = keras.layers.DepthwiseConv2D(1, name="dw")(x)
    outputs = keras.layers.Dense(2, name="logits")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    assert distinct_kernels(model) == 3  # shared conv, depthwise, dense
    stored = kernel_buffers(to_tflite(model, kind="float32"))
    # 3 CONV_2D ops + DEPTHWISE_CONV_2D + FULLY_CONNECTED, weights in 3 float32 buffers:
    # 3·3·4·4 + 1·1·4·1 + 4·2 values.
    assert stored == {"operators": 5, "buffers": 3, "bytes": 4 * (3 * 3 * 4 * 4 + 4 + 4 * 2)}
