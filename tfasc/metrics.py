"""Evaluation metrics computed from class scores, in numpy.

``macro_accuracy`` is the DCASE Task 1 metric: the mean of per-class accuracies (recalls), so
every class counts equally whatever its number of examples.
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid_outputs(loss_name: str, *, multi_label: bool) -> bool:
    """Whether a model's outputs are independent per-class sigmoids (else a softmax over classes):
    for multi-label data, and for ``training.loss.name: binary_crossentropy`` also on single-label
    data (Wu & Lee, Sec. 4.3). The one rule for the training loss and every place that turns logits
    into probabilities (evaluation, export, prediction, the report)."""
    return multi_label or loss_name == "binary_crossentropy"


def probabilities_from_logits(logits: np.ndarray, *, sigmoid: bool) -> np.ndarray:
    """Class probabilities: softmax over classes, or an independent sigmoid per class
    (``sigmoid``, see :func:`sigmoid_outputs`)."""
    logits = np.asarray(logits, np.float64)
    return 1.0 / (1.0 + np.exp(-logits)) if sigmoid else softmax(logits)


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """``[true class, predicted class]`` counts."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (true, predicted), 1)
    return matrix


def classification_metrics(probabilities: np.ndarray, true: np.ndarray, class_names) -> dict:
    """Accuracy, macro accuracy, per-class accuracy, log loss and confusion matrix.

    The log loss is that of the probabilities normalized to sum to one per example (as scikit-learn's
    ``log_loss``): a softmax is unchanged, and the per-class sigmoids of a single-label model trained
    with binary cross-entropy become a distribution over the classes, so the metric stays a proper
    multi-class log loss (the argmax, hence every accuracy, is unchanged).

    Args:
        probabilities: ``[examples, classes]`` predicted class probabilities (or non-negative scores).
        true: ``[examples]`` integer class indices.
        class_names: names in class-index order.
    """
    num_classes = len(class_names)
    predicted = probabilities.argmax(axis=-1)
    matrix = confusion_matrix(true, predicted, num_classes)
    support = matrix.sum(axis=1)
    per_class = {
        name: (float(matrix[i, i] / support[i]) if support[i] else None) for i, name in enumerate(class_names)
    }
    present = [v for v in per_class.values() if v is not None]
    # Log loss as DCASE computes it: probabilities clipped away from 0 and 1.
    eps = 1e-15
    totals = np.maximum(probabilities.sum(axis=-1), np.finfo(np.float64).tiny)
    chosen = np.clip(probabilities[np.arange(len(true)), true] / totals, eps, 1 - eps)
    return {
        "accuracy": float((predicted == true).mean()) if len(true) else None,
        "macro_accuracy": float(np.mean(present)) if present else None,
        "per_class_accuracy": per_class,
        "log_loss": float(-np.log(chosen).mean()) if len(true) else None,
        "examples": int(len(true)),
        "confusion_matrix": matrix.tolist(),
    }


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float | None:
    """Area under the precision-recall curve of one class (AudioSet's AP); None with no positives."""
    positives = targets.sum()
    if positives == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    hits = targets[order]
    precision_at_hit = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision_at_hit * hits).sum() / positives)


def multilabel_metrics(scores: np.ndarray, targets: np.ndarray, class_names) -> dict:
    """mAP (mean of per-class average precision over classes with positives) and per-class AP."""
    per_class = {name: average_precision(scores[:, i], targets[:, i]) for i, name in enumerate(class_names)}
    present = [v for v in per_class.values() if v is not None]
    return {
        "mAP": float(np.mean(present)) if present else None,
        "per_class_ap": per_class,
        "examples": int(len(targets)),
    }
