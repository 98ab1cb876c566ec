"""Every mistake a user can fix prints one line naming the key or value, exit status 2, no traceback."""

from __future__ import annotations

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
        ("stages=[train, export, prune]", "stages: expected them in the order ['train', 'prune', 'qat', 'export']"),
        ("stages=[prune]", "stages: 'prune' needs a float model"),
        ("features.kind=scalogram", "features.kind: unknown front-end 'scalogram'; available: log_mel, waveform"),
        ("augment.cutmix_prob=0.5", "augment.cutmix_prob: need a frequency axis"),
        ("model.widht=8", "model.widht: unknown key for build_waveform_cnn. Did you mean 'width'?"),
        ("data.fold=0", "data (dcase2020_1b loader): option fold=0 must be a positive integer"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys, override, expected):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(RECIPE.format(root=tmp_path / "data", runs=tmp_path / "runs"))
    assert main([str(recipe), "--set", override]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and err.startswith("error: ") and "\n" not in err and "Traceback" not in err
