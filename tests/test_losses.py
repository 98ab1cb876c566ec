"""Class-balanced focal loss (paper Eq. 2; Cui et al. 2019) against hand-written numpy references."""

from __future__ import annotations

import numpy as np
import pytest

import tfasc  # noqa: F401

import tf_keras as keras

from tfasc.losses import ClassBalancedFocalLoss, class_counts

DCASE2020_1B_TRAIN = [2704, 3757, 2724]  # Table 2: indoor, outdoor, transportation


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def reference_weights(counts, beta):
    w = np.array([(1.0 - beta) / (1.0 - beta**n) for n in counts])
    return w * len(counts) / w.sum()


def reference_eq2_hard(labels, logits, counts, beta, gamma):
    """Eq. (2) literally, one example at a time: -w_y * sum_i (1 - p_i^t)^gamma log p_i^t."""
    weights = reference_weights(counts, beta)
    losses = []
    for y_index, z in zip(labels, logits):
        p = sigmoid(z.astype(np.float64))
        total = 0.0
        for i, p_i in enumerate(p):
            p_t = p_i if i == y_index else 1.0 - p_i
            total += -((1.0 - p_t) ** gamma) * np.log(p_t)
        losses.append(weights[y_index] * total)
    return np.mean(losses)


def reference_cui_soft(labels, logits, counts, beta, gamma):
    """Cui et al.'s reference focal_loss with soft labels, weights . labels, mean over the batch."""
    z = logits.astype(np.float64)
    y = labels.astype(np.float64)
    bce = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    modulator = np.exp(-gamma * y * z - gamma * np.log1p(np.exp(-z)))
    alpha = (y * reference_weights(counts, beta)).sum(axis=1, keepdims=True)
    return np.sum(alpha * modulator * bce) / len(z)


def test_weights_follow_effective_number_and_sum_to_classes():
    loss = ClassBalancedFocalLoss(DCASE2020_1B_TRAIN, beta=0.999)
    np.testing.assert_allclose(loss.class_weights.sum(), 3.0, rtol=1e-6)
    # By hand: 1 - 0.999^n for n = 2704, 3757, 2724 -> 0.93311, 0.97667, 0.93443.
    raw = np.array([0.001 / 0.9331, 0.001 / 0.97667, 0.001 / 0.93443])
    np.testing.assert_allclose(loss.class_weights, raw * 3 / raw.sum(), rtol=1e-3)
    # Fewer examples, larger weight: outdoor (3757) < transportation (2724) < indoor (2704).
    assert loss.class_weights[1] < loss.class_weights[2] < loss.class_weights[0]


@pytest.mark.parametrize("beta,gamma", [(0.999, 2.0), (0.99, 0.5), (0.9999, 0.0)])
def test_hard_labels_match_eq2(beta, gamma):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=16)
    logits = rng.normal(scale=3.0, size=(16, 3)).astype("float32")
    loss = ClassBalancedFocalLoss(DCASE2020_1B_TRAIN, beta=beta, gamma=gamma)
    value = loss(np.eye(3, dtype="float32")[labels], logits).numpy()
    np.testing.assert_allclose(value, reference_eq2_hard(labels, logits, DCASE2020_1B_TRAIN, beta, gamma), rtol=1e-5)


def test_soft_labels_match_cui_reference():
    rng = np.random.default_rng(1)
    lam = rng.uniform(size=(12, 1))
    a, b = rng.integers(0, 4, size=12), rng.integers(0, 4, size=12)
    labels = (lam * np.eye(4)[a] + (1 - lam) * np.eye(4)[b]).astype("float32")
    logits = rng.normal(scale=2.0, size=(12, 4)).astype("float32")
    counts = [50, 400, 120, 9]
    loss = ClassBalancedFocalLoss(counts, beta=0.99, gamma=2.0)
    np.testing.assert_allclose(loss(labels, logits).numpy(), reference_cui_soft(labels, logits, counts, 0.99, 2.0), rtol=1e-5)


def test_probabilities_input_equals_logits_input():
    rng = np.random.default_rng(2)
    labels = np.eye(3, dtype="float32")[rng.integers(0, 3, size=8)]
    logits = rng.normal(size=(8, 3)).astype("float32")
    from_logits = ClassBalancedFocalLoss(DCASE2020_1B_TRAIN)(labels, logits).numpy()
    from_probs = ClassBalancedFocalLoss(DCASE2020_1B_TRAIN, from_logits=False)(labels, sigmoid(logits).astype("float32")).numpy()
    np.testing.assert_allclose(from_probs, from_logits, rtol=1e-4)


def test_no_focusing_and_no_balancing_is_summed_binary_cross_entropy():
    rng = np.random.default_rng(3)
    labels = rng.uniform(size=(8, 5)).astype("float32")
    logits = rng.normal(size=(8, 5)).astype("float32")
    loss = ClassBalancedFocalLoss([10, 20, 30, 40, 50], beta=0.0, gamma=0.0)
    weight = labels.sum(axis=1)  # uniform class weights of 1 times the label mass
    bce = keras.losses.BinaryCrossentropy(from_logits=True, reduction="none")(labels[..., None], logits[..., None]).numpy()
    np.testing.assert_allclose(loss(labels, logits).numpy(), np.mean(weight * bce.sum(axis=1)), rtol=1e-5)


def test_config_round_trip_and_validation():
    loss = ClassBalancedFocalLoss([3, 4, 5], beta=0.9, gamma=1.5, from_logits=False)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, ClassBalancedFocalLoss)
    assert restored.get_config() == loss.get_config()
    labels = np.eye(3, dtype="float32")[[0, 2]]
    probs = np.array([[0.7, 0.2, 0.4], [0.1, 0.5, 0.6]], dtype="float32")
    np.testing.assert_allclose(restored(labels, probs).numpy(), loss(labels, probs).numpy())
    with pytest.raises(ValueError, match="beta"):
        ClassBalancedFocalLoss([1, 2], beta=1.0)
    with pytest.raises(ValueError, match="gamma"):
        ClassBalancedFocalLoss([1, 2], gamma=-1.0)
    with pytest.raises(ValueError, match="samples_per_class"):
        ClassBalancedFocalLoss([0, 2])
    with pytest.raises(ValueError, match="y_pred has 2 classes but samples_per_class has 3"):
        ClassBalancedFocalLoss([1, 2, 3])(np.eye(2, dtype="float32"), np.zeros((2, 2), "float32"))


def test_class_counts():
    np.testing.assert_array_equal(class_counts([0, 2, 2, 1, 2], 4), [1, 1, 3, 0])
    np.testing.assert_array_equal(class_counts(np.eye(3, dtype=int)[[0, 0, 1]], 3), [2, 1, 0])
    np.testing.assert_allclose(class_counts([[0.25, 0.75], [1.0, 0.0]], 2), [1.25, 0.75])
    with pytest.raises(ValueError, match="range"):
        class_counts([0, 3], 3)
    with pytest.raises(ValueError, match="shape"):
        class_counts(np.zeros((2, 4)), 3)
