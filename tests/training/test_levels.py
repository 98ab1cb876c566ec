"""A multi-level model trains on the mean of its levels' losses (Chen et al. 2019 Sec. 3.1), its metric
scores the model's own output, and the weights trained are the model's (tfasc.training.levels)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, log_softmax, logit

import tfasc  # noqa: F401
import tf_keras as keras

from tfasc.config.schema import TrainingConfig
from tfasc.layers.attention import MultiLevelOutput
from tfasc.training import loop


def three_level_model(classes: int, *, sigmoid: bool):
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    levels = [keras.layers.Dense(classes, name=f"level{n}_logits")(hidden) for n in (2, 3, 4)]
    rows = [keras.layers.Reshape((1, classes))(level) for level in levels]
    stacked = keras.layers.Concatenate(axis=1)(rows)
    return keras.Model(inputs, MultiLevelOutput(sigmoid=sigmoid, name="multi_level_output")(stacked))


def level_logits(model, x):
    names = [f"level{n}_logits" for n in (2, 3, 4)]
    probe = keras.Model(model.inputs, [model.get_layer(name).output for name in names])
    return [np.asarray(z, np.float64) for z in probe(x)]


def numpy_bce(y, z):
    """Mean over classes and examples of the sigmoid cross-entropy (Eq. 3), written out."""
    p = expit(z)
    return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))


def numpy_cce(y, z):
    return float(np.mean(-(y * log_softmax(z, axis=-1)).sum(axis=-1)))


@pytest.mark.parametrize("multi_label", [True, False])
def test_the_loss_is_the_mean_of_the_levels_losses_and_the_metric_the_models_output(multi_label):
    rng = np.random.default_rng(0)
    classes = 5
    x = rng.normal(size=(16, 6)).astype(np.float32)
    y = ((rng.random((16, classes)) < 0.3).astype(np.float32) if multi_label
         else np.eye(classes, dtype=np.float32)[rng.integers(0, classes, 16)])
    keras.utils.set_random_seed(1)
    model = three_level_model(classes, sigmoid=multi_label)
    trainee = loop.compile_model(model, TrainingConfig(), steps=1, class_counts=y.sum(axis=0), multi_label=multi_label)
    assert trainee is not model and trainee.output.shape[1:] == (4, classes)
    loss, accuracy = trainee.evaluate(x, y, batch_size=16, verbose=0)

    per_level = [(numpy_bce if multi_label else numpy_cce)(y, z) for z in level_logits(model, x)]
    assert loss == pytest.approx(np.mean(per_level), rel=1e-5)
    output = model(x).numpy().astype(np.float64)
    if multi_label:
        mean_p = np.mean([expit(z) for z in level_logits(model, x)], axis=0)
        np.testing.assert_allclose(output, logit(mean_p), rtol=1e-4, atol=1e-4)
        assert accuracy == pytest.approx(np.mean((output > 0) == (y > 0.5)), abs=1e-6)
    else:
        assert accuracy == pytest.approx(np.mean(output.argmax(axis=1) == y.argmax(axis=1)), abs=1e-6)


def test_fitting_the_view_trains_the_models_own_weights():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 6)).astype(np.float32)
    y = (rng.random((32, 3)) < 0.5).astype(np.float32)
    model = three_level_model(3, sigmoid=True)
    before = [w.copy() for w in model.get_weights()]
    trainee = loop.compile_model(model, TrainingConfig(learning_rate=0.05), steps=4, class_counts=y.sum(axis=0),
                                 multi_label=True)
    history = trainee.fit(x, y, batch_size=8, epochs=3, verbose=0).history
    assert set(history) == {"loss", "accuracy"}  # the same log columns as any other model's
    assert history["loss"][-1] < history["loss"][0]
    assert all(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_a_single_output_model_is_compiled_as_it_is():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    assert loop.compile_model(model, TrainingConfig(), steps=1, class_counts=np.ones(3), multi_label=False) is model
