"""End to end: the training CLI on tiny synthesized data, and resume after a hard kill."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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
