"""Training on several devices and machines (tfasc.training.distribute): mirrored on two logical CPU
devices and multi-worker with two processes on 127.0.0.1, each against the single-device run of
the same recipe, and a multi-worker run that loses a worker and resumes."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from support.recipes import write_tiny_recipe
from tfasc.config import load_recipe
from tfasc.config.load import RecipeError
from tfasc.data.pipeline import make_dataset
from tfasc.training import distribute

REPO = Path(__file__).resolve().parents[2]
# 18 training clips in full batches of 6 (a multi-replica pass holds full batches only), no
# dropout (its masks are drawn per replica): the runs differ by float summation order alone.
SETTINGS = ["stages=[train,export]", "training.epochs=12", "data.batch_size=6", "model.dropout=0",
            "output.tensorboard=false", "export.verify_examples=1"]
#: Largest difference allowed between a distributed run and the single-device one: per-epoch
#: losses and accuracies, and every trained weight (12 epochs of 3 Adam steps; measured ~1e-6).
TOLERANCE = 2e-4


def _train(folder: Path, out: str, *extra: str, env=None, wait=True, log: Path | None = None):
    command = [sys.executable, "-m", "tfasc.train", "tiny.yaml", "--out", out,
               *[arg for setting in SETTINGS for arg in ("--set", setting)], *extra]
    handle = open(log, "w") if log else subprocess.PIPE
    process = subprocess.Popen(command, cwd=folder, stdout=handle, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    if not wait:
        return process
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output if output is not None else log.read_text()
    return output


def _history_file(path: Path) -> list[dict]:
    with open(path) as handle:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def _history(run_dir: Path) -> list[dict]:
    return _history_file(run_dir / "logs" / "history.csv")


def _weights(run_dir: Path) -> list[np.ndarray]:
    import tf_keras as keras

    return keras.models.load_model(run_dir / "model.keras", compile=False).get_weights()


def _assert_same_training(run_dir: Path, reference: Path) -> None:
    rows, expected = _history(run_dir), _history(reference)
    assert [row["epoch"] for row in rows] == [row["epoch"] for row in expected]
    for row, want in zip(rows, expected):
        for key in want:
            assert abs(row[key] - want[key]) <= TOLERANCE, (key, row, want)
    for got, want in zip(_weights(run_dir), _weights(reference), strict=True):
        np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)
    # The stage's evaluation (model.predict under the strategy) scores every clip, in order.
    result, expected = (json.loads((run / "stages" / "train.json").read_text())["metrics"] for run in (run_dir, reference))
    assert result["examples"] == expected["examples"] and result["accuracy"] == expected["accuracy"]
    assert abs(result["log_loss"] - expected["log_loss"]) <= TOLERANCE


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distribute")
    write_tiny_recipe(folder)
    _train(folder, "single")  # the single-device reference (also synthesizes the data and fills the cache)
    return folder


def test_mirrored_on_two_cpu_devices_trains_as_one_device(tiny):
    output = _train(tiny, "mirrored", "--set", "distribute.strategy=mirrored", "--set", "distribute.cpu_devices=2")
    assert "MirroredStrategy, 2 replicas" in output and "3 per replica" in output
    _assert_same_training(tiny / "mirrored", tiny / "single")
    report = (tiny / "mirrored" / "stages" / "train.json").read_text()
    assert '"strategy": "mirrored"' in report and '"replicas": 2' in report


def test_ema_pruning_and_qat_train_under_the_strategy(tiny):
    """Every training stage runs mirrored: EMA with BatchNorm re-estimation, pruning, QAT; each stage's
    losses agree with one device's (QAT within 1 %: measured 0.1 %, not traced further; likely
    TF-MOT's fake-quantization ranges, updated from each replica's slice), and the export of the mirrored run is bit-exact in TFLite Micro as always."""
    stages = ("--set", "stages=[train,prune,qat,export]", "--set", "training.ema_decay=0.9",
              "--set", "training.ema_batchnorm_batches=2", "--set", "compress.prune.epochs=2",
              "--set", "compress.qat.epochs=2", "--set", "training.epochs=3")
    _train(tiny, "all_single", *stages)
    output = _train(tiny, "all_mirrored", *stages, "--set", "distribute.strategy=mirrored",
                    "--set", "distribute.cpu_devices=2")
    assert "MirroredStrategy, 2 replicas" in output
    single, mirrored = tiny / "all_single", tiny / "all_mirrored"
    _assert_same_training(mirrored, single)
    for log, bound in (("prune_history.csv", TOLERANCE), ("qat_history.csv", 0.01)):
        rows = [_history_file(run / "logs" / log) for run in (mirrored, single)]
        assert len(rows[0]) == len(rows[1]) == 2
        for got, want in zip(*rows):
            assert abs(got["loss"] - want["loss"]) <= bound * max(1.0, abs(want["loss"])), (log, got, want)
    for stage in ("prune", "qat"):
        assert json.loads((mirrored / "stages" / f"{stage}.json").read_text())["distribute"]["replicas"] == 2
    export = json.loads((mirrored / "stages" / "export.json").read_text())
    assert export.get("distribute") is None and export["tflm"]["bit_exact"]


def test_two_workers_on_localhost_train_as_one_device_and_only_the_chief_writes(tiny):
    workers = distribute.local_worker_addresses(2)
    other = _train(tiny, "multi", "--worker", "1/2", "--workers", workers, wait=False, log=tiny / "worker1.log")
    chief = _train(tiny, "multi", "--worker", "0/2", "--workers", workers)
    assert other.wait(timeout=120) == 0, (tiny / "worker1.log").read_text()
    assert "worker 0 of 2 (chief)" in chief
    assert "stage export: on the chief" in (tiny / "worker1.log").read_text()
    _assert_same_training(tiny / "multi", tiny / "single")
    # The run directory holds what a single-device run writes, and nothing of the other worker.
    listing = lambda run: sorted(str(p.relative_to(run)) for p in run.rglob("*") if "tensorboard" not in str(p))
    assert listing(tiny / "multi") == listing(tiny / "single")


def test_a_killed_worker_and_a_restart_of_both_resume_from_the_last_epoch(tiny):
    workers = distribute.local_worker_addresses(2)
    longer = ("--set", "training.epochs=16")
    run_dir = tiny / "killed"
    other = _train(tiny, "killed", "--worker", "1/2", "--workers", workers, *longer, wait=False, log=tiny / "k1.log")
    chief = _train(tiny, "killed", "--worker", "0/2", "--workers", workers, *longer, wait=False, log=tiny / "k0.log")
    backup = run_dir / "checkpoints" / "train" / "chief" / "checkpoint"
    deadline = time.time() + 300
    while not (backup.exists() and "ckpt-3" in backup.read_text()) and time.time() < deadline:
        assert other.poll() is None and chief.poll() is None, (tiny / "k0.log").read_text()
        time.sleep(0.05)
    other.send_signal(signal.SIGKILL)
    other.wait()
    try:  # the chief's next all-reduce fails once the worker is gone: one line, exit 2
        assert chief.wait(timeout=180) == 2, (tiny / "k0.log").read_text()[-3000:]
        assert "error: worker 0: lost contact with the other workers" in (tiny / "k0.log").read_text()
    except subprocess.TimeoutExpired:
        chief.kill()
        chief.wait()
        pytest.fail("the chief did not stop after losing its worker")
    done = len(_history(run_dir))
    assert 3 <= done < 16, "the kill came after training finished; nothing was resumed"

    workers = distribute.local_worker_addresses(2)
    other = _train(tiny, "killed", "--worker", "1/2", "--workers", workers, *longer, wait=False, log=tiny / "r1.log")
    output = _train(tiny, "killed", "--worker", "0/2", "--workers", workers, *longer)
    assert other.wait(timeout=120) == 0, (tiny / "r1.log").read_text()
    assert "resuming" in output
    assert f"Epoch {done + 1}/16" in output or f"Epoch {done}/16" in output
    assert "Epoch 1/16" not in output
    assert [row["epoch"] for row in _history(run_dir)] == list(range(16))
    # Restarted from the chief's backup, the run ends where an uninterrupted single-device run does.
    _train(tiny, "single16", *longer)
    _assert_same_training(run_dir, tiny / "single16")


# -- the parts of a global batch -----------------------------------------------------------------

def test_replica_parts_are_slices_of_the_global_batch():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((30, 4, 3, 1)).astype(np.float32)
    targets = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 30)]
    common = dict(batch_size=6, shuffle=True, seed=3, repeat=True, drop_remainder=True, start_batch=2)

    def first(dataset, count=7):
        return [(x.numpy(), y.numpy()) for x, y in dataset.take(count)]

    whole = first(make_dataset(features, targets, **common))
    for count in (2, 3):
        parts = [first(make_dataset(features, targets, part=(i, count), **common)) for i in range(count)]
        for b, (x, y) in enumerate(whole):
            np.testing.assert_array_equal(np.concatenate([part[b][0] for part in parts]), x)
            np.testing.assert_array_equal(np.concatenate([part[b][1] for part in parts]), y)
            assert all(len(part[b][0]) == 6 // count for part in parts)


def test_transforms_see_the_rows_of_their_part():
    features = np.arange(24, dtype=np.float32).reshape(24, 1)
    targets = np.ones((24, 1), np.float32)
    seen = []

    def transform(x, y, batch_index, part=None):
        first_row = 0 if part is None else part[1]
        seen.append(part is not None)
        # Each row's global example number, as a per-example augmentation keys its randomness.
        import tensorflow as tf

        number = tf.cast(batch_index, tf.float32) * 8 + tf.cast(first_row, tf.float32) + tf.range(tf.shape(x)[0], dtype=tf.float32)
        return tf.stack([x[:, 0], number], axis=1), y

    common = dict(batch_size=8, shuffle=False, repeat=True, transform=transform, transformed_shape=(2,))
    part = next(iter(make_dataset(features, targets, part=(1, 2), **common)))[0].numpy()
    np.testing.assert_array_equal(part, [[4, 4], [5, 5], [6, 6], [7, 7]])
    whole = next(iter(make_dataset(features, targets, **common)))[0].numpy()
    np.testing.assert_array_equal(whole[:, 1], np.arange(8))


def test_worker_flags_and_recipe_values_are_checked(tmp_path):
    assert distribute.parse_worker("1/3") == (1, 3)
    for bad in ("3/3", "1", "a/2", "-1/2"):
        with pytest.raises(RecipeError, match="--worker"):
            distribute.parse_worker(bad)
    with pytest.raises(RecipeError, match="2 addresses for the 3 workers"):
        distribute.worker_overrides("0/3", "a:1,b:2")
    with pytest.raises(RecipeError, match="go together"):
        distribute.worker_overrides("0/2", None)
    path = write_tiny_recipe(tmp_path)
    recipe = load_recipe(path, distribute.worker_overrides("1/2", "10.0.0.1:2222,10.0.0.2:2222"))
    assert (recipe.distribute.strategy, recipe.distribute.worker_index) == ("multi_worker", 1)
    assert recipe.distribute.workers == ("10.0.0.1:2222", "10.0.0.2:2222")
    for overrides, message in (
        (["distribute.workers=[a:1]"], "need distribute.strategy: multi_worker"),
        (["distribute.strategy=multi_worker", "distribute.workers=[a:1, nohost]"], "'nohost' is not host:port"),
        (["distribute.strategy=multi_worker", "distribute.workers=[a:1]", "distribute.worker_index=1"], "not one of"),
        (["distribute.stratgy=mirrored"], "strategy"),
        (["distribute.strategy=multi_worker", "distribute.worker_index=1"], "needs distribute.workers"),
    ):
        with pytest.raises(RecipeError, match=message):
            load_recipe(path, overrides)


def test_a_run_resumes_with_new_worker_addresses_but_not_on_another_number_of_workers(tmp_path):
    from tfasc.config.load import dump_recipe
    from tfasc.training.rundir import RunDirError, resolve_run_dir

    path = write_tiny_recipe(tmp_path)
    first = load_recipe(path, distribute.worker_overrides("0/2", "10.0.0.1:2222,10.0.0.2:2222"))
    run_dir, resumed = resolve_run_dir(first, out=tmp_path / "run")
    assert not resumed
    (run_dir / "recipe.yaml").write_text(dump_recipe(first))
    (run_dir / "checkpoints" / "train").mkdir(parents=True)  # progress: the folder is claimed
    moved = load_recipe(path, [*distribute.worker_overrides("0/2", "10.0.0.7:3333,10.0.0.8:3333"),
                               "data.feature_workers=2"])
    assert resolve_run_dir(moved, out=run_dir) == (run_dir, True)
    with pytest.raises(RunDirError, match="different recipe"):
        resolve_run_dir(load_recipe(path, distribute.worker_overrides("0/3", "a:1,b:1,c:1")), out=run_dir)


def test_bad_distribution_settings_are_one_line_exit_2(tmp_path):
    write_tiny_recipe(tmp_path)
    for extra, message in (
        (["--set", "distribute.strategy=mirrored", "--set", "distribute.cpu_devices=4", "--set", "data.batch_size=6"],
         "data.batch_size: 6 does not split evenly over the 4 replicas"),
        (["--set", "distribute.strategy=multi_worker"], "give every worker the same --out"),
        (["--worker", "2/2", "--workers", "a:1,b:2"], "--worker 2/2"),
    ):
        result = subprocess.run([sys.executable, "-m", "tfasc.train", "tiny.yaml", *extra], cwd=tmp_path,
                                capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
        assert result.returncode == 2, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], result.stderr
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
