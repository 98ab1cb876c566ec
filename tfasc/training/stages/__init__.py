"""The stage table: every stage a recipe can run, in the one order they run in.

A stage is one module here plus its :func:`register` call. From the table derive: the stage names a
recipe may list and their order, the ``--from`` choices of ``python -m tfasc.train``, the artifacts
each stage leaves in the run directory (recorded with size and hash in ``manifest.json``), and the
report: each stage's result goes under its ``report_section`` of ``report.json`` and its
``markdown`` lines into ``report.md``.

======  ==========================  ===============================  =================================
stage   needs (from the manifest)   writes                           report
======  ==========================  ===============================  =================================
train   —                           ``model.keras`` (float_model)    top level: metrics, held_out, model
prune   float_model                 ``pruned.keras`` (float, sparse) ``prune``
qat     float_model                 ``qat.h5`` (qat_model)           ``qat``
export  float_model (+ qat_model)   ``deploy/``, float TFLite files  ``deploy``
======  ==========================  ===============================  =================================

A stage whose manifest entry and artifacts exist is skipped, so an interrupted run continues where
it stopped, and ``--from STAGE`` forgets that stage and the later ones and runs them again.
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol, Sequence

from tfasc.config.load import RecipeError
from tfasc.files import remove, write_atomic
from tfasc.log import log
from tfasc.training.context import StageContext
from tfasc.training.rundir import Artifact

RESULTS_DIR = "stages"


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
    context.manifest.forget(stage_names)
    for name in stage_names:
        stage = get(name)
        for path in (*[a.path for a in stage.artifacts], *stage.scratch, result_path(name)):
            remove(context.run_dir / path)
    remove(context.run_dir / "report.json")


def run_stage(name: str, context: StageContext, *, rerun: bool = False) -> dict:
    """Run stage ``name`` unless the manifest says it is done (``rerun``: run it anyway)."""
    stage = get(name)
    if not rerun and context.manifest.is_done(name):
        log(f"stage {name}: already done")
        return read_result(context, name)
    log(f"stage {name}")
    started = time.time()
    result = {**stage.run(context), "time_s": time.time() - started}
    log(f"stage {name} finished in {result['time_s']:.1f} s")
    write_atomic(context.run_dir / result_path(name), json.dumps(result, indent=2) + "\n")
    context.manifest.record(name, [*stage.artifacts, Artifact(result_path(name), "result")], time_s=result["time_s"])
    return result


from tfasc.training.stages import train, prune, qat, export  # noqa: E402,F401  (registration, in table order)
