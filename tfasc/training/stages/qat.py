"""Stage ``qat``: quantization-aware training of the newest float model's export form (TF-MOT 8-bit;
pruning zeros kept when that model is sparse). See :mod:`tfasc.compress.qat`."""

from __future__ import annotations

from typing import Any

from tfasc.log import log
from tfasc.formatting import percent
from tfasc.training import loop
from tfasc.training.context import FLOAT_MODEL, QAT_MODEL, StageContext, fine_tune
from tfasc.training.rundir import Artifact
from tfasc.training.stages import Stage, register
from tfasc.training.stages.prune import SPARSE

QAT_FILE = "qat.h5"  # TF-MOT's quantize layers do not load from .keras


class QatStage(Stage):
    name = "qat"
    needs = (FLOAT_MODEL,)
    artifacts = (Artifact(QAT_FILE, QAT_MODEL),)
    scratch = (f"{loop.LOG_DIR}/qat_{loop.HISTORY_CSV}",)
    report_section = "qat"

    def run(self, context: StageContext) -> dict[str, Any]:
        from tfasc.compress import prune, qat
        from tfasc.compress.export_form import to_export_form

        config = context.recipe.compress.qat
        # The export form keeps shared kernels shared on flash and every op full-integer (see
        # tfasc.compress.export_form); QAT then trains the graph that will run on the device.
        model = to_export_form(context.load(FLOAT_MODEL, by=self.name), trainable=True)
        sparse = SPARSE in context.manifest.traits(FLOAT_MODEL)
        preserve = config.preserve_sparsity and sparse
        quantized = qat.quantize_model(model, preserve_sparsity=preserve)
        if config.epochs:
            log(f"quantization-aware training for {config.epochs} epochs")
            fine_tune(context, quantized, name=self.name, epochs=config.epochs, learning_rate=config.learning_rate,
                      final_learning_rate=config.final_learning_rate)
        loop.save_model_atomic(quantized, context.run_dir / QAT_FILE)
        result = {**context.evaluate(quantized), "preserve_sparsity": preserve}
        if sparse:
            result["sparsity"] = prune.sparsity_report(quantized)["total"]
        return result

    def markdown(self, report: dict) -> list[str]:
        qat = report[self.report_section]
        kept = f", sparsity kept: {percent(qat['sparsity']['sparsity'])}" if "sparsity" in qat else ""
        return [
            "## Quantization-aware training",
            "",
            f"- accuracy (simulated int8): {percent(qat['metrics'].get('accuracy'))}, "
            f"macro accuracy {percent(qat['metrics'].get('macro_accuracy'))}{kept}",
            "",
        ]


register(QatStage())
