"""One recipe, end to end: check it, find its run directory, prepare the data, run its stages from
the stage table, write the report. ``python -m tfasc.train`` and ``python -m tfasc.export`` are thin
wrappers over :func:`run_recipe` and :func:`export_run`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tfasc.augment.mixing import waveform_compatible
from tfasc.config.load import RecipeError, check_options, dump_recipe, load_recipe
from tfasc.data import datasets, frontends
from tfasc.data.datasets.base import DatasetError
from tfasc.data.normalization import FREQUENCY_MODES
from tfasc.data.prepare import check_segment_frames, prepare_data
from tfasc.files import remove, temporary_sibling, write_atomic
from tfasc.log import log
from tfasc.training import stages
from tfasc.training.context import StageContext
from tfasc.training.rundir import (
    NORMALIZATION_FILE, RECIPE_FILE, REPORT_FILE, Manifest, RunClock, RunDirError, RunLock, has_progress,
    read_normalization, resolve_run_dir,
)

REPORT_FILES = (REPORT_FILE, "report.md")
PLOTS_DIR = "plots"


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
    if recipe.features.kind == "waveform" and recipe.features.normalization in FREQUENCY_MODES:
        raise RecipeError(f"features.normalization: {recipe.features.normalization} needs a frequency axis; with "
                          f"features.kind: {recipe.features.kind} use global, per_clip or none")
    check_segment_frames(recipe)
    try:
        builder = models.builder(recipe.model.name)
    except ValueError as error:
        raise RecipeError(f"model.name: {error}") from error
    for key in models.registry.DATA_ARGUMENTS:
        if key in recipe.model.options:
            raise RecipeError(f"model.{key}: set by tfasc from the data (multi-label data or a sigmoid loss give "
                              "sigmoid outputs), not by the recipe; remove it")
    check_options("model", recipe.model.options, builder, also_valid=("name",))
    if recipe.data.dataset not in datasets.available():
        raise RecipeError(
            f"data.dataset: unknown dataset {recipe.data.dataset!r}; available: {', '.join(datasets.available())}"
        )
    data_keys = [f.name for f in dataclasses.fields(recipe.data) if f.name != "options"]
    check_options("data", recipe.data.options, datasets.LOADERS[recipe.data.dataset], also_valid=data_keys)
    if recipe.training.init_from:
        from tfasc.training.transfer import resolve_source

        resolve_source(recipe.training.init_from)  # a bad source fails before the data is prepared


def _prepare_context(recipe, run_dir: Path, clock: RunClock, distribution=None) -> StageContext:
    """Prepare the data and record its input normalization; a run that already made progress must get
    the normalization it was trained with (else the data changed under it)."""
    data = prepare_data(recipe)
    if not _check_recorded_normalization(recipe, run_dir, data):
        write_atomic(run_dir / NORMALIZATION_FILE, json.dumps(data.normalization.to_json()) + "\n")
    return StageContext(recipe=recipe, run_dir=run_dir, data=data, clock=clock, distribution=distribution)


def _check_recorded_normalization(recipe, run_dir: Path, data) -> bool:
    """Whether ``run_dir`` holds the normalization of a run that made progress; it must be the one
    ``data`` gives (else the data changed under the run, or a worker reads other data)."""
    path = run_dir / NORMALIZATION_FILE
    if path.is_file() and has_progress(run_dir):
        recorded = read_normalization(path)
        if not recorded.matches(data.normalization):
            raise DatasetError(
                f"{path}: the run was trained with normalization {recorded.describe()}, but "
                f"{recipe.data.root} now gives {data.normalization.describe()}: the data changed since (or the "
                "command runs from another folder); use the run's data or start a new run"
            )
        return True
    return False


def _write_report(context: StageContext, out_dir: Path, *, results: dict | None = None) -> list[str]:
    """Write ``report.json``, ``report.md`` and the plots into ``out_dir``; their relative paths.

    ``results``: stage results not yet in the run directory (an export being committed).
    """
    from tfasc.report.assemble import assemble_report
    from tfasc.report.writer import write_report

    elapsed = context.clock.tick() if context.clock else context.manifest.total_time()
    report = assemble_report(context, elapsed_s=elapsed, results=results, out_dir=out_dir)
    write_report(out_dir, report)
    # report.json last: its presence (with every stage recorded) is what marks a run finished.
    return [*([PLOTS_DIR] if (out_dir / PLOTS_DIR).is_dir() else []), *reversed(REPORT_FILES)]


def _finish(context: StageContext) -> Path:
    """Write the report beside the run directory's files and move it in complete."""
    staging = temporary_sibling(context.run_dir / f"{stages.STAGING_PREFIX}report", directory=True)
    try:
        stages.commit(staging, context.run_dir, _write_report(context, staging))
    finally:
        remove(staging)
    log(f"report: {context.run_dir / REPORT_FILES[0]}")
    return context.run_dir


def _validated(recipe, source: Path | str | None):
    try:
        validate_components(recipe)
    except RecipeError as error:
        if source is None:
            raise
        raise RecipeError(f"{source}: {error}") from error
    return recipe


def _require_done_before(recipe, run_dir: Path, stage: str, *, what: str, remedy: str) -> None:
    """Every stage of ``recipe`` before ``stage`` must be done in ``run_dir`` (checked before
    anything changes); else a :class:`RunDirError` starting with ``what`` and ending with ``remedy``."""
    manifest = Manifest(run_dir)
    for name in recipe.stages[: recipe.stages.index(stage)]:
        problem = manifest.mismatch(name)
        if problem:
            raise RunDirError(f"{what}: {run_dir}: stage {name!r} is not done ({problem}); {remedy}")


def _pending_stages(context: StageContext, from_stage: str | None) -> None:
    """Forget what must run again: with ``from_stage`` that stage and the later ones; else the
    stages after the first one not done, which were made from files that stage is about to replace
    (its own backups stay: it resumes from them)."""
    recipe, manifest = context.recipe, context.manifest
    if from_stage is not None:
        stages.forget(context, recipe.stages[recipe.stages.index(from_stage):])
        return
    for position, name in enumerate(recipe.stages):
        problem = manifest.mismatch(name)
        if problem is None:
            continue
        if problem != "not finished":
            log(f"stage {name}: {problem}; running it and the later stages again")
        manifest.forget([name])
        stages.forget(context, recipe.stages[position + 1 :])
        return


def _distribution(recipe, out):
    """The recipe's ``tf.distribute`` set-up (:mod:`tfasc.training.distribute`), checked against the run."""
    from tfasc.training import distribute

    if recipe.distribute.strategy == "multi_worker" and out is None:
        raise RecipeError("distribute.strategy: multi_worker: give every worker the same --out (a folder every "
                          "worker sees at that path: the chief writes it, the others read its checkpoints)")
    distribution = distribute.make_distribution(recipe.distribute)
    distribute.check_batch(recipe.data.batch_size, distribution)
    if distribution.distributed:
        log(f"training on {distribution.describe()}; global batch {recipe.data.batch_size}, "
            f"{recipe.data.batch_size // distribution.replicas} per replica")
    return distribution


def _train_alongside_chief(recipe, run_dir: Path, from_stage: str | None, distribution) -> Path:
    """A multi-worker run's other workers: prepare the same data, train each stage the chief trains
    (they read the chief's checkpoints and models, never write the run directory) and wait for the
    chief after every stage, and at the end for its report."""
    from tfasc.training import distribute

    log(f"worker {distribution.worker_index} of {distribution.num_workers}: the chief writes {run_dir}")
    data = prepare_data(recipe)
    distribute.check_examples(data.training_inputs, recipe.data.batch_size, distribution)
    with distribute.worker_failures(distribution):
        # Until the chief has settled the run directory (resumed or new, stages forgotten, normalization
        # recorded) nothing in it is read here.
        distribute.barrier(distribution)
    _check_recorded_normalization(recipe, run_dir, data)
    context = StageContext(recipe=recipe, run_dir=run_dir, data=data, distribution=distribution, chief=False)
    manifest = Manifest(run_dir)
    # The chief's decision (_pending_stages): from --from's stage, else from the first stage not done.
    first = (recipe.stages.index(from_stage) if from_stage else
             next((i for i, name in enumerate(recipe.stages) if manifest.mismatch(name)), len(recipe.stages)))
    with distribute.worker_failures(distribution):
        for position, name in enumerate(recipe.stages):
            if position >= first:
                stages.run_stage(name, context)
            distribute.barrier(distribution)
        distribute.barrier(distribution)  # the chief's report
    return run_dir


def run_recipe(recipe, *, out: Path | str | None = None, from_stage: str | None = None,
               source: Path | str | None = None) -> Path:
    """Run ``recipe``'s stages and return its run directory.

    A stage the run directory's manifest records as done (artifacts unchanged) is skipped, so the
    same command continues an interrupted run; ``from_stage`` re-runs that stage and every later
    one. ``source``: the recipe file, named in front of a validation error. Only one process
    writes a run directory at a time; a run that fails before any stage made progress leaves no
    folder behind (and does not claim ``out``).

    With ``distribute.strategy: multi_worker`` every worker calls this with the same ``out``; the
    chief (worker 0) writes the run directory, the others train alongside it (:func:`_train_alongside_chief`).
    """
    from tfasc.training import distribute

    _validated(recipe, source)
    if from_stage is not None and from_stage not in recipe.stages:
        raise RecipeError(f"--from {from_stage}: not one of this recipe's stages {list(recipe.stages)}")
    distribution = _distribution(recipe, out)
    if not distribution.chief:
        return _train_alongside_chief(recipe, Path(out), from_stage, distribution)
    run_dir, resumed = resolve_run_dir(recipe, out=out, rerun=from_stage is not None)
    created = not resumed
    with RunLock(run_dir):
        try:
            clock = RunClock(Manifest(run_dir))  # this invocation's time, data preparation included
            log(("resuming " if resumed else "run directory ") + str(run_dir))
            stages.clean_staging(run_dir)
            if from_stage is not None:
                _require_done_before(recipe, run_dir, from_stage, what=f"--from {from_stage}",
                                     remedy="run the recipe without --from first")
            context = _prepare_context(recipe, run_dir, clock, distribution)
            distribute.check_examples(context.data.training_inputs, recipe.data.batch_size, distribution)
            # Written once the data fits the run: a failed attempt leaves a finished run's recipe as it was.
            write_atomic(run_dir / RECIPE_FILE, dump_recipe(recipe))
            _pending_stages(context, from_stage)
            with distribute.worker_failures(distribution):
                distribute.barrier(distribution)  # the other workers read the run directory from here on
                for name in recipe.stages:
                    stages.run_stage(name, context)
                    distribute.barrier(distribution)  # the other workers read this stage's files next
                finished = _finish(context)
                distribute.barrier(distribution)
            return finished
        except BaseException:
            if created and not has_progress(run_dir):
                remove(run_dir)  # a failed first attempt claims nothing
            raise


def export_run(run_dir: Path | str) -> Path:
    """Export a finished run again (or for the first time) through the same export stage as a recipe.

    Reads the run's resolved recipe; the dataset paths in it are relative to the directory the run
    was started from, so start this from there too. Nothing of the previous export or report is
    touched until the new export and report are complete: both are built in a staging folder and
    moved in together. Every earlier stage's files must match the manifest.
    """
    run_dir = Path(run_dir)
    if not (run_dir / RECIPE_FILE).is_file():
        raise RunDirError(f"{run_dir}: not a tfasc run directory (no {RECIPE_FILE})")
    with RunLock(run_dir):
        clock = RunClock(Manifest(run_dir))
        recipe = load_recipe(run_dir / RECIPE_FILE)
        if "export" not in recipe.stages:
            recipe = dataclasses.replace(recipe, stages=(*recipe.stages, "export"))
        _validated(recipe, run_dir / RECIPE_FILE)
        _require_done_before(recipe, run_dir, "export", what="export", remedy="run the recipe again first")
        stages.clean_staging(run_dir)
        context = _prepare_context(recipe, run_dir, clock)
        stages.run_stage("export", context, rerun=True,
                         also_commit=lambda result, staging: _write_report(context, staging, results={"export": result}))
    log(f"report: {run_dir / REPORT_FILES[0]}")
    return run_dir
