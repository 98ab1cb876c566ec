"""AclNet's training examples through a recipe (Huang & Leanos 2018, Sec. 3.2-3.4): a random
window, standardized, resampled, cropped and scaled for training; whole clips, normalized per clip,
for evaluation; mixup after its warm-up epochs."""

from __future__ import annotations

import numpy as np
import pytest

from support.recipes import RATE, WINDOW, write_tiny_recipe

# The tiny recipe's clips are 0.5 s (4000 samples at 8 kHz): a 0.4 s window, cropped to 0.3 s.
ACLNET = ["features.kind=waveform", "features.normalization=per_clip", "augment.waveform.window_s=0.4",
          "augment.waveform.standardize=true", "augment.waveform.speed_prob=1.0",
          "augment.waveform.speed_distribution=uniform", "augment.waveform.crop_s=0.3",
          "augment.waveform.gain_prob=1.0", "augment.mixup_prob=1.0", "augment.mixup_alpha=0.1",
          "augment.mixup_warmup_epochs=1"]


def test_training_batches_are_crops_and_evaluation_batches_whole_clips(tmp_path):
    from tfasc.config import load_recipe
    from tfasc.data.prepare import prepare_data
    from tfasc.training.context import StageContext

    recipe = load_recipe(write_tiny_recipe(tmp_path), ACLNET)
    context = StageContext(recipe=recipe, run_dir=tmp_path, data=prepare_data(recipe))
    steps = context.steps_per_epoch()  # 3: 18 training clips in batches of 8
    batches = [(x.numpy(), y.numpy()) for x, y in context.train_dataset(0).take(steps + 2)]
    crop = int(0.3 * RATE)
    for index, (x, y) in enumerate(batches):
        assert x.shape[1:] == (crop, 1)
        one_hot = np.all(np.isin(y, (0.0, 1.0)))
        assert one_hot == (index < steps)  # mixup from the second epoch on (alpha 0.1: soft labels)
    # Not normalized again after the gain: a level within +-6 dB of the standardized one, not 1.
    levels = np.concatenate([20 * np.log10(x.std(axis=(1, 2))) for x, _ in batches[:steps]])
    assert np.all(np.abs(levels) < 6.0 + 1.5) and np.ptp(levels) > 3.0
    evaluation = np.concatenate([x.numpy() for x, _ in context.eval_dataset()])
    assert evaluation.shape[1:] == (WINDOW, 1)
    np.testing.assert_allclose(evaluation.mean(axis=(1, 2)), 0.0, atol=1e-4)  # per_clip on whole clips
    np.testing.assert_allclose(evaluation.std(axis=(1, 2)), 1.0, atol=1e-3)


@pytest.mark.parametrize("mode", ["global", "per_clip_frequency"])
def test_standardize_needs_per_clip_normalization(tmp_path, capsys, mode):
    from tfasc.config import load_recipe
    from tfasc.config.load import RecipeError
    from tfasc.train import main

    recipe = write_tiny_recipe(tmp_path)
    overrides = ["augment.waveform.standardize=true", f"features.normalization={mode}"]
    with pytest.raises(RecipeError, match=f"augment.waveform.standardize: true needs features.normalization: "
                                          f"per_clip .*got {mode}"):
        load_recipe(recipe, overrides)
    assert load_recipe(recipe, [*overrides[:1], "features.normalization=per_clip"]).augment.waveform.standardize
    code = main([str(recipe), *sum((["--set", o] for o in overrides), [])])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "augment.waveform.standardize" in err[0]
