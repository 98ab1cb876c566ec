"""Compile and fit a model with per-epoch checkpoints that survive interruption.

Resume uses Keras' ``BackupAndRestore``: at the end of every epoch the weights, optimizer state
(including the step that drives the learning-rate schedule) and epoch counter are written to
``checkpoints/<stage>/``; a run started again with the same command restores them and continues
with the next epoch. The training data is a pure function of the global batch index (see
``make_dataset(start_batch=...)``), so the resumed epochs see the same batches and augmentations as
an uninterrupted run would. The CSV log keeps one row per finished epoch: rows of epochs that are
being redone after a restart are dropped, so no finished epoch is lost or repeated. A non-finite
loss stops training with an error before that epoch is backed up or logged.

With an optimizer that keeps an exponential moving average of the weights (``use_ema``, from
``training.ema_decay``), the per-epoch evaluation runs with the averaged weights (the ``val_*``
columns of the log are the averaged model's; the training loss and accuracy are the raw weights'),
the averages are part of each backup (optimizer variables), and when ``fit`` returns the model holds
the averaged weights. With ``batchnorm_batches`` the BatchNorm statistics of the averaged weights are
re-estimated (:func:`estimate_batchnorm_statistics`) before every such evaluation and at the end, as
stochastic weight averaging does: statistics left from the raw weights do not fit their average.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Callable

import numpy as np

import tfasc  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from tfasc.errors import UserError
from tfasc.files import atomic_path
from tfasc.training.rundir import CHECKPOINT_DIR
from tfasc.training.schedules import build_optimizer

LOG_DIR = "logs"
HISTORY_CSV = "history.csv"


def build_loss(loss_config, *, class_counts: np.ndarray, multi_label: bool) -> keras.losses.Loss:
    """Cross-entropy on logits or the class-balanced focal loss.

    Binary cross-entropy of an independent sigmoid per class (the mean over classes and examples)
    when the outputs are sigmoids (:func:`tfasc.metrics.sigmoid_outputs`: multi-label data, or
    ``loss.name: binary_crossentropy`` on one-hot targets, Wu & Lee Sec. 4.3); else the categorical
    cross-entropy of the softmax.
    """
    from tfasc.metrics import sigmoid_outputs

    if loss_config.name == "cb_focal":
        from tfasc.losses import ClassBalancedFocalLoss

        return ClassBalancedFocalLoss(
            samples_per_class=[int(c) for c in class_counts], beta=loss_config.beta, gamma=loss_config.gamma
        )
    if sigmoid_outputs(loss_config.name, multi_label=multi_label):
        return keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=loss_config.label_smoothing)
    return keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=loss_config.label_smoothing)


def steps_per_epoch(num_examples: int, batch_size: int, override: int | None = None) -> int:
    """Batches in one pass over the training split (or the recipe's override)."""
    return override or max(1, math.ceil(num_examples / batch_size))


def compile_model(model, training, *, steps: int, class_counts: np.ndarray, multi_label: bool, optimizer=None,
                  loss=None):
    """Compile with (unless given) the recipe's loss, optimizer and schedule; return the model to
    :func:`fit`: ``model`` itself, or for a multi-level model its training view, which trains the
    same weights on the mean of the levels' losses (:mod:`tfasc.training.levels`).

    The ``accuracy`` metric: per-class sign agreement for multi-label data, else the argmax of the
    logits against the one-hot target, right for softmax and single-label sigmoid outputs alike
    (both are monotonic in the logits)."""
    from tfasc.training import levels

    metric = (
        keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)
        if multi_label
        else keras.metrics.CategoricalAccuracy(name="accuracy")
    )
    loss = loss or build_loss(training.loss, class_counts=class_counts, multi_label=multi_label)
    trainee = levels.training_view(model)
    if trainee is not model:
        loss, metric = levels.LevelMeanLoss(loss), levels.OnModelOutput(metric)
    trainee.compile(optimizer=optimizer or build_optimizer(training, steps_per_epoch=steps), loss=loss,
                    metrics=[metric])
    return trainee


class EpochCSVLogger(keras.callbacks.Callback):
    """One CSV row per epoch, safe across restarts.

    Written before the backup, so a kill between the two leaves a row for an epoch that the restart
    redoes; when the first epoch of a (re)started fit begins, rows from that epoch on are dropped.
    """

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)
        self._started = False

    def _rows(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path, newline="") as handle:
            return list(csv.DictReader(handle))

    def _write(self, rows: list[dict]) -> None:
        fields = list(dict.fromkeys(key for row in rows for key in row))
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
            handle.flush()
            os.fsync(handle.fileno())

    def on_epoch_begin(self, epoch, logs=None):
        if not self._started:
            self._started = True
            rows = self._rows()
            kept = [row for row in rows if int(row["epoch"]) < epoch]
            if len(kept) != len(rows):
                self._write(kept)

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch, **{key: float(value) for key, value in (logs or {}).items()}}
        self._write([*self._rows(), row])


class NonFiniteLossError(UserError):
    """Training diverged (NaN or infinite loss); nothing of the diverged epoch is kept."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raise :class:`NonFiniteLossError` at the end of an epoch whose loss is NaN or infinite.

    Placed before the backup and the CSV logger, so the diverged epoch is neither checkpointed
    nor logged and no model is saved: the run stops instead of exporting garbage.
    """

    def __init__(self, stage: str):
        super().__init__()
        self.stage = stage

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLossError(
                f"stage {self.stage}: the training loss became {float(loss)} in epoch {epoch + 1}; nothing of "
                "that epoch was kept. Lower the learning rate or check the data (extreme feature values), "
                "then start a new run (another --out, or none)"
            )


def uses_ema(model) -> bool:
    """Whether ``model``'s optimizer keeps a moving average of the weights (Keras' ``use_ema``)."""
    return bool(getattr(getattr(model, "optimizer", None), "use_ema", False))


def _normalization_layers(model) -> list:
    """Layers with moving statistics updated by a ``momentum`` (BatchNorm, sub-spectral norm), nested ones included."""
    return [layer for layer in model.submodules
            if isinstance(layer, keras.layers.Layer) and hasattr(layer, "momentum") and hasattr(layer, "moving_mean")]


def estimate_batchnorm_statistics(model, batches) -> int:
    """Set every BatchNorm's moving mean and variance to the average of its batch statistics over
    ``batches`` (inputs, or ``(inputs, targets)`` pairs) with the model's current weights: batch
    ``k`` enters with momentum ``(k - 1) / k``, a cumulative average, as SWA's ``update_bn``. The
    layers' momenta are restored after; no other weight changes. Returns the batches used."""
    layers = _normalization_layers(model)
    momenta = [layer.momentum for layer in layers]
    count = 0
    try:
        for batch in batches:
            inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
            count += 1
            for layer in layers:
                layer.momentum = (count - 1) / count
            model(inputs, training=True)  # eager: each call reads the momentum set above
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return count


class EvaluateWithEMA(keras.callbacks.Callback):
    """Evaluate with the optimizer's moving average of the trainable weights, then train on.

    At the start of an evaluation inside ``fit`` the raw trainable weights are copied aside and
    replaced by their averages (``Optimizer.finalize_variable_values``); at its end they are put
    back exactly, so the training trajectory, the backups and what follows are the raw model's.
    Keras' ``use_ema`` averages the trainable weights only, as the ERANN paper's Eq. 6 does; the
    non-trainable ones (BatchNorm's moving statistics) are the raw model's, unless
    ``calibration`` (a dataset of training batches) is given: then they are re-estimated for the
    averaged weights (:func:`estimate_batchnorm_statistics`) and put back after the evaluation too.
    """

    def __init__(self, calibration: tf.data.Dataset | None = None):
        super().__init__()
        self.calibration = calibration
        self._raw = None
        self._raw_statistics = None

    def on_test_begin(self, logs=None):
        variables = self.model.trainable_variables
        self._raw = [variable.numpy() for variable in variables]
        self.model.optimizer.finalize_variable_values(variables)
        if self.calibration is not None:
            self._raw_statistics = [variable.numpy() for variable in self.model.non_trainable_variables]
            estimate_batchnorm_statistics(self.model, self.calibration)

    def on_test_end(self, logs=None):
        if self._raw is not None:
            for variable, value in zip(self.model.trainable_variables, self._raw):
                variable.assign(value)
            self._raw = None
        if self._raw_statistics is not None:
            for variable, value in zip(self.model.non_trainable_variables, self._raw_statistics):
                variable.assign(value)
            self._raw_statistics = None


class SynchronizedBatchNorm:
    """Within it, every Keras ``BatchNormalization`` of ``model`` computes its batch statistics over the
    global batch (all replicas: Keras' ``synchronized``, unfused), as one device does over the same
    batch; after it, the layers are as before (so the saved model's config is the single-device one)."""

    def __init__(self, model, enabled: bool = True):
        self.model = model
        self.layers = ([layer for layer in model.submodules if isinstance(layer, keras.layers.BatchNormalization)]
                       if enabled else [])
        self._flags = []

    def __enter__(self):
        self._flags = [(layer.synchronized, layer.fused) for layer in self.layers]
        for layer in self.layers:
            layer.synchronized, layer.fused = True, False
        return self

    def __exit__(self, *exc):
        for layer, (synchronized, fused) in zip(self.layers, self._flags):
            layer.synchronized, layer.fused = synchronized, fused
        if self.layers:  # the train function traced with synchronized statistics is traced again next time
            self.model.train_function = None


def checkpoint_dir(run_dir: Path, name: str) -> Path:
    """Where stage ``name``'s per-epoch backups live."""
    return Path(run_dir) / CHECKPOINT_DIR / name


def completed_epochs(directory: Path) -> int:
    """Epochs a ``BackupAndRestore`` backup in ``directory`` holds (0 when there is none)."""
    latest = tf.train.latest_checkpoint(str(Path(directory) / "chief"))
    if latest is None:
        return 0
    saved = tf.train.load_checkpoint(latest).get_tensor("ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE")
    return int(saved) + 1


def fit(
    model,
    train_data: tf.data.Dataset | Callable[[int], tf.data.Dataset],
    eval_data: tf.data.Dataset | None,
    *,
    epochs: int,
    steps: int,
    run_dir: Path,
    name: str = "train",
    resumable: bool = True,
    tensorboard: bool = True,
    extra_callbacks=(),
    verbose: int = 2,
    batchnorm_batches: int = 0,
    logs: bool = True,
    sync_batchnorm: bool = True,
) -> keras.callbacks.History:
    """``model.fit`` with CSV and TensorBoard logs in ``run_dir/logs`` and, when ``resumable``,
    per-epoch backups in ``run_dir/checkpoints/<name>`` for resume.

    ``train_data`` must repeat (see ``make_dataset(repeat=True)``); ``steps`` batches make an epoch.
    Given as a function of the first global batch index, a resumed fit gets the data stream from
    where the backup stopped. ``name`` (the stage) prefixes the logs of stages other than ``train``
    (``prune_history.csv``, ...).

    When the optimizer keeps a moving average of the weights (:func:`uses_ema`), the evaluation of
    every epoch uses the averaged weights and the model returns holding them (Keras'
    ``finalize_variable_values`` at the end of ``fit``). The optimizer is built before the backup is
    restored, so the averages start from the initial weights and a resumed fit, even one with no
    epoch left to run, continues from (or ends with) the backed-up averages. ``batchnorm_batches > 0``
    re-estimates the BatchNorm statistics of the averaged weights on the first that many training
    batches (of the run's stream from batch 0) before each evaluation and at the end.

    Under a ``tf.distribute`` strategy (the model built in its scope), a ``train_data`` function is
    called once per replica with ``part=(i, n)`` and each replica trains on its slice of every
    global batch (:func:`tfasc.training.distribute.distributed_dataset`); the backups are
    TensorFlow's multi-worker ones (the chief's in ``checkpoints/<name>/chief``, read by every worker
    on resume). ``logs=False`` writes no CSV log (the other workers of a multi-worker run).
    ``sync_batchnorm``: on several replicas, Keras BatchNorms normalize by the global batch's statistics
    (:class:`SynchronizedBatchNorm`); else each replica's own.
    """
    from tfasc.training import distribute

    run_dir = Path(run_dir)
    if logs:
        (run_dir / LOG_DIR).mkdir(parents=True, exist_ok=True)
    csv_name = HISTORY_CSV if name == "train" else f"{name}_{HISTORY_CSV}"
    loggers = [EpochCSVLogger(run_dir / LOG_DIR / csv_name)] if logs else []
    callbacks = [StopOnNonFiniteLoss(name), *loggers, *extra_callbacks]
    backups = checkpoint_dir(run_dir, name)
    if resumable:  # after the CSV logger: a row is written before its epoch's backup
        callbacks.insert(1 + len(loggers),
                         keras.callbacks.BackupAndRestore(str(backups), save_freq="epoch", delete_checkpoint=False))
    calibration = None
    if uses_ema(model) and batchnorm_batches > 0:
        calibration = (train_data(0) if callable(train_data) else train_data).take(batchnorm_batches)
    if uses_ema(model):
        # Creates the averages now, from the initial weights (Eq. 6's θ_0), instead of at the first
        # step: the backup then restores them even when every epoch was already done.
        model.optimizer.build(model.trainable_variables)
        callbacks.insert(0, EvaluateWithEMA(calibration))  # first to see an evaluation begin, so the others see the averages
    if callable(train_data):
        make, start = train_data, completed_epochs(backups) * steps if resumable else 0
        train_data = distribute.distributed_dataset(model.distribute_strategy, lambda part: make(start) if part == distribute.WHOLE else make(start, part=part))
    if tensorboard:
        log_dir = run_dir / LOG_DIR / ("tensorboard" if name == "train" else f"tensorboard_{name}")
        callbacks.append(keras.callbacks.TensorBoard(str(log_dir), profile_batch=0))
    synchronize = sync_batchnorm and model.distribute_strategy.num_replicas_in_sync > 1
    with SynchronizedBatchNorm(model, synchronize):
        history = model.fit(
            train_data,
            validation_data=eval_data,
            epochs=epochs,
            steps_per_epoch=steps,
            callbacks=callbacks,
            verbose=verbose,
        )
    if calibration is not None:  # the model now holds the averaged weights: statistics to match
        estimate_batchnorm_statistics(model, calibration)
    return history


