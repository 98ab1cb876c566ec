"""What the ``mix_train`` stage trains on (Chen et al. 2019 Sec. 3.2, Eq. 1-2): the recipe's batches with
every clip mixed with a partner at a ratio in ``mix_train.ratio`` and labelled ``sign(y_i + y_j)``, checked in
numpy against the unmixed batches of the same stream; the recipe's own mixing is left out."""

from __future__ import annotations

import numpy as np

import tfasc  # noqa: F401

from tfasc.augment.mix_training import draw_mix_pairs, make_mix_training_mixer, mix_training_seed
from tfasc.config import load_recipe
from tfasc.data.prepare import prepare_data
from tfasc.training.context import StageContext
from support.recipes import write_tiny_recipe


def test_the_mix_train_stream_is_the_recipes_batches_mixed_in_pairs(tmp_path):
    recipe = load_recipe(write_tiny_recipe(tmp_path), [
        "stages=[mix_train]", "features.kind=waveform", "features.normalization=none", "mix_train.ratio=[0.3, 0.5]",
        "augment.mixup_prob=1.0"])  # the recipe's own mixup: not in the mix_train stream
    data = prepare_data(recipe)
    assert data.train_clips is not None  # mix_train decodes clips even without waveform augmentation
    context = StageContext(recipe=recipe, run_dir=tmp_path / "run", data=data)
    mixer = make_mix_training_mixer(recipe.mix_train.ratio, recipe.data.seed)
    context_plain = StageContext(recipe=load_recipe(write_tiny_recipe(tmp_path, "plain.yaml"), [
        "stages=[mix_train]", "features.kind=waveform", "features.normalization=none"]), run_dir=tmp_path / "r2", data=data)
    for index, ((mixed_x, mixed_y), (x, y)) in enumerate(zip(context.train_dataset(mixer=mixer).take(3),
                                                            context_plain.train_dataset().take(3))):
        x, y = np.asarray(x, np.float64), np.asarray(y)
        partner, ratio = (np.asarray(t) for t in draw_mix_pairs(len(x), mix_training_seed(recipe.data.seed, index),
                                                                 recipe.mix_train.ratio))
        assert ((ratio >= 0.3) & (ratio <= 0.5)).all()
        a = ratio[:, None, None]
        np.testing.assert_allclose(mixed_x, a * x + (1 - a) * x[partner], rtol=1e-5, atol=1e-6)  # Eq. 1
        np.testing.assert_array_equal(mixed_y, np.sign(y + y[partner]))  # Eq. 2
        assert (np.asarray(mixed_y).sum(axis=1) == 1 + (y.argmax(1) != y[partner].argmax(1))).all()
