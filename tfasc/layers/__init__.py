"""Keras layers of tfasc (tf_keras), each registered for ``.keras`` round trips under package ``tfasc``.

Every layer declares its compression and deployment contract in its class
(:class:`tfasc.layers.contract.LayerContract`).
"""

from tfasc.layers.attention import AttentionPooling, MultiLevelOutput  # noqa: F401
from tfasc.layers.aclnet import AclNetFrontEnd, ConvBlock, SeparableConvBlock  # noqa: F401
from tfasc.layers.contract import LayerContract  # noqa: F401
from tfasc.layers.erann import AudioResidualBlock, TimePadding  # noqa: F401
from tfasc.layers.efficient import DepthwiseSeparableModule, InvertedResidualModule, Swish  # noqa: F401
from tfasc.layers.frontend import LogMelSpectrogram  # noqa: F401
from tfasc.layers.normalization import SubSpectralNormalization  # noqa: F401
