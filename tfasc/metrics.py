"""Evaluation metrics computed from class scores, in numpy.

``macro_accuracy`` is the DCASE Task 1 metric: the mean of per-class accuracies (recalls), so
every class counts equally whatever its number of examples. Multi-label (tagging) data is scored
as AudioSet is: mAP, mean ROC AUC and d' (:func:`multilabel_metrics`).
"""

from __future__ import annotations

from statistics import NormalDist

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


def _ranked_counts(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives ``(tp, fp)`` at each distinct score, from the highest down: the
    operating points of a threshold, so tied scores enter together (as scikit-learn's curves)."""
    scores = np.asarray(scores, np.float64)
    positive = np.asarray(targets) >= 0.5
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], positive[order]
    last_of_each_score = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    tp = np.cumsum(hits)[last_of_each_score]
    return tp, (last_of_each_score + 1) - tp


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float | None:
    """Area under the precision-recall curve of one class (AudioSet's AP): the precision at each
    distinct score weighted by the recall it adds, tied scores counted together (equal to
    scikit-learn's ``average_precision_score``). Targets are 0/1 (positive: ``>= 0.5``); None with
    no positives."""
    tp, fp = _ranked_counts(scores, targets)
    positives = tp[-1] if len(tp) else 0
    if positives == 0:
        return None
    recall_gain = np.diff(tp, prepend=0) / positives
    return float(np.sum(recall_gain * tp / (tp + fp)))


def roc_auc(scores: np.ndarray, targets: np.ndarray) -> float | None:
    """Area under the ROC curve of one class (trapezoids between the distinct scores' operating points,
    so a tie counts half: the Mann-Whitney statistic); None unless there are positives and negatives."""
    tp, fp = _ranked_counts(scores, targets)
    if len(tp) == 0 or tp[-1] == 0 or fp[-1] == 0:
        return None
    tpr, fpr = np.r_[0, tp] / tp[-1], np.r_[0, fp] / fp[-1]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def d_prime(auc: float | None) -> float | None:
    """AudioSet's d' of an AUC, ``sqrt(2) * Phi^-1(auc)``: the separation, in standard deviations, of
    two unit-variance Gaussians whose ROC has that area. None for None, and for an AUC of 0 or 1
    (an infinite d', which ``report.json`` could not hold)."""
    if auc is None or not 0.0 < auc < 1.0:
        return None
    return float(np.sqrt(2.0) * NormalDist().inv_cdf(auc))


def multilabel_metrics(scores: np.ndarray, targets: np.ndarray, class_names) -> dict:
    """Tagging metrics of ``scores [examples, classes]`` against 0/1 ``targets``, as AudioSet reports them.

    ``mAP``: the mean of the per-class average precisions over the classes with positives;
    ``mean_auc``: the mean of the per-class ROC AUCs over the classes with both positives and
    negatives; ``d_prime``: :func:`d_prime` of ``mean_auc`` (computed from the mean AUC, as PANNs
    and the AudioSet baselines report it, not the mean of per-class d'). A class without positives
    has a None AP (and AUC), one with only positives a None AUC, and neither enters a mean.
    """
    per_class_ap = {name: average_precision(scores[:, i], targets[:, i]) for i, name in enumerate(class_names)}
    per_class_auc = {name: roc_auc(scores[:, i], targets[:, i]) for i, name in enumerate(class_names)}
    mean = lambda values: float(np.mean(values)) if values else None
    mean_auc = mean([v for v in per_class_auc.values() if v is not None])
    return {
        "mAP": mean([v for v in per_class_ap.values() if v is not None]),
        "mean_auc": mean_auc,
        "d_prime": d_prime(mean_auc),
        "per_class_ap": per_class_ap,
        "per_class_auc": per_class_auc,
        "examples": int(len(targets)),
    }
