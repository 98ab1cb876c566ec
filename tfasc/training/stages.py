"""The stages of a recipe: train → prune → qat → export.

Each stage reads the previous stage's artifact from the run directory, writes its own artifact and
a result file ``stages/<name>.json``; a stage whose result and artifact exist is skipped, so an
interrupted run continues where it stopped and any stage can be re-run alone (``--from``).

============  =====================  ==========================================================
stage         reads                  writes
============  =====================  ==========================================================
train         features               ``model.keras`` (per-epoch ``checkpoints/`` for resume)
prune         ``model.keras``        ``pruned.keras`` (stripped, zeros kept)
qat           pruned or model        ``qat.h5`` (TF-MOT QAT models do not load from ``.keras``)
export        qat, pruned or model   ``deploy/`` bundle, ``model_float{16,32}.tflite``
============  =====================  ==========================================================
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

import tfasc  # noqa: F401
import tf_keras as keras

from tfasc import metrics as metric_fns
from tfasc.augment.mixing import make_batch_augmenter
from tfasc.data.pipeline import make_dataset
from tfasc.report import plots
from tfasc.report.writer import write_atomic
from tfasc.training import loop
from tfasc.training.run import PreparedData, build_model, feature_params, log, standardized
from tfasc.training.schedules import Phase, PhasedSchedule

RESULTS_DIR = "stages"
ARTIFACTS = {"train": "model.keras", "prune": "pruned.keras", "qat": "qat.h5", "export": "deploy"}


@dataclass(frozen=True)
class StageContext:
    recipe: Any
    run_dir: Path
    data: PreparedData


# ------------------------------------------------------------------------------------------------
# Run directory bookkeeping
# ------------------------------------------------------------------------------------------------


def result_path(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / RESULTS_DIR / f"{name}.json"


def read_result(run_dir: Path, name: str) -> dict | None:
    path = result_path(run_dir, name)
    return json.loads(path.read_text()) if path.exists() else None


def forget_stages(run_dir: Path, names) -> None:
    """Remove the results and artifacts of ``names`` so they run again."""
    run_dir = Path(run_dir)
    for name in names:
        result_path(run_dir, name).unlink(missing_ok=True)
        artifact = run_dir / ARTIFACTS[name]
        if artifact.is_dir():
            shutil.rmtree(artifact)
        else:
            artifact.unlink(missing_ok=True)
        if name == "train":
            shutil.rmtree(run_dir / loop.CHECKPOINT_DIR, ignore_errors=True)
            (run_dir / loop.LOG_DIR / loop.HISTORY_CSV).unlink(missing_ok=True)
    (run_dir / "report.json").unlink(missing_ok=True)


def run_stage(name: str, context: StageContext) -> dict:
    """Run stage ``name`` unless its result and artifact are already in the run directory."""
    done = read_result(context.run_dir, name)
    if done is not None and (context.run_dir / ARTIFACTS[name]).exists():
        log(f"stage {name}: already done")
        return done
    log(f"stage {name}")
    started = time.time()
    result = {**STAGES[name](context), "time_s": time.time() - started}
    log(f"stage {name} finished in {result['time_s']:.1f} s")
    path = result_path(context.run_dir, name)
    path.parent.mkdir(exist_ok=True)
    write_atomic(path, json.dumps(result, indent=2) + "\n")
    return result


# ------------------------------------------------------------------------------------------------
# Shared pieces: datasets, evaluation, fine-tuning, model files
# ------------------------------------------------------------------------------------------------


def train_dataset(context: StageContext):
    recipe, data = context.recipe, context.data
    policy = recipe.augment
    augment = make_batch_augmenter(policy, recipe.data.seed) if policy.enabled else None
    return make_dataset(
        data.train.features, data.train_targets, batch_size=recipe.data.batch_size, shuffle=True,
        seed=recipe.data.seed, mean=data.mean, std=data.std, augment=augment, repeat=True,
    )


def eval_dataset(context: StageContext):
    data = context.data
    return make_dataset(
        data.eval.features, data.eval_targets, batch_size=context.recipe.evaluate.batch_size, shuffle=False,
        mean=data.mean, std=data.std,
    )


def steps_per_epoch(context: StageContext) -> int:
    return loop.steps_per_epoch(
        len(context.data.train_targets), context.recipe.data.batch_size, context.recipe.training.steps_per_epoch
    )


def predict_probabilities(context: StageContext, model, features) -> np.ndarray:
    """Class probabilities of ``model`` on ``features`` (softmax, or sigmoid for multi-label)."""
    data = context.data
    dummy = np.zeros((len(features), 1), np.float32)
    inputs = make_dataset(features, dummy, batch_size=context.recipe.evaluate.batch_size, shuffle=False,
                          mean=data.mean, std=data.std).map(lambda x, y: x)
    return metric_fns.probabilities_from_logits(model.predict(inputs, verbose=0), multi_label=data.index.multi_label)


def metrics_of(context: StageContext, probabilities: np.ndarray, targets: np.ndarray) -> dict:
    index = context.data.index
    if index.multi_label:
        return metric_fns.multilabel_metrics(probabilities, targets, index.classes)
    return metric_fns.classification_metrics(probabilities, targets.argmax(axis=1), index.classes)


def evaluate(context: StageContext, model) -> dict:
    """``metrics`` on the evaluation split and ``held_out`` metrics per held-out group.

    The evaluation split is predicted once; a held-out group reuses its rows of those predictions
    and predicts only its clips that are in no split.
    """
    data = context.data
    eval_probabilities = predict_probabilities(context, model, data.eval.features)
    held_out = {}
    for group, part in data.held_out.items():
        probabilities = eval_probabilities[part.eval_rows]
        targets = data.eval_targets[part.eval_rows]
        if part.extra is not None:
            probabilities = np.concatenate([probabilities, predict_probabilities(context, model, part.extra.features)])
            targets = np.concatenate([targets, part.extra_targets])
        held_out[group] = metrics_of(context, probabilities, targets)
    return {"metrics": metrics_of(context, eval_probabilities, data.eval_targets), "held_out": held_out}


def fine_tune(context: StageContext, model, *, name: str, epochs: int, learning_rate: float,
              final_learning_rate: float, callbacks=()) -> None:
    """Adam with the learning rate decaying linearly (SSN paper Sec. 5.1), recipe loss and augmentation."""
    steps = steps_per_epoch(context)
    schedule = PhasedSchedule.from_phases([Phase(epochs * steps, learning_rate, final_learning_rate, "linear")])
    loop.compile_model(
        model, context.recipe.training, steps=steps, class_counts=context.data.train_targets.sum(axis=0),
        multi_label=context.data.index.multi_label, optimizer=keras.optimizers.Adam(learning_rate=schedule),
    )
    loop.fit(model, train_dataset(context), eval_dataset(context), epochs=epochs, steps=steps,
             run_dir=context.run_dir, name=name, resumable=False,
             tensorboard=context.recipe.output.tensorboard, extra_callbacks=callbacks)


def load_float_model(path: Path):
    import tfasc.layers  # noqa: F401  (registers tfasc's layers for deserialization)

    # Stages re-compile what they fine-tune, so the saved optimizer is not needed.
    return keras.models.load_model(path, compile=False)


def load_qat_model(path: Path):
    from tfasc.compress.qat import qat_scope
    from tfasc.layers import ResidualBlock, SharedResidualBlock, SubSpectralNormalization

    # The legacy HDF5 loader resolves classes by bare name, so tfasc's layers are named here.
    layers = {cls.__name__: cls for cls in (SubSpectralNormalization, ResidualBlock, SharedResidualBlock)}
    with qat_scope(layers):
        return keras.models.load_model(path, compile=False)


def float_model_path(context: StageContext) -> Path:
    """The newest float model: pruned when the prune stage ran, else trained."""
    name = "prune" if "prune" in context.recipe.stages else "train"
    return context.run_dir / ARTIFACTS[name]


def parameter_summary(model) -> dict:
    return {
        "params": int(model.count_params()),
        "trainable_params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
    }


# ------------------------------------------------------------------------------------------------
# Stages
# ------------------------------------------------------------------------------------------------


def train_stage(context: StageContext) -> dict:
    recipe, data, run_dir = context.recipe, context.data, context.run_dir
    training = recipe.training
    steps = steps_per_epoch(context)
    model = build_model(recipe, data.input_shape, len(data.index.classes))
    loop.compile_model(model, training, steps=steps, class_counts=data.train_targets.sum(axis=0),
                       multi_label=data.index.multi_label)
    log(f"training {recipe.model.name} ({model.count_params():,} parameters) for {training.epochs} epochs "
        f"of {steps} steps")
    loop.fit(model, train_dataset(context), eval_dataset(context), epochs=training.epochs, steps=steps,
             run_dir=run_dir, tensorboard=recipe.output.tensorboard)
    loop.save_model_atomic(model, run_dir / ARTIFACTS["train"])
    return {
        **evaluate(context, model),
        "model": {"name": recipe.model.name, **parameter_summary(model), "input_shape": list(data.input_shape)},
    }


def prune_stage(context: StageContext) -> dict:
    from tfasc.compress import prune

    config = context.recipe.compress.prune
    model = load_float_model(context.run_dir / ARTIFACTS["train"])
    plan = prune.plan_pruning(model, target_sparsity=config.target_sparsity, mode=config.mode)
    ramp_steps = max(1, round(config.ramp_fraction * config.epochs * steps_per_epoch(context)))
    wrapped = prune.apply_pruning(model, target_sparsity=config.target_sparsity, begin_step=0,
                                  end_step=ramp_steps, frequency=min(config.frequency, ramp_steps), plan=plan)
    log(f"pruning to {config.target_sparsity:.0%} sparsity ({config.mode}) with {config.epochs} epochs of fine-tuning")
    fine_tune(context, wrapped, name="prune", epochs=config.epochs, learning_rate=config.learning_rate,
              final_learning_rate=config.final_learning_rate, callbacks=prune.pruning_callbacks())
    pruned = prune.strip_pruning(wrapped)
    loop.save_model_atomic(pruned, context.run_dir / ARTIFACTS["prune"])
    sparsity = prune.sparsity_report(pruned, plan=plan)
    return {**evaluate(context, pruned), "sparsity": sparsity["total"], "mode": config.mode, "plan": sparsity["plan"]}


def qat_stage(context: StageContext) -> dict:
    from tfasc.compress import prune, qat
    from tfasc.compress.export_form import to_export_form

    config = context.recipe.compress.qat
    # The export form keeps shared kernels shared on flash and every op full-integer (see
    # tfasc.compress.export_form); QAT then trains the graph that will run on the device.
    model = to_export_form(load_float_model(float_model_path(context)), trainable=True)
    preserve = config.preserve_sparsity and "prune" in context.recipe.stages
    quantized = qat.quantize_model(model, preserve_sparsity=preserve)
    if config.epochs:
        log(f"quantization-aware training for {config.epochs} epochs")
        fine_tune(context, quantized, name="qat", epochs=config.epochs, learning_rate=config.learning_rate,
                  final_learning_rate=config.final_learning_rate)
    loop.save_model_atomic(quantized, context.run_dir / ARTIFACTS["qat"])
    result = {**evaluate(context, quantized), "preserve_sparsity": preserve}
    if "prune" in context.recipe.stages:
        result["sparsity"] = prune.sparsity_report(quantized)["total"]
    return result


def export_stage(context: StageContext) -> dict:
    from tfasc.compress.export_form import to_export_form
    from tfasc.deploy.export import export_model

    recipe, data = context.recipe, context.data
    config = recipe.export
    float_model = load_float_model(float_model_path(context))
    exported_float = to_export_form(float_model)
    int8_source = load_qat_model(context.run_dir / ARTIFACTS["qat"]) if "qat" in recipe.stages else exported_float
    device_features = {
        "sample_rate": recipe.data.sample_rate,
        "clip_seconds": recipe.data.duration_s,
        "audio_channels": recipe.data.channels,
        **feature_params(recipe),
        "standardize_mean": data.mean,
        "standardize_std": data.std,
    }
    log("exporting int8 / float16 / float32 TFLite and verifying the int8 model in TFLite Micro")
    return export_model(
        int8_source=int8_source,
        float_model=exported_float,
        profiled_model=float_model,
        representative=standardized(data.train.features, data, limit=config.representative_examples),
        eval_inputs=standardized(data.eval.features, data),
        eval_targets=data.eval_targets,
        class_names=data.index.classes,
        multi_label=data.index.multi_label,
        feature_params=device_features,
        clip_seconds=recipe.data.duration_s,
        out_dir=context.run_dir,
        verify_examples=config.verify_examples,
        find_smallest_arena=config.smallest_arena,
    )


STAGES: dict[str, Callable[[StageContext], dict]] = {
    "train": train_stage,
    "prune": prune_stage,
    "qat": qat_stage,
    "export": export_stage,
}


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------


def make_plots(context: StageContext, results: dict) -> dict:
    run_dir, classes = context.run_dir, context.data.index.classes
    plot_dir = run_dir / "plots"
    plot_dir.mkdir(exist_ok=True)
    made = {}
    history = run_dir / loop.LOG_DIR / loop.HISTORY_CSV
    if history.exists():
        made["training curves"] = plots.plot_history(plots.read_history(history), plot_dir / "training_curves.png")
    matrices = [("evaluation", "confusion_matrix.png", results["train"]["metrics"])]
    matrices += [(f"held-out {group}", f"confusion_matrix_{group}.png", m) for group, m in results["train"]["held_out"].items()]
    if "export" in results:
        matrices.append(("int8 model, evaluation", "confusion_matrix_int8.png", results["export"]["metrics"]))
    for title, file_name, m in matrices:
        if "confusion_matrix" in m:
            made[f"confusion matrix ({title})"] = plots.plot_confusion(m["confusion_matrix"], classes, plot_dir / file_name, title)
    return {name: str(path.relative_to(run_dir)) for name, path in made.items()}


def assemble_report(context: StageContext, *, elapsed_s: float) -> dict:
    """``report.json``: the train stage's metrics at the top, later stages under their names."""
    recipe, data = context.recipe, context.data
    results = {name: read_result(context.run_dir, name) for name in recipe.stages}
    train = results["train"]
    report = {
        "recipe": recipe.name,
        "run_dir": str(context.run_dir),
        "stages": list(recipe.stages),
        "metrics": train["metrics"],
        "held_out": train["held_out"],
        "model": train["model"],
        "data": {
            "dataset": recipe.data.dataset,
            "root": str(recipe.data.root),
            "train_split": recipe.data.train_split,
            "eval_split": recipe.data.eval_split,
            "train_examples": len(data.train.examples),
            "eval_examples": len(data.eval.examples),
            "held_out_examples": {group: part.examples for group, part in data.held_out.items()},
            "classes": list(data.index.classes),
            "skipped_files": len(data.train.skipped) + len(data.eval.skipped),
            "standardization": {"mean": data.mean, "std": data.std},
        },
        "time_s": elapsed_s,
    }
    for name in ("prune", "qat"):
        if name in results:
            report[name] = results[name]
    if "export" in results:
        report["deploy"] = results["export"]
    if recipe.output.plots:
        report["plots"] = make_plots(context, results)
    return report
