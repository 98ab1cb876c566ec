"""Recipe loading: types, ranges, nearest-key errors, overrides, round trip."""

import pytest

from tfasc.config import RecipeError, dump_recipe, load_recipe
from tfasc.config.load import apply_overrides, build_dataclass, check_options, parse_override
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
