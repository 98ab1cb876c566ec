"""Stage ``train``: build the recipe's model, or start from another run's (``training.init_from``), and
train it (resumable per epoch)."""

from __future__ import annotations

from typing import Any

from tfasc.config.load import RecipeError
from tfasc.log import log
from tfasc.models.saving import save_model
from tfasc.formatting import metrics_section
from tfasc.training import loop
from tfasc.training.context import FLOAT_MODEL, StageContext, parameter_summary
from tfasc.training.rundir import Artifact
from tfasc.training.stages import Stage, register

MODEL_FILE = "model.keras"


def build_model(recipe, input_shape, num_classes: int, *, sigmoid_outputs: bool):
    """The recipe's registered model, seeded with ``training.seed``; ``sigmoid_outputs`` (from the
    data) goes to a builder that asks for it (:data:`tfasc.models.registry.DATA_ARGUMENTS`)."""
    import tf_keras as keras

    from tfasc import models

    keras.utils.set_random_seed(recipe.training.seed)
    try:
        return models.build(recipe.model.name, input_shape, num_classes, sigmoid_outputs=sigmoid_outputs,
                            **recipe.model.options)
    except ValueError as error:  # builders check their arguments' ranges (e.g. channels: 0)
        raise RecipeError(f"model ({recipe.model.name}): {str(error).splitlines()[0]}") from error


def initial_model(recipe, input_shape, num_classes: int, *, sigmoid_outputs: bool) -> tuple[Any, dict | None]:
    """The model training starts from, and what the stage result records of its source (None when
    built from the recipe's ``model:`` section)."""
    from tfasc.training import transfer

    if recipe.training.init_from is None:
        return build_model(recipe, input_shape, num_classes, sigmoid_outputs=sigmoid_outputs), None
    model, source, fresh = transfer.transfer_model(recipe.training.init_from, input_shape, num_classes,
                                                   seed=recipe.training.seed)
    log(f"starting from {source.path} ({source.classes} classes, sha256 {source.sha256[:12]}); the recipe's "
        f"model: section is not used; new head for {num_classes} classes: {', '.join(fresh)}")
    return model, {**source.to_json(), "fresh_layers": fresh}


def ema_summary(decay: float | None, steps: int, batchnorm_batches: int = 0) -> dict | None:
    """What the stage result records of the weight averaging (None when ``training.ema_decay`` is off):
    the decay, the optimizer steps averaged, which weights, the share ``decay ** steps`` the initial
    weights still have in the average (no warm-up or bias correction, as Eq. 6 of the ERANN paper),
    and the training batches the averaged weights' BatchNorm statistics were estimated on (0: the raw model's)."""
    if decay is None:
        return None
    return {"decay": decay, "steps": steps, "averaged": "trainable weights",
            "initial_weight_share": float(decay ** steps), "batchnorm_batches": batchnorm_batches}


def train_from_start(context: StageContext, *, stage: str, model_file: str, verb: str = "training", loss=None,
                     multi_label: bool | None = None, mixer=None) -> dict[str, Any]:
    """Build the recipe's model (or start from ``training.init_from``), train it for ``training.epochs``
    with ``training``'s optimizer, schedule and EMA (resumable per epoch, backups under ``stage``), save
    it as ``model_file`` and return the stage result: metrics, model summary, EMA and source.

    ``loss`` (default: the recipe's), ``multi_label`` (default: the data's; picks the logged accuracy)
    and ``mixer`` (a clip mixer replacing the recipe's mixing, :meth:`StageContext.train_dataset`) are
    how the ``mix_train`` stage trains differently from ``train``."""
    import functools

    recipe, data = context.recipe, context.data
    training = recipe.training
    steps = context.steps_per_epoch()
    model, source = initial_model(recipe, data.input_shape, len(data.index.classes),
                                  sigmoid_outputs=data.sigmoid_outputs)
    if source and loop.completed_epochs(loop.checkpoint_dir(context.run_dir, stage)):
        log("resuming: the weights come from this run's checkpoints; the source gives the architecture only")
    trainee = loop.compile_model(model, training, steps=steps, class_counts=context.class_counts(),
                                 multi_label=data.index.multi_label if multi_label is None else multi_label, loss=loss)
    name = model.name if source else recipe.model.name
    log(f"{verb} {name} ({model.count_params():,} parameters) for {training.epochs} epochs of {steps} steps")
    ema = ema_summary(training.ema_decay, training.epochs * steps, training.ema_batchnorm_batches)
    if ema:
        log(f"evaluating and keeping the exponential moving average of the weights (decay {ema['decay']})")
        if ema["initial_weight_share"] > 0.05:
            log(f"note: after {ema['steps']} steps the initial weights still make "
                f"{ema['initial_weight_share']:.0%} of the average (decay {ema['decay']}); lower "
                "training.ema_decay or train longer")
    train_data = context.train_dataset if mixer is None else functools.partial(context.train_dataset, mixer=mixer)
    # With training.ema_decay the per-epoch evaluation uses the averaged weights, and fit
    # returns the model holding them (loop.fit), so they are what is evaluated and saved here.
    loop.fit(trainee, train_data, context.eval_dataset(), epochs=training.epochs, steps=steps,
             run_dir=context.run_dir, name=stage, **context.fit_options(),
             extra_callbacks=context.epoch_callbacks(), batchnorm_batches=training.ema_batchnorm_batches)
    save_model(model, context.output(model_file))
    return {
        **context.evaluate(model),
        "model": {"name": name, **parameter_summary(model), "input_shape": list(data.input_shape)},
        **({"ema": ema} if ema else {}),
        **({"init_from": source} if source else {}),
    }


class TrainStage(Stage):
    name = "train"
    distributed = True  # trains under the recipe's tf.distribute strategy
    needs: tuple[str, ...] = ()
    artifacts = (Artifact(MODEL_FILE, FLOAT_MODEL),)
    scratch = (f"{loop.CHECKPOINT_DIR}/train", f"{loop.LOG_DIR}/{loop.HISTORY_CSV}")
    report_section = None  # the trained model's metrics are the report's headline

    def run(self, context: StageContext) -> dict[str, Any]:
        return train_from_start(context, stage=self.name, model_file=MODEL_FILE)

    def markdown(self, report: dict) -> list[str]:
        lines = ["## Evaluation", ""]
        if report.get("init_from"):
            source = report["init_from"]
            lines += [f"Started from `{source['path']}` ({source['classes']} classes, SHA-256 "
                      f"`{source['sha256'][:12]}`); new head: {', '.join(f'`{n}`' for n in source['fresh_layers'])}; "
                      "every weight fine-tuned.", ""]
        if report.get("ema"):
            lines += [f"Evaluated and saved: the exponential moving average of the trainable weights "
                      f"(decay {report['ema']['decay']}, over {report['ema']['steps']} steps)"
                      + (f", BatchNorm statistics re-estimated for it on {report['ema']['batchnorm_batches']} "
                         "training batches." if report['ema'].get('batchnorm_batches') else "."), ""]
        lines += metrics_section(f"{report['data']['eval_split']} split", report["metrics"])
        for group, metrics in report.get("held_out", {}).items():
            lines += metrics_section(f"held-out group: {group}", metrics)
        return lines

    def confusion_plots(self, result: dict) -> list[tuple[str, str, dict]]:
        plots = [("evaluation", "confusion_matrix.png", result["metrics"])]
        plots += [(f"held-out {group}", f"confusion_matrix_{group}.png", m) for group, m in result["held_out"].items()]
        return plots


register(TrainStage())
