"""SpecAugment masking of batches [batch, freq, time, channels]."""

from __future__ import annotations

import numpy as np
import pytest

import tfasc  # noqa: F401

import tensorflow as tf

from tfasc.augment.masking import specaugment


def masked_cells(x, out):
    return (out != x).any(axis=3)  # [batch, freq, time]


def test_masks_are_full_rows_and_columns_within_width_limits():
    rng = np.random.default_rng(0)
    x = rng.uniform(1.0, 2.0, size=(200, 20, 30, 2)).astype("float32")
    out = specaugment(x, freq_masks=2, freq_width=4, time_masks=1, time_width=6, seed=tf.constant([1, 2]), fill="zero").numpy()
    masked = masked_cells(x, out)
    assert np.all(out[np.broadcast_to(masked[..., None], out.shape)] == 0.0)
    rows = masked.all(axis=2)  # [batch, freq]: masked over every frame
    cols = masked.all(axis=1)  # [batch, time]: masked over every bin
    # Every masked cell lies in a masked row or column, nothing else.
    assert np.array_equal(masked, rows[:, :, None] | cols[:, None, :])
    assert rows.sum(axis=1).max() <= 2 * 4
    assert cols.sum(axis=1).max() <= 6
    # Each example draws its own masks.
    assert len({tuple(r) for r in rows}) > 50


def test_mask_width_is_uniform_up_to_the_limit():
    # One time mask of width ~ U{0..W}: on average W / 2 masked frames.
    x = np.ones((5000, 2, 40, 1), dtype="float32")
    out = specaugment(x, 0, 0, time_masks=1, time_width=10, seed=tf.constant([3, 3]), fill="zero").numpy()
    widths = (out == 0).all(axis=(1, 3)).sum(axis=1)
    assert widths.max() == 10 and widths.min() == 0
    assert widths.mean() == pytest.approx(5.0, abs=0.15)
    # Start uniform over the positions that keep the mask inside: frame 0 and frame 39 both get masked.
    masked_frames = (out == 0).all(axis=(1, 3))
    assert masked_frames[:, 0].any() and masked_frames[:, -1].any()


def test_mean_fill_uses_each_examples_channel_mean():
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(16, 12, 10, 2)) + np.array([-40.0, -20.0])).astype("float32")
    out = specaugment(x, 1, 5, 1, 5, seed=tf.constant([2, 9]), fill="mean").numpy()
    masked = masked_cells(x, out)
    assert masked.any()
    channel_mean = x.mean(axis=(1, 2))  # [batch, channels]
    for b, f, t in zip(*np.nonzero(masked)):
        np.testing.assert_allclose(out[b, f, t], channel_mean[b], rtol=1e-5)
    np.testing.assert_array_equal(out[~masked], x[~masked])


def test_width_larger_than_axis_is_clipped():
    x = np.ones((64, 4, 6, 1), dtype="float32")
    out = specaugment(x, 1, 100, 0, 0, seed=tf.constant([0, 1]), fill="zero").numpy()
    rows = (out == 0).all(axis=(2, 3))
    assert rows.sum(axis=1).max() == 4  # the whole axis at most, never out of range
    assert np.array_equal(out == 0, np.broadcast_to(rows[:, :, None, None], out.shape))


def test_seeded_and_graph_compatible():
    x = np.random.default_rng(2).normal(size=(8, 16, 20, 1)).astype("float32")
    a = specaugment(x, 2, 3, 2, 4, seed=tf.constant([5, 6])).numpy()
    b = specaugment(x, 2, 3, 2, 4, seed=tf.constant([5, 6])).numpy()
    c = specaugment(x, 2, 3, 2, 4, seed=tf.constant([5, 7])).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    ds = tf.data.Dataset.from_tensors(x).map(lambda batch: specaugment(batch, 2, 3, 2, 4, seed=tf.constant([5, 6])))
    np.testing.assert_array_equal(next(iter(ds)).numpy(), a)


def test_no_masks_is_identity_and_bad_arguments_fail():
    x = np.random.default_rng(3).normal(size=(2, 4, 5, 1)).astype("float32")
    np.testing.assert_array_equal(specaugment(x, 0, 0, 0, 0, seed=[0, 0]).numpy(), x)
    with pytest.raises(ValueError, match="fill"):
        specaugment(x, 1, 1, 0, 0, seed=[0, 0], fill="noise")
    with pytest.raises(ValueError, match="freq_masks"):
        specaugment(x, -1, 1, 0, 0, seed=[0, 0])
    with pytest.raises(ValueError, match="seed"):
        specaugment(x, 1, 1, 0, 0, seed=[0, 0, 0])
    with pytest.raises(ValueError, match="batch, freq, time, channels"):
        specaugment(x[0], 1, 1, 0, 0, seed=[0, 0])
