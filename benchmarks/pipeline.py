"""Does the training input pipeline keep up with the model? Input stream alone, model alone, and both.

Run: ``python benchmarks/pipeline.py [--clips 384] [--seconds S] [--batches 20] [--steps 2] [--repeats 3]
[--model-repeats 2] [--waveform-recipes recipes/esc50_aclnet.yaml [recipes/ravdess_erann.yaml]] [--workdir DIR]
[--json OUT] [--no-scaling]``.

Everything runs side by side in one process on data synthesized in the DCASE 2020 1B layout in a
temporary folder (``data.synthesize``; each recipe's ``data`` section is pointed there with the
recipe's sample rate, clip length and channels, ``--seconds`` shortening the clips). Row groups:

* **cached** (``recipes/dcase2020_1b.yaml``, log-mel 256 x 469 x 2, shared_resnet c = 64, batch 32):
  the stream of :meth:`StageContext.train_dataset` (features gathered from the memory-mapped float16
  cache by batch index in a ``numpy_function``, normalization, FreqMix / CutMix / mixup), iterated
  without a model; cumulative rows show the cost of the gather, + normalization, + batch augmentation.
* **waveform** (each ``--waveform-recipes`` recipe; default esc50_aclnet: a raw-waveform model with
  AclNet's per-example chain and mixup; add ravdess_erann for crop + pitch shift, between-class
  mixing, a log-mel front-end and SpecAugment, every part): the uncached path. The clips are decoded
  once, at prepare time (``prepare_data``), and held in memory; the per-batch cost is the per-example waveform
  augmentation + waveform mixing + front-end (+ normalization) + batch augmentation, all in the
  tf.data map. Cumulative rows, built with recipe overrides that turn parts off: gather only, the
  per-example augmentation only (``augment.waveform.mix=none``, ``features.kind=waveform``, batch
  augmentation off), + mixing, + front-end, + batch augmentation (= the recipe's stream). A part the
  recipe does not have gets no row. esc50_aclnet's mixup is off for its first 100 epochs
  (``mixup_warmup_epochs``); it runs here with ``augment.mixup_warmup_epochs=0`` so that its cost shows.

For each recipe also: **model alone** (the recipe's model built and compiled as the train stage does,
``loop.compile_model``, fed one real batch of the stream at the recipe's batch size held in memory,
``Dataset.from_tensors(batch).repeat()``) and **full** (``model.fit`` on the real stream as it is; the
synthesized training split is small, so a pass's last batch is short: full rows compare examples/s,
counting the rows fit trained on; at the default 384 clips, 258 train, the timed batches are full).
A stream row is examples/s (counted rows: a pass's last batch may be short) of ``--batches`` batches
after ``--warmup`` untimed ones, a fresh iterator each repeat; a model row times ``--steps`` training
steps after one untimed step of the same ``fit``. Everything is traced / warmed up once, then
``--repeats`` rounds interleave all rows (model rows only in the first ``--model-repeats``: a step
takes seconds on 2 cores); the median time per batch / step is reported. At the defaults about 5
minutes on 2 cores (synthesis and features 2.5 of them); ravdess_erann adds ~6 (ERANN-0-4: ~20 s a step).

**Multi-worker scaling** (``--no-scaling`` skips it): 1, then 2 worker processes on 127.0.0.1 train the
cached DCASE 2020 1B recipe under ``MultiWorkerMirroredStrategy`` (``distribute.workers``), started by this
script with a hidden ``--scaling-worker i/N``. Each worker times its own input pipeline (its replica's
slice of every global batch, ``train_dataset(0, part=(i, N))``) side by side with the others (after
a barrier), then ``fit`` times ``--steps`` steps of the cluster (global batch unchanged, BatchNorm
synchronized). Reported: the pipelines' examples/s summed over the workers, and the training
examples/s and its ratio to one worker. Every worker here shares the same cores: the figures show the
cost of the collectives and of splitting the batch, not what separate machines would gain.

Prints a markdown table (README-ready): per row ms per batch (or step), examples/s, steps/s, the
cost of each part over the row above it, and pipeline examples/s / model examples/s; then the ratio of
each recipe (goal >= 3x: the stream never starves the model) and one sentence per row saying whether
the pipeline keeps up. tf.data and the model share the same CPU cores, so the "alone" figures
overstate what they achieve together: the "full" row is the combined figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

# Runnable from a checkout without installing the package.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tfasc  # noqa: E402,F401  (selects tf_keras before TensorFlow is imported)
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
import yaml  # noqa: E402

from tfasc.augment.mixing import make_batch_augmenter  # noqa: E402
from tfasc.config.load import load_recipe, read_yaml, to_plain  # noqa: E402
from tfasc.data.pipeline import make_dataset  # noqa: E402
from tfasc.data.prepare import prepare_data  # noqa: E402
from tfasc.training import distribute, loop  # noqa: E402
from tfasc.training.context import StageContext  # noqa: E402
from tfasc.training.stages.train import build_model  # noqa: E402

CACHED_RECIPE = ROOT / "recipes" / "dcase2020_1b.yaml"
#: The uncached group's default: a raw-waveform model with AclNet's per-example chain. Add
#: recipes/ravdess_erann.yaml for every part (pitch shift, between-class mixing, a log-mel front-end,
#: SpecAugment); its ERANN-0-4 steps take ~20 s on 2 cores (+6 minutes).
WAVEFORM_RECIPES = (ROOT / "recipes" / "esc50_aclnet.yaml",)
#: ``data`` keys kept from a recipe when it is pointed at the synthesized data (the rest, e.g. the
#: loader's ``eval_fold``, belongs to its real dataset).
KEPT_DATA_KEYS = ("sample_rate", "duration_s", "channels", "batch_size", "seed", "sampling")
BATCH_AUGMENT_OFF = ("augment.freqmix_prob=0", "augment.cutmix_prob=0", "augment.mixup_prob=0",
                     "augment.freq_masks=0", "augment.time_masks=0")
GOAL = 3.0  # pipeline examples/s over model examples/s


# -- recipes on synthetic data ----------------------------------------------------------------------

class Workspace:
    """The temporary folder: synthesized datasets (one per sample rate, length and channels), the
    feature cache, rewritten recipes; and the prepared data, shared by recipes whose ``data`` and
    ``features`` sections agree."""

    def __init__(self, folder: Path, clips: int, seconds: float | None):
        self.folder, self.clips, self.seconds = folder, clips, seconds
        self._prepared: dict[str, object] = {}

    def recipe(self, path: Path, overrides=()):
        """``path`` with its ``data`` section pointed at synthesized DCASE-layout data, then ``overrides``."""
        tree = read_yaml(path)
        data = {k: v for k, v in tree.get("data", {}).items() if k in KEPT_DATA_KEYS}
        data.setdefault("sample_rate", 48000)
        data.setdefault("duration_s", 10.0)
        data.setdefault("channels", 2)
        if self.seconds:
            data["duration_s"] = float(self.seconds)
        rate, seconds, channels = data["sample_rate"], data["duration_s"], data["channels"]
        root = self.folder / f"dcase-{self.clips}x{seconds:g}s-{rate}hz-{channels}ch"
        tree["data"] = {**data, "dataset": "dcase2020_1b", "root": str(root), "fold": 1,
                        "cache_dir": str(self.folder / "cache"),
                        "synthesize": dict(clips=self.clips, seed=0, sample_rate=rate, duration_s=seconds,
                                           channels=channels)}
        tree.setdefault("evaluate", {})["held_out_groups"] = []  # not part of the training stream
        rewritten = self.folder / "recipes" / path.name
        rewritten.parent.mkdir(parents=True, exist_ok=True)
        rewritten.write_text(yaml.safe_dump(tree, sort_keys=False))
        return load_recipe(rewritten, overrides)

    def context(self, recipe) -> StageContext:
        key = json.dumps([to_plain(recipe.data), to_plain(recipe.features)], sort_keys=True, default=str)
        if key not in self._prepared:
            self._prepared[key] = prepare_data(recipe)
        return StageContext(recipe=recipe, run_dir=self.folder / "run", data=self._prepared[key])


# -- measurements -----------------------------------------------------------------------------------

@dataclass
class Measurement:
    """One row: ``run()`` returns ``(seconds, examples, steps)`` of one timed repeat."""

    group: str
    name: str
    kind: str  # "pipeline", "model" or "full"
    batch_size: int
    run: Callable[[], tuple[float, int, int]]
    part: str | None = None
    """For cumulative pipeline rows: what this row adds to the one above it."""
    warmup: Callable[[], object] | None = None
    """Run once before the timed rounds (default: ``run``)."""
    rounds: int | None = None
    """Take part in only this many of the interleaved rounds (None: all)."""
    seconds: list = field(default_factory=list)
    examples: list = field(default_factory=list)
    steps: list = field(default_factory=list)

    def median(self) -> tuple[float, float, float]:
        """(examples/s, steps/s, ms per batch or step) from the median time per step over the repeats
        (every repeat of a row times the same batches: a fresh iterator from batch 0, or fixed-size steps)."""
        per_step = statistics.median(s / n for s, n in zip(self.seconds, self.steps))
        examples_per_step = statistics.mean(e / n for e, n in zip(self.examples, self.steps))
        return examples_per_step / per_step, 1.0 / per_step, 1e3 * per_step


def stream_warmup(dataset: tf.data.Dataset, warmup: int) -> Callable[[], None]:
    """Start the stream once (tf.data's autotuning, the first numpy_function calls)."""
    def run():
        iterator = iter(dataset)
        for _ in range(max(warmup, 1)):
            next(iterator)
    return run


def stream_timer(dataset: tf.data.Dataset, batches: int, warmup: int) -> Callable[[], tuple[float, int, int]]:
    """Iterate a fresh iterator: ``warmup`` untimed batches (start-up), then ``batches`` timed ones.
    The consumer does nothing, so the prefetch buffer stays drained: the rate is the producer's."""
    def run():
        iterator = iter(dataset)
        for _ in range(warmup):
            next(iterator)
        examples = 0
        start = time.perf_counter()
        for _ in range(batches):
            x, _y = next(iterator)
            examples += int(x.shape[0])
        seconds = time.perf_counter() - start
        del iterator
        return seconds, examples, batches
    run.warmup = stream_warmup(dataset, warmup)
    return run


class StepTimes(keras.callbacks.Callback):
    """Wall time at the end of every training batch (a plain callback: logs are synced to numpy)."""

    def on_train_begin(self, logs=None):
        self.times = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())


def fit_timer(model, dataset: tf.data.Dataset, steps: int, batch_size: Callable[[int], int]
              ) -> Callable[[], tuple[float, int, int]]:
    """One ``fit`` of ``1 + steps`` steps (a fresh iterator: batches 0 .. steps, ``batch_size(i)`` rows
    each); the first step (iterator start-up, buffers) is not timed."""
    def run():
        timer = StepTimes()
        model.fit(dataset, epochs=1, steps_per_epoch=steps + 1, verbose=0, callbacks=[timer])
        return timer.times[-1] - timer.times[0], sum(batch_size(i) for i in range(1, steps + 1)), steps
    return run


def stream_batch_sizes(context: StageContext) -> Callable[[int], int]:
    """Rows of batch ``i`` of ``train_dataset(0)``: a pass's last batch is short unless the examples
    fill it (always full with balanced sampling)."""
    size = context.recipe.data.batch_size
    examples = len(context.data.input_targets(context.data.train_targets))
    if context.recipe.data.sampling == "balanced":
        return lambda i: size
    per_pass = -(-examples // size)
    last = examples - size * (per_pass - 1)
    return lambda i: last if i % per_pass == per_pass - 1 else size


def full_batches(x, y, batch_size: int):
    """``(x, y)`` with as many rows as ``batch_size``, repeating rows of a short batch."""
    index = tf.range(batch_size) % tf.shape(x)[0]
    return tf.gather(x, index), tf.gather(y, index)


def model_measurements(group: str, context: StageContext, stream: tf.data.Dataset, args) -> list[Measurement]:
    """The recipe's model alone on one batch of ``stream`` held in memory, and ``fit`` on ``stream``."""
    recipe, data = context.recipe, context.data
    size = recipe.data.batch_size
    x, y = full_batches(*next(iter(stream)), size)  # a real batch (the recipe's size even if a pass is shorter)
    model = build_model(recipe, data.input_shape, len(data.index.classes), sigmoid_outputs=data.sigmoid_outputs)
    trainee = loop.compile_model(model, recipe.training, steps=context.steps_per_epoch(),
                                 class_counts=context.class_counts(), multi_label=data.index.multi_label)
    shape = "x".join(str(d) for d in x.shape[1:])
    held = tf.data.Dataset.from_tensors((x, y)).repeat()
    # The synthesized training split is small: a pass's last batch is short. fit gets the stream as
    # it is; its examples/s count the rows it trained on.
    warm = lambda ds: lambda: trainee.fit(ds, epochs=1, steps_per_epoch=1, verbose=0)  # noqa: E731  (tracing)
    return [
        Measurement(group, f"model alone: {recipe.model.name}, [{size}, {shape}] from memory", "model", size,
                    fit_timer(trainee, held, args.steps, lambda i: size), warmup=warm(held),
                    rounds=args.model_repeats),
        Measurement(group, "full: model.fit on train_dataset(0)", "full", size,
                    fit_timer(trainee, stream, args.steps, stream_batch_sizes(context)), warmup=warm(stream),
                    rounds=args.model_repeats),
    ]


# -- row groups -------------------------------------------------------------------------------------

def cached_group(workspace: Workspace, args) -> list[Measurement]:
    """DCASE 2020 1B: the cached log-mel stream (gather, + normalization, + batch augmentation), the model, both."""
    recipe = workspace.recipe(CACHED_RECIPE)
    context = workspace.context(recipe)
    data = context.data
    group = f"cached: {recipe.name}"
    common = dict(batch_size=recipe.data.batch_size, shuffle=True, seed=recipe.data.seed, repeat=True,
                  sampling=recipe.data.sampling)
    features, targets = data.inputs(data.train.features), data.input_targets(data.train_targets)
    gather = make_dataset(features, targets, **common)
    normalized = make_dataset(features, targets, normalize=data.normalization, **common)
    stream = context.train_dataset(0)
    timer = lambda ds: stream_timer(ds, args.batches, args.warmup)  # noqa: E731
    shape = "x".join(str(d) for d in data.input_shape)
    rows = [
        Measurement(group, f"pipeline: gather [{shape}] {features.dtype} cache -> float32", "pipeline",
                    recipe.data.batch_size, timer(gather), part="gather"),
        Measurement(group, f"pipeline: + normalization ({data.normalization.mode})", "pipeline",
                    recipe.data.batch_size, timer(normalized), part="normalization"),
        Measurement(group, "pipeline: + batch augmentation = train_dataset(0)", "pipeline",
                    recipe.data.batch_size, timer(stream), part="batch augmentation"),
    ]
    return rows + model_measurements(group, context, stream, args)


def waveform_group(workspace: Workspace, path: Path, args) -> list[Measurement]:
    """A recipe with ``augment.waveform``: the uncached stream part by part, the model, both."""
    # Mixup warm-up would leave mixup out of the first epochs' batches: measure the policy it reaches.
    base = ("augment.mixup_warmup_epochs=0",)
    recipe = workspace.recipe(path, base)
    if not recipe.augment.waveform.per_example:
        raise SystemExit(f"{path}: no per-example augment.waveform settings; pick a recipe that has them")
    context = workspace.context(recipe)
    clips = context.data.train_clips
    group = f"waveform: {recipe.name}"
    batch_size = recipe.data.batch_size
    timer = lambda ds: stream_timer(ds, args.batches, args.warmup)  # noqa: E731

    waveform_frontend = recipe.features.kind == "waveform"
    policy = recipe.augment
    steps: list[tuple[str, tuple[str, ...], str]] = []  # (row name, overrides turning later parts off, part)
    no_mix, no_frontend = ("augment.waveform.mix=none",), ("features.kind=waveform",)
    steps.append(("pipeline: per-example waveform augmentation only", no_mix + no_frontend + BATCH_AUGMENT_OFF,
                  "waveform augmentation"))
    if policy.waveform.mix != "none":
        steps.append((f"pipeline: + waveform mixing ({policy.waveform.mix})", no_frontend + BATCH_AUGMENT_OFF,
                      "mixing"))
    if not waveform_frontend:
        steps.append((f"pipeline: + front-end ({recipe.features.kind})", BATCH_AUGMENT_OFF, "front-end"))
    if policy.enabled:
        steps.append(("pipeline: + batch augmentation", (), "batch augmentation"))
    # The last row is the recipe's own stream, whichever part it ends with.
    name, _, part = steps[-1]
    steps[-1] = (f"{name} = train_dataset(0)", (), part)

    rows = [Measurement(group, f"pipeline: gather decoded clips [{'x'.join(map(str, clips.features.shape[1:]))}] "
                               f"(decoded at prepare time)", "pipeline", batch_size,
                        timer(make_dataset(clips.features, context.data.train_targets, batch_size=batch_size,
                                           shuffle=True, seed=recipe.data.seed, repeat=True,
                                           sampling=recipe.data.sampling)), part="gather")]
    for name, overrides, part in steps:
        variant = workspace.recipe(path, base + overrides) if overrides else recipe
        variant_context = workspace.context(variant) if overrides else context
        rows.append(Measurement(group, name, "pipeline", batch_size, timer(variant_context.train_dataset(0)),
                                part=part))
    return rows + model_measurements(group, context, context.train_dataset(0), args)


# -- report -----------------------------------------------------------------------------------------

def run_all(measurements: list[Measurement], repeats: int) -> float:
    """Warm every measurement up once (tracing, buffers), then ``repeats`` interleaved rounds."""
    for m in measurements:
        (m.warmup or getattr(m.run, "warmup", None) or m.run)()
    start = time.perf_counter()
    for repeat in range(repeats):
        order = measurements[repeat % len(measurements):] + measurements[:repeat % len(measurements)]
        for m in order:
            if m.rounds is not None and len(m.seconds) >= m.rounds:
                continue
            seconds, examples, steps = m.run()
            m.seconds.append(seconds)
            m.examples.append(examples)
            m.steps.append(steps)
    return time.perf_counter() - start


def summarize(measurements: list[Measurement]) -> tuple[list[dict], list[dict]]:
    """Table rows (with per-part cost and ratio to the model) and one summary per group."""
    rows, groups = [], []
    for group in dict.fromkeys(m.group for m in measurements):
        members = [m for m in measurements if m.group == group]
        model = next((m for m in members if m.kind == "model"), None)
        full = next((m for m in members if m.kind == "full"), None)
        model_rate = model.median()[0] if model else None
        previous_ms = None
        group_rows = []
        for m in members:
            examples_per_s, steps_per_s, ms = m.median()
            row = dict(group=group, name=m.name, kind=m.kind, batch=m.batch_size, ms=ms,
                       examples_per_s=examples_per_s, steps_per_s=steps_per_s, part=m.part,
                       part_ms=None, ratio=None, repeats=len(m.seconds))
            if m.kind == "pipeline":
                if previous_ms is not None:
                    row["part_ms"] = ms - previous_ms
                previous_ms = ms
                if model_rate:
                    row["ratio"] = examples_per_s / model_rate
            elif m.kind == "full" and model_rate:
                row["ratio"] = examples_per_s / model_rate
            group_rows.append(row)
        stream = [r for r in group_rows if r["kind"] == "pipeline"][-1]
        groups.append(dict(group=group, pipeline_examples_per_s=stream["examples_per_s"],
                           model_examples_per_s=model_rate, ratio=stream["ratio"],
                           full_examples_per_s=full.median()[0] if full else None,
                           full_over_model=(full.median()[0] / model_rate) if full and model_rate else None))
        rows.extend(group_rows)
    return rows, groups


def verdict(row: dict) -> str:
    if row["kind"] == "pipeline":
        cost = ""
        if row["part_ms"] is not None:
            cost = (f"; {row['part']} costs {row['part_ms']:+.1f} ms per batch" if row["part_ms"] > 0 else
                    f"; {row['part']}: no measurable cost ({row['part_ms']:+.1f} ms per batch, within the noise)")
        if row["ratio"] is None:
            return f"{row['examples_per_s']:.0f} examples/s without a model{cost}."
        keeps = ("keeps up with a wide margin" if row["ratio"] >= GOAL else
                 "keeps up, but with less than the 3x margin" if row["ratio"] >= 1.0 else
                 "would starve the model")
        return f"alone, this stream {keeps} ({row['ratio']:.1f}x the model's examples/s){cost}."
    if row["kind"] == "model":
        return (f"the model's own ceiling, {row['ms']:.0f} ms per step: the stream must deliver a batch faster "
                "than this.")
    share = row["ratio"]
    if share is None:
        return "fit on the real stream."
    if share >= 0.9:
        state = "the pipeline keeps up: training is model-bound"
    elif share >= 0.7:
        state = "the pipeline keeps up, but shares the cores: training runs noticeably below the model-alone rate"
    else:
        state = "the model waits for data or loses the cores to tf.data: the pipeline does not keep up"
    return f"fit on the real stream reaches {100 * share:.0f} % of the model-alone rate; {state}."


def print_report(rows: list[dict], groups: list[dict], args, timed_s: float) -> None:
    print(f"\nTensorFlow {tf.__version__}, {os.cpu_count()} CPUs; {args.clips} synthesized clips"
          f"{f' of {args.seconds:g} s' if args.seconds else ' (recipe clip lengths)'}; pipeline: {args.batches} "
          f"batches after {args.warmup}; model: {args.steps} steps after 1; median of {args.repeats} interleaved "
          f"rounds ({min(args.model_repeats, args.repeats)} for model rows; timed part {timed_s:.0f} s)\n")
    header = ("| group | measurement | batch | ms / batch or step | examples/s | steps/s | part cost (ms/batch) "
              "| x model examples/s |")
    print(header)
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        part = f"{r['part_ms']:+.1f}" if r["part_ms"] is not None else ""
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else ""
        print(f"| {r['group']} | {r['name']} | {r['batch']} | {r['ms']:.1f} | {r['examples_per_s']:.1f} "
              f"| {r['steps_per_s']:.3f} | {part} | {ratio} |")
    print("\nRatios (the recipe's whole stream alone / the model alone; goal >= 3x on 2 cores):")
    for g in groups:
        ok = "meets" if g["ratio"] >= GOAL else "MISSES"
        print(f"  {g['group']}: {g['pipeline_examples_per_s']:.1f} / {g['model_examples_per_s']:.2f} examples/s "
              f"= {g['ratio']:.1f}x ({ok} the {GOAL:g}x goal); full fit at {100 * g['full_over_model']:.0f} % "
              "of the model-alone rate")
    print("\nPer row:")
    for r in rows:
        print(f"  - {r['group']} / {r['name']}: {verdict(r)}")
    print("\ntf.data and the model share the same cores: the 'alone' rates overstate what they reach together;"
          " the 'full' rows are the combined figure.")


# -- multi-worker scaling on localhost ------------------------------------------------------------

def scaling_worker(args) -> int:
    """Hidden mode (``--scaling-worker i/N --scaling-workers ADDR,...``): worker ``i`` of an ``N``-worker
    ``MultiWorkerMirroredStrategy`` on this machine, on the cached DCASE 2020 1B recipe. Prints one
    JSON line: the examples/s of its own input pipeline (its replica's slice of every global batch,
    ``train_dataset(0, part=(i, N))``), timed while the other workers time theirs, and the cluster's
    training examples/s (global batch / step time of a ``fit`` on the distributed stream)."""
    index, count = distribute.parse_worker(args.scaling_worker)
    workspace = Workspace(args.workdir.resolve(), args.clips, args.seconds)
    # The parent wrote the recipe pointed at its data (scaling_rows): the workers only read it.
    recipe = load_recipe(workspace.folder / "recipes" / CACHED_RECIPE.name,
                         distribute.worker_overrides(args.scaling_worker, args.scaling_workers))
    distribution = distribute.make_distribution(recipe.distribute)  # returns once every worker is there
    context = workspace.context(recipe)
    data = context.data
    distribute.barrier(distribution)  # the workers' pipelines are timed side by side
    seconds, examples, _ = stream_timer(context.train_dataset(0, part=(index, count)), args.batches, args.warmup)()
    with distribution.strategy.scope():
        model = build_model(recipe, data.input_shape, len(data.index.classes), sigmoid_outputs=data.sigmoid_outputs)
        trainee = loop.compile_model(model, recipe.training, steps=context.steps_per_epoch(),
                                     class_counts=context.class_counts(), multi_label=data.index.multi_label)
    stream = distribute.distributed_dataset(distribution.strategy, lambda part: context.train_dataset(0, part=part))
    timer = StepTimes()
    with loop.SynchronizedBatchNorm(trainee, count > 1):
        trainee.fit(stream, epochs=1, steps_per_epoch=args.steps + 1, verbose=0, callbacks=[timer])
    step_s = (timer.times[-1] - timer.times[0]) / args.steps
    # One replica trains on whole batches, a pass's last one short; several on full batches only.
    rows = stream_batch_sizes(context) if count == 1 else (lambda i: recipe.data.batch_size)
    trained = sum(rows(i) for i in range(1, args.steps + 1))
    print(json.dumps({"worker": index, "workers": count, "pipeline_examples_per_s": examples / seconds,
                      "train_examples_per_s": trained / (step_s * args.steps), "step_s": step_s}), flush=True)
    return 0


def scaling_rows(workspace: Workspace, args, counts=(1, 2)) -> list[dict]:
    """Start 1, then 2 worker processes on 127.0.0.1 (:func:`scaling_worker`); their figures per count."""
    workspace.recipe(CACHED_RECIPE)  # written once here, read by every worker
    rows = []
    for count in counts:
        addresses = distribute.local_worker_addresses(count)
        command = [sys.executable, __file__, "--scaling-workers", addresses, "--workdir", str(workspace.folder),
                   "--clips", str(args.clips), "--batches", str(args.batches), "--warmup", str(args.warmup),
                   "--steps", str(args.steps), *(["--seconds", str(args.seconds)] if args.seconds else [])]
        workers = [subprocess.Popen([*command, "--scaling-worker", f"{i}/{count}"], stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True) for i in range(count)]
        results = []
        for worker in workers:
            output, _ = worker.communicate(timeout=1800)
            if worker.returncode:
                raise SystemExit(f"scaling worker failed (exit {worker.returncode}): {output[-2000:]}")
            results.append(json.loads(output.strip().splitlines()[-1]))
        rows.append({"workers": count,
                     "pipeline_examples_per_s": sum(r["pipeline_examples_per_s"] for r in results),
                     "per_worker_pipeline": [r["pipeline_examples_per_s"] for r in results],
                     "train_examples_per_s": results[0]["train_examples_per_s"], "step_s": results[0]["step_s"]})
        print(f"scaling: {count} worker(s) measured", flush=True)
    return rows


def print_scaling(rows: list[dict]) -> None:
    print(f"\nMulti-worker scaling on localhost ({os.cpu_count()} CPUs shared by every worker), cached DCASE 2020 1B, "
          "MultiWorkerMirroredStrategy, global batch unchanged:\n")
    print("| workers | pipeline examples/s (all workers) | per worker | training examples/s | s / step | x 1 worker |")
    print("|---:|---:|---|---:|---:|---:|")
    base = rows[0]["train_examples_per_s"]
    for r in rows:
        per = ", ".join(f"{v:.0f}" for v in r["per_worker_pipeline"])
        print(f"| {r['workers']} | {r['pipeline_examples_per_s']:.0f} | {per} | {r['train_examples_per_s']:.2f} "
              f"| {r['step_s']:.2f} | {r['train_examples_per_s'] / base:.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=384,
                        help="synthesized clips per dataset (~2/3 train: 384 gives full timed batches at 64)")
    parser.add_argument("--seconds", type=float, default=None, help="clip length (default: each recipe's)")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per pipeline repeat")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches per pipeline repeat first")
    parser.add_argument("--steps", type=int, default=2, help="timed training steps per model repeat")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median reported)")
    parser.add_argument("--model-repeats", type=int, default=2,
                        help="rounds that include the model rows (seconds per step on 2 cores: fewer)")
    parser.add_argument("--waveform-recipes", nargs="*", type=Path, default=list(WAVEFORM_RECIPES),
                        help="recipes with augment.waveform (none: skip the uncached group)")
    parser.add_argument("--no-cached", action="store_true", help="skip the cached DCASE 2020 1B group")
    parser.add_argument("--workdir", type=Path, help="keep synthesized data and cache here (default: a temp folder, "
                                                     "removed at the end)")
    parser.add_argument("--json", metavar="OUT", help="also write the rows to this JSON file")
    parser.add_argument("--no-scaling", action="store_true", help="skip the multi-worker scaling on localhost")
    parser.add_argument("--scaling-worker", help=argparse.SUPPRESS)  # i/N: run as one scaling worker
    parser.add_argument("--scaling-workers", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scaling_worker:
        return scaling_worker(args)

    folder = args.workdir or Path(tempfile.mkdtemp(prefix="tfasc-pipeline-"))
    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    try:
        workspace = Workspace(folder.resolve(), args.clips, args.seconds)
        started = time.perf_counter()
        # Row groups: each function returns its measurements; add a group by appending another.
        measurements: list[Measurement] = []
        if not args.no_cached:
            measurements += cached_group(workspace, args)
        for path in args.waveform_recipes:
            measurements += waveform_group(workspace, path, args)
        print(f"data prepared, datasets and models built in {time.perf_counter() - started:.0f} s", flush=True)
        timed_s = run_all(measurements, args.repeats)
        rows, groups = summarize(measurements)
        print_report(rows, groups, args, timed_s)
        scaling = [] if args.no_scaling else scaling_rows(workspace, args)
        if scaling:
            print_scaling(scaling)
        if args.json:
            Path(args.json).write_text(json.dumps(dict(args={k: str(v) for k, v in vars(args).items()},
                                                       rows=rows, groups=groups, scaling=scaling), indent=2))
    finally:
        if args.workdir is None:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
