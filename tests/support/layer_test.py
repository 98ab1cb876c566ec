"""One layer test helper in keras-hub's shape: ``run_layer_test(cls=..., init_kwargs=..., ...)``.

``run_layer_test`` proves in one call, for a layer on ``input_data`` (``[batch, ...]`` in the
layer's layout: ``[batch, freq, time, channels]`` features, ``[batch, samples, channels]``
waveforms):

1. output shape, and the number of trainable / non-trainable weight tensors;
2. the numbers: ``reference(input_data, layer)`` (numpy, written independently of the layer)
   against the layer's inference output, to ``reference_atol`` / ``reference_rtol``. Every weight is first drawn uniformly
   from [0.5, 1.5] (positive, so variances and scales stay valid) so that outputs depend on
   every weight rather than on initializers;
3. every constructor argument comes back from ``get_config`` with its value, and ``from_config``
   round-trips the config;
4. a ``.keras`` save/load of a functional model wrapping the layer gives identical weights and
   outputs;
5. deployment, as the layer's contract (``tfasc.layers.contract``) says:

   - a layer of the int8 graph: tfasc's export form (``to_export_form``, same float outputs),
     ``tfasc.compress.qat.quantize_model`` on a small functional model wrapping the layer, int8
     conversion with builtin ops only (``to_tflite(kind="int8", representative_data=...)`` +
     ``check_builtin_only``), the int8 model within ``int8_max_steps`` (default two) output steps
     of the QAT Keras model it came from, and TFLite Micro bit-exact against TFLite's reference kernels
     (``verify_bit_exact``);
   - a layer outside the int8 graph (``in_int8_graph = False``, e.g. ``LogMelSpectrogram``, the
     float front-end): QAT must refuse it with an error naming it, and the float TFLite model
     (batch 1, builtin ops only) must match Keras. That is the honest check for such a layer: it
     runs as float TFLite in front of the int8 classifier, never inside it. Its RFFT2D op has no
     kernel in TFLite's reference resolver (measured on this stack), so it runs with TFLite's
     default kernels and no TFLite Micro comparison is made.

Returns the float Keras model wrapping the layer (weights randomized) for further checks.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import tfasc  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tf_keras as keras

from tfasc.compress import qat
from tfasc.compress.export_form import to_export_form
from tfasc.deploy import convert, flatbuffer, tflm

Reference = Callable[[np.ndarray, keras.layers.Layer], np.ndarray]
#: Float32 agreement of the same computation by another route (export form, float TFLite).
FLOAT_RTOL, FLOAT_ATOL = 1e-5, 1e-4


def _wrapping_model(layer: keras.layers.Layer, example_shape: tuple[int, ...], batch_size: int | None) -> keras.Model:
    inputs = keras.Input(shape=example_shape, batch_size=batch_size)
    return keras.Model(inputs, layer(inputs), name=f"{layer.name}_model")


def _randomize(model: keras.Model, rng: np.random.Generator) -> None:
    model.set_weights([rng.uniform(0.5, 1.5, size=w.shape).astype(w.dtype) for w in model.get_weights()])


def _check_config(layer: keras.layers.Layer, cls: type, init_kwargs: dict[str, Any]) -> None:
    config = layer.get_config()
    missing = {key: value for key, value in init_kwargs.items() if config.get(key) != value}
    assert not missing, f"get_config does not return these constructor arguments as given: {missing}"
    assert cls.from_config(config).get_config() == config


def _check_keras_round_trip(model: keras.Model, x: np.ndarray) -> None:
    expected = model(x, training=False).numpy()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "layer_model.keras"
        model.save(path)
        restored = keras.models.load_model(path)
    assert len(restored.weights) == len(model.weights)
    for original, loaded in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(original.numpy(), loaded.numpy())
    np.testing.assert_allclose(restored(x, training=False).numpy(), expected, rtol=1e-6, atol=1e-6)


def _fresh_model(layer: keras.layers.Layer, cls: type, x: np.ndarray, batch_size: int | None) -> keras.Model:
    """A model around a fresh copy of ``layer`` with the same weights (what deployment starts from)."""
    copy = cls.from_config(layer.get_config())
    model = _wrapping_model(copy, x.shape[1:], batch_size=batch_size)
    copy.set_weights(layer.get_weights())
    return model


def _check_int8(model: keras.Model, x: np.ndarray, max_steps: float) -> None:
    exported = to_export_form(model, trainable=True)
    np.testing.assert_allclose(exported(x).numpy(), model(x).numpy(), rtol=FLOAT_RTOL, atol=FLOAT_ATOL)
    quantized = qat.quantize_model(exported, preserve_sparsity=True)
    for _ in range(3):  # moves TF-MOT's activation ranges towards the data
        quantized(x, training=True)
    int8 = convert.to_tflite(quantized, kind="int8", representative_data=[e[np.newaxis] for e in x])
    flatbuffer.check_builtin_only(int8)
    input_q, output_q = convert.io_quantization(int8)
    steps = np.abs(convert.run_tflite(int8, x) - quantized(x, training=False).numpy()) / output_q.scale
    assert steps.max() <= max_steps, f"int8 differs from its QAT model by {steps.max()} output steps"
    result = tflm.verify_bit_exact(int8, input_q.quantize(x))
    assert result.bit_exact, result.to_dict()


def _check_float_front_end(model: keras.Model, batch_one: keras.Model, x: np.ndarray) -> None:
    layer = model.layers[-1]
    with pytest.raises(qat.QuantizationCoverageError, match=f"{layer.name}.*not part of the int8 graph"):
        qat.quantize_model(model, preserve_sparsity=False)
    float32 = convert.to_tflite(batch_one, kind="float32")
    flatbuffer.check_builtin_only(float32)
    outputs = convert.run_tflite_raw(float32, x, reference_kernels=False)
    np.testing.assert_allclose(outputs, model(x).numpy(), rtol=FLOAT_RTOL, atol=FLOAT_ATOL)


def run_layer_test(
    *,
    cls: type,
    init_kwargs: dict[str, Any],
    input_data: np.ndarray,
    expected_output_shape: tuple[int | None, ...],
    expected_num_trainable_weights: int | None = None,
    expected_num_non_trainable_weights: int | None = None,
    reference: Reference | None = None,
    reference_atol: float = 1e-5,
    reference_rtol: float = 1e-5,
    seed: int = 0,
    int8_max_steps: float = 2.0,
) -> keras.Model:
    """Run every check of the module docstring on ``cls(**init_kwargs)``; return its float model.

    Args:
        input_data: float32 ``[batch, ...]`` input, also the int8 calibration data.
        reference: ``(input_data, layer) -> expected inference output`` in numpy.
        reference_atol, reference_rtol: tolerance of the comparison with ``reference``.
        int8_max_steps: how many output quantization steps the int8 model may differ from its QAT
            model (rounding the QAT graph does not simulate, e.g. int8 LOGISTIC inside a swish).
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(input_data, np.float32)
    layer = cls(**init_kwargs)
    model = _wrapping_model(layer, x.shape[1:], batch_size=None)
    _randomize(model, rng)
    output = model(x, training=False).numpy()
    assert output.shape == tuple(expected_output_shape)
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights
    if expected_num_non_trainable_weights is not None:
        assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights
    if reference is not None:
        np.testing.assert_allclose(output, reference(x, layer), rtol=reference_rtol, atol=reference_atol)
    _check_config(layer, cls, init_kwargs)
    _check_keras_round_trip(model, x)

    deploy = _fresh_model(layer, cls, x, batch_size=None)
    if getattr(cls, "in_int8_graph", True):
        _check_int8(deploy, x, int8_max_steps)
    else:
        # Batch 1: with an unknown batch the front-end's shape assertion converts to a Flex op.
        _check_float_front_end(deploy, _fresh_model(layer, cls, x, batch_size=1), x)
    return model
