"""Tests for tfasc.deploy.bundle: C array, resolver, config header, atomic replacement."""

import re

import numpy as np
import pytest

import tfasc  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from tfasc.deploy import bundle, convert

INPUT_SHAPE = (16, 20, 1)  # [freq, time, channels]


@pytest.fixture(scope="module")
def int8_model() -> bytes:
    keras.utils.set_random_seed(0)
    inputs = keras.Input(INPUT_SHAPE)
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Softmax()(keras.layers.Dense(3)(x)))
    data = np.random.default_rng(0).normal(size=(8, 1, *INPUT_SHAPE)).astype(np.float32)
    return convert.to_tflite(model, kind="int8", representative_data=list(data))


def write(out_dir, tflite, **overrides):
    details = tf.lite.Interpreter(model_content=tflite).get_input_details()[0]
    kwargs = dict(
        arena_bytes=3001,
        input_details=details,
        feature_params={"sample_rate": 16000, "n_mels": 16, "hop_seconds": 0.032, "window": "hann", "log": True},
        ops=convert.ops_used(tflite),
        class_names=["indoor", "outdoor", "transportation"],
    )
    kwargs.update(overrides)
    return bundle.write_bundle(out_dir, tflite, **kwargs)


def test_bundle_files_round_trip(tmp_path, int8_model):
    out = write(tmp_path / "deploy", int8_model)
    assert sorted(p.name for p in out.iterdir()) == sorted(bundle.BUNDLE_FILES)
    assert (out / "model_int8.tflite").read_bytes() == int8_model

    source = (out / "model_data.cc").read_text()
    assert "alignas(16) const unsigned char g_model_data[] = {" in source
    body = source.split("g_model_data[] = {", 1)[1].split("};", 1)[0]
    parsed = bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body))
    assert parsed == int8_model
    assert f"const unsigned int g_model_data_len = {len(int8_model)};" in source
    assert "extern const unsigned char g_model_data[];" in (out / "model_data.h").read_text()

    ops_h = (out / "ops.h").read_text()
    ops = convert.ops_used(int8_model)
    assert ops == ["CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "MEAN", "SOFTMAX"]
    calls = re.findall(r"resolver\.(Add\w+)\(\)", ops_h)
    assert calls == ["AddConv2D", "AddFullyConnected", "AddMaxPool2D", "AddMean", "AddSoftmax"]
    assert f"constexpr int kTfascOpCount = {len(ops)};" in ops_h
    assert "tflite::MicroMutableOpResolver<kTfascOpCount>" in ops_h

    config = (out / "model_config.h").read_text()
    input_q, output_q = convert.io_quantization(int8_model)
    assert "constexpr int kTensorArenaSize = 3008;" in config  # 3001 rounded up to 16
    assert "constexpr int kInputShape[kInputDims] = {1, 16, 20, 1};" in config
    assert float(re.search(r"kInputScale = ([^f]+)f;", config).group(1)) == pytest.approx(input_q.scale, rel=1e-7)
    assert int(re.search(r"kInputZeroPoint = (-?\d+);", config).group(1)) == input_q.zero_point
    assert float(re.search(r"kOutputScale = ([^f]+)f;", config).group(1)) == pytest.approx(output_q.scale, rel=1e-7)
    assert '{"indoor", "outdoor", "transportation"}' in config
    assert "constexpr int kFeatureSampleRate = 16000;" in config
    assert "constexpr float kFeatureHopSeconds = 0.032f;" in config
    assert 'constexpr const char* kFeatureWindow = "hann";' in config
    assert "constexpr bool kFeatureLog = true;" in config
    assert "MicroInterpreter" in (out / "README.md").read_text()


def test_bundle_replaces_old_atomically_and_keeps_it_on_error(tmp_path, int8_model):
    out = tmp_path / "deploy"
    write(out, int8_model)
    (out / "stale.txt").write_text("from an old bundle")
    write(out, int8_model, class_names=["a", "b", "c"])
    assert not (out / "stale.txt").exists()
    assert '{"a", "b", "c"}' in (out / "model_config.h").read_text()

    with pytest.raises(ValueError, match="CUSTOM:Foo"):
        write(out, int8_model, ops=["CONV_2D", "CUSTOM:Foo"])
    with pytest.raises(ValueError, match="feature_params"):
        write(out, int8_model, feature_params={"bands": [1, 2]})
    # The failed writes left the previous bundle intact and no temp dirs behind.
    assert '{"a", "b", "c"}' in (out / "model_config.h").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy"]


def test_resolver_methods_cover_what_the_converter_emits_here():
    assert bundle.resolver_methods(["MUL", "ADD", "RESHAPE", "LOGISTIC", "DEPTHWISE_CONV_2D"]) == [
        "AddAdd", "AddDepthwiseConv2D", "AddLogistic", "AddMul", "AddReshape",
    ]
