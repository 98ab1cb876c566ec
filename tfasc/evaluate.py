"""Evaluation, one way for every model and stage: class probabilities, then metrics.

The training stages score Keras models and the export scores the int8 model with the same
functions, so their numbers are comparable: softmax (or sigmoid for multi-label) of the logits,
then :func:`tfasc.metrics.classification_metrics` / :func:`tfasc.metrics.multilabel_metrics`.
Held-out groups (e.g. the unseen city of DCASE 2020 1B) reuse their rows of the evaluation split's
predictions and predict only their clips that are in no split.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from tfasc import metrics as metric_fns
from tfasc.data.pipeline import make_dataset


def score(probabilities: np.ndarray, targets: np.ndarray, classes: Sequence[str], *, multi_label: bool) -> dict:
    """Metrics of ``probabilities [n, classes]`` against one-/multi-hot ``targets [n, classes]``."""
    if multi_label:
        return metric_fns.multilabel_metrics(probabilities, targets, classes)
    return metric_fns.classification_metrics(probabilities, targets.argmax(axis=1), classes)


def keras_probabilities(model, features: np.ndarray, *, normalize: Callable | None, batch_size: int,
                        multi_label: bool) -> np.ndarray:
    """Class probabilities of a Keras ``model`` on raw (cached) ``features``, normalized on the fly."""
    dummy = np.zeros((len(features), 1), np.float32)
    inputs = make_dataset(features, dummy, batch_size=batch_size, shuffle=False, normalize=normalize).map(lambda x, y: x)
    return metric_fns.probabilities_from_logits(model.predict(inputs, verbose=0), multi_label=multi_label)


def evaluate_model(model, data, *, batch_size: int) -> dict:
    """``metrics`` on the evaluation split and ``held_out`` metrics per held-out group of ``data``
    (a :class:`tfasc.data.prepare.PreparedData`)."""
    multi_label = data.index.multi_label

    def predict(features: np.ndarray) -> np.ndarray:
        return keras_probabilities(model, features, normalize=data.normalization, batch_size=batch_size,
                                   multi_label=multi_label)

    return evaluate_predictions(predict, data)


def evaluate_predictions(predict: Callable[[np.ndarray], np.ndarray], data) -> dict:
    """Like :func:`evaluate_model` for any ``predict(raw features) -> probabilities``."""
    classes, multi_label = data.index.classes, data.index.multi_label
    eval_probabilities = predict(data.eval.features)
    held_out = {}
    for group, part in data.held_out.items():
        probabilities = eval_probabilities[part.eval_rows]
        targets = data.eval_targets[part.eval_rows]
        if part.extra is not None:
            probabilities = np.concatenate([probabilities, predict(part.extra.features)])
            targets = np.concatenate([targets, part.extra_targets])
        held_out[group] = score(probabilities, targets, classes, multi_label=multi_label)
    return {
        "metrics": score(eval_probabilities, data.eval_targets, classes, multi_label=multi_label),
        "held_out": held_out,
    }
