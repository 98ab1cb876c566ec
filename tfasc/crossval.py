"""``python -m tfasc.crossval RECIPE [--set KEY=VALUE ...] [--out DIR] [--fold VALUE ...] [--report-only]``:
cross-validate a recipe, one resumable run per fold, and one report over the folds.

The recipe's ``crossval`` section names the data loader option that selects the held-out fold and
its value for every fold (``tfasc.config.schema.CrossValConfig``)::

    crossval: {option: eval_speaker, folds: [george, jackson, lucas, nicolas, theo, yweweler]}

Fold ``v`` is the recipe with ``--set data.<option>=v`` added after the command's own ``--set``
values, run by :func:`tfasc.training.run.run_recipe` into its own run directory
``<crossval dir>/fold-<v>/``; the crossval dir is ``--out`` or ``<output.dir>/<recipe>-crossval``.
A fold run is an ordinary run directory: ``python -m tfasc.train RECIPE --set data.<option>=v
--out <crossval dir>/fold-<v>`` continues or reruns it the same way.

Started again with the same command, a cross-validation continues: a finished fold
(:func:`tfasc.training.rundir.is_finished`) is not trained again, an interrupted one resumes from its
last finished epoch. ``crossval-recipe.yaml`` records the resolved recipe the crossval dir was
started with; another recipe (or other ``--set`` values) is refused once a fold has made progress.
One process writes a crossval dir at a time.

After the folds, ``crossval.json`` and ``crossval.md`` (written atomically) give each finished
fold's accuracy and macro accuracy of the trained float model (``report.json`` ``metrics``), of the
mix-trained model before and after fine-tuning when the recipe has those stages, and of the
exported int8 model (``deploy.metrics``: the whole evaluation split through the int8 TFLite model,
whose kernels the export checks bit for bit against TFLite Micro), their mean and *sample* standard
deviation over the folds (``ddof=1``; none for a single fold), and the pooled confusion matrices
(the sum of the folds' matrices: every clip of the dataset predicted once, by the model that did not
train on it) with the accuracy and macro accuracy they give. ``plots/`` holds per-fold bar charts
(float vs int8, with their means) and the pooled confusion matrices. Folds not finished yet are listed
as missing; ``--fold`` trains only the named folds, ``--report-only`` trains nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import tfasc  # noqa: F401  (environment for TensorFlow before it loads)
from tfasc.cli import quiet_tensorflow

CROSSVAL_RECIPE = "crossval-recipe.yaml"
"""The resolved recipe the crossval dir was started with (not ``recipe.yaml``: the folder must not
look like a run directory to ``python -m tfasc.train``'s search for a run to resume)."""
REPORT_JSON = "crossval.json"
REPORT_MD = "crossval.md"
PLOTS_DIR = "plots"
FOLD_PREFIX = "fold-"
#: The models compared, and where each fold's ``report.json`` holds their evaluation metrics.
MODELS = {"float": ("metrics",), "mix_train": ("mix_train", "metrics"), "finetune": ("finetune", "metrics"),
          "int8": ("deploy", "metrics")}
#: What each model is, for the report (only the models every finished fold has are reported).
MODEL_TEXT = {
    "float": "the trained float model (report.json: metrics)",
    "mix_train": "mix-training without fine-tuning (report.json: mix_train.metrics)",
    "finetune": "mix-training, fine-tuned on the raw data (report.json: finetune.metrics)",
    "int8": "the exported int8 model on the whole evaluation split (report.json: deploy.metrics)",
}
METRICS = ("accuracy", "macro_accuracy")
STD = "sample standard deviation over folds (numpy ddof=1); null with fewer than two folds"


# -- the setup -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fold:
    value: str | int
    """The value of ``data.<option>`` holding this fold out."""
    run_dir: Path
    recipe: Any
    """The fold's resolved recipe (the crossval recipe with ``data.<option>`` set)."""

    @property
    def label(self) -> str:
        return str(self.value)


def _recipe_error(message: str):
    from tfasc.config.load import RecipeError

    return RecipeError(message)


def fold_dir_name(value: str | int) -> str:
    """``fold-<value>``, with characters a folder name should not hold replaced by ``_``."""
    return FOLD_PREFIX + re.sub(r"[^A-Za-z0-9._-]", "_", str(value))


def check_setup(recipe, source: Path | str) -> None:
    """The recipe's ``crossval`` section is set and names an option of its dataset's loader; each
    fold gets its own folder. A :class:`tfasc.config.load.RecipeError` naming the key otherwise."""
    from tfasc.data import datasets

    crossval = recipe.crossval
    if not crossval.option or not crossval.folds:
        raise _recipe_error(
            f"{source}: crossval.option and crossval.folds: not set; cross-validation needs the data "
            "loader option that holds a fold out and its value for every fold, e.g. crossval: "
            "{option: eval_fold, folds: [1, 2, 3, 4, 5]} (or --set crossval.option=eval_fold "
            "--set 'crossval.folds=[1, 2, 3, 4, 5]')"
        )
    if recipe.data.dataset not in datasets.available():
        raise _recipe_error(f"{source}: data.dataset: unknown dataset {recipe.data.dataset!r}; "
                            f"available: {', '.join(datasets.available())}")
    options = list(datasets.options_of(recipe.data.dataset))
    if crossval.option not in options:
        raise _recipe_error(
            f"{source}: crossval.option: {crossval.option!r} is not an option of the {recipe.data.dataset} "
            f"loader; its options: {', '.join(options) or 'none'}"
        )
    names: dict[str, str | int] = {}
    for value in crossval.folds:
        name = fold_dir_name(value)
        if name in names:
            raise _recipe_error(f"{source}: crossval.folds: {names[name]!r} and {value!r} would share the "
                                f"folder {name}; rename one")
        names[name] = value


def crossval_dir(recipe, out: Path | str | None) -> Path:
    """``out``, or ``<output.dir>/<recipe name>-crossval``."""
    return Path(out) if out is not None else Path(recipe.output.dir) / f"{recipe.name}-crossval"


def fold_override(option: str, value: str | int) -> str:
    """``--set`` text giving ``data.<option>`` the value ``value`` with its type (JSON is YAML: a
    string fold ``"1"`` stays a string)."""
    return f"data.{option}={json.dumps(value)}"


def make_folds(path: Path | str, overrides: Sequence[str], recipe, directory: Path) -> list[Fold]:
    """Every fold of ``recipe`` (loaded from ``path`` with ``overrides``), in the recipe's order."""
    from tfasc.config import load_recipe

    option = recipe.crossval.option
    return [
        Fold(value, directory / fold_dir_name(value), load_recipe(path, [*overrides, fold_override(option, value)]))
        for value in recipe.crossval.folds
    ]


def select_folds(folds: list[Fold], wanted: Sequence[str] | None) -> list[Fold]:
    """The folds named by ``--fold`` (as text), in the recipe's order; all without ``--fold``."""
    if not wanted:
        return folds
    labels = [fold.label for fold in folds]
    unknown = [value for value in wanted if value not in labels]
    if unknown:
        raise _recipe_error(f"--fold {unknown[0]}: not one of crossval.folds {labels}")
    return [fold for fold in folds if fold.label in wanted]


def is_fold_finished(fold: Fold) -> bool:
    """Whether the fold's run directory holds a finished run of exactly the fold's recipe."""
    from tfasc.config.load import dump_recipe
    from tfasc.training.rundir import RECIPE_FILE, is_finished

    recorded = fold.run_dir / RECIPE_FILE
    return (recorded.is_file() and recorded.read_text() == dump_recipe(fold.recipe)
            and is_finished(fold.run_dir, fold.recipe.stages))


def _check_fold_values(folds: list[Fold], source: Path | str) -> None:
    """Each fold's option value against the dataset on disk, before any fold trains (a misspelt
    last fold would otherwise fail hours in). Skipped while the dataset folder does not exist yet
    (it may be synthesized by the first fold)."""
    from tfasc.data import datasets

    for fold in folds:
        data = fold.recipe.data
        if not Path(data.root).is_dir():
            return
        try:
            datasets.load(data.dataset, data.root, **data.options)
        except datasets.DatasetOptionError as error:
            raise _recipe_error(f"{source}: crossval.folds: fold {fold.value!r}: data ({data.dataset} loader): "
                                f"{error}") from error


# -- the crossval dir ----------------------------------------------------------------------------


def _claim(directory: Path, recipe_text: str, *, report_only: bool) -> bool:
    """Check (and record) that ``directory`` is this recipe's crossval dir; whether it was created.

    A crossval dir is claimed by its recipe once a fold made progress; before that a different
    recipe (a corrected first attempt) replaces the recorded one.
    """
    from tfasc.training.rundir import RunDirError, has_progress

    if directory.exists() and not directory.is_dir():
        raise RunDirError(f"--out {directory}: is a file; expected a cross-validation folder (new or existing)")
    recorded = directory / CROSSVAL_RECIPE
    if recorded.is_file():
        if recorded.read_text() == recipe_text:
            return False
        if report_only or any(has_progress(d) for d in directory.glob(f"{FOLD_PREFIX}*") if d.is_dir()):
            raise RunDirError(
                f"{recorded}: this cross-validation was started with a different recipe (or other --set "
                "values); use the same ones, or choose another --out"
            )
        return False
    if report_only:
        raise RunDirError(f"{directory}: no cross-validation here yet ({CROSSVAL_RECIPE} missing); run it "
                          "without --report-only first")
    if directory.exists() and any(directory.iterdir()):
        raise RunDirError(f"--out {directory}: exists and is not a cross-validation folder; choose another --out")
    directory.mkdir(parents=True, exist_ok=True)
    return True


# -- aggregation ---------------------------------------------------------------------------------


def _dig(report: dict, keys: Sequence[str]):
    for key in keys:
        if not isinstance(report, dict) or key not in report:
            return None
        report = report[key]
    return report


def _stats(values: Sequence[float]) -> dict:
    import numpy as np

    array = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(np.mean(array)) if len(array) else None,
        "std": float(np.std(array, ddof=1)) if len(array) > 1 else None,
        "min": float(np.min(array)) if len(array) else None,
        "max": float(np.max(array)) if len(array) else None,
    }


def _pooled(matrices: list, classes: list[str]) -> dict:
    """The summed confusion matrix and the accuracy and macro accuracy it gives."""
    import numpy as np

    matrix = np.sum([np.asarray(m, dtype=np.int64) for m in matrices], axis=0)
    support = matrix.sum(axis=1)
    recalls = [matrix[i, i] / support[i] for i in range(len(classes)) if support[i]]
    total = int(matrix.sum())
    return {
        "examples": total,
        "accuracy": float(np.trace(matrix) / total) if total else None,
        "macro_accuracy": float(np.mean(recalls)) if recalls else None,
        "confusion_matrix": matrix.tolist(),
    }


def aggregate(recipe, folds: list[Fold], directory: Path) -> dict:
    """The cross-validation summary of the finished folds among ``folds`` (``crossval.json``)."""
    finished, missing = [], []
    for fold in folds:
        (finished if is_fold_finished(fold) else missing).append(fold)
    reports = {fold.label: json.loads((fold.run_dir / "report.json").read_text()) for fold in finished}
    models = [m for m, keys in MODELS.items() if finished and all(_dig(reports[f.label], keys) for f in finished)]
    per_fold = []
    for fold in finished:
        report = reports[fold.label]
        entry: dict[str, Any] = {"fold": fold.value, "run_dir": str(fold.run_dir.relative_to(directory)),
                                 "eval_examples": _dig(report, ("data", "eval_examples")),
                                 "time_s": report.get("time_s")}
        for model in models:
            metrics = _dig(report, MODELS[model])
            entry[model] = {metric: metrics.get(metric) for metric in METRICS}
        if "int8" in models:
            entry["tflm_bit_exact"] = _dig(report, ("deploy", "tflm", "bit_exact"))
        per_fold.append(entry)
    summary = {
        model: {metric: _stats([e[model][metric] for e in per_fold if e[model][metric] is not None])
                for metric in METRICS}
        for model in models
    }
    pooled: dict[str, Any] = {}
    classes = [reports[f.label]["data"]["classes"] for f in finished]
    if classes and all(c == classes[0] for c in classes):
        for model in models:
            matrices = [_dig(reports[f.label], (*MODELS[model], "confusion_matrix")) for f in finished]
            if all(m is not None for m in matrices):
                pooled[model] = _pooled(matrices, classes[0])
    return {
        "recipe": recipe.name,
        "option": f"data.{recipe.crossval.option}",
        "folds": list(recipe.crossval.folds),
        "finished": [f.value for f in finished],
        "missing": [f.value for f in missing],
        "models": {model: MODEL_TEXT[model] for model in models},
        "std": STD,
        "per_fold": per_fold,
        "summary": summary,
        "classes": classes[0] if pooled else None,
        "pooled": pooled,
        "time_s": sum(e["time_s"] or 0.0 for e in per_fold),
    }


# -- output --------------------------------------------------------------------------------------


def _pm(stats: dict) -> str:
    from tfasc.formatting import percent

    if stats.get("mean") is None:
        return "–"
    if stats.get("std") is None:
        return percent(stats["mean"])
    return f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}%"


def _columns(summary: dict) -> list[tuple[str, str, str]]:
    """``(model, metric, header)`` of every column of the tables."""
    names = {"accuracy": "accuracy", "macro_accuracy": "macro accuracy"}
    return [(model, metric, f"{model} {names[metric]}") for model in summary["summary"] for metric in METRICS]


def _missing_text(summary: dict) -> str:
    done, total = len(summary["finished"]), len(summary["folds"])
    text = f"{done} of {total} folds finished"
    if summary["missing"]:
        text += f"; missing: {', '.join(map(str, summary['missing']))}"
    return text


def render_markdown(summary: dict) -> str:
    """``crossval.md``: the per-fold table, mean ± std, the pooled matrices and the plots."""
    from tfasc.formatting import percent

    columns = _columns(summary)
    lines = [
        f"# {summary['recipe']} — cross-validation over {summary['option']}",
        "",
        f"- {_missing_text(summary)}",
        f"- ± is the {summary['std']}",
        "- " + "; ".join(f"{model}: {text}" for model, text in summary["models"].items())
        + (", its kernels checked bit-exact against TFLite Micro on the export's verification clips"
           if "int8" in summary["models"] else ""),
        f"- time: {summary['time_s']:.1f} s over the finished folds",
        "",
        "| fold | " + " | ".join(header for _, _, header in columns) + " | clips |",
        "|---" * (len(columns) + 2) + "|",
    ]
    for entry in summary["per_fold"]:
        cells = [percent(entry[model][metric]) for model, metric, _ in columns]
        lines.append(f"| {entry['fold']} | " + " | ".join(cells) + f" | {entry['eval_examples']} |")
    cells = [_pm(summary["summary"][model][metric]) for model, metric, _ in columns]
    lines += [f"| **mean ± std** | " + " | ".join(cells) + " | |", ""]
    if summary["pooled"]:
        lines += ["## Pooled over the folds", "",
                  "Confusion matrices summed over the finished folds (every clip predicted by the model that "
                  "held it out):", ""]
        for model, pooled in summary["pooled"].items():
            lines.append(f"- {model}: accuracy {percent(pooled['accuracy'])}, macro accuracy "
                         f"{percent(pooled['macro_accuracy'])} on {pooled['examples']} clips")
        lines.append("")
    if summary.get("plots"):
        lines += ["## Plots", "", *[f"![{name}]({path})" for name, path in summary["plots"].items()], ""]
    return "\n".join(lines)


def render_table(summary: dict) -> str:
    """The short table printed at the end."""
    from tfasc.formatting import percent

    columns = _columns(summary)
    rows = [["fold", *[header for _, _, header in columns]]]
    for entry in summary["per_fold"]:
        rows.append([str(entry["fold"]), *[percent(entry[model][metric]) for model, metric, _ in columns]])
    rows.append(["mean ± std", *[_pm(summary["summary"][model][metric]) for model, metric, _ in columns]])
    for model, pooled in summary["pooled"].items():
        cells = [percent(pooled[metric]) if m == model else "" for m, metric, _ in columns]
        rows.append([f"pooled {model}", *cells])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join([f"cross-validation of {summary['recipe']} over {summary['option']}: {_missing_text(summary)}",
                      *text, f"(± : {summary['std']})"])


def make_plots(summary: dict, directory: Path) -> dict:
    """Per-fold bars (float vs int8, accuracy and macro accuracy) and the pooled confusion matrices;
    ``{title: path relative to the crossval dir}``."""
    from tfasc.report import plots

    plot_dir = directory / PLOTS_DIR
    plot_dir.mkdir(exist_ok=True)
    made = {}
    folds = [str(entry["fold"]) for entry in summary["per_fold"]]
    for metric, words in (("accuracy", "accuracy"), ("macro_accuracy", "macro accuracy")):
        series = {model: [entry[model][metric] for entry in summary["per_fold"]] for model in summary["summary"]}
        if folds and series:
            made[f"{words} per fold"] = plots.plot_folds(
                folds, series, plot_dir / f"folds_{metric}.png", ylabel=f"{words} (%)",
                title=f"{summary['recipe']}: {words} per fold ({summary['option']}); lines: means")
    for model, pooled in summary["pooled"].items():
        made[f"pooled confusion matrix ({model})"] = plots.plot_confusion(
            pooled["confusion_matrix"], summary["classes"], plot_dir / f"confusion_matrix_pooled_{model}.png",
            f"{model} model, pooled over {len(folds)} folds")
    return {name: str(path.relative_to(directory)) for name, path in made.items()}


def write_crossval_report(directory: Path, summary: dict, *, plots: bool = True) -> dict:
    """Write the plots, ``crossval.md`` and ``crossval.json`` (each atomically, the JSON last)."""
    from tfasc.files import write_atomic

    if plots and summary["per_fold"]:
        summary = {**summary, "plots": make_plots(summary, directory)}
    write_atomic(directory / REPORT_MD, render_markdown(summary) + "\n")
    write_atomic(directory / REPORT_JSON, json.dumps(summary, indent=2) + "\n")
    return summary


# -- the run -------------------------------------------------------------------------------------


def refuse_multi_worker(recipe, path, what: str) -> None:
    """Commands that run many recipes (their folds, candidates) keep one folder and lock of their own:
    they run on one machine (``mirrored`` works), not as several workers."""
    if recipe.distribute.strategy == "multi_worker":
        from tfasc.config.load import RecipeError

        raise RecipeError(f"{path}: distribute.strategy: multi_worker is for python -m tfasc.train; {what} runs on "
                          "one machine (use mirrored, or train each fold's recipe with tfasc.train on the workers)")


def run_crossval(path: Path | str, overrides: Sequence[str] = (), *, out: Path | str | None = None,
                 folds: Sequence[str] | None = None, report_only: bool = False) -> tuple[Path, dict]:
    """Train the folds that are not finished (only ``folds`` when given; none with ``report_only``)
    and write the report over every finished fold; the crossval dir and the summary."""
    from tfasc.config import dump_recipe, load_recipe
    from tfasc.files import remove
    from tfasc.log import log
    from tfasc.training.rundir import RunDirError, RunLock, has_progress

    recipe = load_recipe(path, overrides)
    check_setup(recipe, path)
    refuse_multi_worker(recipe, path, "cross-validation")
    directory = crossval_dir(recipe, out)
    all_folds = make_folds(path, overrides, recipe, directory)
    chosen = select_folds(all_folds, folds)
    if not report_only:
        from tfasc.training.run import validate_components

        from tfasc.config.load import RecipeError

        for fold in chosen:
            try:
                validate_components(fold.recipe)
            except RecipeError as error:
                raise RecipeError(f"{path}: {error}") from error
        _check_fold_values(chosen, path)
    created = _claim(directory, dump_recipe(recipe), report_only=report_only)
    with RunLock(directory):
        try:
            if not report_only:
                from tfasc.files import write_atomic
                from tfasc.training.run import run_recipe

                write_atomic(directory / CROSSVAL_RECIPE, dump_recipe(recipe))
                for position, fold in enumerate(chosen, 1):
                    where = f"fold {position}/{len(chosen)} (data.{recipe.crossval.option}={fold.value!r})"
                    if is_fold_finished(fold):
                        log(f"{where}: finished in {fold.run_dir}, not trained again")
                        continue
                    log(f"{where}: {fold.run_dir}")
                    run_recipe(fold.recipe, out=fold.run_dir, source=path)
            summary = aggregate(recipe, all_folds, directory)
            if not summary["finished"]:
                raise RunDirError(f"{directory}: no fold finished yet; run without --report-only first")
            summary = write_crossval_report(directory, summary, plots=recipe.output.plots)
        except BaseException:
            if created and not any(has_progress(d) for d in directory.glob(f"{FOLD_PREFIX}*") if d.is_dir()):
                remove(directory)  # a failed first attempt claims nothing
            raise
    log(f"report: {directory / REPORT_MD}")
    return directory, summary


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tfasc.crossval",
        description="Cross-validate a recipe: one run per value of its crossval.folds, fold v setting "
        "data.<crossval.option> to v, each in <DIR>/fold-<v>/; then crossval.json / crossval.md / plots "
        "with each fold's float and int8 accuracy, their mean ± sample std (ddof=1) and the pooled "
        "confusion matrices. Started again with the same command it continues: finished folds are "
        "not retrained, an interrupted one resumes from its last finished epoch.",
    )
    parser.add_argument("recipe", help="recipe YAML file; its crossval section (or --set crossval.option=... "
                        "--set 'crossval.folds=[...]') names the fold option and values")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a recipe value for every fold, e.g. --set training.epochs=3 (repeatable; VALUE is YAML)",
    )
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="cross-validation folder (default: <output.dir>/<recipe>-crossval)")
    parser.add_argument(
        "--fold", dest="folds", action="append", default=None, metavar="VALUE",
        help="train only this fold (repeatable); the report covers every fold finished so far and names the missing",
    )
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: write the report over the folds finished so far")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    quiet_tensorflow()
    from tfasc.cli import run_command

    def crossval() -> str:
        directory, summary = run_crossval(args.recipe, args.overrides, out=args.out, folds=args.folds,
                                          report_only=args.report_only)
        return f"{render_table(summary)}\ndone: {directory}"

    return run_command(crossval)


if __name__ == "__main__":
    sys.exit(main())
