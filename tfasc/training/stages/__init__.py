"""The stage table: every stage a recipe can run, in the one order they run in.

A stage is one module here plus its :func:`register` call. From the table derive: the stage names a
recipe may list and their order, the ``--from`` choices of ``python -m tfasc.train``, the artifacts
each stage leaves in the run directory (recorded with size and hash in ``manifest.json``), and the
report: each stage's result goes under its ``report_section`` of ``report.json`` and its
``markdown`` lines into ``report.md``.

=========  =========================  ==================================  =============================
stage      needs (from the manifest)  writes                              report
=========  =========================  ==================================  =============================
train      —                          ``model.keras`` (float_model)       top level: metrics, held_out, model
mix_train  —                          ``mix_trained.keras`` (float_model) ``mix_train``
finetune   float_model                ``finetuned.keras`` (float_model)   ``finetune``
prune      float_model                ``pruned.keras`` (float, sparse)    ``prune``
qat        float_model                ``qat_weights.h5`` (qat_model)      ``qat``
export     float_model (+ qat_model)  ``deploy/``, float TFLite files     ``deploy``
=========  =========================  ==================================  =============================

A stage that trains (``distributed = True``: train, mix_train, finetune, prune, qat) runs inside
the recipe's ``tf.distribute`` strategy scope, on every worker of a multi-worker run; the others
(export) run on the chief alone, on one device. The other workers write what a stage makes into a
private folder that is thrown away: the chief alone writes the run directory.

A stage writes its artifacts into a staging folder (``context.output(...)``); they are moved into
the run directory and recorded only when it succeeded. A stage whose manifest entry exists and
whose artifacts still match their recorded size and hash is skipped, so an interrupted run
continues where it stopped; one whose files changed runs again, and so do the stages after it
(they were made from the old files). ``--from STAGE`` forgets that stage and the later ones and
runs them again.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from tfasc.config.load import RecipeError
from tfasc.files import TEMPORARY_GLOB, remove, replace, temporary_sibling, write_atomic
from tfasc.log import log
from tfasc.training.context import StageContext
from tfasc.training.rundir import CHECKPOINT_DIR, Artifact

RESULTS_DIR = "stages"
STAGING_PREFIX = "staging-"


class Stage(Protocol):
    """What the table needs of a stage. A stage class may subclass it for the defaults: no
    scratch paths and no confusion matrices."""

    name: str
    needs: tuple[str, ...]
    """Artifact kinds this stage reads; an earlier stage of the recipe must produce each."""
    artifacts: tuple[Artifact, ...]
    """What it writes (besides its result file)."""
    scratch: tuple[str, ...] = ()
    """Run-directory paths of unfinished work (checkpoints, logs) removed when the stage is forgotten."""
    report_section: str | None
    """Key of its result in ``report.json`` (None: merged at the top level)."""
    distributed: bool = False
    """Whether it trains under the recipe's ``tf.distribute`` strategy (on every worker); else it
    runs on the chief, on one device."""

    def run(self, context: StageContext) -> dict[str, Any]:
        """Do the work, write ``artifacts``, return the JSON-ready result."""

    def markdown(self, report: dict) -> list[str]:
        """Lines of ``report.md`` for this stage's section of ``report``."""

    def confusion_plots(self, result: dict) -> list[tuple[str, str, dict]]:
        """``(title, file name, metrics)`` of confusion matrices to plot from the result."""
        return []


_TABLE: list[Stage] = []


def register(stage: Stage, *, after: str | None = None) -> Stage:
    """Add ``stage`` to the table, at the end or right after the stage named ``after``."""
    if any(existing.name == stage.name for existing in _TABLE):
        raise ValueError(f"stage {stage.name!r} is already registered")
    position = len(_TABLE) if after is None else names().index(after) + 1
    _TABLE.insert(position, stage)
    return stage


def unregister(name: str) -> None:
    """Remove a stage from the table (for tests registering a toy stage)."""
    _TABLE[:] = [stage for stage in _TABLE if stage.name != name]


def names() -> tuple[str, ...]:
    return tuple(stage.name for stage in _TABLE)


def get(name: str) -> Stage:
    for stage in _TABLE:
        if stage.name == name:
            return stage
    raise RecipeError(f"stages: unknown stage {name!r}; expected some of {list(names())}")


def check_order(stages: Sequence[str]) -> None:
    """Raise a :class:`RecipeError` unless ``stages`` are known, in table order, each with its inputs produced earlier."""
    for name in stages:
        get(name)
    order = [names().index(name) for name in stages]
    if order != sorted(order):
        raise RecipeError(f"stages: expected them in the order {list(names())}, got {list(stages)}")
    produced: set[str] = set()
    for name in stages:
        stage = get(name)
        missing = [kind for kind in stage.needs if kind not in produced]
        if missing:
            raise RecipeError(
                f"stages: {name!r} needs a {missing[0].replace('_', ' ')} that no earlier stage of "
                f"{list(stages)} produces"
            )
        produced.update(artifact.kind for artifact in stage.artifacts)


def result_path(name: str) -> str:
    return f"{RESULTS_DIR}/{name}.json"


def read_result(context: StageContext, name: str) -> dict | None:
    path = context.run_dir / result_path(name)
    return json.loads(path.read_text()) if path.exists() else None


def forget(context: StageContext, stage_names: Sequence[str]) -> None:
    """Remove what ``stage_names`` produced (and their unfinished work) so they run again."""
    remove(context.run_dir / "report.json")  # first: a kill midway must not leave a run that looks finished
    context.manifest.forget(stage_names)
    for name in stage_names:
        stage = get(name)
        for path in (*[a.path for a in stage.artifacts], *stage.scratch, result_path(name)):
            remove(context.run_dir / path)


def commit(staging: Path, run_dir: Path, paths: Sequence[str]) -> None:
    """Move ``paths`` (relative) from ``staging`` into ``run_dir``, each replacing its old version.

    Each move is one rename; the manifest is written after all of them, so a kill in between
    leaves the stage not done (it runs again), never a mix counted as finished.
    """
    for relative in paths:
        source = staging / relative
        if not source.exists():
            raise FileNotFoundError(f"{source}: the stage did not write {relative}")
        (run_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        replace(source, run_dir / relative)


def clean_staging(run_dir: Path) -> None:
    """Remove what a killed process left half-done: staging folders, temporary siblings of files
    being replaced, old folders moved aside by a swap (call while holding the run's lock)."""
    run_dir = Path(run_dir)
    for folder in (run_dir, run_dir / RESULTS_DIR, run_dir / "logs"):
        for leftover in folder.glob(TEMPORARY_GLOB):
            remove(leftover)
    # A multi-worker run's other workers save Keras' backups beside the chief's and remove them at
    # once (BackupAndRestore); one killed while saving leaves its folder.
    for leftover in run_dir.glob(f"{CHECKPOINT_DIR}/*/workertemp_*"):
        remove(leftover)


def run_stage(name: str, context: StageContext, *, rerun: bool = False,
              also_commit: Callable[[dict, Path], Sequence[str]] | None = None) -> dict:
    """Run stage ``name`` unless the manifest says it is done (``rerun``: run it anyway).

    The stage writes its artifacts into a staging folder inside the run directory; only when it
    has succeeded are they moved into place (replacing the previous ones) and recorded in the
    manifest with size and hash, so a failed or killed stage never damages what was there.
    ``also_commit(result, staging)`` may write more into the staging folder to be moved in the
    same step (the report of ``python -m tfasc.export``) and returns their relative paths.
    """
    stage = get(name)
    if not context.chief:
        return _run_on_worker(stage, context)
    manifest = context.manifest
    problem = manifest.mismatch(name)
    if not rerun and problem is None:
        log(f"stage {name}: already done")
        return read_result(context, name)
    if problem != "not finished" and not rerun:
        log(f"stage {name}: {problem}; running it again")
    log(f"stage {name}")
    started = time.time()
    staging = temporary_sibling(context.run_dir / f"{STAGING_PREFIX}{name}", directory=True)
    try:
        result = {**_run(stage, dataclasses.replace(context, out_dir=staging)), "time_s": time.time() - started}
        write_atomic(staging / result_path(name), json.dumps(result, indent=2) + "\n")
        extra = list(also_commit(result, staging)) if also_commit else []
        commit(staging, context.run_dir, [*(a.path for a in stage.artifacts), result_path(name), *extra])
        manifest.record(name, [*stage.artifacts, Artifact(result_path(name), "result")], time_s=result["time_s"])
    finally:
        remove(staging)
    if context.clock is not None:
        context.clock.tick()
    log(f"stage {name} finished in {result['time_s']:.1f} s")
    return result


def _run(stage: Stage, context: StageContext) -> dict[str, Any]:
    """``stage.run(context)``, inside the strategy's scope when the stage trains and the run is distributed."""
    distribution = context.distribution
    if distribution is None or not distribution.distributed or not getattr(stage, "distributed", False):
        return stage.run(context)
    with distribution.strategy.scope():
        return {**stage.run(context), "distribute": distribution.to_json()}


def _run_on_worker(stage: Stage, context: StageContext) -> dict | None:
    """A worker other than the chief: train alongside it (the collective steps need every worker),
    writing the stage's files into a private folder that is removed after; stages that do not
    train run on the chief only (None)."""
    if not getattr(stage, "distributed", False):
        log(f"stage {stage.name}: on the chief")
        return None
    log(f"stage {stage.name} (worker {context.distribution.worker_index}: training alongside the chief)")
    private = Path(tempfile.mkdtemp(prefix=f"tfasc-worker{context.distribution.worker_index}-{stage.name}-"))
    try:
        return _run(stage, dataclasses.replace(context, out_dir=private))
    finally:
        remove(private)


from tfasc.training.stages import train, mix_train, finetune, prune, qat, export  # noqa: E402,F401  (registration, in table order)
