"""Raw-waveform ResNet (Chen et al. 2019): Table 3's 1-D output sizes, the ResNet-18 / ResNet-50
structure (Sec. 4.2), any input length, the mean of the levels' predictions (Fig. 1), argument
errors, and a tiny configuration in int8 on TFLite Micro."""

from __future__ import annotations

import re

import numpy as np
import pytest

import tfasc  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from tfasc import models
from tfasc.compress.export_form import to_export_form
from tfasc.deploy import bundle, convert, flatbuffer, tflm

#: A cheap bottom stage: one block per stage, a few channels.
TINY_BOTTOM = dict(stem_filters=4, widths=(2, 4, 4, 4), blocks=(1, 1, 1, 1), expansion=2, attention_units=8)
#: A cheap top stage ending at ``wave_channels`` (so no final 1x1).
TINY_TOP = dict(wave_channels=8, wave_widths=(4, 4, 8, 8), wave_blocks=(1, 1, 1, 1), wave_stem_kernel=5)
TINY = dict(**TINY_TOP, wave_stride=16, **TINY_BOTTOM)


def tiny(num_classes=5, seed=0, **overrides):
    keras.utils.set_random_seed(seed)
    return models.build("wave_resnet", (None, 1), num_classes, **{**TINY, **overrides})


def waveforms(n, samples, seed=0):
    return np.random.default_rng(seed).normal(scale=0.3, size=(n, samples, 1)).astype(np.float32)


@pytest.mark.parametrize("wave_stride, frames", [(64, 2500), (128, 1250)])
def test_ten_seconds_at_16k_give_table_3s_128_by_t_image(wave_stride, frames):
    model = models.build("wave_resnet", (None, 1), 3, wave_stride=wave_stride, wave_channels=128,
                         wave_widths=(4, 4, 8, 128), wave_blocks=(1, 1, 1, 1), **TINY_BOTTOM)
    assert "wave_out_conv" not in [layer.name for layer in model.layers]  # wave_widths[-1] == wave_channels
    top = keras.Model(model.input, model.get_layer("to_image").output)
    assert top(np.zeros((1, 160_000, 1), np.float32)).shape == (1, 128, frames, 1)  # Fig. 1: C x T, 1 channel


def _names(model, pattern):
    return [layer.name for layer in model.layers if re.fullmatch(pattern, layer.name)]


def test_default_is_a_1d_resnet18_then_a_2d_resnet50_body():
    model = models.build("wave_resnet", (16000, 1), 10)
    assert len(_names(model, r"wave_stage\d_block\d+_add")) == 8  # ResNet-18: 4 stages x 2 basic blocks
    assert len(_names(model, r"stage\d_block\d+_add")) == 3 + 4 + 6 + 3  # ResNet-50: 16 bottlenecks
    bottom = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)
              and re.match(r"(stem|stage\d)", layer.name)]
    assert len(bottom) == 1 + 16 * 3 + 4  # stem, 3 per bottleneck, 4 projection shortcuts
    # Against Keras' own ResNet-50 on a one-channel image: the same convolution kernels (it has
    # biases, ours a BN after each conv, so only kernels are compared).
    reference = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 1))
    ref_kernels = sorted(tuple(layer.kernel.shape) for layer in reference.layers
                         if isinstance(layer, keras.layers.Conv2D))
    assert sorted(tuple(layer.kernel.shape) for layer in bottom) == ref_kernels
    # ResNet-18's 1-D body by hand: stem 11 x 1 -> 64; 3-tap convs; 1x1 shortcuts where it strides.
    wave = sum(int(np.prod(layer.kernel.shape)) for layer in model.layers if isinstance(layer, keras.layers.Conv1D))
    c3 = lambda i, o: 3 * i * o  # noqa: E731
    assert wave == (11 * 64
                    + 4 * c3(64, 64)
                    + c3(64, 64) + c3(64, 64) + 64 * 64 + 2 * c3(64, 64)
                    + c3(64, 128) + c3(128, 128) + 64 * 128 + 2 * c3(128, 128)
                    + c3(128, 128) + c3(128, 128) + 128 * 128 + 2 * c3(128, 128))
    assert model.get_layer("wave_stem_conv").strides == (4,)  # 64 / 16
    assert [int(model.get_layer(f"level{n}_logits").output.shape[-1]) for n in (2, 3, 4)] == [10] * 3
    assert model.get_layer("level2_fc1").filters == 600  # Sec. 4.2
    assert isinstance(model.layers[-1], keras.layers.Layer) and model.layers[-1].name == "multi_level_output"
    assert model.output.shape[-1] == 10
    keras.backend.clear_session()


def test_any_input_length_and_mono_inputs():
    model = tiny()
    for samples in (8000, 12000):
        assert model(waveforms(2, samples), training=False).shape == (2, 5)
    keras.utils.set_random_seed(0)
    mono = models.build("wave_resnet", (4000,), 3, **TINY)
    assert mono(np.zeros((1, 6000), np.float32), training=False).shape == (1, 3)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("sigmoid_outputs", [True, False])
def test_output_is_the_mean_of_the_levels_predictions(sigmoid_outputs):
    model = tiny(num_classes=4, sigmoid_outputs=sigmoid_outputs)
    probe = keras.Model(model.input, [model.get_layer(f"level{n}_logits").output for n in (2, 3, 4)] + [model.output])
    *levels, output = [np.asarray(t, np.float64) for t in probe(waveforms(3, 4000, seed=1), training=False)]
    levels = np.stack(levels)  # [L, batch, K]
    assert np.ptp(levels, axis=0).max() > 1e-3  # the levels differ, so the combination is tested
    if sigmoid_outputs:
        mean = _sigmoid(levels).mean(axis=0)
        np.testing.assert_allclose(output, np.log(mean / (1 - mean)), atol=1e-4)
    else:
        np.testing.assert_allclose(_softmax(output), _softmax(levels).mean(axis=0), atol=1e-5)
    assert model.layers[-1].sigmoid is sigmoid_outputs


def test_one_level_only_builds_the_stages_up_to_it():
    model = tiny(num_classes=3, levels=(2,))
    names = [layer.name for layer in model.layers]
    assert "level2_logits" in names and not any(name.startswith(("stage3", "level3")) for name in names)
    assert model(waveforms(1, 4000), training=False).shape == (1, 3)


def test_trains_and_round_trips_through_a_keras_archive(tmp_path):
    from tfasc.models import saving

    # Training exercises the strided shortcuts (a strided 1x1 conv there aborts oneDNN on this stack).
    model = tiny(num_classes=3, dropout=0.1, sigmoid_outputs=False)
    x, y = waveforms(2, 3000, seed=4), np.eye(3, dtype=np.float32)[[0, 1]]
    with tf.GradientTape() as tape:  # eagerly: tracing fit's train function takes 20 s here
        loss = keras.losses.CategoricalCrossentropy(from_logits=True)(y, model(x, training=True))
    gradients = tape.gradient(loss, model.trainable_weights)
    assert all(g is not None and np.isfinite(g).all() for g in gradients)
    keras.optimizers.SGD(0.01).apply_gradients(zip(gradients, model.trainable_weights))
    loaded = saving.load_model(saving.save_model(model, tmp_path / "wave_resnet.keras"))
    np.testing.assert_array_equal(loaded(x, training=False), model(x, training=False))
    assert loaded.layers[-1].sigmoid is False


@pytest.mark.parametrize("option, value", [
    ("wave_stride", 40), ("wave_stride", 8), ("wave_stride", 0),
    ("levels", ()), ("levels", (0, 2)), ("levels", (2, 5)), ("levels", (2, 2)),
    ("widths", (64, 128, 256)), ("widths", (64, 0, 256, 512)), ("blocks", (3, -1, 6, 3)),
    ("wave_widths", (64, 64, 128)), ("wave_blocks", (2, 2, 0, 2)), ("wave_channels", 0),
    ("expansion", 0), ("attention_units", 0), ("dropout", 1.0),
])
def test_bad_options_name_the_option(option, value):
    with pytest.raises(ValueError, match=option):
        models.build("wave_resnet", (None, 1), 10, **{option: value})


def test_bad_input_shape():
    with pytest.raises(ValueError, match="input_shape"):
        models.build("wave_resnet", (128, 100, 1), 10)


#: The int8 model's builtins (sigmoid outputs), as the module docstring lists them.
EXPECTED_OPS = ["ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "FULLY_CONNECTED", "LOGISTIC", "LOG_SOFTMAX",
                "MAX_POOL_2D", "MEAN", "MUL", "PACK", "RESHAPE", "SOFTMAX", "SPLIT", "STRIDED_SLICE", "SUB",
                "TRANSPOSE"]


def test_tiny_model_in_int8_runs_bit_exact_in_tflite_micro():
    samples = 4000  # 0.5 s at 8 kHz
    # bn_momentum 0: one training-mode pass sets the moving statistics to the batch's, so the int8
    # outputs depend on the input (with fresh statistics the tiny model's output is nearly constant).
    model = tiny(bn_momentum=0.0)
    model(waveforms(8, samples, seed=1), training=True)
    export = to_export_form(model)
    calibration = [example[np.newaxis] for example in waveforms(6, samples, seed=2)]
    tflite = convert.to_tflite(export, kind="int8", representative_data=calibration, input_shape=(samples, 1))
    ops = flatbuffer.check_builtin_only(tflite)
    bundle.resolver_methods(ops)  # raises for an op TFLite Micro has no kernel for
    assert ops == EXPECTED_OPS
    input_q, output_q = convert.io_quantization(tflite)
    assert input_q.shape == (1, samples, 1) and output_q.shape == (1, 5)
    examples = waveforms(4, samples, seed=3)
    result = tflm.verify_bit_exact(tflite, input_q.quantize(examples))
    assert result.bit_exact, result.to_dict()
    assert len({bytes(row) for row in result.tflm_outputs}) > 1  # not a constant output
    # int8 follows the float model (logits spanning about 1; measured: at most 0.06 apart).
    float_logits = model.predict(examples, verbose=0)
    assert np.abs(output_q.dequantize(result.tflm_outputs) - float_logits).max() < 0.15
