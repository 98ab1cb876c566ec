"""Stage ``qat``: quantization-aware training of the newest float model's export form (TF-MOT 8-bit;
pruning zeros kept when that model is sparse). See :mod:`tfasc.compress.qat`."""

from __future__ import annotations

from typing import Any

from tfasc.log import log
from tfasc.formatting import headline, percent
from tfasc.training import loop
from tfasc.training.context import FLOAT_MODEL, MODEL_LOADERS, QAT_MODEL, StageContext, fine_tune
from tfasc.training.rundir import Artifact
from tfasc.training.stages import Stage, register
from tfasc.training.stages.prune import SPARSE

# Weights only: TF-MOT's quantize layers do not load from .keras, and a full HDF5 model can run code
# when loaded (Lambda layers). The model is rebuilt from its float source by build_qat_model.
QAT_FILE = "qat_weights.h5"


def build_qat_model(float_model, *, preserve_sparsity: bool):
    """The quantization-aware model of ``float_model``'s export form, as this stage trains it.

    The export form keeps shared kernels shared on flash and every op full-integer (see
    tfasc.compress.export_form); QAT then trains the graph that will run on the device.
    """
    from tfasc.compress import qat
    from tfasc.compress.export_form import to_export_form

    return qat.quantize_model(to_export_form(float_model, trainable=True), preserve_sparsity=preserve_sparsity)


def load_qat_model(context: StageContext, path, by: str):
    """Rebuild the run's QAT model from the float model it was trained from and fill in its weights."""
    from tfasc.models.saving import load_weights_into
    from tfasc.training.rundir import RunDirError
    from tfasc.training.stages import read_result

    result = read_result(context, QatStage.name) or {}
    source = context.manifest.require(FLOAT_MODEL, by=by)
    if result.get("source") != source.name:
        raise RunDirError(
            f"{path}: was trained from {result.get('source')!r}, but the run's newest float model is "
            f"{source.name!r}; run the qat stage again (--from qat)"
        )
    preserve = result.get("preserve_sparsity")
    if not isinstance(preserve, bool):
        raise RunDirError(f"{context.run_dir}/stages/qat.json: lacks preserve_sparsity; run the qat stage again")
    model = build_qat_model(context.load(FLOAT_MODEL, by=by), preserve_sparsity=preserve)
    return load_weights_into(model, path)


class QatStage(Stage):
    name = "qat"
    distributed = True  # trains under the recipe's tf.distribute strategy
    needs = (FLOAT_MODEL,)
    artifacts = (Artifact(QAT_FILE, QAT_MODEL),)
    scratch = (f"{loop.CHECKPOINT_DIR}/qat", f"{loop.LOG_DIR}/qat_{loop.HISTORY_CSV}")
    report_section = "qat"

    def run(self, context: StageContext) -> dict[str, Any]:
        from tfasc.compress import prune
        from tfasc.models.saving import save_weights

        config = context.recipe.compress.qat
        source = context.manifest.require(FLOAT_MODEL, by=self.name)
        sparse = SPARSE in context.manifest.traits(FLOAT_MODEL)
        preserve = config.preserve_sparsity and sparse
        quantized = build_qat_model(context.load(FLOAT_MODEL, by=self.name), preserve_sparsity=preserve)
        if config.epochs:
            log(f"quantization-aware training for {config.epochs} epochs")
            fine_tune(context, quantized, name=self.name, epochs=config.epochs, learning_rate=config.learning_rate,
                      final_learning_rate=config.final_learning_rate)
        save_weights(quantized, context.output(QAT_FILE))
        result = {**context.evaluate(quantized), "preserve_sparsity": preserve, "source": source.name}
        if sparse:
            result["sparsity"] = prune.sparsity_report(quantized)["total"]
        return result

    def markdown(self, report: dict) -> list[str]:
        qat = report[self.report_section]
        kept = f", sparsity kept: {percent(qat['sparsity']['sparsity'])}" if "sparsity" in qat else ""
        return [
            "## Quantization-aware training",
            "",
            f"- simulated int8: {headline(qat['metrics'])}{kept}",
            "",
        ]


register(QatStage())
MODEL_LOADERS[QAT_MODEL] = load_qat_model
