"""Keras layers of tfasc (tf_keras), each registered for ``.keras`` round trips under package ``tfasc``."""

from tfasc.layers.frontend import LogMelSpectrogram  # noqa: F401
