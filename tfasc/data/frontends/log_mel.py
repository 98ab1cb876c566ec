"""``features.kind: log_mel``: log-mel spectrograms ``[n_mels, frames, channels]`` per example
(:func:`tfasc.data.features.log_mel_spectrogram`, librosa's definition)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tfasc.data.features import LogMelParams, log_mel_spectrogram
from tfasc.data.frontends import register


@dataclasses.dataclass(frozen=True)
class LogMelFrontEnd:
    params: LogMelParams = LogMelParams()
    kind: str = "log_mel"
    cache_dtype: np.dtype = np.dtype(np.float16)

    def output_shape(self, num_samples: int, channels: int) -> tuple[int, int, int]:
        return self.params.output_shape(num_samples, channels)

    def __call__(self, waveforms, *, sample_rate: int):
        return log_mel_spectrogram(waveforms, sample_rate=sample_rate, params=self.params)

    def parameters(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.params.as_kwargs()}


@register("log_mel")
def make_log_mel(features_config: Any) -> LogMelFrontEnd:
    return LogMelFrontEnd(LogMelParams.of(features_config))
