"""Random architecture search judged by what the device will pay (Wu & Lee, Sec. 3.3).

``run_search(recipe_path)`` draws specs uniformly from the recipe's ``search.space`` (Table 2),
rejects a candidate whose paper size (float32 kernels, Table 4's rule) is outside
``search.limits`` and, before any training, one whose untrained int8 conversion exceeds the device
limits (flash, MACs per second of audio, TFLite Micro arena; :mod:`tfasc.deploy.estimate`). A kept
candidate is trained briefly (``search.training`` / ``search.augment``: the paper's 3 epochs) as an
ordinary run in ``candidates/draw-NNNNN/`` and one JSON line is appended to ``candidates.jsonl``:
spec, sizes, MACs, arena, evaluation accuracy and loss. The best by accuracy and/or by loss
(``search.retrain``) is then trained from scratch through the recipe's own stages (train → prune →
qat → export, ending in a verified bundle) in ``best-accuracy/`` / ``best-loss/``, and
``search.json`` / ``search.md`` / ``plots/`` summarize (top candidates, Fig. 3 scatters of accuracy
against size and MACs, Fig. 4 histograms by growth ratio).

Resuming: the draws are a fixed sequence (``search.seed``); started again, the same command
replays it, skips every draw with a line in ``candidates.jsonl`` (trained or rejected) and retrains
a candidate that was killed before its line was written (its folder is removed first). A line cut
short by a kill is dropped. The retraining runs resume like any run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import tfasc  # noqa: F401  (selects tf_keras before TensorFlow is imported)
import tf_keras as keras

from tfasc.config.load import RecipeError, dump_recipe, load_recipe
from tfasc.config.schema import ModelConfig
from tfasc.errors import UserError
from tfasc.files import remove, write_atomic
from tfasc.log import log
from tfasc.models.searched_cnn import CNNSpec, paper_size_bytes
from tfasc.search.space import sample_spec

CANDIDATES_FILE = "candidates.jsonl"
SEARCH_RECIPE = "search_recipe.yaml"
SEARCH_FINGERPRINT = "search_draws.json"
SUMMARY_JSON = "search.json"
SUMMARY_MD = "search.md"
CANDIDATES_DIR = "candidates"
PLOTS_DIR = "plots"
#: Model options of the recipe that every candidate keeps (the rest is the spec).
SHARED_MODEL_OPTIONS = ("beta", "trainable_beta", "bn_momentum", "dropout")


class SearchError(UserError):
    """A search that cannot go on as asked (changed recipe, damaged record, limits nothing meets)."""


# -- records ---------------------------------------------------------------------------------------


#: Fields every trained record has (what ranking and the summary read).
TRAINED_FIELDS = ("draw", "key", "spec", "accuracy", "loss", "paper_size_bytes", "flash_bytes", "arena_bytes",
                  "macs_per_second")


def _parse(path: Path) -> tuple[list[dict], int]:
    """The records of ``candidates.jsonl`` and the byte length of the valid prefix they come from.

    A last line that is not a complete JSON record (a kill mid-write) is not part of the prefix: its
    draw runs again. Any other damaged line is an error naming it.
    """
    if not path.is_file():
        return [], 0
    content = path.read_bytes()
    records, offset = [], 0
    lines = content.split(b"\n")
    for number, raw in enumerate(lines, 1):
        last = number == len(lines) or (number == len(lines) - 1 and lines[-1] == b"")
        end = offset + len(raw) + (0 if number == len(lines) else 1)
        if not raw.strip():
            offset = end
            continue
        try:
            record = json.loads(raw)
            if not isinstance(record, dict) or "key" not in record or "status" not in record:
                raise ValueError("no key/status")
            if record["status"] == "trained" and any(field not in record for field in TRAINED_FIELDS):
                raise ValueError(f"a trained record needs {', '.join(TRAINED_FIELDS)}")
        except ValueError as error:  # json.JSONDecodeError is a ValueError
            if last:
                log(f"{path}: line {number} is incomplete (interrupted write); that candidate runs again")
                break
            raise SearchError(f"{path}: line {number} is not a candidate record ({error}); remove it (that "
                              "candidate then runs again)") from None
        records.append(record)
        offset = end
    return records, offset


def read_records(path: Path) -> list[dict]:
    """The records of ``candidates.jsonl`` (see :func:`_parse`)."""
    return _parse(path)[0]


def append_record(path: Path, record: dict) -> None:
    """Append one JSON line after the file's valid prefix and make it durable before the search goes on."""
    _, valid = _parse(path)
    if path.is_file():
        content = path.read_bytes()
        if valid < len(content):
            os.truncate(path, valid)  # an interrupted last line: dropped, its draw was run again
        if valid and not content[:valid].endswith(b"\n"):
            text_prefix = "\n"  # a complete last record whose newline was not written
        else:
            text_prefix = ""
    else:
        text_prefix = ""
    with open(path, "a") as handle:
        handle.write(text_prefix + json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


# -- candidates ------------------------------------------------------------------------------------


def model_options(recipe, spec: CNNSpec) -> dict[str, Any]:
    shared = {k: v for k, v in recipe.model.options.items() if k in SHARED_MODEL_OPTIONS}
    return {**shared, **spec.to_dict()}


def candidate_recipe(recipe, spec: CNNSpec, draw: int):
    """The brief training of one candidate: ``search.training`` / ``search.augment``, stage ``train``."""
    return dataclasses.replace(
        recipe,
        name=f"{recipe.name}-draw-{draw:05d}",
        model=ModelConfig(name="searched_cnn", options=model_options(recipe, spec)),
        training=recipe.search.training,
        augment=recipe.search.augment,
        stages=("train",),
        output=dataclasses.replace(recipe.output, plots=False, tensorboard=False),
    )


def final_recipe(recipe, spec: CNNSpec, criterion: str):
    """The chosen spec trained from scratch with the recipe's own training, augmentation and stages."""
    return dataclasses.replace(
        recipe, name=f"{recipe.name}-best-{criterion}",
        model=ModelConfig(name="searched_cnn", options=model_options(recipe, spec)),
    )


def device_violations(estimate: dict, limits, macs_per_second: float) -> list[str]:
    """Which device limits ``estimate`` (flash/arena bytes, when measured) and ``macs_per_second`` exceed."""
    problems = []
    if limits.max_int8_flash_bytes is not None and "flash_bytes" in estimate \
            and estimate["flash_bytes"] > limits.max_int8_flash_bytes:
        problems.append(f"int8 flash {estimate['flash_bytes']:,} > {limits.max_int8_flash_bytes:,} bytes")
    if limits.max_arena_bytes is not None and "arena_bytes" in estimate and estimate["arena_bytes"] > limits.max_arena_bytes:
        problems.append(f"arena {estimate['arena_bytes']:,} > {limits.max_arena_bytes:,} bytes")
    if limits.max_macs_per_second is not None and macs_per_second > limits.max_macs_per_second:
        problems.append(f"{macs_per_second:,.0f} MACs/s > {limits.max_macs_per_second:,.0f}")
    return problems


def size_in_window(size: int, limits) -> bool:
    return size >= limits.min_paper_size_bytes and (limits.max_paper_size_bytes is None or size <= limits.max_paper_size_bytes)


def _short(spec: CNNSpec) -> str:
    blocks = " ".join(f"[{b.module_a}{b.module_b}{b.pooling[0]}]" for b in spec.blocks)
    return f"stem {spec.stem_filters} x{spec.growth_ratio:g} {blocks}"


def best(records: Sequence[dict], criterion: str) -> dict | None:
    """The trained record with the highest accuracy (ties: lower loss) or the lowest loss (ties: higher accuracy)."""
    trained = [r for r in records if r["status"] == "trained" and math.isfinite(r["accuracy"]) and math.isfinite(r["loss"])]
    if not trained:
        return None
    if criterion == "accuracy":
        return max(trained, key=lambda r: (r["accuracy"], -r["loss"], -r["draw"]))
    return min(trained, key=lambda r: (r["loss"], -r["accuracy"], r["draw"]))


@dataclasses.dataclass
class _Setup:
    """What every candidate shares: the data's input shape, classes and seconds per model input."""

    input_shape: tuple[int, ...]
    num_classes: int
    input_seconds: float


def _setup(recipe, source: Path | str) -> _Setup:
    from tfasc.data.prepare import prepare_data

    data = prepare_data(recipe)
    if data.index.multi_label:
        raise SearchError(f"{source}: data.dataset {recipe.data.dataset} is multi-label; the search ranks "
                          "single-label candidates by accuracy and log loss")
    if len(data.input_shape) != 3:
        raise SearchError(f"{source}: features.kind {recipe.features.kind} gives inputs of shape "
                          f"{list(data.input_shape)}; the search space's models need [freq, time, channels]")
    return _Setup(tuple(data.input_shape), len(data.index.classes), data.input_seconds)


class CandidateFailed(Exception):
    """A candidate that cannot be trained or measured (diverged, out of memory, not convertible)."""


def _train_candidate(recipe, spec: CNNSpec, draw: int, run_dir: Path) -> dict:
    import tensorflow as tf

    from tfasc.training.loop import NonFiniteLossError
    from tfasc.training.rundir import read_run_json
    from tfasc.training.run import run_recipe

    try:
        run_recipe(candidate_recipe(recipe, spec, draw), out=run_dir)
    except (NonFiniteLossError, tf.errors.ResourceExhaustedError) as error:
        raise CandidateFailed(str(error).splitlines()[0]) from error
    metrics = read_run_json(run_dir / "report.json", "the candidate's report").get("metrics") or {}
    accuracy, loss = metrics.get("accuracy"), metrics.get("log_loss")
    if accuracy is None or loss is None or not math.isfinite(accuracy) or not math.isfinite(loss):
        raise CandidateFailed(f"evaluation gave accuracy {accuracy} and loss {loss}")
    return {"accuracy": float(accuracy), "loss": float(loss)}


def _evaluate_draw(recipe, setup: _Setup, spec: CNNSpec, draw: int, size: int, directory: Path) -> dict:
    """Measure, and train unless a device limit rejects it: the candidate's JSON record."""
    from tfasc import models
    from tfasc.deploy.estimate import estimate_int8
    from tfasc.deploy.profile import count_macs

    started = time.monotonic()
    record: dict[str, Any] = {
        "draw": draw, "key": spec.key(), "spec": spec.to_dict(),
        "paper_size_bytes": size,
    }
    try:
        model = models.build("searched_cnn", setup.input_shape, setup.num_classes, **model_options(recipe, spec))
    except ValueError as error:
        raise RecipeError(f"model (searched_cnn): {error}") from error
    record["params"] = int(model.count_params())
    macs = count_macs(model).macs
    over = device_violations({}, recipe.search.limits, macs / setup.input_seconds)
    if over:  # MACs need no conversion: reject before paying for one
        keras.backend.clear_session()
        return {**record, "macs": macs, "macs_per_second": macs / setup.input_seconds, "status": "rejected",
                "reason": "; ".join(over), "seconds": time.monotonic() - started}
    try:
        estimate = estimate_int8(model).to_dict()
    except (RuntimeError, ValueError) as error:  # not convertible, or no arena fits
        return {**record, "status": "failed", "reason": f"int8 estimate: {error}", "seconds": time.monotonic() - started}
    finally:
        keras.backend.clear_session()  # hundreds of candidates in one process
    macs_per_second = estimate["macs"] / setup.input_seconds
    record.update(estimate, macs_per_second=macs_per_second)
    problems = device_violations(estimate, recipe.search.limits, macs_per_second)
    if problems:
        return {**record, "status": "rejected", "reason": "; ".join(problems), "seconds": time.monotonic() - started}
    run_dir = directory / CANDIDATES_DIR / f"draw-{draw:05d}"
    remove(run_dir)  # a candidate killed before its record: trained again from scratch
    try:
        result = _train_candidate(recipe, spec, draw, run_dir)
    except CandidateFailed as error:
        remove(run_dir)
        return {**record, "status": "failed", "reason": str(error), "seconds": time.monotonic() - started}
    finally:
        keras.backend.clear_session()
    return {**record, **result, "status": "trained", "run_dir": str(run_dir.relative_to(directory)),
            "seconds": time.monotonic() - started}


def search_candidates(recipe, directory: Path, setup: _Setup) -> list[dict]:
    """Draw and evaluate until ``search.candidates`` are trained; every record, old and new."""
    config = recipe.search
    path = directory / CANDIDATES_FILE
    records = read_records(path)
    done = {r["key"]: r for r in records}
    rng = np.random.default_rng(config.seed)
    seen: set[str] = set()
    trained = sum(r["status"] == "trained" for r in records)
    if trained >= config.candidates:
        return records
    for draw in range(config.max_draws):
        spec = sample_spec(rng, config.space)
        key = spec.key()
        if key in seen:
            continue  # distinct candidates only (Sec. 4.4: "510 distinct candidate architectures")
        seen.add(key)
        if key in done:
            continue
        size = paper_size_bytes(spec, input_channels=setup.input_shape[-1], num_classes=setup.num_classes)
        if not size_in_window(size, config.limits):
            continue  # the paper's size window: a closed form, not worth a line
        record = _evaluate_draw(recipe, setup, spec, draw, size, directory)
        append_record(path, record)
        records.append(record)
        done[key] = record
        if record["status"] == "trained":
            trained += 1
            leader = best(records, "accuracy")
            lowest = best(records, "loss")
            log(f"candidate {trained}/{config.candidates} (draw {draw}) {_short(spec)}: accuracy "
                f"{record['accuracy']:.3f}, loss {record['loss']:.3f}, {record['paper_size_bytes'] / 1000:.0f} KB "
                f"float32, {record['flash_bytes']:,} B int8, {record['macs_per_second'] / 1e6:.1f} M MACs/s, arena "
                f"{record['arena_bytes']:,} B | best accuracy {leader['accuracy']:.3f} (draw {leader['draw']}), "
                f"lowest loss {lowest['loss']:.3f} (draw {lowest['draw']})")
            if trained >= config.candidates:
                return records
        else:
            log(f"draw {draw} {_short(spec)}: {record['status']} ({record['reason']})")
    raise SearchError(
        f"search.max_draws: {config.max_draws} draws gave only {trained} of search.candidates={config.candidates} "
        "candidates within search.limits; widen the limits or the space, or raise max_draws"
    )


def retrain_best(recipe, records: Sequence[dict], directory: Path) -> dict:
    """Train the chosen specs from scratch through the recipe's stages; ``{criterion: summary}``."""
    from tfasc.training.rundir import read_run_json
    from tfasc.training.run import run_recipe

    results: dict[str, dict] = {}
    for criterion in recipe.search.retrain:
        chosen = best(records, criterion)
        spec = CNNSpec.from_dict(chosen["spec"])
        same = next((r for r in results.values() if r["key"] == chosen["key"]), None)
        if same is not None:
            results[criterion] = {**same, "criterion": criterion}
            continue
        run_dir = directory / f"best-{criterion}"
        log(f"retraining the best by {criterion} (draw {chosen['draw']}, {_short(spec)}) in {run_dir}")
        run_recipe(final_recipe(recipe, spec, criterion), out=run_dir)
        report = read_run_json(run_dir / "report.json", "the retrained model's report")
        deploy = report.get("deploy") or {}
        profile = deploy.get("profile") or {}
        results[criterion] = {
            "criterion": criterion, "draw": chosen["draw"], "key": chosen["key"], "spec": chosen["spec"],
            "run_dir": str(run_dir.relative_to(directory)), "metrics": _headline(report.get("metrics")),
            "int8": _headline(deploy.get("metrics")), "bit_exact": (deploy.get("tflm") or {}).get("bit_exact"),
            "int8_bytes": (profile.get("tflite_int8") or {}).get("file_bytes"),
            "arena_bytes": (deploy.get("tflm") or {}).get("smallest_arena_bytes")
            or (deploy.get("tflm") or {}).get("arena_bytes_used"),
            "macs_per_second": profile.get("macs_per_second_of_audio"),
        }
    return results


def _headline(metrics: dict | None) -> dict | None:
    """Accuracy and loss of a report's metrics (single-label), without the per-class detail."""
    if not metrics:
        return None
    return {key: metrics.get(key) for key in ("accuracy", "macro_accuracy", "log_loss", "examples")}


# -- summary ---------------------------------------------------------------------------------------


def summarize(recipe, records: Sequence[dict], retrained: dict) -> dict:
    trained = sorted((r for r in records if r["status"] == "trained"), key=lambda r: (-r["accuracy"], r["loss"]))
    return {
        "recipe": recipe.name,
        "trained": len(trained),
        "rejected": sum(r["status"] == "rejected" for r in records),
        "failed": sum(r["status"] == "failed" for r in records),
        "limits": dataclasses.asdict(recipe.search.limits),
        "top": trained[: recipe.search.top],
        "best_accuracy": best(records, "accuracy"),
        "best_loss": best(records, "loss"),
        "mean_accuracy_by_growth_ratio": {g: float(np.mean(v)) for g, v in _accuracy_by_growth(trained).items()},
        "retrained": retrained,
    }


def render_markdown(summary: dict) -> str:
    lines = [f"# Architecture search: {summary['recipe']}", "",
             f"{summary['trained']} candidates trained, {summary['failed']} failed (diverged, out of memory or not "
             f"convertible), {summary['rejected']} rejected by device limits "
             f"({', '.join(f'{k} {v}' for k, v in summary['limits'].items() if v is not None)}).", "",
             "| rank | draw | architecture | float32 KB | int8 bytes | arena bytes | M MACs/s | accuracy | loss |",
             "|---|---|---|---|---|---|---|---|---|"]
    for rank, r in enumerate(summary["top"], 1):
        spec = CNNSpec.from_dict(r["spec"])
        lines.append(f"| {rank} | {r['draw']} | {'; '.join(spec.describe()[:-2])} | {r['paper_size_bytes'] / 1000:.0f} | "
                     f"{r['flash_bytes']:,} | {r['arena_bytes']:,} | {r['macs_per_second'] / 1e6:.2f} | "
                     f"{100 * r['accuracy']:.1f} % | {r['loss']:.3f} |")
    lines += ["", "Mean accuracy by growth ratio (Fig. 4): " + ", ".join(
        f"{g}: {100 * a:.1f} %" for g, a in summary["mean_accuracy_by_growth_ratio"].items())]
    for criterion, result in summary["retrained"].items():
        metrics, int8 = result.get("metrics") or {}, result.get("int8") or {}
        lines += ["", f"## Best by {criterion}: draw {result['draw']}, retrained in `{result['run_dir']}`", "",
                  "; ".join(CNNSpec.from_dict(result["spec"]).describe()), "",
                  f"float accuracy {_percent(metrics.get('accuracy'))}, int8 accuracy {_percent(int8.get('accuracy'))}, "
                  f"int8 {result.get('int8_bytes')} bytes, arena {result.get('arena_bytes')} bytes, "
                  f"TFLite Micro bit-exact: {result.get('bit_exact')}"]
    return "\n".join(lines) + "\n"


def _percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def make_plots(records: Sequence[dict], directory: Path) -> list[str]:
    from tfasc.report.plots import plot_search_histograms, plot_search_scatter

    trained = [r for r in records if r["status"] == "trained"]
    if not trained:
        return []
    plots = directory / PLOTS_DIR
    plots.mkdir(exist_ok=True)
    accuracy = [100 * r["accuracy"] for r in trained]
    written = [
        plot_search_scatter([r["paper_size_bytes"] / 1000 for r in trained], accuracy, plots / "accuracy_vs_size.png",
                            xlabel="float32 model size (KB, Table 4 rule)"),
        plot_search_scatter([r["macs_per_second"] / 1e6 for r in trained], accuracy, plots / "accuracy_vs_macs.png",
                            xlabel="M MACs per second of audio"),
        plot_search_histograms({f"growth {g}": [100 * a for a in v] for g, v in _accuracy_by_growth(trained).items()},
                               plots / "accuracy_by_growth_ratio.png"),
    ]
    return [str(Path(p).relative_to(directory)) for p in written]


def _accuracy_by_growth(trained: Sequence[dict]) -> dict[str, list[float]]:
    """Accuracies of the trained records per growth ratio (``"1.25"``: [...]), ratios ascending."""
    groups: dict[str, list[float]] = {}
    for r in sorted(trained, key=lambda r: r["spec"]["growth_ratio"]):
        groups.setdefault(f"{r['spec']['growth_ratio']:g}", []).append(r["accuracy"])
    return groups


# -- the command -----------------------------------------------------------------------------------


def search_dir(recipe, out: Path | str | None) -> Path:
    return Path(out) if out is not None else Path(recipe.output.dir) / f"{recipe.name}-search"


def draw_fingerprint(recipe) -> dict:
    """What decides the draws and what a candidate is: a search resumes only with these unchanged
    (``search.candidates``, ``max_draws``, ``retrain``, ``top``, the final training and the stages may change)."""
    from tfasc.config.load import to_plain

    search = recipe.search
    return to_plain({
        "data": recipe.data, "features": recipe.features,
        "model_options": {k: v for k, v in recipe.model.options.items() if k in SHARED_MODEL_OPTIONS},
        "search": {"seed": search.seed, "space": search.space, "limits": search.limits,
                   "training": search.training, "augment": search.augment},
    })


def _check_same_draws(directory: Path, recipe) -> None:
    recorded = directory / SEARCH_FINGERPRINT
    current = draw_fingerprint(recipe)
    if recorded.is_file():
        from tfasc.training.rundir import read_run_json

        before = read_run_json(recorded, "the search's recorded settings")
        changed = [key for key in current if key != "search" and before.get(key) != current[key]]
        changed += [f"search.{key}" for key in current["search"]
                    if before.get("search", {}).get(key) != current["search"][key]]
        if changed:
            raise SearchError(
                f"{recorded}: this search was started with other {', '.join(changed)} (resuming replays its "
                "draws and compares its candidates); use the same values, or another --out"
            )
    else:
        write_atomic(recorded, json.dumps(current, indent=1) + "\n")


def run_search(path: Path | str, overrides: Sequence[str] = (), *, out: Path | str | None = None,
               report_only: bool = False) -> tuple[Path, dict]:
    """Run (or continue) the search of the recipe at ``path``; the search folder and its summary."""
    from tfasc.training.run import validate_components
    from tfasc.training.rundir import RunLock

    recipe = load_recipe(path, overrides)
    try:
        validate_components(recipe)
    except RecipeError as error:
        raise RecipeError(f"{path}: {error}") from error
    from tfasc.crossval import refuse_multi_worker

    refuse_multi_worker(recipe, path, "the search")
    try:  # what the candidates train with (search.training / search.augment) is checked up front too
        from tfasc.models.searched_cnn import WU_LEE_B

        validate_components(candidate_recipe(recipe, WU_LEE_B, 0))
    except RecipeError as error:
        raise RecipeError(f"{path}: search (the candidates' training and augmentation): {error}") from error
    text = dump_recipe(recipe)
    directory = search_dir(recipe, out)
    if directory.exists() and not directory.is_dir():
        raise SearchError(f"--out {directory}: exists and is not a folder")
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    with RunLock(directory):
        try:
            _check_same_draws(directory, recipe)
            if report_only:
                records = read_records(directory / CANDIDATES_FILE)
                if not any(r["status"] == "trained" for r in records):
                    raise SearchError(f"{directory}: no candidate trained yet; run without --report-only first")
                retrained = (_read_summary(directory) or {}).get("retrained", {})
            else:
                write_atomic(directory / SEARCH_RECIPE, text)
                records = search_candidates(recipe, directory, _setup(recipe, path))
                retrained = retrain_best(recipe, records, directory)
            summary = summarize(recipe, records, retrained)
            summary["plots"] = make_plots(records, directory) if recipe.output.plots else []
            write_atomic(directory / SUMMARY_JSON, json.dumps(summary, indent=2) + "\n")
            write_atomic(directory / SUMMARY_MD, render_markdown(summary))
        except BaseException:
            if created and not (directory / CANDIDATES_FILE).is_file():
                remove(directory)  # a failed first attempt leaves nothing
            raise
    log(f"report: {directory / SUMMARY_MD}")
    return directory, summary


def _read_summary(directory: Path) -> dict | None:
    from tfasc.training.rundir import read_run_json

    path = directory / SUMMARY_JSON
    return read_run_json(path, "the search summary") if path.is_file() else None

