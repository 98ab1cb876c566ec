"""Every mistake a user can fix prints one line naming the key or value, exit status 2, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tfasc.train import main

RECIPE = """
stages: [train]
data:
  dataset: dcase2020_1b
  root: {root}
  synthesize: {{clips: 12, seed: 1, sample_rate: 8000, duration_s: 0.5, channels: 1}}
  sample_rate: 8000
  duration_s: 0.5
  channels: 1
  cache: false
features: {{kind: waveform}}
model: {{name: waveform_cnn, sample_rate: 8000, stem_filters: 4, width: 4, blocks: 1}}
training: {{epochs: 1}}
output: {{dir: {runs}, tensorboard: false, plots: false}}
"""


@pytest.mark.parametrize(
    "override, expected",
    [
        ("stages=[train, export, prune]", "stages: expected them in the order ['train', 'mix_train', 'finetune', 'prune', 'qat', 'export']"),
        ("stages=[prune]", "stages: 'prune' needs a float model"),
        ("features.kind=mfcc", "features.kind: unknown front-end 'mfcc'; available: log_mel, scalogram, waveform"),
        ("augment.cutmix_prob=0.5", "augment.cutmix_prob: need a frequency axis"),
        ("model.widht=8", "model.widht: unknown key for build_waveform_cnn. Did you mean 'width'?"),
        ("data.fold=0", "data (dcase2020_1b loader): option fold=0 must be a positive integer"),
        # Option values are checked against the builder's / loader's annotations before anything runs.
        ("model.width=abc", "model.width: expected an integer, got 'abc' (option 'width' of build_waveform_cnn)"),
        ("model.width=[1, 2]", "model.width: expected an integer, got [1, 2]"),
        ("model.num_classes=3", "model.num_classes: 'num_classes' is an argument tfasc passes to build_waveform_cnn"),
        ("data.fold=x", "data.fold: expected an integer, got 'x' (option 'fold' of load_dcase2020_1b)"),
        # Log-mel parameters against data.sample_rate 8000, at recipe load.
        (["features.kind=log_mel", "features.fmax=5000"],
         "features.fmax: 5000 Hz is above the Nyquist frequency 4000 Hz of data.sample_rate 8000"),
        (["features.kind=log_mel", "features.fmin=3000", "features.fmax=2000"],
         "features.fmin: 3000 Hz is not below features.fmax 2000 Hz"),
        (["features.kind=log_mel", "features.fmin=4000"],
         "features.fmin: 4000 Hz is not below the Nyquist frequency 4000 Hz of data.sample_rate 8000"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys, override, expected):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(RECIPE.format(root=tmp_path / "data", runs=tmp_path / "runs"))
    overrides = [override] if isinstance(override, str) else override
    assert main([str(recipe), *(arg for o in overrides for arg in ("--set", o))]) == 2
    err = one_error_line(capsys)
    assert expected in err


def one_error_line(capsys) -> str:
    """The one line a user error prints on stderr (and that it is only that)."""
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def good_recipe(tmp_path) -> str:
    return RECIPE.format(root=tmp_path / "data", runs=tmp_path / "runs")


@pytest.mark.parametrize(
    "make_text, expected",
    [
        (lambda good: "", "the recipe is empty"),
        (lambda good: "# stages: [train]\n# nothing else\n", "the recipe is empty"),
        (lambda good: "null\n", "the recipe is empty"),
        (lambda good: "- stages\n- data\n", "expected a mapping of sections at the top level"),
        (lambda good: good + "training: {epochs: 2}\n", "duplicate key training on lines 13 and 15"),
        (lambda good: good.replace("  channels: 1\n", "  channels: 1\n  sample_rate: 16000\n"),
         "duplicate key data.sample_rate on lines 7 and 10"),
    ],
)
def test_recipe_file_errors_name_the_file(tmp_path, capsys, make_text, expected):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(make_text(good_recipe(tmp_path)))
    assert main([str(recipe)]) == 2
    err = one_error_line(capsys)
    assert err.startswith(f"error: {recipe}: ") and expected in err


@pytest.fixture
def dataset(tmp_path):
    """The 12-clip DCASE-layout dataset the recipe would synthesize (eval split: the 6 Milan clips)."""
    from tfasc.data.synthesize import synthesize_dcase2020_1b

    return synthesize_dcase2020_1b(tmp_path / "data", clips=12, seed=1, sample_rate=8000, duration_s=0.5, channels=1)


@pytest.mark.parametrize("bad, kind", [("../outside.wav", "leads outside"), ("/etc/hostname", "is absolute")])
def test_metadata_path_outside_the_dataset_is_one_line(tmp_path, capsys, dataset, bad, kind):
    meta = dataset / "meta.csv"
    lines = meta.read_text().splitlines(keepends=True)
    first = lines[1].split("\t")[0]
    lines[1] = lines[1].replace(first, bad)
    meta.write_text("".join(lines))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(good_recipe(tmp_path))
    assert main([str(recipe)]) == 2
    assert f"error: {meta}:2: audio path '{bad}' {kind}" in one_error_line(capsys)


def corrupt(dataset, names):
    for name in names:
        (dataset / name).write_bytes(b"not a wav file")


def listed(dataset, setup_file):
    return [line.split("\t")[0] for line in (dataset / "evaluation_setup" / setup_file).read_text().splitlines()[1:]]


def test_every_evaluation_file_skipped_is_one_line(tmp_path, capsys, dataset):
    corrupt(dataset, listed(dataset, "fold1_evaluate.csv"))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(good_recipe(tmp_path))
    assert main([str(recipe), "--set", "data.skip_bad_files=true"]) == 2
    err = one_error_line(capsys)
    assert f"error: {dataset}: no usable clip in split 'evaluate'" in err
    assert "all 6 file(s) were skipped" in err and "data.skip_bad_files: true" in err
    assert "first: " in err and "metro-milan-2-0-a.wav" in err


def test_every_held_out_group_file_skipped_is_one_line(tmp_path, capsys, dataset):
    # One Barcelona clip taken out of the training list and unreadable: the group's only clip outside it.
    setup = dataset / "evaluation_setup" / "fold1_train.csv"
    setup.write_text("".join(line for line in setup.read_text().splitlines(keepends=True) if "bus-barcelona-5-1" not in line))
    corrupt(dataset, ["audio/bus-barcelona-5-1-a.wav"])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(good_recipe(tmp_path))
    args = [str(recipe), "--set", "data.skip_bad_files=true", "--set", "evaluate.held_out_groups=[barcelona]"]
    assert main(args) == 2
    err = one_error_line(capsys)
    assert f"error: {dataset}: no usable clip in held-out group 'barcelona'" in err and "all 1 file(s)" in err


def test_command_line_process_prints_one_line_and_exits_2(tmp_path):
    """The real ``python -m tfasc.train`` process: exit status 2 and one line on stderr."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(good_recipe(tmp_path) + "model: {width: 8}\n")
    result = subprocess.run(
        [sys.executable, "-m", "tfasc.train", str(recipe)], capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: {recipe}: duplicate key model on lines 12 and 15")
