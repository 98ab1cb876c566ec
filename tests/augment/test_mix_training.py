"""The mixing of the mix-training strategy (Chen et al. 2019, Sec. 3.2, Eq. 1-2): clips
``α x_i + (1 - α) x_j`` and targets ``sign(y_i + y_j)``, against plain numpy."""

from __future__ import annotations

import numpy as np
import pytest

import tfasc  # noqa: F401

import tensorflow as tf

from tfasc.augment.between_class import mix_seed
from tfasc.augment.mix_training import (
    PAPER_RATIO_RANGE,
    check_ratio_range,
    draw_mix_pairs,
    make_mix_training_mixer,
    mix_pairs,
    mix_training_seed,
)


def multi_hot(batch, classes, seed=0, density=0.3):
    return (np.random.default_rng(seed).uniform(size=(batch, classes)) < density).astype(np.float32)


def one_hot(labels, classes):
    return np.eye(classes, dtype=np.float32)[labels]


def numpy_mix(clips, targets, partner, ratio):
    """Eq. 1 and Eq. 2 in float64 numpy."""
    a = ratio.astype(np.float64).reshape((-1,) + (1,) * (clips.ndim - 1))
    x = a * clips.astype(np.float64) + (1.0 - a) * clips[partner].astype(np.float64)
    return x, np.sign(targets + targets[partner])


def test_mixed_clips_and_labels_match_numpy_eq_1_and_2():
    rng = np.random.default_rng(0)
    clips = rng.standard_normal((8, 1600, 2)).astype(np.float32)
    for targets in (multi_hot(8, 6), one_hot([0, 1, 2, 3, 4, 5, 0, 1], 6)):
        partner, ratio = draw_mix_pairs(8, [1, 2], (0.0, 1.0))
        partner, ratio = partner.numpy(), ratio.numpy()
        assert partner.dtype == np.int32 and ratio.dtype == np.float32
        mixed, mixed_targets = mix_pairs(clips, targets, partner, ratio)
        x, y = numpy_mix(clips, targets, partner, ratio)
        assert mixed.dtype == tf.float32 and mixed_targets.dtype == tf.float32
        np.testing.assert_allclose(mixed.numpy(), x, atol=1e-6)
        np.testing.assert_array_equal(mixed_targets.numpy(), y)
        # Multi-hot union, in words: a label is on where either clip has it.
        np.testing.assert_array_equal(mixed_targets.numpy(), np.maximum(targets, targets[partner]))


def test_one_hot_pairs_of_two_classes_give_two_hot_and_soft_targets_become_one():
    clips = np.ones((4, 10, 1), np.float32) * np.arange(1, 5, dtype=np.float32)[:, None, None]
    targets = one_hot([0, 1, 2, 2], 3)
    partner = np.array([1, 0, 3, 2], np.int32)
    ratio = np.array([0.5, 0.25, 0.4, 0.6], np.float32)
    mixed, mixed_targets = mix_pairs(clips, targets, partner, ratio)
    np.testing.assert_array_equal(mixed_targets.numpy(), [[1, 1, 0], [1, 1, 0], [0, 0, 1], [0, 0, 1]])
    np.testing.assert_allclose(mixed.numpy()[:, 0, 0], [1.5, 0.25 * 2 + 0.75 * 1, 0.4 * 3 + 0.6 * 4, 0.6 * 4 + 0.4 * 3],
                               rtol=1e-6)
    # Exactly tf.sign: any positive soft weight becomes 1, zeros stay 0. Integer targets keep their dtype.
    soft = np.array([[0.1, 0.0, 0.0], [0.0, 0.0, 0.7], [0.0, 0.0, 0.0], [0.2, 0.0, 0.0]], np.float32)
    np.testing.assert_array_equal(mix_pairs(clips, soft, partner, ratio)[1].numpy(),
                                  [[1, 0, 1], [1, 0, 1], [1, 0, 0], [1, 0, 0]])
    ints = mix_pairs(clips, targets.astype(np.int32), partner, ratio)[1]
    assert ints.dtype == tf.int32
    np.testing.assert_array_equal(ints.numpy(), mixed_targets.numpy())


def test_features_of_rank_4_and_a_partner_equal_to_itself():
    rng = np.random.default_rng(1)
    features = rng.standard_normal((5, 8, 12, 2)).astype(np.float32)  # [batch, freq, time, channels]
    targets = multi_hot(5, 4, seed=2)
    partner = np.array([0, 2, 1, 4, 3], np.int32)  # row 0 paired with itself
    ratio = np.array([0.3, 0.45, 0.5, 0.55, 0.9], np.float32)
    mixed, mixed_targets = mix_pairs(features, targets, partner, ratio)
    x, y = numpy_mix(features, targets, partner, ratio)
    np.testing.assert_allclose(mixed.numpy(), x, atol=1e-6)
    np.testing.assert_array_equal(mixed_targets.numpy(), y)
    # A fixed point: the example back (up to float32 rounding) with its own labels.
    np.testing.assert_allclose(mixed.numpy()[0], features[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(mixed_targets.numpy()[0], targets[0])


def test_ratios_lie_in_and_cover_the_range():
    for low, high in ((0.0, 1.0), PAPER_RATIO_RANGE, (0.2, 0.3)):
        ratio = np.concatenate([draw_mix_pairs(256, [seed, 9], (low, high))[1].numpy() for seed in range(16)])
        assert ratio.min() >= low and ratio.max() <= high
        # 4096 uniform draws: the extremes lie within ~(high - low) / 4096 of the ends (2e-3 of the
        # width fails with probability e^-8 per end), the mean within 5 standard errors of the middle.
        width = high - low
        assert ratio.min() < low + 2e-3 * width and ratio.max() > high - 2e-3 * width
        assert abs(ratio.mean() - (low + high) / 2) < 5 * width / np.sqrt(12 * ratio.size)
    degenerate = draw_mix_pairs(64, [0, 1], (0.5, 0.5))[1].numpy()
    assert np.all(degenerate == np.float32(0.5))


def test_partner_is_a_permutation():
    for batch, seed in ((1, 0), (7, 3), (32, 4), (500, 5)):
        partner = draw_mix_pairs(batch, [seed, 1], (0.0, 1.0))[0].numpy()
        assert sorted(partner) == list(range(batch))
    # Not the identity: over a batch of 500 a uniform permutation fixes ~1 point.
    assert np.count_nonzero(draw_mix_pairs(500, [5, 1], (0.0, 1.0))[0].numpy() == np.arange(500)) < 10


def test_mixer_is_a_function_of_seed_and_batch_index():
    rng = np.random.default_rng(3)
    clips = rng.standard_normal((6, 800, 1)).astype(np.float32)
    targets = multi_hot(6, 5, seed=4)
    mixer = make_mix_training_mixer((0.4, 0.6), 11)
    first = [t.numpy() for t in mixer(clips, targets, 5)]
    again = [t.numpy() for t in tf.function(mixer)(tf.constant(clips), tf.constant(targets), tf.constant(5, tf.int64))]
    np.testing.assert_allclose(again[0], first[0], atol=1e-7)
    np.testing.assert_array_equal(again[1], first[1])
    assert not np.allclose(mixer(clips, targets, 6)[0].numpy(), first[0])
    assert not np.allclose(make_mix_training_mixer((0.4, 0.6), 12)(clips, targets, 5)[0].numpy(), first[0])
    # The draws are those of draw_mix_pairs seeded by mix_training_seed, on a stream of their own.
    partner, ratio = draw_mix_pairs(6, mix_training_seed(11, 5), (0.4, 0.6))
    x, y = numpy_mix(clips, targets, partner.numpy(), ratio.numpy())
    np.testing.assert_allclose(first[0], x, atol=1e-6)
    np.testing.assert_array_equal(first[1], y)
    assert not np.array_equal(mix_training_seed(11, 5).numpy(), mix_seed(11, 5).numpy())


def test_mixer_inside_tf_data_map_with_an_int64_batch_index():
    rng = np.random.default_rng(5)
    clips = rng.standard_normal((12, 400, 1)).astype(np.float32)
    targets = one_hot(np.arange(12) % 4, 4)
    mixer = make_mix_training_mixer((0.0, 1.0), 7)
    ds = tf.data.Dataset.from_tensor_slices((clips, targets)).batch(4).enumerate()
    ds = ds.map(lambda i, xy: (i, *mixer(xy[0], xy[1], i)))
    for index, x, y in ds:
        assert index.dtype == tf.int64
        i = int(index)
        partner, ratio = draw_mix_pairs(4, mix_training_seed(7, i), (0.0, 1.0))
        ex, ey = numpy_mix(clips[4 * i:4 * i + 4], targets[4 * i:4 * i + 4], partner.numpy(), ratio.numpy())
        np.testing.assert_allclose(x.numpy(), ex, atol=1e-6)
        np.testing.assert_array_equal(y.numpy(), ey)


@pytest.mark.parametrize("bad", [(0.6, 0.4), (-0.1, 0.5), (0.5, 1.2), (0.5,), (0.1, 0.2, 0.3), 0.5, "ab",
                                 (float("nan"), 0.5), (True, 1.0), None])
def test_bad_ratio_range_raises(bad):
    with pytest.raises(ValueError, match="ratio_range"):
        check_ratio_range(bad)
    with pytest.raises(ValueError, match="ratio_range"):
        make_mix_training_mixer(bad, 0)
    with pytest.raises(ValueError, match="ratio_range"):
        draw_mix_pairs(4, [0, 0], bad)
