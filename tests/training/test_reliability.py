"""Reliability and safety of run directories: no code runs from a model file, a changed artifact is
redone, one writer per run, a diverged loss stops the run, nothing finished is destroyed, and a
resumed run (any stage) equals an uninterrupted one."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import tfasc  # noqa: F401
import tf_keras as keras

from tfasc.models.saving import UnsafeModelFileError, check_keras_archive, load_model
from tfasc.training import loop
from tfasc.training.rundir import (
    Artifact, Manifest, RunDirError, RunLock, has_progress, resolve_run_dir, _new_run_dir,
)

RECIPE = """
stages: {stages}
data:
  dataset: dcase2020_1b
  root: {root}
  synthesize: {{clips: 24, seed: 5, sample_rate: 8000, duration_s: 0.5, channels: 1}}
  sample_rate: 8000
  duration_s: 0.5
  channels: 1
  batch_size: 8
  cache_dir: {cache}
features: {{n_fft: 256, hop_length: 128, n_mels: 16}}
model: {{name: baseline_cnn, width: 4, blocks: 1, dropout: 0.0}}
augment: {{mixup_alpha: 0.3, mixup_prob: 1.0}}
training: {{epochs: {epochs}, learning_rate: 0.003, steps_per_epoch: {steps}}}
compress: {{prune: {{epochs: {prune_epochs}, target_sparsity: 0.5}}}}
output: {{dir: {runs}, tensorboard: false, plots: false}}
"""


def write_recipe(tmp_path: Path, *, stages="[train]", epochs=1, steps=3, prune_epochs=1, name="tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(RECIPE.format(stages=stages, root=tmp_path / "data", cache=tmp_path / "cache", epochs=epochs,
                                  steps=steps, prune_epochs=prune_epochs, runs=tmp_path / "runs"))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def history(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def tfasc_command(*args) -> list[str]:
    return [sys.executable, "-m", *args]


def wait_for(condition, process, timeout=240):
    deadline = time.time() + timeout
    while not condition() and process.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert process.poll() is None, "the run finished before it could be interrupted"


# -- model files that would run code --------------------------------------------------------------


def lambda_model(marker: Path):
    """A model whose Lambda layer writes ``marker`` when it is called (as deserialization does)."""
    inputs = keras.Input((16, 8, 1))
    # No closure (Keras would have to serialize the captured Path): the marker path is a literal.
    code = eval(f"lambda t: (__import__('pathlib').Path({str(marker)!r}).write_text('ran'), t)[1]")
    x = keras.layers.Lambda(code)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def test_a_crafted_lambda_model_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "marker"
    model = lambda_model(marker)
    marker.unlink()
    hdf5 = tmp_path / "evil.h5"
    model.save(hdf5)
    # The danger is real: Keras' own HDF5 loader runs the Lambda's code whatever safe_mode says.
    keras.models.load_model(hdf5, compile=False, safe_mode=True)
    assert marker.exists()
    marker.unlink()

    disguised = tmp_path / "pruned.keras"  # an HDF5 file under a .keras name
    disguised.write_bytes(hdf5.read_bytes())
    archive = tmp_path / "model.keras"  # a real .keras archive holding a Lambda
    model.save(archive)
    with pytest.raises(UnsafeModelFileError, match=r"pruned\.keras: not a \.keras zip archive"):
        load_model(disguised)
    with pytest.raises(UnsafeModelFileError, match=r"model\.keras: refused to load: the model contains a Lambda layer"):
        load_model(archive)
    assert not marker.exists()


def test_archive_check_refuses_foreign_modules_and_accepts_tfasc_models(tmp_path):
    from tfasc import models

    model = models.build("shared_resnet", (64, 16, 1), 3, channels=4)
    path = tmp_path / "ok.keras"
    model.save(path)
    check_keras_archive(path)
    restored = load_model(path)
    x = np.random.default_rng(0).normal(size=(2, 64, 16, 1)).astype(np.float32)
    np.testing.assert_allclose(restored(x).numpy(), model(x).numpy(), rtol=1e-6, atol=1e-6)

    with zipfile.ZipFile(path) as source:
        parts = {name: source.read(name) for name in source.namelist()}
    config = json.loads(parts["config.json"])
    config["config"]["layers"][1]["module"] = "os"  # a config naming a module outside Keras / tfasc
    parts["config.json"] = json.dumps(config).encode()
    crafted = tmp_path / "crafted.keras"
    with zipfile.ZipFile(crafted, "w") as target:
        for name, data in parts.items():
            target.writestr(name, data)
    with pytest.raises(UnsafeModelFileError, match="module 'os'"):
        load_model(crafted)


def test_export_of_a_crafted_run_directory_fails_with_one_line_and_runs_nothing(tmp_path):
    """A run directory from someone else, manifest hashes and all, whose model holds a Lambda."""
    marker = tmp_path / "marker"
    model = lambda_model(marker)
    marker.unlink()
    run = tmp_path / "theirs"
    run.mkdir()
    model.save(run / "evil.h5")
    (run / "model.keras").write_bytes((run / "evil.h5").read_bytes())
    (run / "evil.h5").unlink()
    recipe = write_recipe(tmp_path, stages="[train, export]")
    from tfasc.config import load_recipe
    from tfasc.config.load import dump_recipe

    (run / "recipe.yaml").write_text(dump_recipe(load_recipe(recipe)))
    (run / "stages").mkdir()
    (run / "stages" / "train.json").write_text("{}")
    Manifest(run).record("train", [Artifact("model.keras", "float_model"), Artifact("stages/train.json", "result")],
                         time_s=1.0)
    result = subprocess.run(tfasc_command("tfasc.export", str(run)), cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.keras" in lines[0] and "not a .keras zip archive" in lines[0]
    assert not marker.exists()
    assert not (run / "deploy").exists()


# -- the manifest decides what is done -------------------------------------------------------------


def test_a_changed_artifact_is_not_done_and_is_refused_as_input(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"0123456789" * 10)
    manifest = Manifest(tmp_path)
    manifest.record("train", [Artifact("model.keras", "float_model")], time_s=1.0)
    assert manifest.is_done("train")
    data = bytearray((tmp_path / "model.keras").read_bytes())
    data[50] ^= 0x01  # one bit, same size
    (tmp_path / "model.keras").write_bytes(bytes(data))
    assert "does not match" in manifest.mismatch("train")
    with pytest.raises(RunDirError, match="stage 'prune' refused its input: .*model.keras does not match"):
        manifest.require("float_model", by="prune")
    (tmp_path / "model.keras").write_bytes(bytes(data[:40]))  # truncated
    assert not manifest.is_done("train")


def test_a_truncated_model_is_trained_again_from_its_backup(tmp_path, capsys):
    from tfasc.train import main

    recipe = write_recipe(tmp_path, epochs=2)
    out = tmp_path / "run"
    assert main([str(recipe), "--out", str(out)]) == 0
    weights = [w.copy() for w in load_model(out / "model.keras").get_weights()]
    data = (out / "model.keras").read_bytes()
    (out / "model.keras").write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    assert main([str(recipe), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "stage train: " in printed and "does not match what the stage wrote (size or SHA-256 differ); running it" in printed
    assert "Epoch 1/2" not in printed  # restored from the last epoch's backup, not retrained
    for restored, original in zip(load_model(out / "model.keras").get_weights(), weights):
        np.testing.assert_array_equal(restored, original)
    assert [int(row["epoch"]) for row in history(out / "logs" / "history.csv")] == [0, 1]

    # A failed --from with a changed recipe leaves the finished run's recipe and report as they were.
    recorded, report = (out / "recipe.yaml").read_text(), (out / "report.json").read_text()
    assert main([str(recipe), "--out", str(out), "--from", "train", "--set", "data.synthesize.clips=0",
                 "--set", f"data.root={tmp_path / 'absent'}"]) == 2
    assert (out / "recipe.yaml").read_text() == recorded and (out / "report.json").read_text() == report


@pytest.mark.parametrize("path", ["/etc", "../outside", "link/file"])
def test_a_manifest_naming_files_outside_the_run_is_refused_and_deletes_nothing(tmp_path, path):
    run = tmp_path / "run"
    run.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "file").write_text("keep me")
    (run / "link").symlink_to(outside)
    entry = {"path": path, "kind": "float_model", "traits": [], "bytes": 7, "sha256": "0" * 64}
    (run / "manifest.json").write_text(json.dumps({"format": 1, "stages": {"train": {"artifacts": [entry]}}}))
    with pytest.raises(RunDirError, match="damaged run manifest .*(not a path inside|leads outside)"):
        Manifest(run).forget(["train"])
    assert (outside / "file").read_text() == "keep me" and Path("/etc").is_dir()
    assert has_progress(run)  # an unreadable manifest counts as progress: the folder is not thrown away


def test_a_lock_file_symlink_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "precious"
    target.write_text("do not truncate")
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").symlink_to(target)
    with pytest.raises(RunDirError, match="cannot open the run's lock file"):
        with RunLock(run):
            pass
    assert target.read_text() == "do not truncate"


# -- one writer per run ----------------------------------------------------------------------------


def test_a_second_writer_fails_at_once_naming_the_holder(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from tfasc.training.rundir import RunLock\n"
         f"with RunLock({str(tmp_path)!r}):\n    print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with pytest.raises(RunDirError, match=rf"in use by process {holder.pid} on "):
            with RunLock(tmp_path):
                pass
        assert time.monotonic() - started < 2
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path):  # a killed holder's lock is released by the kernel
        pass


def test_new_run_folders_never_collide(tmp_path):
    made = {_new_run_dir(tmp_path, "quickstart") for _ in range(5)}
    assert len(made) == 5 and all(path.is_dir() for path in made)


def test_out_errors_and_an_unclaimed_folder(tmp_path):
    from tfasc.config import load_recipe

    recipe = load_recipe(write_recipe(tmp_path))
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="--out .*file: is a file"):
        resolve_run_dir(recipe, out=tmp_path / "file")
    with pytest.raises(RunDirError, match="--from: .*fresh holds no earlier run"):
        resolve_run_dir(recipe, out=tmp_path / "fresh", rerun=True)
    # A folder whose run made no progress (a failed first attempt) takes a different recipe.
    claimed = tmp_path / "attempt"
    claimed.mkdir()
    (claimed / "recipe.yaml").write_text("name: other\n")
    assert not has_progress(claimed)
    assert resolve_run_dir(recipe, out=claimed) == (claimed, True)
    (claimed / "checkpoints" / "train").mkdir(parents=True)
    (claimed / "checkpoints" / "train" / "checkpoint").write_text("x")
    with pytest.raises(RunDirError, match="holds a run of a different recipe"):
        resolve_run_dir(recipe, out=claimed)
    # A first attempt killed during data preparation left only its lock and normalization: new.
    killed = tmp_path / "killed"
    killed.mkdir()
    for name in (".lock", "normalization.json", ".normalization.json.tmp-1"):
        (killed / name).write_text("{}")
    assert resolve_run_dir(recipe, out=killed) == (killed, False)
    (killed / "notes.txt").write_text("not ours")
    with pytest.raises(RunDirError, match="exists and is not a tfasc run directory"):
        resolve_run_dir(recipe, out=killed)


def test_a_failed_first_attempt_leaves_nothing(tmp_path, capsys):
    from tfasc.train import main

    recipe = write_recipe(tmp_path)
    out = tmp_path / "run"
    assert main([str(recipe), "--out", str(out), "--set", "data.synthesize.clips=0"]) == 2
    assert not out.exists()
    assert main([str(recipe), "--set", "data.synthesize.clips=0"]) == 2
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())
    assert main([str(recipe), "--out", str(out), "--from", "train"]) == 2
    assert "--from: " in capsys.readouterr().err


# -- a diverged loss -------------------------------------------------------------------------------


def test_a_non_finite_loss_stops_training_before_anything_is_kept(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Dense(2, input_shape=(4,))])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x = np.ones((8, 4), np.float32)
    y = np.full((8, 2), np.nan, np.float32)
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(4).repeat()
    with pytest.raises(loop.NonFiniteLossError, match="stage train: the training loss became nan in epoch 1"):
        loop.fit(model, data, None, epochs=2, steps=2, run_dir=tmp_path, tensorboard=False, verbose=0)
    assert history(tmp_path / "logs" / "history.csv") == []
    assert loop.completed_epochs(loop.checkpoint_dir(tmp_path, "train")) == 0


# -- export: nothing finished is destroyed ---------------------------------------------------------


def run_files(run: Path) -> dict[str, str]:
    return {str(p.relative_to(run)): sha256(p) for p in sorted(run.rglob("*"))
            if p.is_file() and not p.name.startswith(".") and "logs" not in p.parts and "checkpoints" not in p.parts}


@pytest.mark.slow
def test_a_failed_export_leaves_the_finished_run_as_it_was(tmp_path, capsys, monkeypatch):
    from tfasc.deploy import export as deploy_export
    from tfasc.export import main as export_main
    from tfasc.train import main

    recipe = write_recipe(tmp_path, stages="[train, export]")
    out = tmp_path / "run"
    assert main([str(recipe), "--out", str(out), "--set", "export.smallest_arena=false",
                 "--set", "export.verify_examples=2"]) == 0
    before = run_files(out)
    assert {"deploy/model_int8.tflite", "report.json", "report.md", "stages/export.json"} <= set(before)

    # The export fails after it wrote its bundle (into its staging folder).
    real = deploy_export.export_model

    def export_then_fail(**kwargs):
        real(**kwargs)
        raise RuntimeError("injected failure after the bundle was written")

    monkeypatch.setattr(deploy_export, "export_model", export_then_fail)
    with pytest.raises(RuntimeError, match="injected"):
        export_main([str(out)])
    monkeypatch.undo()
    assert run_files(out) == before
    assert not list(out.glob(".staging-*"))

    # A damaged input is refused before anything is touched.
    model = out / "model.keras"
    original = model.read_bytes()
    model.write_bytes(original[:100])
    capsys.readouterr()
    assert export_main([str(out)]) == 2
    assert "stage 'train' is not done" in capsys.readouterr().err
    model.write_bytes(original)
    assert run_files(out) == before

    # A successful re-export replaces the bundle and the report together.
    (out / "deploy" / "ops.h").unlink()
    assert export_main([str(out)]) == 0
    assert (out / "deploy" / "ops.h").is_file() and json.loads((out / "report.json").read_text())["deploy"]


# -- kills ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_resumed_training_equals_an_uninterrupted_run_and_time_adds_up(tmp_path):
    """Kill mid-training, resume: the same batches, augmentations and so the same history."""
    recipe = write_recipe(tmp_path, epochs=5, steps=12)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    subprocess.run(tfasc_command("tfasc.train", str(recipe), "--out", str(straight)), cwd=tmp_path, check=True,
                   capture_output=True, timeout=300)
    command = tfasc_command("tfasc.train", str(recipe), "--out", str(resumed))
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_at = time.monotonic()
    wait_for(lambda: len(history(resumed / "logs" / "history.csv")) >= 2, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    first = time.monotonic() - killed_at
    started = time.monotonic()
    second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    second_s = time.monotonic() - started
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Epoch 1/5" not in second.stdout

    expected, got = history(straight / "logs" / "history.csv"), history(resumed / "logs" / "history.csv")
    assert [row["epoch"] for row in got] == ["0", "1", "2", "3", "4"]
    for a, b in zip(expected, got):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-4, abs=1e-5), (a["epoch"], key)
    # time_s counts both invocations (the killed one up to its last finished epoch).
    report_time = json.loads((resumed / "report.json").read_text())["time_s"]
    assert second_s * 0.2 < report_time and report_time > json.loads(
        (resumed / "stages" / "train.json").read_text())["time_s"]
    assert report_time < first + second_s


#: stage -> (the recipe's stages, the stage before it, the override giving it 4 epochs).
KILLED_STAGES = {
    "prune": ("[train, prune]", "train", "compress.prune.epochs=4"),
    "qat": ("[train, qat]", "train", "compress.qat.epochs=4"),
    "mix_train": ("[mix_train]", None, "training.epochs=4"),
    "finetune": ("[mix_train, finetune]", "mix_train", "finetune.epochs=4"),
}


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(KILLED_STAGES))
def test_a_killed_fine_tuning_stage_resumes_at_its_epoch(tmp_path, stage):
    stages, before, epochs = KILLED_STAGES[stage]
    recipe = write_recipe(tmp_path, stages=stages, epochs=1, steps=12)
    out = tmp_path / "run"
    command = tfasc_command("tfasc.train", str(recipe), "--out", str(out), "--set", epochs)
    log = out / "logs" / f"{stage}_history.csv"
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len(history(log)) >= 2, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(history(log))
    resumed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    if before:
        assert f"stage {before}: already done" in resumed.stdout
    assert f"Epoch {done + 1}/4" in resumed.stdout and "Epoch 1/4" not in resumed.stdout
    assert [int(row["epoch"]) for row in history(log)] == [0, 1, 2, 3]
    report = json.loads((out / "report.json").read_text())
    assert report[stage]["metrics"]["accuracy"] is not None
    if stage == "prune":
        assert report["prune"]["sparsity"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    elif stage == "qat":  # the QAT model is rebuilt from its float source and its weights load back
        from tfasc.config import load_recipe
        from tfasc.data.prepare import prepare_data
        from tfasc.training.context import QAT_MODEL, StageContext

        recipe_used = load_recipe(out / "recipe.yaml")
        context = StageContext(recipe=recipe_used, run_dir=out, data=prepare_data(recipe_used))
        assert context.evaluate(context.load(QAT_MODEL, by="test"))["metrics"] == report["qat"]["metrics"]


@pytest.mark.slow
def test_two_concurrent_runs_the_second_fails_at_once_and_the_first_is_untouched(tmp_path):
    recipe = write_recipe(tmp_path, epochs=3, steps=3000)  # 10+ s per epoch: still running when the second starts
    command = tfasc_command("tfasc.train", str(recipe))  # no --out: the second would pick the first's folder
    first = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    runs = tmp_path / "runs"
    wait_for(lambda: any(history(p / "logs" / "history.csv") for p in runs.glob("tiny-*")), first)
    started = time.monotonic()
    second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2, second.stdout + second.stderr
    assert f"in use by process {first.pid}" in second.stderr and len(second.stderr.strip().splitlines()) == 1
    assert time.monotonic() - started < 30  # at once: no data preparation, no training
    output, _ = first.communicate(timeout=300)
    assert first.returncode == 0, output
    (run,) = runs.glob("tiny-*")
    assert [int(row["epoch"]) for row in history(run / "logs" / "history.csv")] == [0, 1, 2]
    assert (run / "report.json").is_file()
