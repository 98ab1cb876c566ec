"""``features.segment_frames`` and ``training.loss.name: binary_crossentropy`` (Wu & Lee, Sec. 3.1,
4.2, 4.3): clips cut into segments, every segment an example with its clip's label, a clip's
probabilities the mean of its segments' softmax / sigmoid, binary cross-entropy on one-hot targets.
Every expectation is computed here in numpy (segments cut by explicit slicing, softmax, sigmoid,
means, metrics), never by the code under test."""

from __future__ import annotations

import numpy as np
import pytest

from support.recipes import write_tiny_recipe

#: The tiny recipe's clips: 0.5 s at 8 kHz, hop 128 -> 32 frames of 16 mel bins, mono.
FRAMES, MELS = 32, 16


def numpy_segments(clips: np.ndarray, n: int) -> np.ndarray:
    """``[clips * k, freq, n, channels]``: each clip's frames ``[s * n, (s + 1) * n)``, s = 0..k-1, in order."""
    clips = np.asarray(clips)
    k = clips.shape[2] // n
    return np.stack([clips[c, :, s * n:(s + 1) * n, :] for c in range(len(clips)) for s in range(k)])


def np_softmax(logits):
    logits = np.asarray(logits, np.float64)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_sigmoid(logits):
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))


# -- the segment view ----------------------------------------------------------------------------


@pytest.mark.parametrize("n, k", [(4, 2), (3, 3), (10, 1)])
def test_segments_are_consecutive_frames_and_drop_the_remainder(tmp_path, n, k):
    from tfasc.data.segments import Segments, segment_shape, segments_per_clip

    rng = np.random.default_rng(0)
    values = rng.normal(size=(5, 3, 10, 2)).astype(np.float16)
    # A memory-mapped source, as the feature cache gives: read on demand, never copied whole.
    clips = np.lib.format.open_memmap(tmp_path / "f.npy", mode="w+", dtype=np.float16, shape=values.shape)
    clips[:] = values
    view = Segments(clips, n)
    expected = numpy_segments(values, n)
    assert len(expected) == 5 * k and expected.shape[1:] == (3, n, 2)
    assert view.shape == expected.shape and len(view) == 5 * k and view.ndim == 4 and view.size == expected.size
    assert segments_per_clip((3, 10, 2), n) == k and segment_shape((3, 10, 2), n) == (3, n, 2)
    assert view.dtype == np.float16
    np.testing.assert_array_equal(np.asarray(view), expected)
    rows = np.array([len(expected) - 1, 0, 2, 2])
    np.testing.assert_array_equal(view[rows], expected[rows])
    np.testing.assert_array_equal(view[1:4], expected[1:4])
    np.testing.assert_array_equal(view[-1], expected[-1])
    # Without segments the clips are the model inputs.
    assert segments_per_clip((3, 10, 2), None) == 1 and segment_shape((3, 10, 2), None) == (3, 10, 2)


def test_a_clip_shorter_than_a_segment_and_features_without_frames_are_recipe_errors():
    from tfasc.config.load import RecipeError
    from tfasc.data.segments import segment_shape, segments_per_clip

    with pytest.raises(RecipeError, match=r"features.segment_frames: 40 is more than the 32 frames of a clip"):
        segments_per_clip((16, 32, 1), 40)
    with pytest.raises(RecipeError, match=r"features.segment_frames: 8: .*\[4000, 1\]"):
        segment_shape((4000, 1), 8)


def test_recipes_that_cannot_be_segmented_are_refused_naming_the_key(tmp_path, capsys):
    from tfasc.train import main

    recipe = str(write_tiny_recipe(tmp_path))
    cases = [
        (["features.segment_frames=33"], "features.segment_frames: 33 is more than the 32 frames of a clip"),
        (["features.segment_frames=8", "features.kind=waveform", "model.name=waveform_cnn"],
         "features.segment_frames: 8: features.kind: waveform has no frames to cut"),
        (["features.segment_frames=8", "augment.waveform.gain_prob=0.5"],
         "features.segment_frames: 8 cannot be combined with augment.waveform"),
    ]
    for overrides, message in cases:
        code = main([recipe, "--out", str(tmp_path / "run"), *sum((["--set", o] for o in overrides), [])])
        err = capsys.readouterr().err
        assert code == 2 and message in err, err
    assert not (tmp_path / "data").exists()  # refused before any data work


# -- scoring --------------------------------------------------------------------------------------


def test_clip_probabilities_average_each_clips_consecutive_segments():
    from tfasc.evaluate import clip_probabilities

    rng = np.random.default_rng(1)
    probabilities = rng.uniform(size=(12, 3))
    got = clip_probabilities(lambda inputs: probabilities[inputs], np.arange(12), 4)
    expected = np.array([probabilities[4 * c:4 * c + 4].mean(axis=0) for c in range(3)])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(clip_probabilities(lambda inputs: probabilities[inputs], np.arange(12), 1), probabilities)


def test_sigmoid_outputs_for_multi_label_data_or_binary_crossentropy():
    from tfasc.metrics import probabilities_from_logits, sigmoid_outputs

    assert sigmoid_outputs("binary_crossentropy", multi_label=False)
    assert sigmoid_outputs("crossentropy", multi_label=True)
    assert not sigmoid_outputs("crossentropy", multi_label=False)
    assert not sigmoid_outputs("cb_focal", multi_label=False)
    logits = np.array([[2.0, -1.0, 0.5]])
    np.testing.assert_allclose(probabilities_from_logits(logits, sigmoid=True), np_sigmoid(logits), rtol=1e-15)
    np.testing.assert_allclose(probabilities_from_logits(logits, sigmoid=False), np_softmax(logits), rtol=1e-15)


def test_log_loss_of_sigmoid_scores_is_that_of_the_renormalized_distribution():
    from tfasc.metrics import classification_metrics

    scores = np.array([[0.9, 0.3, 0.2], [0.1, 0.2, 0.6], [0.6, 0.3, 0.3]])  # rows do not sum to 1
    true = np.array([0, 1, 0])
    got = classification_metrics(scores, true, ["a", "b", "c"])
    expected = -np.mean(np.log([0.9 / 1.4, 0.2 / 0.9, 0.6 / 1.2]))
    assert got["log_loss"] == pytest.approx(expected, rel=1e-12)
    assert got["accuracy"] == pytest.approx(2 / 3)  # argmax 0, 2, 0 against 0, 1, 0


# -- binary cross-entropy -------------------------------------------------------------------------


def np_binary_crossentropy(targets, logits) -> float:
    p = np_sigmoid(logits)
    return float(np.mean(-(targets * np.log(p) + (1 - targets) * np.log(1 - p))))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_binary_crossentropy_loss_is_the_mean_sigmoid_cross_entropy_on_one_hot_targets(smoothing):
    from tfasc.config.schema import LossConfig
    from tfasc.training.loop import build_loss

    logits = np.array([[2.0, -1.0, 0.5], [-0.3, 0.8, -2.2], [0.0, 0.1, 3.0], [1.5, 1.4, -0.7]], np.float32)
    targets = np.eye(3, dtype=np.float32)[[0, 1, 2, 1]]
    loss = build_loss(LossConfig(name="binary_crossentropy", label_smoothing=smoothing),
                      class_counts=np.ones(3), multi_label=False)
    smoothed = targets * (1 - smoothing) + smoothing / 2  # Keras smooths binary targets towards 1/2
    assert float(loss(targets, logits)) == pytest.approx(np_binary_crossentropy(smoothed, logits), rel=1e-5)


def test_a_model_compiled_with_binary_crossentropy_reports_its_loss_and_argmax_accuracy():
    import tf_keras as keras

    from tfasc.config.schema import LossConfig, TrainingConfig
    from tfasc.training.loop import compile_model

    rng = np.random.default_rng(2)
    x = rng.normal(size=(10, 4)).astype(np.float32)
    targets = np.eye(3, dtype=np.float32)[rng.integers(0, 3, size=10)]
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    kernel, bias = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    model.layers[-1].set_weights([kernel, bias])
    compile_model(model, TrainingConfig(loss=LossConfig(name="binary_crossentropy")), steps=1,
                  class_counts=targets.sum(axis=0), multi_label=False)
    loss, accuracy = model.evaluate(x, targets, batch_size=10, verbose=0)
    logits = x.astype(np.float64) @ kernel + bias
    assert loss == pytest.approx(np_binary_crossentropy(targets, logits), rel=1e-5)
    assert accuracy == pytest.approx(np.mean(logits.argmax(axis=1) == targets.argmax(axis=1)))


# -- prepared data, training batches and evaluation of a tiny recipe ------------------------------


def _context(base, overrides):
    from tfasc.config import load_recipe
    from tfasc.data.prepare import prepare_data
    from tfasc.training.context import StageContext

    recipe = load_recipe(write_tiny_recipe(base), ["features.segment_frames=10", *overrides])
    return StageContext(recipe=recipe, run_dir=base / "run", data=prepare_data(recipe))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("segments")


def test_prepared_data_cuts_clips_into_segments_each_with_its_clips_label(base):
    context = _context(base, [])
    data = context.data
    clips = np.asarray(data.train.features)
    assert clips.shape[1:] == (MELS, FRAMES, 1)  # the cache keeps whole clips
    assert data.input_shape == (MELS, 10, 1) and data.segments_per_clip == 3  # 2 frames dropped
    assert data.input_seconds == pytest.approx(0.5 / 3)  # a 0.5 s clip makes 3 inferences
    expected = numpy_segments(clips, 10)
    np.testing.assert_array_equal(np.asarray(data.inputs(data.train.features)), expected)
    repeated = np.stack([target for target in data.train_targets for _ in range(3)])
    np.testing.assert_array_equal(data.input_targets(data.train_targets), repeated)
    # Normalization fitted on the segments the model sees: the dropped frames do not count.
    wide = expected.astype(np.float64)
    assert data.normalization.mean[0] == pytest.approx(wide.mean(), rel=1e-9)
    assert data.normalization.std[0] == pytest.approx(wide.std(), rel=1e-9)
    assert context.steps_per_epoch() == -(-len(expected) // 8)

    # A shuffled training batch: segments (normalized), each with the label of the clip it was cut from.
    inputs = (expected.astype(np.float32) - np.float32(data.normalization.mean[0])) * np.float32(1 / data.normalization.std[0])
    x, y = next(iter(context.train_dataset(0)))
    x, y = x.numpy(), y.numpy()
    assert x.shape == (8, MELS, 10, 1)
    for row, target in zip(x, y):
        match = np.abs(inputs - row).reshape(len(inputs), -1).max(axis=1)
        assert match.min() < 1e-5
        np.testing.assert_array_equal(target, repeated[match.argmin()])


@pytest.mark.parametrize("loss", ["crossentropy", "binary_crossentropy"])
def test_evaluation_scores_a_clip_by_the_mean_of_its_segments_probabilities(base, loss):
    from tfasc.training.stages.train import build_model

    context = _context(base, [f"training.loss.name={loss}"])
    data = context.data
    assert data.sigmoid_outputs == (loss == "binary_crossentropy")
    model = build_model(context.recipe, data.input_shape, len(data.index.classes), sigmoid_outputs=data.sigmoid_outputs)
    got = context.evaluate(model)["metrics"]

    clips = np.asarray(data.eval.features)
    segments = numpy_segments(clips, 10)
    mean, std = data.normalization.mean[0], data.normalization.std[0]
    logits = model.predict(((segments - mean) / std).astype(np.float32), verbose=0)
    per_segment = np_sigmoid(logits) if loss == "binary_crossentropy" else np_softmax(logits)
    per_clip = per_segment.reshape(len(clips), 3, -1).mean(axis=1)
    truth = data.eval_targets.argmax(axis=1)
    chosen = per_clip[np.arange(len(clips)), truth] / per_clip.sum(axis=1)
    assert got["examples"] == len(clips) == len(data.eval.examples)
    assert got["accuracy"] == pytest.approx(np.mean(per_clip.argmax(axis=1) == truth))
    assert got["log_loss"] == pytest.approx(-np.mean(np.log(chosen)), rel=1e-4)
    confusion = np.zeros((3, 3), int)
    np.add.at(confusion, (truth, per_clip.argmax(axis=1)), 1)
    assert got["confusion_matrix"] == confusion.tolist()
