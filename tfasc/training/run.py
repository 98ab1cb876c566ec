"""One recipe, end to end: check it, find its run directory, prepare the data, run its stages from
the stage table, write the report. ``python -m tfasc.train`` and ``python -m tfasc.export`` are thin
wrappers over :func:`run_recipe` and :func:`export_run`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from tfasc.augment.mixing import waveform_compatible
from tfasc.config.load import RecipeError, check_options, dump_recipe, load_recipe
from tfasc.data import datasets, frontends
from tfasc.data.prepare import prepare_data
from tfasc.files import write_atomic
from tfasc.log import log
from tfasc.training import stages
from tfasc.training.context import StageContext
from tfasc.training.rundir import RECIPE_FILE, Manifest, resolve_run_dir

NORMALIZATION_FILE = "normalization.json"


def validate_components(recipe) -> None:
    """Check what the schema cannot: the stages against the stage table, the front-end, and the open
    sections (model and dataset options) against their components' signatures."""
    from tfasc import models

    stages.check_order(recipe.stages)
    if recipe.features.kind not in frontends.available():
        raise RecipeError(
            f"features.kind: unknown front-end {recipe.features.kind!r}; available: {', '.join(frontends.available())}"
        )
    if recipe.features.kind == "waveform" and waveform_compatible(recipe.augment):
        keys = ", ".join(f"augment.{key}" for key in waveform_compatible(recipe.augment))
        raise RecipeError(f"{keys}: need a frequency axis; with features.kind: waveform use mixup and time masks only")
    try:
        builder = models.builder(recipe.model.name)
    except ValueError as error:
        raise RecipeError(f"model.name: {error}") from error
    check_options("model", recipe.model.options, builder, also_valid=("name",))
    if recipe.data.dataset not in datasets.available():
        raise RecipeError(
            f"data.dataset: unknown dataset {recipe.data.dataset!r}; available: {', '.join(datasets.available())}"
        )
    data_keys = [f.name for f in dataclasses.fields(recipe.data) if f.name != "options"]
    check_options("data", recipe.data.options, datasets.LOADERS[recipe.data.dataset], also_valid=data_keys)


def _prepare_context(recipe, run_dir: Path) -> StageContext:
    data = prepare_data(recipe)
    write_atomic(run_dir / NORMALIZATION_FILE, json.dumps({"mean": data.mean, "std": data.std}) + "\n")
    return StageContext(recipe=recipe, run_dir=run_dir, data=data)


def _finish(context: StageContext, started: float) -> Path:
    from tfasc.report.assemble import assemble_report
    from tfasc.report.writer import write_report

    json_path, _ = write_report(context.run_dir, assemble_report(context, elapsed_s=time.time() - started))
    log(f"report: {json_path}")
    return context.run_dir


def run_recipe(recipe, *, out: Path | str | None = None, from_stage: str | None = None,
               source: Path | str | None = None) -> Path:
    """Run ``recipe``'s stages and return its run directory.

    A stage the run directory's manifest records as done is skipped, so the same command continues
    an interrupted run; ``from_stage`` re-runs that stage and every later one. ``source``: the
    recipe file, named in front of a validation error.
    """
    started = time.time()
    try:
        validate_components(recipe)
    except RecipeError as error:
        if source is None:
            raise
        raise RecipeError(f"{source}: {error}") from error
    if from_stage is not None and from_stage not in recipe.stages:
        raise RecipeError(f"--from {from_stage}: not one of this recipe's stages {list(recipe.stages)}")
    run_dir, resumed = resolve_run_dir(recipe, out=out, rerun=from_stage is not None)
    run_dir.mkdir(parents=True, exist_ok=True)
    log(("resuming " if resumed else "run directory ") + str(run_dir))
    write_atomic(run_dir / RECIPE_FILE, dump_recipe(recipe))
    context = _prepare_context(recipe, run_dir)
    if from_stage is not None:
        stages.forget(context, recipe.stages[recipe.stages.index(from_stage):])
    for name in recipe.stages:
        stages.run_stage(name, context)
    return _finish(context, started)


def export_run(run_dir: Path | str) -> Path:
    """Export a finished run again (or for the first time) through the same export stage as a recipe.

    Reads the run's resolved recipe; the dataset paths in it are relative to the directory the run
    was started from, so start this from there too. The previous export stays in place until the
    new one is complete (every file is replaced atomically).
    """
    started = time.time()
    run_dir = Path(run_dir)
    if not (run_dir / RECIPE_FILE).is_file():
        raise RecipeError(f"{run_dir}: not a tfasc run directory (no {RECIPE_FILE})")
    recipe = load_recipe(run_dir / RECIPE_FILE)
    if "export" not in recipe.stages:
        recipe = dataclasses.replace(recipe, stages=(*recipe.stages, "export"))
    validate_components(recipe)
    manifest = Manifest(run_dir)
    for name in recipe.stages[: recipe.stages.index("export")]:
        if not manifest.is_done(name):
            raise RecipeError(f"{run_dir}: stage {name!r} has not finished; run the recipe first")
    context = _prepare_context(recipe, run_dir)
    stages.run_stage("export", context, rerun=True)
    return _finish(context, started)
