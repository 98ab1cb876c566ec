"""``report.json`` from the run directory: the header, each stage's result under its section, plots."""

from __future__ import annotations

from pathlib import Path

from tfasc.report import plots
from tfasc.training import loop, stages
from tfasc.training.context import StageContext


def make_plots(context: StageContext, results: dict, out_dir: Path) -> dict:
    """Training curves and every confusion matrix the stages ask for, drawn into ``out_dir/plots``;
    ``{title: path relative to the run directory}``."""
    run_dir, classes = context.run_dir, context.data.index.classes
    plot_dir = out_dir / "plots"
    plot_dir.mkdir(exist_ok=True)
    made = {}
    history = run_dir / loop.LOG_DIR / loop.HISTORY_CSV
    if history.exists():
        made["training curves"] = plots.plot_history(plots.read_history(history), plot_dir / "training_curves.png")
    for name, result in results.items():
        for title, file_name, metrics in stages.get(name).confusion_plots(result):
            if "confusion_matrix" in metrics:
                made[f"confusion matrix ({title})"] = plots.plot_confusion(
                    metrics["confusion_matrix"], classes, plot_dir / file_name, title)
    return {name: str(path.relative_to(out_dir)) for name, path in made.items()}


def data_summary(context: StageContext) -> dict:
    recipe, data = context.recipe, context.data
    return {
        "dataset": recipe.data.dataset,
        "root": str(recipe.data.root),
        "train_split": recipe.data.train_split,
        "eval_split": recipe.data.eval_split,
        "train_examples": len(data.train.examples),
        "eval_examples": len(data.eval.examples),
        "held_out_examples": {group: part.examples for group, part in data.held_out.items()},
        "classes": list(data.index.classes),
        "features": recipe.features.kind,
        "skipped_files": len(data.train.skipped) + len(data.eval.skipped),
        "normalization": data.normalization.to_json(),
        "segment_frames": data.segment_frames,
        "segments_per_clip": data.segments_per_clip,
        "outputs": "sigmoid" if data.sigmoid_outputs else "softmax",
        "multi_label": data.index.multi_label,
        "sampling": recipe.data.sampling,
        # Training clips per class: how unbalanced the list is (a class's chance AP is its positive rate).
        "train_class_counts": dict(zip(data.index.classes, map(int, data.train_targets.sum(axis=0)))),
    }


def assemble_report(context: StageContext, *, elapsed_s: float, results: dict | None = None,
                    out_dir: Path | None = None) -> dict:
    """The report of the recipe's finished stages; a stage without a section fills the top level
    (without a ``train`` stage, the last stage that trained a model gives the top level's
    ``metrics``, ``held_out`` and ``model``).

    ``results``: stage results to use instead of the run directory's (a stage not yet committed);
    ``out_dir``: where the plots go (default the run directory), laid out as in the run directory.
    """
    recipe = context.recipe
    given = results or {}
    results = {name: given[name] if name in given else stages.read_result(context, name) for name in recipe.stages}
    report: dict = {"recipe": recipe.name, "run_dir": str(context.run_dir), "stages": list(recipe.stages)}
    for name, result in results.items():
        section = stages.get(name).report_section
        if section is None:
            report.update({key: value for key, value in result.items() if key != "time_s"})
        else:
            report[section] = result
    if "metrics" not in report:  # no train stage: the header and headline are the last trained model's
        trained = [result for result in results.values() if result and "model" in result]
        if trained:
            report.update({key: trained[-1][key] for key in ("metrics", "held_out", "model") if key in trained[-1]})
    report["data"] = data_summary(context)
    report["time_s"] = elapsed_s
    if recipe.output.plots:
        report["plots"] = make_plots(context, results, out_dir or context.run_dir)
    return report
