"""Stage ``finetune``: the second step of the mix-training strategy (Chen et al. 2019, Sec. 3.2):
the newest float model trained on, on the raw data (the recipe's augmentation and loss), at the
lower learning rate ``finetune.learning_rate`` (paper: Adam 3e-5 after 3e-4). Resumable per epoch.

Its report section compares what the run trained, as the paper's Table 2 does: ``train`` (no
mix-training, with the recipe's augmentation), ``mix_train`` (mix-training without fine-tuning) and
this stage (mix-training), each on the recipe's evaluation split."""

from __future__ import annotations

from typing import Any

from tfasc.formatting import headline, metrics_section
from tfasc.log import log
from tfasc.models.saving import save_model
from tfasc.training import loop
from tfasc.training.context import FLOAT_MODEL, StageContext, fine_tune, parameter_summary
from tfasc.training.rundir import Artifact
from tfasc.training.stages import Stage, read_result, register

FINETUNED_FILE = "finetuned.keras"


def augmentation_summary(policy) -> str:
    """The recipe's mixing in words, for the comparison's first row."""
    kinds = [name for name, prob in (("mixup", policy.mixup_prob), ("FreqMix", policy.freqmix_prob),
                                     ("CutMix", policy.cutmix_prob)) if prob > 0]
    if policy.waveform.mix != "none":
        kinds.append(f"waveform {policy.waveform.mix}")
    return ", ".join(kinds) if kinds else "no mixing"


class FinetuneStage(Stage):
    name = "finetune"
    distributed = True  # trains under the recipe's tf.distribute strategy
    needs = (FLOAT_MODEL,)
    artifacts = (Artifact(FINETUNED_FILE, FLOAT_MODEL),)
    scratch = (f"{loop.CHECKPOINT_DIR}/finetune", f"{loop.LOG_DIR}/finetune_{loop.HISTORY_CSV}")
    report_section = "finetune"

    def run(self, context: StageContext) -> dict[str, Any]:
        recipe = context.recipe
        config = recipe.finetune
        source = context.manifest.require(FLOAT_MODEL, by=self.name)
        model = context.load(FLOAT_MODEL, by=self.name)
        final = config.final_learning_rate or config.learning_rate
        log(f"fine-tuning {source.name} on the raw data for {config.epochs} epochs at {config.learning_rate:g}"
            + ("" if final == config.learning_rate else f" -> {final:g}"))
        fine_tune(context, model, name=self.name, epochs=config.epochs, learning_rate=config.learning_rate,
                  final_learning_rate=final)
        save_model(model, context.output(FINETUNED_FILE))
        rows = []
        for stage, label in (("train", f"no mix-training ({augmentation_summary(recipe.augment)})"),
                             ("mix_train", "mix-training without fine-tuning")):
            result = read_result(context, stage) if stage in recipe.stages else None
            if result is not None:
                rows.append({"stage": stage, "strategy": label, "metrics": _headline_metrics(result["metrics"])})
        evaluation = context.evaluate(model)
        label = "mix-training" if "mix_train" in recipe.stages else f"fine-tuned {source.name}"
        rows.append({"stage": self.name, "strategy": label, "metrics": _headline_metrics(evaluation["metrics"])})
        return {
            **evaluation,
            "source": source.name,
            "epochs": config.epochs,
            "learning_rate": config.learning_rate,
            "final_learning_rate": final,
            "comparison": rows,
            "model": {"name": model.name, **parameter_summary(model), "input_shape": list(context.data.input_shape)},
        }

    def markdown(self, report: dict) -> list[str]:
        result = report[self.report_section]
        rate = f"{result['learning_rate']:g}" + (
            "" if result["final_learning_rate"] == result["learning_rate"] else f" -> {result['final_learning_rate']:g}")
        lines = [
            "## Fine-tuning on the raw data (Chen et al. 2019, Sec. 3.2)",
            "",
            f"`{result['source']}` trained on for {result['epochs']} epochs at learning rate {rate}.",
            "",
            *metrics_section(f"{report['data']['eval_split']} split", result["metrics"]),
        ]
        if len(result["comparison"]) > 1:
            lines += ["### Training strategies compared (the paper's Table 2 on this data)", "",
                      "| strategy | stage | result |", "|---|---|---|"]
            lines += [f"| {row['strategy']} | `{row['stage']}` | {headline(row['metrics'])} |" for row in result["comparison"]]
            lines.append("")
        return lines

    def confusion_plots(self, result: dict) -> list[tuple[str, str, dict]]:
        return [("after fine-tuning", "confusion_matrix_finetune.png", result["metrics"])]


def _headline_metrics(metrics: dict) -> dict:
    """What the comparison row keeps: the headline numbers only."""
    keys = ("mAP", "mean_auc", "d_prime", "accuracy", "macro_accuracy", "examples")
    return {key: metrics[key] for key in keys if key in metrics}


register(FinetuneStage())
