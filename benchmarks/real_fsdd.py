"""Leave-one-speaker-out on the real Free Spoken Digit recordings: three approaches on the same folds.

1. **log-mel + logistic regression** (scikit-learn): the features of ``recipes/fsdd_log_mel.yaml``
   (40 log-mel bins, global standardization), flattened, multinomial logistic regression.
2. **baseline_cnn**, today's recipe: ``recipes/fsdd_log_mel.yaml`` through every fold
   (``python -m tfasc.crossval`` with the six speakers added).
3. **tfasc's best recipe**: ``recipes/fsdd_loso.yaml``.
4. **AclNet from raw PCM**: ``recipes/fsdd_aclnet.yaml`` (the learned waveform front-end; no DSP
   before the int8 model but the per-clip normalization).
5. **ERANN**: ``recipes/fsdd_erann.yaml`` (ERANN-1-0.5 on log-mel, between-class mixing, SpecAugment,
   pitch shifting, EMA).

For 2 to 5, per speaker and mean: float accuracy, int8 accuracy (every evaluation clip through the
int8 model, and every one of them checked bit for bit in the TFLite Micro interpreter:
``export.verify_examples`` covers the split), int8 flash bytes, tensor arena bytes, MACs per second
of audio. Then the input pipeline's training examples per second with every augmentation of the best
recipe on, beside the model's training examples per second from memory (one batch, repeated): the
pipeline must not be what limits training.

Resumable (the folds are crossval runs under ``--out``; a part given to ``--skip`` keeps what an
earlier invocation recorded in ``real_fsdd.json``); prints a Markdown table (README) and writes
``real_fsdd.json``. Skips cleanly (exit 0, one line) when the recordings are absent.
About 25-40 min per CNN recipe on 2 CPU cores.

    python benchmarks/real_fsdd.py [--root ../shared/data/fsdd] [--out runs/real_fsdd]
        [--speakers george theo] [--skip baseline_cnn]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import tfasc  # noqa: F401  (selects tf_keras before TensorFlow is imported)
from tfasc.cli import quiet_tensorflow

REPO = Path(__file__).resolve().parent.parent
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
TODAY = REPO / "recipes" / "fsdd_log_mel.yaml"
BEST = REPO / "recipes" / "fsdd_loso.yaml"
ACLNET = REPO / "recipes" / "fsdd_aclnet.yaml"
ERANN = REPO / "recipes" / "fsdd_erann.yaml"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "fsdd"), help="FSDD folder")
    parser.add_argument("--out", default="runs/real_fsdd", help="folder of the crossval runs and real_fsdd.json")
    parser.add_argument("--speakers", nargs="+", default=list(SPEAKERS), choices=SPEAKERS)
    parser.add_argument("--skip", nargs="*", default=[], choices=["logreg", "baseline_cnn", "best", "aclnet", "erann",
                                                                      "throughput"])
    parser.add_argument("--throughput-batches", type=int, default=30)
    return parser.parse_args(argv)


def fold_overrides(root: str, speakers) -> list[str]:
    return [f"data.root={root}", "crossval.option=eval_speaker", f"crossval.folds=[{', '.join(speakers)}]",
            # every evaluation clip (500 per speaker) also checked bit for bit in TFLite Micro
            "export.verify_examples=1000", "output.tensorboard=false"]


# -- 1. log-mel + logistic regression ------------------------------------------------------------


def logistic_regression(root: str, speakers) -> dict:
    from sklearn.linear_model import LogisticRegression

    from tfasc.config import load_recipe
    from tfasc.data.prepare import normalized, prepare_data

    accuracy = {}
    for speaker in speakers:
        recipe = load_recipe(TODAY, [f"data.root={root}", f"data.eval_speaker={speaker}"])
        data = prepare_data(recipe)
        flat = lambda features: normalized(features, data).reshape(len(features), -1)
        classifier = LogisticRegression(max_iter=2000, C=0.01)
        classifier.fit(flat(data.train.features), data.train_targets.argmax(axis=1))
        predicted = classifier.predict(flat(data.eval.features))
        accuracy[speaker] = float(np.mean(predicted == data.eval_targets.argmax(axis=1)))
        print(f"logreg {speaker}: {accuracy[speaker]:.3f}", flush=True)
    return {"float": accuracy}


# -- 2, 3. recipes through cross-validation ------------------------------------------------------


def recipe_folds(recipe: Path, root: str, speakers, out: Path) -> dict:
    from tfasc.crossval import run_crossval

    directory, summary = run_crossval(recipe, fold_overrides(root, speakers), out=out)
    result = {"float": {}, "int8": {}, "int8_bytes": {}, "arena_bytes": {}, "macs_per_second": {},
              "params": {}, "bit_exact": {}, "verified": {}}
    for entry in summary["per_fold"]:
        speaker = entry["fold"]
        report = json.loads((directory / entry["run_dir"] / "report.json").read_text())
        deploy = report["deploy"]
        result["float"][speaker] = report["metrics"]["accuracy"]
        result["int8"][speaker] = deploy["metrics"]["accuracy"]
        result["int8_bytes"][speaker] = deploy["files"]["int8"]["bytes"]
        result["arena_bytes"][speaker] = deploy["tflm"].get("smallest_arena_bytes") or deploy["tflm"]["arena_bytes_used"]
        result["macs_per_second"][speaker] = deploy["profile"]["macs_per_second_of_audio"]
        result["params"][speaker] = deploy["profile"].get("params")
        result["bit_exact"][speaker] = deploy["tflm"].get("bit_exact")
        result["verified"][speaker] = deploy["tflm"].get("examples")
    return result


# -- throughput ----------------------------------------------------------------------------------


def throughput(root: str, batches: int) -> dict:
    """Training examples per second: the best recipe's input pipeline alone (every augmentation on),
    and its model's training steps on one batch held in memory."""
    import tensorflow as tf

    from tfasc.config import load_recipe
    from tfasc.data.prepare import prepare_data
    from tfasc.training import loop
    from tfasc.training.context import StageContext
    from tfasc.training.stages.train import build_model

    recipe = load_recipe(BEST, [f"data.root={root}", f"data.eval_speaker={SPEAKERS[0]}"])
    data = prepare_data(recipe)
    context = StageContext(recipe=recipe, run_dir=Path("."), data=data)
    batch = recipe.data.batch_size

    dataset = iter(context.train_dataset(0))
    next(dataset)  # tracing and warm-up
    start = time.perf_counter()
    for _ in range(batches):
        x, y = next(dataset)
    pipeline = batches * batch / (time.perf_counter() - start)

    model = build_model(recipe, data.input_shape, len(data.index.classes))
    loop.compile_model(model, recipe.training, steps=context.steps_per_epoch(),
                       class_counts=context.class_counts(), multi_label=False)
    x, y = tf.constant(x), tf.constant(y)
    model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(batches):
        model.train_on_batch(x, y)
    training = batches * batch / (time.perf_counter() - start)
    return {"pipeline_examples_per_s": pipeline, "training_examples_per_s": training,
            "augmentations": {"waveform": {k: v for k, v in vars(recipe.augment.waveform).items() if k.endswith("_prob") and v},
                              "batch": {k: v for k, v in vars(recipe.augment).items()
                                        if k.endswith(("_prob", "masks")) and v}}}


# -- output --------------------------------------------------------------------------------------


def _percent(values: dict, speaker=None) -> str:
    if speaker is not None:
        return f"{100 * values[speaker]:.1f}" if speaker in values else "–"
    array = np.array(list(values.values()))
    return f"**{100 * array.mean():.1f}** ± {100 * array.std(ddof=1):.1f}" if len(array) > 1 else "–"


def markdown(results: dict, speakers) -> str:
    lines = ["| approach | model | " + " | ".join(speakers) + " | mean ± std | int8 bytes | arena bytes | MACs/s |",
             "|---" * (len(speakers) + 6) + "|"]
    names = {"logreg": "log-mel + logistic regression", "baseline_cnn": "baseline_cnn (fsdd_log_mel.yaml)",
             "best": "tfasc best (fsdd_loso.yaml)", "aclnet": "AclNet, raw PCM (fsdd_aclnet.yaml)",
             "erann": "ERANN-1-0.5, log-mel (fsdd_erann.yaml)"}
    for key, label in names.items():
        if key not in results:
            continue
        result = results[key]
        for model in ("float", "int8"):
            if model not in result:
                continue
            values = result[model]
            extra = ["", "", ""]
            if model == "int8":
                extra = [f"{max(result['int8_bytes'].values()):,}", f"{max(result['arena_bytes'].values()):,}",
                         f"{max(result['macs_per_second'].values()) / 1e6:.1f} M"]
            lines.append(f"| {label} | {model} | " + " | ".join(_percent(values, s) for s in speakers)
                         + f" | {_percent(values)} | " + " | ".join(extra) + " |")
    if "throughput" in results:
        t = results["throughput"]
        lines += ["", f"Input pipeline with every augmentation of fsdd_loso.yaml: {t['pipeline_examples_per_s']:.0f} "
                      f"examples/s; the model's training steps from memory: {t['training_examples_per_s']:.0f} examples/s "
                      f"({t['pipeline_examples_per_s'] / t['training_examples_per_s']:.1f}x)."]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not (Path(args.root) / "recordings").is_dir():
        print(f"skipped: no FSDD recordings at {args.root}/recordings (pass --root)")
        return 0
    quiet_tensorflow()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    if "logreg" not in args.skip:
        results["logreg"] = logistic_regression(args.root, args.speakers)
    if "baseline_cnn" not in args.skip:
        results["baseline_cnn"] = recipe_folds(TODAY, args.root, args.speakers, out / "baseline_cnn")
    if "best" not in args.skip:
        results["best"] = recipe_folds(BEST, args.root, args.speakers, out / "fsdd_loso")
    if "aclnet" not in args.skip:
        results["aclnet"] = recipe_folds(ACLNET, args.root, args.speakers, out / "fsdd_aclnet")
    if "erann" not in args.skip:
        results["erann"] = recipe_folds(ERANN, args.root, args.speakers, out / "fsdd_erann")
    if "throughput" not in args.skip:
        results["throughput"] = throughput(args.root, args.throughput_batches)
    from tfasc.files import write_atomic

    # Parts skipped this time keep the results an earlier invocation recorded (--skip to resume).
    path = out / "real_fsdd.json"
    earlier = json.loads(path.read_text()) if path.is_file() else {}
    results = {**{key: value for key, value in earlier.items() if key in args.skip}, **results}
    write_atomic(path, json.dumps(results, indent=2) + "\n")
    print(markdown(results, args.speakers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
