"""What every stage gets: the recipe, the run directory and its manifest, the prepared data, and
the shared ways to build datasets, fine-tune a model and load a model from the run directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import tfasc  # noqa: F401
import tf_keras as keras

from tfasc.augment.mixing import make_batch_augmenter
from tfasc.data.pipeline import make_dataset
from tfasc.data.prepare import PreparedData
from tfasc.evaluate import evaluate_model
from tfasc.training import loop
from tfasc.training.rundir import Manifest
from tfasc.training.schedules import Phase, PhasedSchedule

#: Artifact kinds that are Keras models, and how to load each.
FLOAT_MODEL = "float_model"
QAT_MODEL = "qat_model"


@dataclass(frozen=True)
class StageContext:
    recipe: Any
    run_dir: Path
    data: PreparedData

    @property
    def manifest(self) -> Manifest:
        return Manifest(self.run_dir)

    # -- data ---------------------------------------------------------------------------------

    def train_dataset(self):
        recipe, data = self.recipe, self.data
        policy = recipe.augment
        augment = make_batch_augmenter(policy, recipe.data.seed) if policy.enabled else None
        return make_dataset(
            data.train.features, data.train_targets, batch_size=recipe.data.batch_size, shuffle=True,
            seed=recipe.data.seed, mean=data.mean, std=data.std, augment=augment, repeat=True,
        )

    def eval_dataset(self):
        data = self.data
        return make_dataset(data.eval.features, data.eval_targets, batch_size=self.recipe.evaluate.batch_size,
                            shuffle=False, mean=data.mean, std=data.std)

    def steps_per_epoch(self) -> int:
        return loop.steps_per_epoch(len(self.data.train_targets), self.recipe.data.batch_size,
                                    self.recipe.training.steps_per_epoch)

    def class_counts(self) -> np.ndarray:
        return self.data.train_targets.sum(axis=0)

    def evaluate(self, model) -> dict:
        """``metrics`` and ``held_out`` of ``model`` (see :func:`tfasc.evaluate.evaluate_model`)."""
        return evaluate_model(model, self.data, batch_size=self.recipe.evaluate.batch_size)

    # -- models -------------------------------------------------------------------------------

    def load(self, kind: str, *, by: str):
        """The newest model of ``kind`` in the manifest, loaded (an error names stage ``by`` if absent)."""
        path = self.manifest.require(kind, by=by)
        if kind == QAT_MODEL:
            from tfasc.compress.qat import load_quantized_model

            return load_quantized_model(path)
        return load_float_model(path)


def load_float_model(path: Path):
    import tfasc.layers  # noqa: F401  (registers tfasc's layers for deserialization)

    # Stages re-compile what they fine-tune, so the saved optimizer is not needed.
    return keras.models.load_model(path, compile=False)


def fine_tune(context: StageContext, model, *, name: str, epochs: int, learning_rate: float,
              final_learning_rate: float, loss=None, callbacks=()) -> None:
    """Fine-tune ``model`` with Adam, the learning rate decaying linearly (the pruning fine-tuning of
    the DCASE 2020 1B report, entry Chang_QTI_task1b, Sec. 5.1), the recipe's augmentation and ``loss`` (default: the recipe's).

    A distillation or clustering stage passes its own ``model`` and ``loss``.
    """
    steps = context.steps_per_epoch()
    schedule = PhasedSchedule.from_phases([Phase(epochs * steps, learning_rate, final_learning_rate, "linear")])
    loop.compile_model(
        model, context.recipe.training, steps=steps, class_counts=context.class_counts(),
        multi_label=context.data.index.multi_label, optimizer=keras.optimizers.Adam(learning_rate=schedule), loss=loss,
    )
    loop.fit(model, context.train_dataset(), context.eval_dataset(), epochs=epochs, steps=steps,
             run_dir=context.run_dir, name=name, resumable=False,
             tensorboard=context.recipe.output.tensorboard, extra_callbacks=callbacks)


def parameter_summary(model) -> dict:
    return {
        "params": int(model.count_params()),
        "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
    }
