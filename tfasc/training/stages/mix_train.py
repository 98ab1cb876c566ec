"""Stage ``mix_train``: the first step of the mix-training strategy (Chen et al. 2019, Sec. 3.2,
Eq. 1-3). A model trained from the start on pairs of training clips mixed on the waveform at a ratio
drawn in ``mix_train.ratio``, labelled ``sign(y_i + y_j)``, with the sigmoid cross-entropy of Eq. 3;
``finetune`` then adapts it to the raw data. Any model of the registry; resumable per epoch like
``train``. With ``train`` in the same recipe both start from the same initialization and budget, so
the report compares them (Table 2's rows)."""

from __future__ import annotations

from typing import Any

from tfasc.formatting import metrics_section
from tfasc.log import log
from tfasc.training import loop
from tfasc.training.context import FLOAT_MODEL, StageContext
from tfasc.training.rundir import Artifact
from tfasc.training.stages import Stage, register
from tfasc.training.stages.train import train_from_start

MIXED_MODEL_FILE = "mix_trained.keras"


class MixTrainStage(Stage):
    name = "mix_train"
    distributed = True  # trains under the recipe's tf.distribute strategy
    needs: tuple[str, ...] = ()
    artifacts = (Artifact(MIXED_MODEL_FILE, FLOAT_MODEL),)
    scratch = (f"{loop.CHECKPOINT_DIR}/mix_train", f"{loop.LOG_DIR}/mix_train_{loop.HISTORY_CSV}")
    report_section = "mix_train"

    def run(self, context: StageContext) -> dict[str, Any]:
        import tf_keras as keras

        from tfasc.augment.mix_training import make_mix_training_mixer

        recipe = context.recipe
        ratio = recipe.mix_train.ratio
        log(f"pairs of clips mixed at a ratio in [{ratio[0]}, {ratio[1]}], labels sign(y_i + y_j)")
        result = train_from_start(
            context, stage=self.name, model_file=MIXED_MODEL_FILE, verb="mix-training",
            # Eq. 3: the sigmoid cross-entropy whatever the recipe's loss; the targets are multi-hot.
            loss=keras.losses.BinaryCrossentropy(from_logits=True), multi_label=True,
            mixer=make_mix_training_mixer(ratio, recipe.data.seed))
        return {**result, "ratio": list(ratio), "epochs": recipe.training.epochs}

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
