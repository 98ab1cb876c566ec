"""Training losses.

:class:`ClassBalancedFocalLoss`: Eq. (2) of the DCASE 2020 Task 1B report of entry Chang_QTI_task1b (Sec. 4), the
class-balanced focal loss of Cui et al. (CVPR 2019) in its sigmoid form. Labels ``[batch, classes]``
(one-hot or soft), predictions ``[batch, classes]`` logits (or sigmoid probabilities).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

import tfasc  # noqa: F401  (selects tf_keras before TensorFlow is imported)

import tensorflow as tf
import tf_keras as keras


def class_counts(labels, num_classes: int) -> np.ndarray:
    """Number of training examples per class, ``[num_classes]``.

    ``labels``: integer class indices ``[n]`` (counts, int64), or one-hot / soft / multi-hot
    ``[n, num_classes]`` (column sums, float64 for soft labels).
    """
    labels = np.asarray(labels)
    if labels.ndim == 1:
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"class_counts: 1-D labels must be integer class indices, got dtype {labels.dtype}")
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"class_counts: class indices must lie in [0, {num_classes}), got range "
                f"[{labels.min()}, {labels.max()}]"
            )
        return np.bincount(labels.astype(np.int64), minlength=num_classes).astype(np.int64)
    if labels.ndim == 2:
        if labels.shape[1] != num_classes:
            raise ValueError(f"class_counts: expected labels [n, {num_classes}], got shape {labels.shape}")
        counts = labels.sum(axis=0)
        return counts.astype(np.int64) if np.issubdtype(labels.dtype, np.integer) else counts.astype(np.float64)
    raise ValueError(f"class_counts: labels must be [n] indices or [n, classes], got shape {labels.shape}")


def class_balanced_weights(samples_per_class: Sequence[float], beta: float) -> np.ndarray:
    """Cui et al.'s weights ``(1 - beta) / (1 - beta**n_c)``, normalized to sum to the number of classes."""
    counts = np.asarray(samples_per_class, dtype=np.float64)
    effective_number = 1.0 - np.power(beta, counts)
    weights = (1.0 - beta) / effective_number
    return weights / weights.sum() * len(counts)


@keras.saving.register_keras_serializable(package="tfasc")
class ClassBalancedFocalLoss(keras.losses.Loss):
    """Class-balanced sigmoid focal loss (paper Eq. 2; Cui et al. 2019).

    For an example with label vector ``y`` (``[classes]``) and logits ``z``, ``p = sigmoid(z)``::

        loss = w(y) * sum_i  m_i * BCE(y_i, z_i)
        BCE(y_i, z_i) = -(y_i log p_i + (1 - y_i) log(1 - p_i))
        m_i           = (1 - p_i) ** (gamma * y_i) * p_i ** (gamma * (1 - y_i))
        w(y)          = sum_c y_c * w_c,   w_c = (1 - beta) / (1 - beta ** n_c), scaled so sum_c w_c = C

    For one-hot ``y`` this is Eq. (2), ``-w_y * sum_i (1 - p_i^t) ** gamma * log(p_i^t)`` with
    ``p^t = p`` for the positive class and ``1 - p`` otherwise. For soft labels (mixup, FreqMix,
    CutMix) it is the binary-cross-entropy generalization of Cui et al.'s reference code:
    modulator ``exp(-gamma * y * z - gamma * log(1 + exp(-z)))`` (= ``m_i`` above) times
    BCE-with-logits, and the class weight is the label-weighted sum ``weights . labels``.
    The batch reduction is the mean over examples (Keras' default ``SUM_OVER_BATCH_SIZE``), which equals
    Cui's division by ``sum(labels)`` when every label row sums to 1.

    Args:
      samples_per_class: ``n_c`` for each class, e.g. from :func:`class_counts` on the training set.
      beta: in ``[0, 1)``; 0 gives uniform weights (plain sigmoid focal loss).
      gamma: focusing parameter ``>= 0``; 0 gives class-balanced sigmoid cross entropy.
      from_logits: ``y_pred`` are logits (default) or sigmoid probabilities.
    """

    def __init__(
        self,
        samples_per_class: Sequence[float],
        beta: float = 0.999,
        gamma: float = 2.0,
        from_logits: bool = True,
        reduction=keras.losses.Reduction.AUTO,
        name: str = "class_balanced_focal_loss",
    ):
        super().__init__(reduction=reduction, name=name)
        counts = [float(n) for n in np.asarray(samples_per_class, dtype=np.float64).reshape(-1)]
        if not counts or min(counts) <= 0:
            raise ValueError(
                f"ClassBalancedFocalLoss: samples_per_class must be positive counts, one per class, got {samples_per_class!r}"
            )
        if not 0.0 <= float(beta) < 1.0:
            raise ValueError(f"ClassBalancedFocalLoss: beta must be in [0, 1), got {beta!r}")
        if float(gamma) < 0.0:
            raise ValueError(f"ClassBalancedFocalLoss: gamma must be >= 0, got {gamma!r}")
        self.samples_per_class = counts
        self.beta = float(beta)
        self.gamma = float(gamma)
        self.from_logits = bool(from_logits)
        self.class_weights = class_balanced_weights(counts, self.beta).astype(np.float32)

    def call(self, y_true, y_pred):
        y_pred = tf.convert_to_tensor(y_pred)
        y_pred = tf.cast(y_pred, tf.float32) if y_pred.dtype != tf.float64 else y_pred
        y_true = tf.cast(y_true, y_pred.dtype)
        num_classes = len(self.samples_per_class)
        if y_pred.shape[-1] is not None and y_pred.shape[-1] != num_classes:
            raise ValueError(
                f"ClassBalancedFocalLoss: y_pred has {y_pred.shape[-1]} classes but samples_per_class "
                f"has {num_classes}"
            )
        if self.from_logits:
            logits = y_pred
            bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=y_true, logits=logits)
            # log p and log(1 - p) stably: log_sigmoid(z), log_sigmoid(-z).
            log_p, log_not_p = tf.math.log_sigmoid(logits), tf.math.log_sigmoid(-logits)
        else:
            eps = keras.backend.epsilon()
            p = tf.clip_by_value(y_pred, eps, 1.0 - eps)
            log_p, log_not_p = tf.math.log(p), tf.math.log1p(-p)
            bce = -(y_true * log_p + (1.0 - y_true) * log_not_p)
        if self.gamma == 0.0:
            modulator = tf.ones_like(bce)
        else:
            modulator = tf.exp(self.gamma * (y_true * log_not_p + (1.0 - y_true) * log_p))
        per_example = tf.reduce_sum(modulator * bce, axis=-1)
        weights = tf.constant(self.class_weights, dtype=y_pred.dtype)
        example_weight = tf.reduce_sum(y_true * weights, axis=-1)
        return example_weight * per_example

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "samples_per_class": list(self.samples_per_class),
                "beta": self.beta,
                "gamma": self.gamma,
                "from_logits": self.from_logits,
            }
        )
        return config
