"""Exponential moving average of the weights (``training.ema_decay``) against a numpy reference:
what training keeps, what the per-epoch evaluation uses, what a resumed run ends with, and that
``ema_decay: null`` changes nothing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import tfasc  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from tfasc.config.schema import TrainingConfig
from tfasc.training import loop
from tfasc.training.schedules import build_optimizer

from support.recipes import write_tiny_recipe

DECAY = 0.8  # far from 1: after a few steps every step's weights still show in the average
STEPS, EPOCHS, BATCH = 3, 3, 4


def arrays(seed: int, n: int = 12):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 6, 1)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, size=n)]
    return x, y


def train_data(start_batch: int) -> tf.data.Dataset:
    """Endless batches, a pure function of the global batch index (as ``make_dataset(start_batch=)``)."""
    return tf.data.Dataset.from_tensor_slices(arrays(0)).batch(BATCH).repeat().skip(start_batch)


def eval_data() -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(arrays(1, n=8)).batch(BATCH)


def tiny_model(decay: float | None = DECAY):
    """Conv + BatchNorm (non-trainable moving statistics) + Dense, compiled as the train stage does."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 6, 1))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    training = TrainingConfig(epochs=EPOCHS, learning_rate=0.05, ema_decay=decay)
    loop.compile_model(model, training, steps=STEPS, class_counts=np.ones(3), multi_label=False)
    return model


def values(variables) -> list[np.ndarray]:
    return [v.numpy().copy() for v in variables]


class Recorder(keras.callbacks.Callback):
    """The raw weights before the first and after every optimizer step, and the weights each
    evaluation inside ``fit`` runs with."""

    def __init__(self):
        super().__init__()
        self.initial, self.steps, self.non_trainable, self.evaluated = None, [], [], []

    def on_train_begin(self, logs=None):
        self.initial = values(self.model.trainable_variables)

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(values(self.model.trainable_variables))
        self.non_trainable.append(values(self.model.non_trainable_variables))

    def on_test_begin(self, logs=None):
        self.evaluated.append((values(self.model.trainable_variables), values(self.model.non_trainable_variables)))


class StopAt(keras.callbacks.Callback):
    """Dies when epoch ``epoch`` begins: the backups of the epochs before it are on disk (a kill)."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt(f"killed before epoch {epoch}")


def train(model, run_dir: Path, *callbacks, epochs: int = EPOCHS):
    return loop.fit(model, train_data, eval_data(), epochs=epochs, steps=STEPS, run_dir=run_dir,
                    tensorboard=False, extra_callbacks=callbacks, verbose=0)


def numpy_ema(initial: list[np.ndarray], steps: list[list[np.ndarray]], decay: float) -> list[list[np.ndarray]]:
    """Eq. 6 of the ERANN paper in float64: ema_0 = w_0, ema_j = decay * ema_{j-1} + (1 - decay) * w_j;
    the average after every step."""
    ema = [w.astype(np.float64) for w in initial]
    averages = []
    for weights in steps:
        ema = [decay * e + (1 - decay) * w.astype(np.float64) for e, w in zip(ema, weights)]
        averages.append(ema)
    return averages


def assert_weights_close(got, expected, rtol=1e-6, atol=1e-7):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)


def history(run_dir: Path) -> list[dict]:
    with open(run_dir / loop.LOG_DIR / loop.HISTORY_CSV, newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_average_follows_eq_6_and_every_evaluation_uses_it(tmp_path):
    model, recorder = tiny_model(), Recorder()
    assert model.optimizer.use_ema and model.optimizer.ema_momentum == DECAY
    result = train(model, tmp_path / "ema", recorder)
    assert len(recorder.steps) == EPOCHS * STEPS
    reference = numpy_ema(recorder.initial, recorder.steps, DECAY)

    # The model fit returns holds the average of the trainable weights (what the stage saves);
    # BatchNorm's moving statistics stay the raw model's.
    assert_weights_close(values(model.trainable_variables), reference[-1])
    assert_weights_close(values(model.non_trainable_variables), recorder.non_trainable[-1], rtol=0, atol=0)

    # Each epoch's evaluation ran with the average after that epoch's last step ...
    assert len(recorder.evaluated) == EPOCHS
    check = tiny_model(None)
    for epoch, (trainable, non_trainable) in enumerate(recorder.evaluated):
        last = (epoch + 1) * STEPS - 1
        assert_weights_close(trainable, reference[last])
        np.testing.assert_array_equal(np.concatenate([w.ravel() for w in non_trainable]),
                                      np.concatenate([w.ravel() for w in recorder.non_trainable[last]]))
        # ... so the logged held-out loss is that of a model holding the numpy average.
        for variable, value in zip(check.trainable_variables, reference[last]):
            variable.assign(value.astype(np.float32))
        for variable, value in zip(check.non_trainable_variables, non_trainable):
            variable.assign(value)
        expected = check.evaluate(eval_data(), verbose=0, return_dict=True)
        assert result.history["val_loss"][epoch] == pytest.approx(expected["loss"], rel=1e-5)
        assert float(history(tmp_path / "ema")[epoch]["val_loss"]) == pytest.approx(expected["loss"], rel=1e-5)
    # The average is not the raw model: the test would see a missing swap.
    assert not np.allclose(recorder.evaluated[-1][0][0], recorder.steps[-1][0])


def test_ema_off_changes_nothing_and_ema_on_leaves_the_raw_training_as_it_was(tmp_path):
    plain = tiny_model(None)
    assert not plain.optimizer.use_ema
    assert not build_optimizer(TrainingConfig(), steps_per_epoch=STEPS).use_ema
    plain_recorder = Recorder()
    plain_result = train(plain, tmp_path / "plain", plain_recorder)
    # Off: the model ends with the last step's raw weights and evaluates with the raw weights.
    assert_weights_close(values(plain.trainable_variables), plain_recorder.steps[-1], rtol=0, atol=0)
    for epoch, (trainable, _) in enumerate(plain_recorder.evaluated):
        assert_weights_close(trainable, plain_recorder.steps[(epoch + 1) * STEPS - 1], rtol=0, atol=0)

    # On: evaluating with the average swaps the raw weights back exactly, so the raw trajectory
    # (and the training loss) are the same as without EMA; only the evaluation differs.
    averaged_recorder = Recorder()
    averaged_result = train(tiny_model(), tmp_path / "averaged", averaged_recorder)
    for raw, other in zip(averaged_recorder.steps, plain_recorder.steps):
        assert_weights_close(raw, other)
    np.testing.assert_allclose(averaged_result.history["loss"], plain_result.history["loss"], rtol=1e-6)
    assert averaged_result.history["val_loss"] != pytest.approx(plain_result.history["val_loss"], rel=1e-4)


def test_a_killed_and_resumed_fit_ends_with_the_same_average(tmp_path):
    straight = tiny_model()
    train(straight, tmp_path / "straight")
    expected = values(straight.trainable_variables)

    resumed_dir = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(), resumed_dir, StopAt(2))
    assert loop.completed_epochs(loop.checkpoint_dir(resumed_dir, "train")) == 2
    # A new process: a freshly built model (its average starts at the initial weights again) that
    # gets the raw weights, the optimizer's state and the average back from the backup.
    resumed, recorder = tiny_model(), Recorder()
    train(resumed, resumed_dir, recorder)
    assert len(recorder.steps) == STEPS  # only the last epoch ran
    assert_weights_close(values(resumed.trainable_variables), expected)
    for a, b in zip(history(tmp_path / "straight"), history(resumed_dir)):
        assert a["epoch"] == b["epoch"] and float(b["val_loss"]) == pytest.approx(float(a["val_loss"]), rel=1e-5)

    # Killed after the last backup but before the model was saved: nothing is left to train, and
    # the model still ends with the backed-up average (not the raw weights, not the initial ones).
    again, recorder = tiny_model(), Recorder()
    train(again, resumed_dir, recorder)
    assert recorder.steps == []
    assert_weights_close(values(again.trainable_variables), expected)


#: The tiny recipe with EMA, two epochs of two steps, no dropout (tests/support/recipes.py).
EMA_OVERRIDES = ["stages=[train]", "model.dropout=0.0", "training.epochs=2", "training.steps_per_epoch=2",
                 "training.ema_decay=0.5"]


def test_the_train_stage_saves_evaluates_and_records_the_average(tmp_path, monkeypatch):
    from tfasc.models.saving import load_model
    from tfasc.train import main
    from tfasc.training.context import StageContext

    recorder = Recorder()
    original = StageContext.epoch_callbacks
    monkeypatch.setattr(StageContext, "epoch_callbacks", lambda self: [*original(self), recorder])
    recipe = write_tiny_recipe(tmp_path)
    out = tmp_path / "run"
    assert main([str(recipe), "--out", str(out), *(arg for o in EMA_OVERRIDES for arg in ("--set", o))]) == 0

    result = json.loads((out / "stages" / "train.json").read_text())
    assert result["ema"] == {"decay": 0.5, "steps": 4, "averaged": "trainable weights",
                             "initial_weight_share": 0.5 ** 4, "batchnorm_batches": 0}
    report = json.loads((out / "report.json").read_text())
    assert report["ema"]["decay"] == 0.5
    assert "exponential moving average of the trainable weights (decay 0.5" in (out / "report.md").read_text()

    # model.keras (the input of prune, QAT and export) holds the numpy average of the recorded steps.
    saved = load_model(out / "model.keras")
    assert len(recorder.steps) == 4
    assert_weights_close(values(saved.trainable_variables), numpy_ema(recorder.initial, recorder.steps, 0.5)[-1])
    assert_weights_close(values(saved.non_trainable_variables), recorder.non_trainable[-1], rtol=0, atol=0)
    # The last epoch's logged evaluation and the report are the same (averaged) model's.
    assert float(history(out)[-1]["val_accuracy"]) == pytest.approx(report["metrics"]["accuracy"], abs=1e-6)


def test_batchnorm_statistics_are_re_estimated_for_the_averaged_weights(tmp_path):
    # SWA's rule: after fit the averaged weights carry BatchNorm statistics averaged over the first
    # K training batches run through them. Reference: the BN's input computed by a probe model with
    # the final (averaged) weights, its per-channel batch mean and variance in numpy, averaged.
    K = 3
    model = tiny_model()
    loop.fit(model, train_data, eval_data(), epochs=EPOCHS, steps=STEPS, run_dir=tmp_path / "bn", tensorboard=False,
             verbose=0, batchnorm_batches=K)
    bn = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    probe = keras.Model(model.input, bn.input)
    means, variances = [], []
    for x, _ in train_data(0).take(K):
        h = probe(x, training=False).numpy().astype(np.float64).reshape(-1, bn.input.shape[-1])
        means.append(h.mean(axis=0))
        variances.append(h.var(axis=0, ddof=1))  # TensorFlow's moving variance is the unbiased one
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean(means, axis=0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean(variances, axis=0), rtol=1e-3, atol=1e-6)
    assert bn.momentum == 0.99  # restored
