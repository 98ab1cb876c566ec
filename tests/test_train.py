"""End to end: the training CLI on tiny synthesized data, and resume after a hard kill."""

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tfasc.train import main

TINY_RECIPE = """
data:
  dataset: dcase2020_1b
  root: {root}
  synthesize: {{clips: 36, seed: 3, sample_rate: 8000, duration_s: 1.0, channels: 2}}
  sample_rate: 8000
  duration_s: 1.0
  batch_size: 8
  cache_dir: {cache}
features: {{n_fft: 256, hop_length: 128, n_mels: 16}}
model: {{name: baseline_cnn, width: 4, blocks: 2}}
training: {{epochs: 2, learning_rate: 0.003}}
evaluate: {{held_out_groups: [milan]}}
output: {{tensorboard: false}}
"""


def write_recipe(tmp_path: Path, name: str = "tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(TINY_RECIPE.format(root=tmp_path / "data", cache=tmp_path / "cache"))
    return path


def epochs_logged(run_dir: Path) -> list[int]:
    history = run_dir / "logs" / "history.csv"
    if not history.exists():
        return []
    with open(history, newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


STAGE_OVERRIDES = [
    "--set", "stages=[train, prune, qat, export]",
    "--set", "compress.prune.epochs=2", "--set", "compress.prune.target_sparsity=0.5",
    "--set", "compress.qat.epochs=1", "--set", "export.representative_examples=8",
    "--set", "export.verify_examples=4", "--set", "export.smallest_arena=false",
]


@pytest.mark.slow
def test_cli_end_to_end(tmp_path, capsys):
    recipe = write_recipe(tmp_path)
    out = tmp_path / "run"
    assert main([str(recipe), "--out", str(out), "--set", "training.epochs=2"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["metrics"]) >= {"accuracy", "macro_accuracy", "per_class_accuracy", "log_loss"}
    assert set(report["metrics"]["per_class_accuracy"]) == {"indoor", "outdoor", "transportation"}
    assert report["model"]["name"] == "baseline_cnn" and report["model"]["params"] > report["model"]["trainable_params"] > 0
    assert report["data"]["classes"] == ["indoor", "outdoor", "transportation"]
    assert report["data"]["train_examples"] + report["data"]["eval_examples"] <= 36
    assert "milan" in report["held_out"]
    assert report["time_s"] > 0
    for name in ["recipe.yaml", "model.keras", "report.md", "plots/training_curves.png", "plots/confusion_matrix.png"]:
        assert (out / name).is_file(), name
    assert "epochs: 2" in (out / "recipe.yaml").read_text()  # the override is recorded
    assert epochs_logged(out) == [0, 1]
    assert list((out / "logs").glob("*.csv"))


def test_cli_reports_recipe_errors(tmp_path, capsys):
    recipe = write_recipe(tmp_path)
    assert main([str(recipe), "--set", "training.epocs=2"]) == 2
    assert "training.epocs: unknown key. Did you mean 'epochs'?" in capsys.readouterr().err
    assert main([str(recipe), "--set", "model.widht=2"]) == 2
    assert "model.widht: unknown key" in capsys.readouterr().err
    assert main([str(recipe), "--set", "data.root=" + str(tmp_path / "absent"), "--set", "data.synthesize.clips=0"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_killed_run_resumes_from_last_epoch(tmp_path):
    recipe = write_recipe(tmp_path)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "tfasc.train", str(recipe), "--out", str(out), "--set", "training.epochs=6",
               "--set", "training.steps_per_epoch=40"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while len(epochs_logged(out)) < 2 and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert process.poll() is None, "training finished before it could be interrupted"
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = epochs_logged(out)
    assert 2 <= len(before) < 6 and not (out / "report.json").exists()

    resumed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming" in resumed.stdout
    # The restarted process trained only the epochs that had not finished.
    assert f"Epoch {len(before)}/6" in resumed.stdout or f"Epoch {len(before) + 1}/6" in resumed.stdout
    assert "Epoch 1/6" not in resumed.stdout
    assert epochs_logged(out) == list(range(6))
    assert json.loads((out / "report.json").read_text())["metrics"]["accuracy"] is not None


@pytest.mark.slow
def test_all_stages_then_rerun_from_a_stage_and_export_cli(tmp_path, capsys):
    recipe = write_recipe(tmp_path)
    out = tmp_path / "run"
    assert main([str(recipe), "--out", str(out), *STAGE_OVERRIDES]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["stages"] == ["train", "prune", "qat", "export"]
    # Pruning reached its target over the kernels, and QAT kept every zero.
    assert report["prune"]["mode"] == "global"
    assert report["prune"]["sparsity"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert report["qat"]["sparsity"]["zeros"] == report["prune"]["sparsity"]["zeros"]
    deploy = report["deploy"]
    assert deploy["tflm"]["bit_exact"] and deploy["tflm"]["examples"] == 4
    assert deploy["tflm"]["arena_bytes_used"] > 0
    assert set(deploy["metrics"]) >= {"accuracy", "macro_accuracy", "per_class_accuracy", "log_loss"}
    assert 0 <= deploy["top1_agreement_with_float"] <= 1
    assert "CONV_2D" in deploy["ops"] and all(not op.startswith("CUSTOM") for op in deploy["ops"])
    bundle = out / "deploy"
    int8 = (bundle / "model_int8.tflite").read_bytes()
    assert int8[4:8] == b"TFL3" and deploy["files"]["int8"]["bytes"] == len(int8)
    for name in ["model_data.cc", "model_data.h", "ops.h", "model_config.h", "README.md"]:
        assert (bundle / name).is_file(), name
    assert (out / "model_float16.tflite").is_file() and (out / "model_float32.tflite").is_file()
    # The pruned model's non-zero parameters decide the DCASE-rule size: int8 = 1 byte each.
    profile = deploy["profile"]
    assert profile["dcase_size_bytes"]["8bit"] == profile["nonzero_params"]
    assert profile["nonzero_params"] < profile["params"]

    # --from qat re-runs qat and export only; train and prune results stay as they were.
    train_result = (out / "stages" / "train.json").read_text()
    prune_mtime = (out / "pruned.keras").stat().st_mtime_ns
    capsys.readouterr()
    assert main([str(recipe), "--out", str(out), *STAGE_OVERRIDES, "--set", "compress.qat.epochs=2", "--from", "qat"]) == 0
    printed = capsys.readouterr().out
    assert "stage train: already done" in printed and "stage prune: already done" in printed
    assert "stage qat finished" in printed and "stage export finished" in printed
    assert (out / "stages" / "train.json").read_text() == train_result
    assert (out / "pruned.keras").stat().st_mtime_ns == prune_mtime
    assert "epochs: 2" in (out / "recipe.yaml").read_text()

    # python -m tfasc.export re-exports a finished run.
    from tfasc.export import main as export_main

    (bundle / "ops.h").unlink()
    assert export_main([str(out)]) == 0
    assert (bundle / "ops.h").is_file()
    assert export_main([str(tmp_path / "nothing")]) == 2
    assert "not a tfasc run directory" in capsys.readouterr().err


def test_held_out_group_counts_clips_in_no_split_and_reuses_evaluation_rows(tmp_path):
    from tfasc.config import load_recipe
    from tfasc.data.pipeline import extract_features, label_targets
    from tfasc.metrics import classification_metrics, softmax
    from tfasc.data.prepare import ensure_dataset, frontend_of, prepare_data
    from tfasc.training.context import StageContext
    from tfasc.training.stages.train import build_model

    recipe = load_recipe(write_recipe(tmp_path))
    root = ensure_dataset(recipe)
    # Move half of Milan's evaluation clips out of every split, as DCASE's setup files leave some clips out.
    setup = root / "evaluation_setup" / "fold1_evaluate.csv"
    header, *rows = setup.read_text().splitlines()
    milan = [row for row in rows if "-milan-" in row]
    dropped = milan[: len(milan) // 2]
    setup.write_text("\n".join([header, *[r for r in rows if r not in dropped]]) + "\n")

    data = prepare_data(recipe)
    part = data.held_out["milan"]
    assert len(part.eval_rows) == len(milan) - len(dropped) and len(part.extra.examples) == len(dropped)
    assert part.examples == len(milan)

    model = build_model(recipe, data.input_shape, len(data.index.classes), sigmoid_outputs=data.sigmoid_outputs)
    got = StageContext(recipe=recipe, run_dir=tmp_path, data=data).evaluate(model)["held_out"]["milan"]

    # Independent path: every Milan clip decoded afresh, predicted and scored.
    examples = [e for e in data.index.examples if e.group == "milan"]
    fresh = extract_features(examples, sample_rate=8000, duration_s=1.0, channels=2, frontend=frontend_of(recipe))
    mean, std = data.normalization.mean[0], data.normalization.std[0]
    logits = model.predict((fresh.features - np.float32(mean)) * np.float32(1 / std), verbose=0)
    truth = label_targets(fresh.examples, data.index.classes).argmax(axis=1)
    expected = classification_metrics(softmax(logits), truth, data.index.classes)
    assert got["examples"] == expected["examples"] == len(milan)
    assert got["confusion_matrix"] == expected["confusion_matrix"]
    assert got["log_loss"] == pytest.approx(expected["log_loss"], rel=1e-4)
