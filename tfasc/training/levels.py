"""Training a multi-level model on the mean of its levels' losses (Chen et al. 2019 Sec. 3.1).

A model whose last layer is :class:`tfasc.layers.attention.MultiLevelOutput` predicts at several
levels; its output is the mean of the levels' predictions, but the paper minimizes "the mean of
multi-level prediction loss". :func:`training_view` gives the model to compile and fit for that:
the same layers and weights, its output ``[batch, levels + 1, classes]`` the levels' logits with the
model's own output appended, so that

- the loss (:class:`LevelMeanLoss`) is the mean over levels of the recipe's loss of each level;
- the metric (:class:`OnModelOutput`) scores the model's output, so the logs mean what they mean
  for every other model;
- a quantization-aware model's output quantizer still sees training data (its range is learned).

Saving, evaluation and export use the model itself; the view only trains it.
"""

from __future__ import annotations

import tfasc  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from tfasc.layers.attention import MultiLevelOutput


def output_layer(model):
    """The model's ``MultiLevelOutput`` (unwrapped from a QAT or pruning wrapper), or None."""
    last = model.layers[-1]
    inner = getattr(last, "layer", last)
    return inner if isinstance(inner, MultiLevelOutput) else None


def training_view(model):
    """``model`` itself, or for a multi-level model the model to train (see the module docstring)."""
    if output_layer(model) is None:
        return model
    levels = model.layers[-1].input  # [batch, levels, classes]
    classes = int(model.output.shape[-1])
    output = keras.layers.Reshape((1, classes), name="model_output_row")(model.output)
    stacked = keras.layers.Concatenate(axis=1, name="levels_and_output")([levels, output])
    return keras.Model(model.inputs, stacked, name=f"{model.name}_levels")


@keras.saving.register_keras_serializable(package="tfasc")
class LevelMeanLoss(keras.losses.Loss):
    """The mean over levels of ``loss`` on each level's logits; ``y_pred`` is ``[batch, levels + 1,
    classes]`` from :func:`training_view` (the last row, the model's output, is not in the loss)."""

    def __init__(self, loss: keras.losses.Loss, reduction=keras.losses.Reduction.AUTO, name: str = "level_mean_loss"):
        super().__init__(reduction=reduction, name=name)
        self.loss = loss

    def call(self, y_true, y_pred):
        levels = int(y_pred.shape[1]) - 1
        # Loss.call gives the per-example loss (before the batch reduction) for Keras' losses and ours.
        per_level = [self.loss.call(y_true, y_pred[:, level]) for level in range(levels)]
        return tf.add_n(per_level) / levels

    def get_config(self) -> dict:
        return {**super().get_config(), "loss": keras.losses.serialize(self.loss)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["loss"] = keras.losses.deserialize(config["loss"])
        return cls(**config)


class OnModelOutput(keras.metrics.Metric):
    """``metric`` on the model's output, the last row of a :func:`training_view` output."""

    def __init__(self, metric: keras.metrics.Metric, **kwargs):
        super().__init__(name=metric.name, **kwargs)
        self.metric = metric

    def update_state(self, y_true, y_pred, sample_weight=None):
        return self.metric.update_state(y_true, y_pred[:, -1], sample_weight)

    def result(self):
        return self.metric.result()

    def reset_state(self):
        self.metric.reset_state()
