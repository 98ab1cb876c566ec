"""Keras layers of tfasc (tf_keras), each registered for ``.keras`` round trips under package ``tfasc``."""

from tfasc.layers.frontend import LogMelSpectrogram  # noqa: F401
from tfasc.layers.normalization import SubSpectralNormalization  # noqa: F401
from tfasc.layers.residual import ResidualBlock, SharedResidualBlock  # noqa: F401
