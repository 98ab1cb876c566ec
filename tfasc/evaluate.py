"""Evaluation, one way for every model and stage: class probabilities, then metrics.

The training stages score Keras models and the export scores the int8 model with the same
functions, so their numbers are comparable: softmax (or sigmoid, :func:`tfasc.metrics.sigmoid_outputs`)
of the logits, averaged over a clip's segments when the recipe cuts clips into segments
(:func:`clip_probabilities`, ``features.segment_frames``), then
:func:`tfasc.metrics.classification_metrics` / :func:`tfasc.metrics.multilabel_metrics`.
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


def clip_probabilities(predict_inputs: Callable, inputs, segments_per_clip: int) -> np.ndarray:
    """Each clip's class probabilities ``[clips, classes]``: the mean of its segments' probabilities.

    ``inputs``: the model inputs of the clips, each clip's ``segments_per_clip`` segments as consecutive
    rows (:mod:`tfasc.data.segments`; one row per clip without segments); ``predict_inputs(inputs)``
    gives their probabilities ``[rows, classes]`` (after softmax or sigmoid). The one place a clip's
    score is made from its segments': evaluation, export and prediction all call it.
    """
    probabilities = np.asarray(predict_inputs(inputs))
    if segments_per_clip == 1:
        return probabilities
    if len(probabilities) % segments_per_clip:
        raise ValueError(f"{len(probabilities)} segment predictions are not whole clips of {segments_per_clip} segments")
    return probabilities.reshape(-1, segments_per_clip, probabilities.shape[-1]).mean(axis=1)


def keras_probabilities(model, features, *, normalize: Callable | None, batch_size: int, sigmoid: bool) -> np.ndarray:
    """Class probabilities of a Keras ``model`` on raw (cached) model inputs ``features`` (an array, or
    the lazy :class:`tfasc.data.segments.Segments` of clips), normalized on the fly; one row per input."""
    dummy = np.zeros((len(features), 1), np.float32)
    inputs = make_dataset(features, dummy, batch_size=batch_size, shuffle=False, normalize=normalize).map(lambda x, y: x)
    return metric_fns.probabilities_from_logits(model.predict(inputs, verbose=0), sigmoid=sigmoid)


def evaluate_model(model, data, *, batch_size: int) -> dict:
    """``metrics`` on the evaluation split and ``held_out`` metrics per held-out group of ``data``
    (a :class:`tfasc.data.prepare.PreparedData`), per clip."""

    def predict_inputs(inputs) -> np.ndarray:
        return keras_probabilities(model, inputs, normalize=data.normalization, batch_size=batch_size,
                                   sigmoid=data.sigmoid_outputs)

    def predict(features: np.ndarray) -> np.ndarray:
        return clip_probabilities(predict_inputs, data.inputs(features), data.segments_per_clip)

    return evaluate_predictions(predict, data)


def evaluate_predictions(predict: Callable[[np.ndarray], np.ndarray], data) -> dict:
    """Like :func:`evaluate_model` for any ``predict(raw clip features [clips, ...]) -> probabilities [clips, classes]``."""
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
