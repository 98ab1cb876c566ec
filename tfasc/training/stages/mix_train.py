"""Stage ``mix_train``: the first step of the mix-training strategy (Chen et al. 2019, Sec. 3.2,
Eq. 1-3). A model trained from the start on pairs of training clips mixed on the waveform at a ratio
drawn in ``mix_train.ratio``, labelled ``sign(y_i + y_j)``, with the sigmoid cross-entropy of Eq. 3;
``finetune`` then adapts it to the raw data. Any model of the registry; resumable per epoch like
``train``. With ``train`` in the same recipe both start from the same initialization and budget, so
the report compares them (Table 2's rows)."""

from __future__ import annotations

import functools
from typing import Any

from tfasc.formatting import headline, metrics_section
from tfasc.log import log
from tfasc.models.saving import save_model
from tfasc.training import loop
from tfasc.training.context import FLOAT_MODEL, StageContext, parameter_summary
from tfasc.training.rundir import Artifact
from tfasc.training.stages import Stage, register
from tfasc.training.stages.train import initial_model

MIXED_MODEL_FILE = "mix_trained.keras"


class MixTrainStage(Stage):
    name = "mix_train"
    needs: tuple[str, ...] = ()
    artifacts = (Artifact(MIXED_MODEL_FILE, FLOAT_MODEL),)
    scratch = (f"{loop.CHECKPOINT_DIR}/mix_train", f"{loop.LOG_DIR}/mix_train_{loop.HISTORY_CSV}")
    report_section = "mix_train"

    def run(self, context: StageContext) -> dict[str, Any]:
        import tf_keras as keras

        from tfasc.augment.mix_training import make_mix_training_mixer

        recipe, data = context.recipe, context.data
        training, ratio = recipe.training, recipe.mix_train.ratio
        steps = context.steps_per_epoch()
        model, source = initial_model(recipe, data.input_shape, len(data.index.classes),
                                      sigmoid_outputs=data.sigmoid_outputs)
        # Eq. 3: the sigmoid cross-entropy whatever the recipe's loss; the targets are multi-hot.
        trainee = loop.compile_model(model, training, steps=steps, class_counts=context.class_counts(), multi_label=True,
                                     loss=keras.losses.BinaryCrossentropy(from_logits=True))
        mixer = make_mix_training_mixer(ratio, recipe.data.seed)
        log(f"mix-training {model.name} ({model.count_params():,} parameters) for {training.epochs} epochs of "
            f"{steps} steps on pairs mixed at a ratio in [{ratio[0]}, {ratio[1]}], labels sign(y_i + y_j)")
        loop.fit(trainee, functools.partial(context.train_dataset, mixer=mixer), context.eval_dataset(),
                 epochs=training.epochs, steps=steps, run_dir=context.run_dir, name=self.name,
                 tensorboard=recipe.output.tensorboard, extra_callbacks=context.epoch_callbacks(),
                 batchnorm_batches=training.ema_batchnorm_batches)
        save_model(model, context.output(MIXED_MODEL_FILE))
        return {
            **context.evaluate(model),
            "ratio": list(ratio),
            "epochs": training.epochs,
            "model": {"name": model.name, **parameter_summary(model), "input_shape": list(data.input_shape)},
            **({"init_from": source} if source else {}),
        }

    def markdown(self, report: dict) -> list[str]:
        result = report[self.report_section]
        low, high = result["ratio"]
        return [
            "## Mix-training (Chen et al. 2019, Sec. 3.2)",
            "",
            f"Trained for {result['epochs']} epochs on pairs of training clips mixed on the waveform, "
            f"x = a x_i + (1 - a) x_j with a drawn in [{low}, {high}], labels sign(y_i + y_j), sigmoid "
            "cross-entropy (Eq. 1-3).",
            "",
            *metrics_section(f"without fine-tuning, {report['data']['eval_split']} split", result["metrics"]),
        ]

    def confusion_plots(self, result: dict) -> list[tuple[str, str, dict]]:
        return [("mix-training without fine-tuning", "confusion_matrix_mix_train.png", result["metrics"])]


register(MixTrainStage())
