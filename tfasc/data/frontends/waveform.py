"""``features.kind: waveform``: the decoded clip itself, ``[samples, channels]`` per example.

After resampling, channel handling and crop/pad (and the recipe's input normalization, like
every front-end), for models with a learned front-end (e.g. a Conv1D stem). Cached as float32:
float16 would add a noise floor about 66 dB below each sample, audible in quiet passages.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tfasc.data.frontends import register


@dataclasses.dataclass(frozen=True)
class WaveformFrontEnd:
    kind: str = "waveform"
    cache_dtype: np.dtype = np.dtype(np.float32)

    def output_shape(self, num_samples: int, channels: int) -> tuple[int, int]:
        return num_samples, channels

    def __call__(self, waveforms, *, sample_rate: int):
        return waveforms

    def parameters(self) -> dict[str, Any]:
        return {"kind": self.kind}


@register("waveform")
def make_waveform(features_config: Any) -> WaveformFrontEnd:
    return WaveformFrontEnd()
