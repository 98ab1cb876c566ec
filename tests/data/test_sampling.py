"""Balanced sampling (``make_dataset(..., sampling="balanced")``, PANNs' balanced sampler): class
frequencies, coverage of rare classes and resumability, counted independently in numpy / scipy."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from tfasc.data.pipeline import make_dataset


def unbalanced_multilabel_targets() -> np.ndarray:
    """``[448, 4]``: class 0 has 400 examples, class 1 four (100:1), class 2 forty; class 3's four
    examples are all also class-0 examples (multi-label), and two class-2 examples are also class 1."""
    targets = np.zeros((448, 4), np.float32)
    targets[:400, 0] = 1
    targets[400:404, 1] = 1
    targets[404:444, 2] = 1
    targets[[0, 100, 200, 300], 3] = 1
    targets[[444, 445], 1] = 1  # two more class-1 examples, also positive for class 2
    targets[[444, 445], 2] = 1
    targets[446:448, 2] = 1
    return targets


def drawn_examples(targets, count, *, batch_size=8, seed=5, start_batch=0, **options) -> np.ndarray:
    """The example indices of ``count`` batches (each example's feature is its index)."""
    features = np.arange(len(targets), dtype=np.float32).reshape(-1, 1, 1, 1)
    dataset = make_dataset(features, targets, batch_size=batch_size, shuffle=True, seed=seed, repeat=True,
                           start_batch=start_batch, sampling="balanced", **options)
    batches = []
    for x, y in dataset.take(count):
        indices = x.numpy()[:, 0, 0, 0].astype(np.int64)
        np.testing.assert_array_equal(y.numpy(), targets[indices])  # targets travel with their features
        batches.append(indices)
    return np.stack(batches)


def test_every_class_is_drawn_once_per_cycle_however_unbalanced():
    targets = unbalanced_multilabel_targets()
    classes = targets.shape[1]
    draws = drawn_examples(targets, 100).reshape(-1)  # 800 draws: 200 cycles of the 4 classes
    positive = targets[draws] >= 0.5
    # Each aligned block of 4 draws can be given to the 4 classes one to one (a perfect matching).
    for block in positive.reshape(-1, classes, classes):
        rows, columns = linear_sum_assignment(-block.astype(float))
        assert block[rows, columns].all()
    # How often each class appears: 1/4 of the draws are its own, plus co-occurring labels of the
    # other classes' draws; the expectation from the target matrix alone.
    lists = [np.flatnonzero(targets[:, k]) for k in range(classes)]
    expected = np.mean([targets[members].mean(axis=0) for members in lists], axis=0) * len(draws)
    counts = positive.sum(axis=0)
    np.testing.assert_allclose(counts, expected, rtol=0.1)
    assert counts.min() >= len(draws) // classes
    # ... against the training list's own frequencies (class 1 is 100 times rarer than class 0).
    frequencies = targets.sum(axis=0) / len(targets)
    assert frequencies[0] / frequencies[1] > 60 and frequencies[1] < 0.02
    assert counts[1] / len(draws) >= 0.25


def test_a_class_list_is_used_up_before_any_example_repeats():
    targets = unbalanced_multilabel_targets()
    draws = drawn_examples(targets, 100).reshape(-1)  # class 0 drawn for itself 200 times, class 1 200 times
    times = np.bincount(draws, minlength=len(targets))
    only_class_1, only_class_0 = np.arange(400, 404), np.setdiff1d(np.arange(400), [0, 100, 200, 300])
    # 200 draws of class 1 cycle through its 6 examples (4 of its own, 2 shared with class 2) 33 or 34
    # times each; the ones shared also come up when class 2 is drawn.
    assert set(times[only_class_1]) <= {33, 34}
    assert times[[444, 445]].min() >= 33
    # Class 0's 400 examples are not all used up in 200 draws: none repeats.
    assert times[only_class_0].max() == 1
    assert (times[only_class_0] == 1).sum() >= 190
    # Every example with a label is eventually drawn; over 400 cycles every class-0 example is.
    longer = np.bincount(drawn_examples(targets, 200).reshape(-1), minlength=len(targets))
    assert (longer > 0).all()


def test_single_label_classes_are_drawn_exactly_equally_often():
    labels = np.r_[np.zeros(300, int), np.ones(3, int), np.full(30, 2)]
    targets = np.eye(3, dtype=np.float32)[labels]
    draws = drawn_examples(targets, 60, batch_size=6).reshape(-1)  # 360 draws, 120 cycles
    counts = np.bincount(labels[draws], minlength=3)
    assert counts.tolist() == [120, 120, 120]
    for block in labels[draws].reshape(-1, 3):
        assert sorted(block) == [0, 1, 2]
    # The three class-1 examples in turn: each 40 times.
    assert np.bincount(draws, minlength=len(labels))[300:303].tolist() == [40, 40, 40]


@pytest.mark.parametrize("batch_size, drop_remainder, start", [(8, False, 1), (8, False, 57), (7, True, 130), (5, False, 200)])
def test_resumed_balanced_stream_continues_the_uninterrupted_one(batch_size, drop_remainder, start):
    targets = unbalanced_multilabel_targets()  # 448 examples: 56 batches of 8 per pass, 64 of 7, 90 of 5
    full = drawn_examples(targets, start + 20, batch_size=batch_size, drop_remainder=drop_remainder)
    resumed = drawn_examples(targets, 20, batch_size=batch_size, drop_remainder=drop_remainder, start_batch=start)
    np.testing.assert_array_equal(full[start:], resumed)


def test_balanced_stream_depends_on_the_seed_and_batches_are_full():
    targets = unbalanced_multilabel_targets()
    a, b, c = drawn_examples(targets, 30, seed=1), drawn_examples(targets, 30, seed=1), drawn_examples(targets, 30, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    features = np.arange(10, dtype=np.float32).reshape(10, 1)
    single = np.eye(2, dtype=np.float32)[np.arange(10) % 2]
    one_pass = list(make_dataset(features, single, batch_size=4, shuffle=True, sampling="balanced"))
    assert [len(x) for x, _ in one_pass] == [4, 4, 4]  # a pass is still 3 batches; all full


def test_balanced_sampling_refuses_what_it_cannot_draw():
    features = np.zeros((4, 1), np.float32)
    with pytest.raises(ValueError, match="positive target; none has one"):
        make_dataset(features, np.zeros((4, 2), np.float32), batch_size=2, shuffle=True, sampling="balanced")
    with pytest.raises(ValueError, match="needs shuffle"):
        make_dataset(features, np.eye(2, dtype=np.float32)[[0, 1, 0, 1]], batch_size=2, shuffle=False, sampling="balanced")
    with pytest.raises(ValueError, match="'ballanced': expected one of"):
        make_dataset(features, np.eye(2, dtype=np.float32)[[0, 1, 0, 1]], batch_size=2, shuffle=True, sampling="ballanced")
