"""mixup / FreqMix (paper Sec. 3.1, Eq. 1) / CutMix / policy on batches [batch, freq, time, channels]."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import tfasc  # noqa: F401

import tensorflow as tf

from tfasc.augment.mixing import (
    AugmentPolicy,
    apply_policy,
    cutmix,
    freqmix,
    make_batch_augmenter,
    mixup,
    sample_beta,
)

METHODS = {"freqmix": freqmix, "cutmix": cutmix, "mixup": mixup}


def ones_and_zeros(batch=64, freq=16, time=12, channels=2, seed=0):
    """Examples of all ones (class 0) or all zeros (class 1): the mixed label's class-0 weight must be
    exactly the fraction of cells equal to one."""
    is_one = np.random.default_rng(seed).integers(0, 2, size=batch).astype(bool)
    x = np.broadcast_to(is_one[:, None, None, None], (batch, freq, time, channels)).astype("float32")
    y = np.stack([is_one, ~is_one], axis=1).astype("float32")
    return x, y


def distinct_examples(batch=64, freq=16, time=12, channels=2):
    """Example i is filled with the value i + 1: mixed cells reveal the partner."""
    values = np.arange(1, batch + 1, dtype="float32")
    return np.broadcast_to(values[:, None, None, None], (batch, freq, time, channels)).copy()


@pytest.mark.parametrize("method", ["freqmix", "cutmix", "mixup"])
@pytest.mark.parametrize("seed", [(0, 0), (1, 7), (123, 456), (9, 2)])
def test_label_weight_is_exact_fraction_of_cells(method, seed):
    x, y = ones_and_zeros()
    x_mixed, y_mixed = METHODS[method](x, y, 1.0, tf.constant(seed))
    x_mixed, y_mixed = x_mixed.numpy(), y_mixed.numpy()
    fraction_of_ones = x_mixed.mean(axis=(1, 2, 3))
    np.testing.assert_allclose(y_mixed[:, 0], fraction_of_ones, atol=1e-6)
    np.testing.assert_allclose(y_mixed.sum(axis=1), 1.0, atol=1e-6)


def test_freqmix_band_is_contiguous_full_time_and_hits_the_edge_sometimes():
    freq, time = 16, 12
    x = distinct_examples(batch=512, freq=freq, time=time)
    y = np.eye(512, dtype="float32")
    x_mixed, y_mixed = freqmix(x, y, 1.0, tf.constant([3, 4]))
    x_mixed, y_mixed = x_mixed.numpy(), y_mixed.numpy()
    changed = x_mixed != x  # [batch, freq, time, channels]
    # The band covers whole frequency rows: every time frame and channel.
    rows = changed.any(axis=(2, 3))
    assert np.array_equal(changed, np.broadcast_to(rows[:, :, None, None], changed.shape))
    touches_top = 0
    for i in np.flatnonzero(rows.any(axis=1)):
        band = np.flatnonzero(rows[i])
        assert np.array_equal(band, np.arange(band[0], band[-1] + 1))  # one contiguous band
        partner = int(x_mixed[i, band[0], 0, 0]) - 1
        assert np.all(x_mixed[i, band] == partner + 1)  # from a single partner
        np.testing.assert_allclose(y_mixed[i, partner], len(band) / freq, atol=1e-6)
        np.testing.assert_allclose(y_mixed[i, i], 1.0 - len(band) / freq, atol=1e-6)
        touches_top += band[-1] == freq - 1
    # Start ~ U{0..F-1}, width ~ F * U(0, 1): about half of the bands are clipped at the top edge.
    assert 0.35 < touches_top / 512 < 0.65


def test_freqmix_mean_partner_share_matches_eq1_with_clipping():
    # alpha = 1: lambda ~ U(0, 1), start ~ U(0, F); the clipped width min(lambda F, F - start) has mean F / 3.
    freq = 64
    x = distinct_examples(batch=4000, freq=freq, time=2, channels=1)
    x_mixed, _ = freqmix(x, np.zeros((4000, 2), dtype="float32"), 1.0, tf.constant([5, 5]))
    share = (x_mixed.numpy() != x).mean(axis=(1, 2, 3))
    assert share.mean() == pytest.approx(1.0 / 3.0, abs=0.02)


def test_cutmix_box_is_a_rectangle_from_one_partner():
    x = distinct_examples(batch=256, freq=16, time=12)
    y = np.eye(256, dtype="float32")
    x_mixed, y_mixed = cutmix(x, y, 1.0, tf.constant([8, 1]))
    x_mixed, y_mixed = x_mixed.numpy(), y_mixed.numpy()
    changed = (x_mixed != x).any(axis=3)
    for i in np.flatnonzero(changed.any(axis=(1, 2))):
        rows = np.flatnonzero(changed[i].any(axis=1))
        cols = np.flatnonzero(changed[i].any(axis=0))
        box = np.zeros_like(changed[i])
        box[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = True
        assert np.array_equal(changed[i], box)
        partner = int(x_mixed[i, rows[0], cols[0], 0]) - 1
        np.testing.assert_allclose(y_mixed[i, partner], box.mean(), atol=1e-6)


def test_mixup_is_a_convex_combination_with_one_partner():
    x = distinct_examples(batch=32)
    y = np.eye(32, dtype="float32")
    x_mixed, y_mixed = mixup(x, y, 0.4, tf.constant([1, 2]))
    x_mixed, y_mixed = x_mixed.numpy(), y_mixed.numpy()
    for i in range(32):
        lam = y_mixed[i, i]
        partner = np.flatnonzero(y_mixed[i] > 0)
        partner = partner[partner != i]
        other = (x[partner[0], 0, 0, 0] if len(partner) else x[i, 0, 0, 0])
        np.testing.assert_allclose(x_mixed[i], lam * (i + 1) + (1 - lam) * other, rtol=1e-5)


def test_partner_permutation_is_shared_when_given():
    x = distinct_examples(batch=8)
    y = np.eye(8, dtype="float32")
    partner = tf.constant([1, 0, 3, 2, 5, 4, 7, 6])
    _, y_mixed = mixup(x, y, 1.0, tf.constant([0, 1]), partner=partner)
    support = y_mixed.numpy() > 0
    expected = np.eye(8, dtype=bool) | np.eye(8, dtype=bool)[partner.numpy()]
    assert np.array_equal(support, expected)


@pytest.mark.parametrize("method", ["freqmix", "cutmix", "mixup"])
def test_same_seed_same_result_other_seed_other_result(method):
    x = np.random.default_rng(0).normal(size=(16, 16, 12, 2)).astype("float32")
    y = np.eye(16, dtype="float32")
    a = METHODS[method](x, y, 1.0, tf.constant([1, 2]))
    b = METHODS[method](x, y, 1.0, tf.constant([1, 2]))
    c = METHODS[method](x, y, 1.0, tf.constant([1, 3]))
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
    assert not np.array_equal(a[0].numpy(), c[0].numpy())


@pytest.mark.parametrize("alpha", [0.3, 1.0, 4.0])
def test_beta_samples_have_beta_moments(alpha):
    samples = sample_beta([40_000], alpha, tf.constant([11, 12])).numpy()
    assert samples.min() >= 0.0 and samples.max() <= 1.0
    assert samples.mean() == pytest.approx(0.5, abs=0.01)
    # Var of Beta(a, a) = 1 / (4 (2a + 1)).
    assert samples.var() == pytest.approx(1.0 / (4.0 * (2.0 * alpha + 1.0)), rel=0.04)


def test_beta_one_is_uniform():
    samples = sample_beta([40_000], 1.0, tf.constant([1, 1])).numpy()
    np.testing.assert_allclose(np.quantile(samples, [0.1, 0.25, 0.5, 0.75, 0.9]), [0.1, 0.25, 0.5, 0.75, 0.9], atol=0.015)


def classify(x, x_mixed):
    """What happened to each example of ``distinct_examples``: none / mixup / freqmix / cutmix."""
    kinds = []
    for original, mixed in zip(x, x_mixed):
        changed = (mixed != original).any(axis=2)  # [freq, time]
        if not changed.any():
            kinds.append("none")
        elif np.any(mixed != np.round(mixed)):
            kinds.append("mixup")
        elif changed.any(axis=1).sum() * changed.shape[1] == changed.sum():  # whole rows only
            kinds.append("freqmix")
        else:
            kinds.append("cutmix")
    return np.array(kinds)


def test_policy_chooses_methods_with_the_given_probabilities():
    batch = 3000
    x = distinct_examples(batch=batch, freq=64, time=64, channels=1)
    y = np.zeros((batch, 2), dtype="float32")
    x_mixed, _ = apply_policy(
        x, y, seed=tf.constant([4, 2]), freqmix_prob=0.2, cutmix_prob=0.3, mixup_prob=0.1, mixup_alpha=1.0
    )
    kinds = classify(x, x_mixed.numpy())
    for kind, expected in (("freqmix", 0.2), ("cutmix", 0.3), ("mixup", 0.1), ("none", 0.4)):
        assert np.mean(kinds == kind) == pytest.approx(expected, abs=0.04), kind


def test_policy_per_batch_choice_applies_one_method_to_all():
    x = distinct_examples(batch=200, freq=64, time=64, channels=1)
    y = np.zeros((200, 2), dtype="float32")
    policy = AugmentPolicy(freqmix_prob=0.5, mixup_prob=0.5, mixup_alpha=1.0, per_example=False)
    seen = set()
    for index in range(6):
        x_mixed, _ = apply_policy(x, y, seed=tf.constant([0, index]), policy=policy)
        kinds = set(classify(x, x_mixed.numpy())) - {"none"}  # a zero-width band leaves an example as is
        assert len(kinds) == 1
        seen |= kinds
    assert seen == {"freqmix", "mixup"}


def test_policy_labels_stay_exact_and_masks_apply():
    x, y = ones_and_zeros(batch=128, freq=16, time=12)
    policy = AugmentPolicy(freqmix_prob=0.5, cutmix_prob=0.5)
    x_mixed, y_mixed = apply_policy(x, y, seed=tf.constant([1, 2]), policy=policy)
    np.testing.assert_allclose(y_mixed.numpy()[:, 0], x_mixed.numpy().mean(axis=(1, 2, 3)), atol=1e-6)

    masked_policy = dataclasses.replace(policy, time_masks=1, time_mask_width=4, mask_fill="zero")
    x_masked, _ = apply_policy(np.ones_like(x), y, seed=tf.constant([1, 2]), policy=masked_policy)
    assert (x_masked.numpy() == 0).any()


def test_policy_validation_and_defaults():
    assert not AugmentPolicy().enabled
    with pytest.raises(ValueError, match="freqmix_prob"):
        AugmentPolicy(freqmix_prob=1.5)
    with pytest.raises(ValueError, match="<= 1"):
        AugmentPolicy(freqmix_prob=0.6, cutmix_prob=0.6)
    with pytest.raises(ValueError, match="mixup_alpha"):
        AugmentPolicy(mixup_alpha=0.0)
    with pytest.raises(ValueError, match="time_masks"):
        AugmentPolicy(time_masks=-1)
    with pytest.raises(ValueError, match="mask_fill"):
        AugmentPolicy(mask_fill="noise")
    with pytest.raises(dataclasses.FrozenInstanceError):
        AugmentPolicy().freqmix_prob = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="either policy"):
        apply_policy(np.zeros((2, 4, 4, 1)), np.zeros((2, 2)), seed=[0, 0], policy=AugmentPolicy(), mixup_prob=1.0)


def test_batch_augmenter_in_tf_data_is_reproducible_and_varies_per_batch():
    x, y = ones_and_zeros(batch=32, freq=16, time=12)
    policy = AugmentPolicy(freqmix_prob=0.5, cutmix_prob=0.5)

    def run(base_seed):
        augment = make_batch_augmenter(policy, base_seed)
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat(2).enumerate()
        ds = ds.map(lambda i, xy: augment(xy[0], xy[1], i))
        return [(a.numpy(), b.numpy()) for a, b in ds]

    first, again, other = run(7), run(7), run(8)
    assert len(first) == 8
    for (xa, ya), (xb, yb) in zip(first, again):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    # The second epoch sees the same examples, augmented differently.
    assert not np.array_equal(first[0][0], first[4][0])
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(first, other))
    for xb, yb in first:  # graph mode keeps exact labels
        np.testing.assert_allclose(yb[:, 0], xb.mean(axis=(1, 2, 3)), atol=1e-6)
    # Graph (Dataset.map) and eager give the same batch for the same seed.
    eager_x, _ = apply_policy(x[:8], y[:8], seed=tf.constant([7, 0], tf.int64), policy=policy)
    np.testing.assert_array_equal(first[0][0], eager_x.numpy())


def test_disabled_policy_is_identity():
    x, y = ones_and_zeros(batch=4)
    augment = make_batch_augmenter(AugmentPolicy(), 0)
    out_x, out_y = augment(x, y, 0)
    assert out_x is x and out_y is y


def test_mixup_warmup_leaves_the_first_epochs_unmixed():
    x, y = distinct_examples(batch=8, freq=4, time=6, channels=1), np.eye(8, dtype="float32")
    policy = AugmentPolicy(mixup_prob=1.0, mixup_alpha=0.1, mixup_warmup_epochs=2)
    augment = make_batch_augmenter(policy, 3, steps_per_epoch=3)
    after = make_batch_augmenter(dataclasses.replace(policy, mixup_warmup_epochs=0), 3)
    ds = tf.data.Dataset.from_tensors((x, y)).repeat(8).enumerate().map(lambda i, xy: augment(xy[0], xy[1], i))
    for index, (xb, yb) in enumerate(ds.as_numpy_iterator()):
        if index < 6:  # 2 epochs of 3 steps
            np.testing.assert_array_equal(xb, x)
            np.testing.assert_array_equal(yb, y)
        else:
            assert not np.allclose(xb, x)
            np.testing.assert_array_equal(xb, after(x, y, index)[0].numpy())
    with pytest.raises(ValueError, match="mixup_warmup_epochs: 2 needs steps_per_epoch"):
        make_batch_augmenter(policy, 3)
    for bad in (-1, 1.5):
        with pytest.raises(ValueError, match="augment.mixup_warmup_epochs: expected an integer >= 0"):
            AugmentPolicy(mixup_warmup_epochs=bad)
