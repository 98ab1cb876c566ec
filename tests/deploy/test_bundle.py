"""Tests for tfasc.deploy.bundle: C array, resolver, config header per front end, atomic replacement."""

import re
import shutil
import subprocess

import numpy as np
import pytest

import tfasc  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from tfasc.deploy import bundle, convert, flatbuffer

INPUT_SHAPE = (16, 20, 1)  # [freq, time, channels]
LOG_MEL = {"kind": "log_mel", "sample_rate": 16000, "n_mels": 16, "hop_seconds": 0.032, "window": "hann", "log": True}


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
        frontend=LOG_MEL,
        ops=flatbuffer.ops_used(tflite),
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
    ops = flatbuffer.ops_used(int8_model)
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
    with pytest.raises(ValueError, match="frontend"):
        write(out, int8_model, frontend={**LOG_MEL, "bands": [1, 2]})
    with pytest.raises(ValueError, match="kind"):
        write(out, int8_model, frontend={**LOG_MEL, "kind": "mfcc"})
    # The failed writes left the previous bundle intact and no temp dirs behind.
    assert '{"a", "b", "c"}' in (out / "model_config.h").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy"]


def test_resolver_methods_cover_what_the_converter_emits_here():
    assert bundle.resolver_methods(["MUL", "ADD", "RESHAPE", "LOGISTIC", "DEPTHWISE_CONV_2D"]) == [
        "AddAdd", "AddDepthwiseConv2D", "AddLogistic", "AddMul", "AddReshape",
    ]


# --- front ends --------------------------------------------------------------------------------

WAVE_RATE, WAVE_SECONDS, WAVE_CHANNELS = 8000, 0.1, 2
WAVE_SAMPLES = 800  # 8000 Hz x 0.1 s
WAVEFORM = {
    "kind": "waveform", "sample_rate": WAVE_RATE, "clip_seconds": WAVE_SECONDS, "audio_channels": WAVE_CHANNELS,
    "standardize_mean": 0.0125, "standardize_std": 0.2,
}


@pytest.fixture(scope="module")
def waveform_int8() -> bytes:
    """A tiny int8 model on ``[1, samples, channels]`` waveforms."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((WAVE_SAMPLES, WAVE_CHANNELS))
    x = keras.layers.Conv1D(4, 9, strides=4, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    data = np.random.default_rng(0).normal(size=(8, 1, WAVE_SAMPLES, WAVE_CHANNELS)).astype(np.float32)
    return convert.to_tflite(model, kind="int8", representative_data=list(data))


def texts(out) -> tuple[str, str]:
    """``model_config.h`` and ``README.md`` of the bundle in ``out``."""
    return (out / "model_config.h").read_text(), (out / "README.md").read_text()


def compile_and_run(tmp_path, header_dir, main_source: str) -> str:
    """Compile ``main_source`` including ``model_config.h`` with the system C++ compiler, run it."""
    compiler = shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no C++ compiler (g++ / clang++) on PATH")
    source, binary = tmp_path / "main.cc", tmp_path / "main"
    source.write_text(main_source)
    subprocess.run([compiler, "-std=c++17", "-Wall", "-Werror", "-I", str(header_dir), str(source), "-o", str(binary)],
                   check=True, capture_output=True, text=True)
    return subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout


def test_log_mel_config_compiles_and_states_the_features(tmp_path, int8_model):
    out = write(tmp_path / "deploy", int8_model)
    printed = compile_and_run(tmp_path, out, """
#include <cstdio>
#include "model_config.h"
int main() {
  std::printf("%d %d %d %d %d %.9g %s %d\\n", kTensorArenaSize, kInputDims, kInputShape[1], kFeatureSampleRate,
              kFeatureNMels, kFeatureHopSeconds, kFeatureWindow, kFeatureLog ? 1 : 0);
  return 0;
}
""")
    assert printed.split() == ["3008", "4", "16", "16000", "16", "0.0320000015", "hann", "1"]  # 0.032 as float32
    config, readme = texts(out)
    assert "[batch, freq, time, channels]" in config and "kPcmToInput" not in config
    assert "TfascModelRun(input, output)" in readme and "log-mel" in readme and "kPcmToInput" not in readme


def test_waveform_config_compiles_and_converts_pcm_like_training(tmp_path, waveform_int8):
    details = tf.lite.Interpreter(model_content=waveform_int8).get_input_details()[0]
    scale, zero_point = details["quantization"]
    out = write(tmp_path / "deploy", waveform_int8, input_details=details, frontend=WAVEFORM)
    printed = compile_and_run(tmp_path, out, """
#include <cmath>
#include <cstdio>
#include "model_config.h"
int main() {
  std::printf("%d %d %d %d %d %.9g %.9g %.9g %.9g %d\\n", kInputDims, kInputShape[1], kInputShape[2],
              kFeatureSampleRate, kFeatureClipSamples, kFeatureClipSeconds, kFeatureStandardizeMean,
              kFeatureStandardizeStd, kInputScale, kInputZeroPoint);
  for (int pcm = -32768; pcm < 32768; pcm += 7) {  // the README's conversion, verbatim
    int q = static_cast<int>(roundf(pcm * kPcmToInputScale + kPcmToInputOffset));
    std::printf("%d\\n", q < -128 ? -128 : (q > 127 ? 127 : q));
  }
  return 0;
}
""").split()
    header = printed[:10]
    assert [int(v) for v in header[:5]] == [3, WAVE_SAMPLES, WAVE_CHANNELS, WAVE_RATE, WAVE_SAMPLES]
    np.testing.assert_allclose([float(v) for v in header[5:9]], [WAVE_SECONDS, 0.0125, 0.2, scale], rtol=1e-6)
    assert int(header[9]) == zero_point
    # Training's path in float64: PCM / 32768, standardize, quantize (round half away from zero).
    pcm = np.arange(-32768, 32768, 7)
    x = (pcm / 32768 - 0.0125) / 0.2 / scale
    expected = np.clip(np.sign(x) * np.floor(np.abs(x) + 0.5) + zero_point, -128, 127)
    device = np.array(printed[10:], dtype=np.int64)
    # float32 on the device: a value within float32 rounding of a .5 tie may land one step over.
    assert np.abs(device - expected).max() <= 1
    assert np.count_nonzero(device != expected) <= len(pcm) // 1000
    assert 0 < np.count_nonzero(np.abs(expected) < 127)  # the range tested is not all clipped

    config, readme = texts(out)
    assert "[batch, samples, channels]" in config and "kFeatureHopSeconds" not in config
    assert "TfascClassifyPcm(pcm, probabilities)" in readme and "kPcmToInputScale" in readme and "log-mel" not in readme


def test_waveform_frontend_is_checked_against_the_model(tmp_path, waveform_int8):
    details = tf.lite.Interpreter(model_content=waveform_int8).get_input_details()[0]
    out = tmp_path / "deploy"
    with pytest.raises(ValueError, match="n_mels"):  # log-mel parameters make no sense here
        write(out, waveform_int8, input_details=details, frontend={**WAVEFORM, "n_mels": 64})
    with pytest.raises(ValueError, match=r"\[1, 1600, 2\]"):  # 0.2 s at 8 kHz is not the model's 800 samples
        write(out, waveform_int8, input_details=details, frontend={**WAVEFORM, "clip_seconds": 0.2})
    with pytest.raises(ValueError, match="sample_rate"):
        write(out, waveform_int8, input_details=details, frontend={"kind": "waveform", "clip_seconds": 0.1})
    assert not out.exists()
    # Without standardization the header says so and folds only pcm / 32768 into the conversion.
    write(out, waveform_int8, input_details=details,
          frontend={k: v for k, v in WAVEFORM.items() if not k.startswith("standardize")})
    config = (out / "model_config.h").read_text()
    assert "No standardization" in config and "kFeatureStandardizeMean" not in config
    scale, zero_point = details["quantization"]
    pcm_scale = float(re.search(r"kPcmToInputScale = ([^f]+)f;", config).group(1))
    assert pcm_scale == pytest.approx(1 / (32768 * scale), rel=1e-12)
    assert float(re.search(r"kPcmToInputOffset = ([^f]+)f;", config).group(1)) == zero_point
