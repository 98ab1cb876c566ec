"""Stage ``prune``: magnitude pruning of the newest float model with fine-tuning (global threshold by
default, as Sec. 5.1 of the DCASE 2020 1B report, entry Chang_QTI_task1b; see :mod:`tfasc.compress.prune`)."""

from __future__ import annotations

from typing import Any

from tfasc.log import log
from tfasc.models.saving import save_model
from tfasc.formatting import headline, percent
from tfasc.training import loop
from tfasc.training.context import FLOAT_MODEL, StageContext, fine_tune
from tfasc.training.rundir import Artifact
from tfasc.training.stages import Stage, register

PRUNED_FILE = "pruned.keras"
SPARSE = "sparse"


class PruneStage(Stage):
    name = "prune"
    distributed = True  # trains under the recipe's tf.distribute strategy
    needs = (FLOAT_MODEL,)
    artifacts = (Artifact(PRUNED_FILE, FLOAT_MODEL, traits=(SPARSE,)),)
    scratch = (f"{loop.CHECKPOINT_DIR}/prune", f"{loop.LOG_DIR}/prune_{loop.HISTORY_CSV}")
    report_section = "prune"

    def run(self, context: StageContext) -> dict[str, Any]:
        from tfasc.compress import prune

        config = context.recipe.compress.prune
        model = context.load(FLOAT_MODEL, by=self.name)
        plan = prune.plan_pruning(model, target_sparsity=config.target_sparsity, mode=config.mode)
        ramp_steps = max(1, round(config.ramp_fraction * config.epochs * context.steps_per_epoch()))
        wrapped = prune.apply_pruning(model, target_sparsity=config.target_sparsity, begin_step=0,
                                      end_step=ramp_steps, frequency=min(config.frequency, ramp_steps), plan=plan)
        log(f"pruning to {config.target_sparsity:.0%} sparsity ({config.mode}) with {config.epochs} epochs of fine-tuning")
        fine_tune(context, wrapped, name=self.name, epochs=config.epochs, learning_rate=config.learning_rate,
                  final_learning_rate=config.final_learning_rate, callbacks=prune.pruning_callbacks())
        pruned = prune.strip_pruning(wrapped)
        save_model(pruned, context.output(PRUNED_FILE))
        sparsity = prune.sparsity_report(pruned, plan=plan)
        return {**context.evaluate(pruned), "sparsity": sparsity["total"], "mode": config.mode, "plan": sparsity["plan"]}

    def markdown(self, report: dict) -> list[str]:
        prune = report[self.report_section]
        sparsity = prune["sparsity"]
        how = "one global magnitude threshold" if prune["mode"] == "global" else "TF-MOT per-layer targets"
        return [
            "## Pruning",
            "",
            f"- {sparsity['zeros']:,} of {sparsity['params']:,} prunable weights are zero "
            f"({percent(sparsity['sparsity'])}, {how})",
            f"- after fine-tuning: {headline(prune['metrics'])}",
            "",
        ]


register(PruneStage())
