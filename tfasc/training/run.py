"""One recipe, end to end: data → features → model → training → evaluation → report.

Each step is a function over the recipe and the run directory; :func:`run_recipe` chains them.
A run directory records the resolved recipe, so the same command started again finds its
unfinished run and continues it (see :func:`resolve_run_dir`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

import tfasc  # noqa: F401
import tf_keras as keras

from tfasc.config.load import RecipeError, check_options, dump_recipe
from tfasc.data import datasets
from tfasc.data.datasets.base import DatasetError, DatasetIndex
from tfasc.data.pipeline import FeatureSet, extract_features, label_targets, standardization, standardize
from tfasc.report.writer import write_atomic, write_report

RECIPE_FILE = "recipe.yaml"
NORMALIZATION_FILE = "normalization.json"


def log(message: str) -> None:
    print(f"[tfasc] {message}", flush=True)


def validate_components(recipe) -> None:
    """Check the open sections (model and dataset options) against their components' signatures."""
    from tfasc import models

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


def resolve_run_dir(recipe, *, out: Path | str | None = None, rerun: bool = False) -> tuple[Path, bool]:
    """The run directory for ``recipe`` and whether it continues an existing run.

    With ``out``: that folder; it must be empty or hold a run of the same resolved recipe (any
    tfasc run when ``rerun``: re-running stages may change their settings).
    Without: the newest ``<output.dir>/<name>-<timestamp>`` whose recipe matches and which has no
    report yet is resumed (with ``rerun``: the newest run of that name); otherwise a new
    timestamped folder is made.
    """
    text = dump_recipe(recipe)
    if out is not None:
        run_dir = Path(out)
        recorded = run_dir / RECIPE_FILE
        if recorded.exists():
            if recorded.read_text() != text and not rerun:
                raise RecipeError(
                    f"{run_dir} holds a run of a different recipe ({recorded}); choose another --out "
                    "or remove that folder"
                )
            return run_dir, True
        if run_dir.exists() and any(run_dir.iterdir()):
            raise RecipeError(f"{run_dir} exists and is not a tfasc run directory; choose another --out")
        return run_dir, False
    parent = Path(recipe.output.dir)
    for candidate in sorted(parent.glob(f"{recipe.name}-*"), reverse=True):
        recorded = candidate / RECIPE_FILE
        if not recorded.is_file():
            continue
        if rerun or (recorded.read_text() == text and not (candidate / "report.json").exists()):
            return candidate, True
    if rerun:
        raise RecipeError(f"--from: no earlier run of {recipe.name!r} in {parent}; run all stages first or give --out")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return parent / f"{recipe.name}-{stamp}", False


@dataclass(frozen=True)
class HeldOutGroup:
    """One held-out group's clips: rows of the evaluation split, plus clips in no split.

    Clips already in the evaluation split reuse its features (and predictions) instead of being
    decoded and scored a second time.
    """

    eval_rows: np.ndarray
    """Indices into the evaluation split's features of this group's clips."""
    extra: FeatureSet | None
    """Features of this group's clips outside both splits (None when there are none)."""
    extra_targets: np.ndarray | None

    @property
    def examples(self) -> int:
        return len(self.eval_rows) + (len(self.extra.examples) if self.extra is not None else 0)


@dataclass(frozen=True)
class PreparedData:
    """Features and targets of both splits, ready for ``make_dataset``."""

    index: DatasetIndex
    train: FeatureSet
    eval: FeatureSet
    held_out: dict[str, HeldOutGroup]
    """Group name → that group's clips outside the training split."""
    train_targets: np.ndarray
    eval_targets: np.ndarray
    mean: float
    std: float

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.features.shape[1:])


def ensure_dataset(recipe) -> Path:
    """The dataset root, synthesized first when absent and the recipe asks for it."""
    root = Path(recipe.data.root)
    if root.exists():
        return root
    synth = recipe.data.synthesize
    if synth.clips == 0:
        raise DatasetError(
            f"data.root: {root} does not exist. Point data.root at the dataset, or set data.synthesize.clips "
            "to generate a small DCASE-layout dataset there."
        )
    if recipe.data.dataset != "dcase2020_1b":
        raise RecipeError(f"data.synthesize: only the dcase2020_1b layout can be synthesized, not {recipe.data.dataset!r}")
    from tfasc.data.synthesize import synthesize_dcase2020_1b

    log(f"synthesizing {synth.clips} clips in the DCASE 2020 1B layout at {root}")
    synthesize_dcase2020_1b(
        root, clips=synth.clips, seed=synth.seed, sample_rate=synth.sample_rate,
        duration_s=synth.duration_s, channels=synth.channels,
    )
    return root


def feature_params(recipe) -> dict:
    """Keyword arguments of ``log_mel_spectrogram`` from the recipe (sample rate excluded)."""
    params = dataclasses.asdict(recipe.features)
    params.pop("standardize")
    return params


def _features(recipe, examples, description: str) -> FeatureSet:
    data = recipe.data
    result = extract_features(
        examples,
        sample_rate=data.sample_rate,
        duration_s=data.duration_s,
        channels=data.channels,
        feature_params=feature_params(recipe),
        cache_dir=Path(data.cache_dir) if data.cache else None,
        skip_bad_files=data.skip_bad_files,
        description=description,
    )
    if result.skipped:
        path, reason = result.skipped[0]
        log(f"skipped {len(result.skipped)} unreadable file(s) in {description}; first: {path} ({reason})")
    return result


def held_out_examples(recipe, index: DatasetIndex) -> dict:
    """For each ``evaluate.held_out_groups`` entry, the examples of that group outside the training split.

    That is the paper's unseen-city evaluation (DCASE 2020 1B: Milan never appears in fold 1 training);
    it includes clips the setup files leave out of both splits.
    """
    train_split = recipe.data.train_split
    selected = {}
    for group in recipe.evaluate.held_out_groups:
        in_train = sum(1 for e in index.examples if e.group == group and e.split == train_split)
        if in_train:
            log(f"evaluate.held_out_groups: {in_train} training clips belong to {group!r}; it is not unseen")
        examples = tuple(e for e in index.examples if e.group == group and e.split != train_split)
        if not examples:
            log(f"evaluate.held_out_groups: no clip outside the training split belongs to {group!r}; not reported")
            continue
        selected[group] = examples
    return selected


def prepare_data(recipe) -> PreparedData:
    """Load the dataset index, compute (or read cached) features of both splits, and targets."""
    data = recipe.data
    root = ensure_dataset(recipe)
    index = datasets.load(data.dataset, root, **data.options)
    splits = {}
    for name in (data.train_split, data.eval_split):
        examples = index.split(name)
        if not examples:
            raise DatasetError(
                f"{root}: the {data.dataset} index has no examples in split {name!r} "
                f"(splits present: {sorted({str(e.split) for e in index.examples})})"
            )
        splits[name] = _features(recipe, examples, f"features ({name})")
    train, evaluation = splits[data.train_split], splits[data.eval_split]
    targets = lambda feature_set: label_targets(feature_set.examples, index.classes, multi_label=index.multi_label)
    eval_groups = np.array([e.group for e in evaluation.examples], dtype=object)
    eval_paths = {str(e.path) for e in evaluation.examples}
    held_out = {}
    for group, examples in held_out_examples(recipe, index).items():
        outside = [e for e in examples if str(e.path) not in eval_paths]
        extra = _features(recipe, outside, f"features ({group})") if outside else None
        held_out[group] = HeldOutGroup(
            eval_rows=np.flatnonzero(eval_groups == group),
            extra=extra,
            extra_targets=targets(extra) if extra is not None else None,
        )
    mean, std = standardization(train.features) if recipe.features.standardize else (0.0, 1.0)
    return PreparedData(
        index=index,
        train=train,
        eval=evaluation,
        held_out=held_out,
        train_targets=targets(train),
        eval_targets=targets(evaluation),
        mean=mean,
        std=std,
    )


def build_model(recipe, input_shape, num_classes: int):
    from tfasc import models

    keras.utils.set_random_seed(recipe.training.seed)
    return models.build(recipe.model.name, input_shape, num_classes, **recipe.model.options)


def standardized(features: np.ndarray, data: PreparedData, *, limit: int | None = None) -> np.ndarray:
    """``(features - mean) / std`` as float32, the model's input (first ``limit`` examples)."""
    return standardize(features[:limit], data.mean, data.std)


def run_recipe(recipe, *, out: Path | str | None = None, from_stage: str | None = None) -> Path:
    """Run ``recipe``'s stages and return its run directory.

    A stage whose result is already in the run directory is skipped, so the same command
    continues an interrupted run; ``from_stage`` re-runs that stage and every later one.
    """
    from tfasc.training import stages as stage_fns

    started = time.time()
    validate_components(recipe)
    if from_stage is not None and from_stage not in recipe.stages:
        raise RecipeError(f"--from {from_stage}: not one of this recipe's stages {list(recipe.stages)}")
    run_dir, resumed = resolve_run_dir(recipe, out=out, rerun=from_stage is not None)
    run_dir.mkdir(parents=True, exist_ok=True)
    log(("resuming " if resumed else "run directory ") + str(run_dir))
    write_atomic(run_dir / RECIPE_FILE, dump_recipe(recipe))
    if from_stage is not None:
        stage_fns.forget_stages(run_dir, recipe.stages[recipe.stages.index(from_stage):])

    data = prepare_data(recipe)
    write_atomic(run_dir / NORMALIZATION_FILE, json.dumps({"mean": data.mean, "std": data.std}) + "\n")
    context = stage_fns.StageContext(recipe=recipe, run_dir=run_dir, data=data)
    for name in recipe.stages:
        stage_fns.run_stage(name, context)
    report = stage_fns.assemble_report(context, elapsed_s=time.time() - started)
    json_path, _ = write_report(run_dir, report)
    log(f"report: {json_path}")
    return run_dir


def export_run(run_dir: Path | str) -> Path:
    """Export a finished run again (or for the first time): int8 / float TFLite, TFLite Micro check, bundle.

    Reads the run's resolved recipe; the dataset paths in it are relative to the directory the run
    was started from, so start this from there too.
    """
    from tfasc.config.load import load_recipe
    from tfasc.training import stages as stage_fns

    started = time.time()
    run_dir = Path(run_dir)
    if not (run_dir / RECIPE_FILE).is_file():
        raise RecipeError(f"{run_dir}: not a tfasc run directory (no {RECIPE_FILE})")
    recipe = load_recipe(run_dir / RECIPE_FILE)
    if "export" not in recipe.stages:
        recipe = dataclasses.replace(recipe, stages=(*recipe.stages, "export"))
    for name in recipe.stages[:-1]:
        if stage_fns.read_result(run_dir, name) is None:
            raise RecipeError(f"{run_dir}: stage {name!r} has not finished; run the recipe first")
    stage_fns.forget_stages(run_dir, ["export"])
    data = prepare_data(recipe)
    context = stage_fns.StageContext(recipe=recipe, run_dir=run_dir, data=data)
    stage_fns.run_stage("export", context)
    json_path, _ = write_report(run_dir, stage_fns.assemble_report(context, elapsed_s=time.time() - started))
    log(f"report: {json_path}")
    return run_dir
