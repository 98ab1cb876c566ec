"""Recipe loading: types, ranges, nearest-key errors, overrides, round trip."""

import re
from pathlib import Path
from typing import Literal

import pytest

from tfasc.config import RecipeError, dump_recipe, load_recipe
from tfasc.config.load import apply_overrides, build_dataclass, check_options, parse_override, read_yaml
from tfasc.config.schema import Recipe


def write(tmp_path, text, name="r.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_and_name_from_file(tmp_path):
    recipe = load_recipe(write(tmp_path, "training:\n  epochs: 3\n", "my_recipe.yaml"))
    assert recipe.name == "my_recipe"
    assert recipe.training.epochs == 3
    assert recipe.training.optimizer == "adam"
    assert recipe.features.n_mels == 128


@pytest.mark.parametrize(
    "text, message",
    [
        ("trainig:\n  epochs: 3\n", "trainig: unknown key. Did you mean 'training'?"),
        ("training:\n  epocs: 3\n", "training.epocs: unknown key. Did you mean 'epochs'?"),
        ("training:\n  schedule:\n    nmae: constant\n", "training.schedule.nmae: unknown key. Did you mean 'name'?"),
        ("training:\n  epochs: three\n", "training.epochs: expected an integer, got 'three'"),
        ("training:\n  epochs: 2.5\n", "training.epochs: expected an integer, got 2.5"),
        ("training:\n  epochs: 0\n", "training.epochs: expected a value >= 1, got 0"),
        ("training:\n  learning_rate: -1\n", "training.learning_rate: expected a value > 0, got -1.0"),
        ("features:\n  window: han\n", "features.window: expected one of 'hann', 'hamming', got 'han'. Did you mean 'hann'?"),
        ("data:\n  cache: yes please\n", "data.cache: expected true/false, got 'yes please'"),
        ("training: 3\n", "training: expected a mapping of TrainingConfig keys, got 3"),
        ("- a\n- b\n", "expected a mapping of sections at the top level"),
    ],
)
def test_errors_name_the_key_path(tmp_path, text, message):
    with pytest.raises(RecipeError) as error:
        load_recipe(write(tmp_path, text))
    assert message in str(error.value)
    assert str(tmp_path / "r.yaml") in str(error.value)


def test_invalid_yaml_names_the_file(tmp_path):
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(write(tmp_path, "training: [unclosed\n"))


def test_missing_file(tmp_path):
    with pytest.raises(RecipeError, match="cannot read recipe"):
        load_recipe(tmp_path / "nope.yaml")


def test_yaml_tags_are_refused(tmp_path):
    # safe_load only: a python object tag must not construct anything.
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(write(tmp_path, "name: !!python/object/apply:os.system ['true']\n"))


def test_overrides_are_typed_and_validated(tmp_path):
    path = write(tmp_path, "training:\n  epochs: 3\nmodel:\n  name: baseline_cnn\n")
    recipe = load_recipe(path, ["training.epochs=7", "model.width=8", "training.schedule.name=one_cycle"])
    assert recipe.training.epochs == 7
    assert recipe.model.options == {"width": 8}
    assert recipe.training.schedule.name == "one_cycle"
    with pytest.raises(RecipeError, match="training.epochs: expected an integer"):
        load_recipe(path, ["training.epochs=many"])
    with pytest.raises(RecipeError, match=r"expected KEY.PATH=VALUE"):
        parse_override("training.epochs")
    with pytest.raises(RecipeError, match="is not a section"):
        apply_overrides({"training": {"epochs": 3}}, ["training.epochs.x=1"])


def test_open_sections_collect_component_arguments():
    recipe = build_dataclass(Recipe, {"model": {"name": "baseline_cnn", "width": 4}, "data": {"fold": 2}})
    assert recipe.model.options == {"width": 4}
    assert recipe.data.options == {"fold": 2}

    def builder(input_shape, num_classes, *, width=16, blocks=3):
        pass

    check_options("model", {"width": 4}, builder)
    with pytest.raises(RecipeError, match=r"model.widht: unknown key .*Did you mean 'width'\?"):
        check_options("model", {"widht": 4}, builder)


def test_piecewise_schedule_needs_matching_values():
    with pytest.raises(RecipeError, match=r"needs len\(boundaries\) \+ 1 = 3 values, got 2"):
        build_dataclass(Recipe, {"training": {"schedule": {"name": "piecewise_constant", "boundaries": [2, 4], "values": [1e-3, 1e-4]}}})


def test_resolved_recipe_round_trips(tmp_path):
    recipe = load_recipe(write(tmp_path, "model:\n  name: baseline_cnn\n  width: 8\ntraining:\n  schedule:\n    name: phases\n    phases:\n      - {epochs: 2, start: 0.001}\n      - {epochs: 3, start: 0.001, end: 0.00001, shape: exponential}\n"))
    again = load_recipe(write(tmp_path, dump_recipe(recipe), "r2.yaml"))
    assert again == recipe
    assert again.training.schedule.phases[1].shape == "exponential"


@pytest.mark.parametrize(
    "text, message",
    [
        ("features: {fmax: 30000}\n",
         "features.fmax: 30000 Hz is above the Nyquist frequency 24000 Hz of data.sample_rate 48000"),
        ("data: {sample_rate: 16000}\nfeatures: {fmax: 8001}\n",
         "features.fmax: 8001 Hz is above the Nyquist frequency 8000 Hz of data.sample_rate 16000"),
        ("features: {fmin: 4000, fmax: 4000}\n", "features.fmin: 4000 Hz is not below features.fmax 4000 Hz"),
        ("data: {sample_rate: 8000}\nfeatures: {fmin: 5000}\n",
         "features.fmin: 5000 Hz is not below the Nyquist frequency 4000 Hz of data.sample_rate 8000"),
        ("features: {n_fft: 512, win_length: 1024}\n", "features.win_length: 1024 is longer than features.n_fft 512"),
        ("data: {channels: 1}\nfeatures: {channel_mode: mid_side}\n",
         "features.channel_mode: mid_side needs data.channels: 2, got 1"),
        ("data: {sample_rate: 8000, duration_s: 0.01}\nfeatures: {pad_mode: reflect}\n",
         "features.pad_mode: reflect needs clips longer than features.n_fft // 2 = 1024 samples"),
        ("data: {sample_rate: 8000, duration_s: 0.1}\nfeatures: {center: false}\n",
         "features.n_fft: 2048 samples is longer than a clip (data.duration_s 0.1 at data.sample_rate 8000 is 800 samples)"),
    ],
)
def test_log_mel_parameters_are_checked_against_the_data_section(tmp_path, text, message):
    with pytest.raises(RecipeError) as error:
        load_recipe(write(tmp_path, text))
    assert message in str(error.value)
    assert str(error.value).startswith(f"{tmp_path / 'r.yaml'}: ")


def test_log_mel_checks_apply_to_overrides_and_only_to_log_mel(tmp_path):
    path = write(tmp_path, "data: {sample_rate: 16000}\nfeatures: {fmax: 8000}\n")
    assert load_recipe(path).features.fmax == 8000
    with pytest.raises(RecipeError, match="features.fmax: 8000 Hz is above the Nyquist frequency 4000 Hz of data.sample_rate 8000"):
        load_recipe(path, ["data.sample_rate=8000"])
    # The waveform front-end ignores the log-mel fields.
    assert load_recipe(path, ["data.sample_rate=8000", "features.kind=waveform"]).data.sample_rate == 8000


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "null\n", "~\n", "---\n"])
def test_empty_recipe_names_the_file(tmp_path, text):
    with pytest.raises(RecipeError, match="the recipe is empty") as error:
        load_recipe(write(tmp_path, text))
    assert str(error.value).startswith(f"{tmp_path / 'r.yaml'}: ")


@pytest.mark.parametrize("text, kind", [("- a\n- b\n", "list"), ("just words\n", "str"), ("3\n", "int")])
def test_recipe_that_is_not_a_mapping_names_the_file(tmp_path, text, kind):
    with pytest.raises(RecipeError, match=f"expected a mapping of sections at the top level .*got a {kind}") as error:
        load_recipe(write(tmp_path, text))
    assert str(error.value).startswith(f"{tmp_path / 'r.yaml'}: ")


@pytest.mark.parametrize(
    "text, message",
    [
        ("training:\n  epochs: 3\nmodel:\n  width: 4\ntraining:\n  epochs: 5\n", "duplicate key training on lines 1 and 5"),
        ("training:\n  epochs: 3\n  optimizer: sgd\n  epochs: 5\n", "duplicate key training.epochs on lines 2 and 4"),
        ("training:\n  schedule:\n    name: phases\n    phases:\n      - {epochs: 2, start: 0.1}\n"
         "      - epochs: 2\n        start: 0.1\n        epochs: 3\n",
         "duplicate key training.schedule.phases[1].epochs on lines 6 and 8"),
        ("model: {name: baseline_cnn, width: 4, width: 8}\n", "duplicate key model.width on line 1, twice"),
    ],
)
def test_duplicate_keys_name_the_file_key_path_and_both_lines(tmp_path, text, message):
    with pytest.raises(RecipeError) as error:
        load_recipe(write(tmp_path, text))
    assert str(error.value).startswith(f"{tmp_path / 'r.yaml'}: {message}")


def test_yaml_merge_keys_may_be_overridden_and_set_values_refuse_duplicates(tmp_path):
    text = "x-base: &base {epochs: 3, optimizer: sgd}\n"
    tree = read_yaml(write(tmp_path, text + "training:\n  <<: *base\n  epochs: 5\n"))
    assert tree["training"] == {"epochs": 5, "optimizer": "sgd"}
    with pytest.raises(RecipeError, match=r"--set 'model=\{width: 4, width: 8\}': duplicate key width"):
        parse_override("model={width: 4, width: 8}")


def builder(input_shape, num_classes, *, width: int = 16, dropout: float = 0.2, mode: Literal["a", "b"] = "a",
            sizes: tuple[int, ...] = (3,), path: Path | None = None, flag: bool = False):
    pass


@pytest.mark.parametrize(
    "options, message",
    [
        ({"width": "abc"}, "model.width: expected an integer, got 'abc' (option 'width' of builder)"),
        ({"width": [1, 2]}, "model.width: expected an integer, got [1, 2]"),
        ({"width": 2.5}, "model.width: expected an integer, got 2.5"),
        ({"dropout": "high"}, "model.dropout: expected a number, got 'high'"),
        ({"mode": "c"}, "model.mode: expected one of 'a', 'b', got 'c'"),
        ({"sizes": 3}, "model.sizes: expected a list of an integer, got 3"),
        ({"sizes": [3, "x"]}, "model.sizes[1]: expected an integer, got 'x'"),
        ({"path": 5}, "model.path: expected a string or null, got 5"),
        ({"flag": "yes"}, "model.flag: expected true/false, got 'yes'"),
        ({"num_classes": 3}, "model.num_classes: 'num_classes' is an argument tfasc passes to builder itself"),
    ],
)
def test_option_values_are_checked_against_the_annotations(options, message):
    with pytest.raises(RecipeError) as error:
        check_options("model", options, builder, also_valid=("name",))
    assert message in str(error.value)


def test_valid_option_values_pass_and_unannotated_ones_are_not_checked():
    check_options("model", {"width": 8, "dropout": 0, "mode": "b", "sizes": [1, 2], "path": "a/b", "flag": True}, builder)
    check_options("model", {"path": None}, builder)

    def loose(input_shape, *, anything=None, **kwargs):
        pass

    check_options("model", {"anything": object(), "extra": "ok"}, loose)


@pytest.mark.parametrize(
    "model, data, message",
    [
        ({"name": "baseline_cnn", "width": "abc"}, {}, "model.width: expected an integer, got 'abc'"),
        ({"name": "baseline_cnn", "width": [1, 2]}, {}, "model.width: expected an integer, got [1, 2]"),
        ({"name": "shared_resnet", "normalization": "layer"}, {}, "model.normalization: expected one of 'ssn', 'bn'"),
        ({"name": "waveform_cnn", "stem_kernel_ms": "10ms"}, {}, "model.stem_kernel_ms: expected a number, got '10ms'"),
        ({}, {"dataset": "dcase2020_1b", "fold": "x"}, "data.fold: expected an integer, got 'x'"),
        ({}, {"dataset": "esc50", "esc10": "maybe"}, "data.esc10: expected true/false, got 'maybe'"),
        ({}, {"dataset": "audioset"}, "data: load_audioset requires data.segments_csv"),
    ],
)
def test_registered_builders_and_loaders_check_option_types(model, data, message):
    from tfasc import models
    from tfasc.data import datasets

    recipe = build_dataclass(Recipe, {"model": model, "data": data})
    with pytest.raises(RecipeError, match=re.escape(message)):
        check_options("model", recipe.model.options, models.builder(recipe.model.name), also_valid=("name",))
        check_options("data", recipe.data.options, datasets.LOADERS[recipe.data.dataset])
