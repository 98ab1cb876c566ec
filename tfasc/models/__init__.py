"""Model families, each registered by name in :mod:`tfasc.models.registry`."""

from tfasc.models.registry import available, build, builder, register  # noqa: F401
from tfasc.models import baseline  # noqa: F401  (registers "baseline_cnn")
from tfasc.models import shared_resnet  # noqa: F401  (registers "shared_resnet")
from tfasc.models import waveform  # noqa: F401  (registers "waveform_cnn")
from tfasc.models import ds_cnn  # noqa: F401  (registers "ds_cnn")
from tfasc.models import searched_cnn  # noqa: F401  (registers "searched_cnn", "wu_lee_a", "wu_lee_b")
from tfasc.models import aclnet  # noqa: F401  (registers "aclnet")
from tfasc.models import erann  # noqa: F401  (registers "erann")
from tfasc.models import wave_resnet  # noqa: F401  (registers "wave_resnet")
