"""Transfer learning (``training.init_from``): the source is found and verified, every weight but the
classification head's is kept, the head fits the new classes, all of it is fine-tuned, the report
names the source, a resumed run continues from its own checkpoints, and bad sources are one-line
user errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import tfasc  # noqa: F401
import tf_keras as keras

from tfasc import models
from tfasc.config import load_recipe
from tfasc.data.prepare import frontend_of
from tfasc.models.saving import load_model, save_model
from tfasc.train import main
from tfasc.training.context import FLOAT_MODEL
from tfasc.training.rundir import Artifact, Manifest
from tfasc.training.transfer import TransferError, check_input_shape, replace_head, transfer_model

from support.recipes import WINDOW, write_tiny_recipe

SOURCE_CLASSES = 5  # the tiny recipe's dataset has 3


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def weights_by_layer(model) -> dict[str, list[np.ndarray]]:
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


def assert_same_weights(got: list[np.ndarray], expected: list[np.ndarray], name: str) -> None:
    assert len(got) == len(expected), name
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e, err_msg=name)


def tiny_input_shape(recipe_path: Path) -> tuple[int, ...]:
    """The tiny recipe's model input: its front-end's output for one mono half-second clip."""
    return tuple(frontend_of(load_recipe(recipe_path)).output_shape(WINDOW, 1))


def save_source(folder: Path, input_shape, classes: int = SOURCE_CLASSES) -> Path:
    """A baseline CNN for ``input_shape`` saved as ``folder/model.keras`` and recorded in ``folder``'s
    manifest as the train stage's float model: a run directory to start from."""
    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(7)
    model = models.build("baseline_cnn", input_shape, classes, width=4, blocks=1)
    save_model(model, folder / "model.keras")
    Manifest(folder).record("train", [Artifact("model.keras", FLOAT_MODEL)], time_s=0.0)
    return folder


# -- head replacement ------------------------------------------------------------------------


def test_a_keras_file_source_keeps_every_weight_but_the_new_head(tmp_path, monkeypatch):
    path = save_source(tmp_path / "source", (16, 32, 1)) / "model.keras"
    original = load_model(path)
    monkeypatch.chdir(tmp_path)  # a relative path is the working directory's
    model, source, fresh = transfer_model("source/model.keras", (16, 32, 1), 3, seed=0)
    assert source.path == path and source.sha256 == sha256(path) and source.classes == SOURCE_CLASSES
    assert fresh == ["logits"] and model.output_shape == (None, 3)
    assert model.get_layer("logits").get_weights()[0].shape == (original.get_layer("logits").input_shape[-1], 3)
    kept = weights_by_layer(original)
    del kept["logits"]
    assert kept and set(kept) <= set(weights_by_layer(model))
    for name, weights in kept.items():
        assert_same_weights(model.get_layer(name).get_weights(), weights, name)


def test_the_new_head_is_seeded_by_training_seed(tmp_path):
    model = models.build("baseline_cnn", (16, 32, 1), SOURCE_CLASSES, width=4, blocks=1)
    heads = [replace_head(model, 3, seed=seed)[0].get_layer("logits").get_weights()[0] for seed in (1, 1, 2)]
    np.testing.assert_array_equal(heads[0], heads[1])
    assert not np.allclose(heads[0], heads[2])


def test_aclnet_head_is_its_pointwise_convolution_before_global_pooling():
    source = models.build("aclnet", (None, 1), SOURCE_CLASSES, sample_rate=8000, width_multiplier=0.125)
    model, fresh = replace_head(source, 3, seed=0)
    assert fresh == ["conv12"]
    head = model.get_layer("conv12")
    assert isinstance(head, keras.layers.Conv2D) and head.filters == 3 and head.kernel_size == (1, 1)
    assert model.predict(np.zeros((1, 8000, 1), "float32"), verbose=0).shape == (1, 3)
    for name, weights in weights_by_layer(source).items():
        if name != "conv12":  # the front-end and every convolution block (tfasc layers) kept exactly
            assert_same_weights(model.get_layer(name).get_weights(), weights, name)


def test_a_per_class_batch_norm_after_the_head_is_reset_with_it():
    source = models.build("shared_resnet", (32, 32, 1), SOURCE_CLASSES, channels=4, repeats=1)
    source.get_layer("head_bn").set_weights([w + 0.5 for w in source.get_layer("head_bn").get_weights()])
    model, fresh = replace_head(source, 3, seed=0)
    assert fresh == ["head_conv", "head_bn"] and model.output_shape == (None, 3)
    gamma, beta, mean, variance = model.get_layer("head_bn").get_weights()  # Keras' initial BatchNorm
    for got, expected in ((gamma, 1.0), (beta, 0.0), (mean, 0.0), (variance, 1.0)):
        np.testing.assert_array_equal(got, np.full(3, expected, "float32"))


def test_a_model_without_a_recognizable_head_is_refused():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.DepthwiseConv2D(3, padding="same")(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x), name="no_head")
    with pytest.raises(TransferError, match="training.init_from: model 'no_head' does not end in a Dense"):
        replace_head(model, 3, seed=0)


# -- sources that cannot be used -----------------------------------------------------------


def test_bad_sources_are_user_errors_naming_the_problem(tmp_path):
    with pytest.raises(TransferError, match=r"training.init_from: .*absent does not exist"):
        transfer_model(str(tmp_path / "absent"), (16, 32, 1), 3, seed=0)
    (tmp_path / "folder").mkdir()
    with pytest.raises(TransferError, match=r"folder is a folder without manifest.json"):
        transfer_model(str(tmp_path / "folder"), (16, 32, 1), 3, seed=0)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "notes.txt").write_text("x")
    Manifest(unfinished).record("export", [Artifact("notes.txt", "deploy")], time_s=0.0)
    with pytest.raises(TransferError, match=r"unfinished holds no trained float model"):
        transfer_model(str(unfinished), (16, 32, 1), 3, seed=0)
    source = save_source(tmp_path / "source", (16, 32, 1))
    with pytest.raises(TransferError, match=r"takes inputs of shape \(16, 32, 1\) .* features give \(16, 40, 1\)"):
        transfer_model(str(source), (16, 40, 1), 3, seed=0)
    (source / "model.keras").write_bytes((source / "model.keras").read_bytes() + b"\0")
    with pytest.raises(TransferError, match=r"model.keras does not match what the stage wrote"):
        transfer_model(str(source), (16, 32, 1), 3, seed=0)


def test_any_length_sources_accept_a_fixed_length():
    source = models.build("aclnet", (None, 1), SOURCE_CLASSES, sample_rate=8000, width_multiplier=0.125)
    check_input_shape(source, (4000, 1), Path("aclnet.keras"))
    expected = r"aclnet.keras takes inputs of shape \(None, 1\) .* features give \(4000, 2\)"
    with pytest.raises(TransferError, match=expected):
        check_input_shape(source, (4000, 2), Path("aclnet.keras"))


# -- the train stage -------------------------------------------------------------------------


def test_train_stage_fine_tunes_a_source_run_and_resumes_from_its_own_checkpoints(tmp_path, capsys):
    recipe = write_tiny_recipe(tmp_path)
    source_dir = save_source(tmp_path / "source-run", tiny_input_shape(recipe))
    source_file = source_dir / "model.keras"
    source = load_model(source_file)
    out = tmp_path / "run"
    command = [str(recipe), "--out", str(out), "--set", "stages=[train]", "--set", "training.steps_per_epoch=3",
               "--set", f"training.init_from={source_dir}"]
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert "the recipe's model: section is not used" in printed

    report = json.loads((out / "report.json").read_text())
    assert report["init_from"] == {"path": str(source_file), "sha256": sha256(source_file),
                                   "classes": SOURCE_CLASSES, "fresh_layers": ["logits"]}
    assert report["model"]["name"] == "baseline_cnn" and len(report["data"]["classes"]) == 3
    assert f"Started from `{source_file}`" in (out / "report.md").read_text()

    trained = load_model(out / "model.keras")
    assert trained.output_shape == (None, 3)
    for name, weights in weights_by_layer(source).items():
        if name == "logits":
            continue
        for got, before in zip(trained.get_layer(name).get_weights(), weights):
            assert not np.array_equal(got, before), f"{name}: not fine-tuned"

    # Killed after the last epoch's backup, before the stage was recorded: the same command
    # continues from the run's checkpoints (no epoch left), not from the source.
    trained_weights = weights_by_layer(trained)
    Manifest(out).forget(["train"])
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert "the weights come from this run's checkpoints" in printed and "Epoch 1/1" not in printed
    for name, weights in weights_by_layer(load_model(out / "model.keras")).items():
        assert_same_weights(weights, trained_weights[name], name)


def test_cli_exits_with_status_2_on_a_missing_source(tmp_path, capsys):
    recipe = write_tiny_recipe(tmp_path)
    missing = tmp_path / "no-such-run"
    assert main([str(recipe), "--out", str(tmp_path / "run"), "--set", "stages=[train]",
                 "--set", f"training.init_from={missing}"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == (f"error: training.init_from: {missing} does not exist; "
                     "expected a run directory or a .keras model file")
