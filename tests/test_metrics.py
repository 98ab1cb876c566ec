"""Metrics against hand-computed values."""

import numpy as np
import pytest

from tfasc.metrics import average_precision, classification_metrics, multilabel_metrics


def test_macro_accuracy_is_mean_of_class_recalls():
    # class 0: 3 of 4 right; class 1: 1 of 1; class 2: 0 of 1.
    true = np.array([0, 0, 0, 0, 1, 2])
    predicted = np.array([0, 0, 0, 1, 1, 0])
    probabilities = np.full((6, 3), 0.1)
    probabilities[np.arange(6), predicted] = 0.8
    m = classification_metrics(probabilities, true, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["macro_accuracy"] == pytest.approx((0.75 + 1 + 0) / 3)
    assert m["per_class_accuracy"] == {"a": 0.75, "b": 1.0, "c": 0.0}
    assert m["confusion_matrix"] == [[3, 1, 0], [0, 1, 0], [1, 0, 0]]
    expected_log_loss = -np.mean(np.log([0.8, 0.8, 0.8, 0.1, 0.8, 0.1]))
    assert m["log_loss"] == pytest.approx(expected_log_loss)


def test_average_precision_by_hand():
    # ranking: pos, neg, pos → precision at hits 1/1 and 2/3 → AP = (1 + 2/3) / 2
    assert average_precision(np.array([0.9, 0.5, 0.4]), np.array([1, 0, 1])) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.array([0.1, 0.2]), np.array([0, 0])) is None
    m = multilabel_metrics(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([[1, 0], [0, 1]]), ["x", "y"])
    assert m["mAP"] == pytest.approx(1.0)
