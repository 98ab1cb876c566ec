"""Shared layer-test helper (keras-hub's ``run_layer_test`` habit) as the fixture ``run_layer_test``.

``run_layer_test(make_layer, input_shape, expected_output_shape)`` checks, for a layer on a
``[batch, ...]`` input:

* the output shape, eager and inside a functional model;
* ``get_config`` -> ``from_config`` gives an equal config (every constructor argument stored);
* a ``.keras`` save/load round trip of a model wrapping the layer gives identical weights and
  identical inference outputs.

It returns the built model so tests can go on with numeric checks.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

import tfasc  # noqa: F401

import tf_keras as keras


def _run_layer_test(tmp_path, make_layer: Callable[[], keras.layers.Layer], input_shape, expected_output_shape):
    rng = np.random.default_rng(0)
    x = rng.normal(size=input_shape).astype("float32")

    layer = make_layer()
    y = layer(x, training=False)
    assert tuple(y.shape) == tuple(expected_output_shape)

    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config

    inputs = keras.Input(shape=input_shape[1:])
    model = keras.Model(inputs, make_layer()(inputs))
    # Give moving statistics and affine weights values other than their initializers so the round
    # trip is a real test of saving.
    model.set_weights([w + rng.uniform(0.1, 0.5, size=w.shape).astype(w.dtype) for w in model.get_weights()])
    expected = model(x, training=False).numpy()
    assert expected.shape == tuple(expected_output_shape)

    path = tmp_path / "layer_model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    for original, loaded in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(original.numpy(), loaded.numpy())
    assert len(model.weights) == len(restored.weights)
    np.testing.assert_allclose(restored(x, training=False).numpy(), expected, rtol=1e-6, atol=1e-6)
    return model


@pytest.fixture
def run_layer_test(tmp_path):
    def run(make_layer, input_shape, expected_output_shape):
        return _run_layer_test(tmp_path, make_layer, input_shape, expected_output_shape)

    return run
