"""The training input path a recipe builds: waveform augmentation before the front-end
(``augment.waveform``) and the normalization modes, through training, export and the C bundle."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from support import c_input_path
from support.recipes import write_tiny_recipe


def _context(tmp_path, overrides):
    from tfasc.config import load_recipe
    from tfasc.data.prepare import prepare_data
    from tfasc.training.context import StageContext

    recipe = load_recipe(write_tiny_recipe(tmp_path), overrides)
    return StageContext(recipe=recipe, run_dir=tmp_path, data=prepare_data(recipe))


def test_clip_transform_applies_the_gain_then_the_front_end(tmp_path):
    from tfasc.data.pipeline import feature_function
    from tfasc.data.prepare import frontend_of

    context = _context(tmp_path, ["augment.waveform.gain_prob=1.0", "augment.waveform.gain_db=[6.0, 6.0]",
                                  "features.normalization=per_clip"])
    data = context.data
    clips = np.asarray(data.train_clips.features[:8])
    assert data.train_clips.features.shape == (len(data.train.features), 4000, 1)
    got = context.clip_transform()(clips, np.zeros((len(clips), 1), np.float32), 3)[0].numpy()
    # Independent: the gain in numpy, then the recipe's front-end, rounded like the float16 cache.
    louder = (clips * 10 ** (6 / 20)).astype(np.float32)
    extract = feature_function(frontend_of(context.recipe), 8000, 4000, 1)
    expected = extract(louder).numpy().astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(got, expected, atol=2e-2)  # float16 rounding of ~1e-3 relative
    assert np.abs(got - np.asarray(data.train.features[:8])).mean() > 0.5  # +6 dB moved the log-mels


def test_clip_transform_mixes_clips_between_classes_before_the_front_end(tmp_path):
    """``augment.waveform.mix: between_class`` alone switches on the clip path; each batch is
    mixed in pairs of different classes (ERANNs' "modified mixup on the waveform") by the draws
    seeded from ``(data.seed, batch_index)``, then goes through the front-end."""
    from support.bc_reference import numpy_bc_mix
    from tfasc.augment.between_class import draw_mix, mix_seed
    from tfasc.data.pipeline import feature_function
    from tfasc.data.prepare import frontend_of

    context = _context(tmp_path, ["augment.waveform.mix=between_class"])
    data = context.data
    assert data.train_clips is not None
    clips = np.asarray(data.train_clips.features[:8])
    targets = np.asarray(data.train_targets[:8], np.float32)
    labels = targets.argmax(axis=1)
    assert len(set(labels)) > 1
    features, mixed_targets = (t.numpy() for t in context.clip_transform()(clips, targets, 3))
    partner, ratio = (t.numpy() for t in draw_mix(targets, mix_seed(context.recipe.data.seed, 3), prob=1.0,
                                                  alpha=1.0, different_targets=True))
    assert np.all(labels[partner] != labels)
    # Targets: convex combinations of the two one-hot rows.
    assert np.all(mixed_targets >= 0) and np.allclose(mixed_targets.sum(axis=1), 1.0)
    np.testing.assert_allclose(mixed_targets, ratio[:, None] * targets + (1 - ratio[:, None]) * targets[partner],
                               atol=1e-6)
    # Features: the numpy BC mix (1024-sample gain frames at 8 kHz), then the front-end, float16-rounded.
    mixed = np.stack([numpy_bc_mix(clips[i, :, 0], clips[partner[i], :, 0], float(ratio[i]), 8000, 1024)
                      for i in range(8)])[:, :, None].astype(np.float32)
    extract = feature_function(frontend_of(context.recipe), 8000, 4000, 1)
    expected = extract(mixed).numpy().astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(features, expected, atol=2e-2)
    assert np.abs(features - np.asarray(data.train.features[:8])).mean() > 0.1
    # The training batches carry mixed targets (two classes per row).
    _, batch_targets = next(iter(context.train_dataset(0)))
    assert np.all(np.count_nonzero(batch_targets.numpy() > 0, axis=1) == 2)


def test_a_bad_mix_value_is_one_line_naming_the_key(tmp_path):
    from tfasc.config import load_recipe
    from tfasc.errors import UserError

    with pytest.raises(UserError, match="augment.waveform.mix") as error:
        load_recipe(write_tiny_recipe(tmp_path), ["augment.waveform.mix=bc_mixup"])
    assert "\n" not in str(error.value) and "between_class" in str(error.value)


def test_waveform_augmented_batches_are_a_function_of_the_batch_index(tmp_path):
    """A resumed run (``start_batch``) sees the same speed-perturbed batches as an uninterrupted one,
    and the normalization is per clip (each training input has mean 0 and standard deviation 1)."""
    context = _context(tmp_path, ["augment.waveform.speed_prob=0.7", "augment.waveform.shift_prob=0.5",
                                  "features.normalization=per_clip"])
    take = lambda dataset, n: [x.numpy() for x, _ in dataset.take(n)]
    straight = take(context.train_dataset(0), 5)
    resumed = take(context.train_dataset(3), 2)
    for a, b in zip(straight[3:], resumed):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(straight[0], straight[3])  # 24 clips, batch 8: pass 1 differs (shuffle, draws)
    for batch in straight:
        np.testing.assert_allclose(batch.reshape(len(batch), -1).mean(axis=1), 0, atol=1e-4)
        np.testing.assert_allclose(batch.reshape(len(batch), -1).std(axis=1), 1, atol=1e-3)


def test_frequency_normalization_needs_a_log_mel_front_end(tmp_path, capsys):
    from tfasc.train import main

    recipe = write_tiny_recipe(tmp_path)
    code = main([str(recipe), "--set", "features.kind=waveform", "--set", "features.normalization=per_frequency",
                 "--set", "model.name=waveform_cnn"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "features.normalization: per_frequency needs a frequency axis" in err[0]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to compile the bundle's C input path")
def test_exported_bundle_reproduces_the_int8_inputs_of_a_per_clip_frequency_run(tmp_path):
    """Speed perturbation and CMVN through a whole run; the bundle's ``input_path.h``, compiled,
    turns the evaluation clips' features into exactly the int8 inputs TFLite Micro was verified on."""
    from tfasc.config import load_recipe
    from tfasc.data.prepare import prepare_data
    from tfasc.deploy.convert import TensorQuantization
    from tfasc.train import main

    recipe_file = write_tiny_recipe(tmp_path)
    overrides = ["features.normalization=per_clip_frequency", "augment.waveform.speed_prob=0.5"]
    run_dir = tmp_path / "run"
    assert main([str(recipe_file), "--out", str(run_dir), *sum((["--set", o] for o in overrides), [])]) == 0
    report = json.loads((run_dir / "report.json").read_text())
    assert report["data"]["normalization"] == {"mode": "per_clip_frequency", "mean": [], "std": []}
    bundle = run_dir / "deploy"
    config = (bundle / "model_config.h").read_text()
    assert 'kFeatureNormalization = "per_clip_frequency"' in config and "StandardizeMean" not in config

    data = prepare_data(load_recipe(recipe_file, overrides))
    q = report["deploy"]["input_quantization"]
    quantization = TensorQuantization(shape=(1, *data.input_shape), dtype="int8", scale=q["scale"],
                                      zero_point=q["zero_point"])
    features = np.asarray(data.eval.features, np.float32)
    # Independent of tfasc's normalization code: CMVN per clip and mel bin in numpy float64.
    wide = features.astype(np.float64)
    cmvn = (wide - wide.mean(axis=(2, 3), keepdims=True)) / wide.std(axis=(2, 3), keepdims=True)
    expected = quantization.quantize(data.normalization(features))
    assert np.mean(quantization.quantize(cmvn) != expected) < 0.01  # ties at .5 may round apart

    got = c_input_path.run(c_input_path.build(bundle, tmp_path), features)
    np.testing.assert_array_equal(got, expected)
