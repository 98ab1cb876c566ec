"""Front-ends: what the model is fed, computed from decoded clips ``[batch, samples, channels]``.

A recipe picks one with ``features.kind``. Each front-end is one module here plus its
:func:`register` call and says, in one place: the shape of one example's input, the graph that
computes it from a batch of decoded clips, the dtype its cache keeps, and its parameters (hashed
into the cache key, and what the device must reproduce: the bundle's ``model_config.h``).

========= ==================================== =====================================================
kind      model input (one example)            device does
========= ==================================== =====================================================
log_mel   ``[n_mels, frames, channels]``       the same log-mel spectrogram before the int8 model
scalogram ``[bins, frames, channels]``         the same wavelet scalogram (Kymatio Morlet bank on the
                                               STFT log magnitude) before the int8 model; no C code
waveform  ``[samples, channels]``              nothing: PCM samples go straight to the int8 model
========= ==================================== =====================================================
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np

from tfasc.registry import Registry


class FrontEnd(Protocol):
    """What the pipeline and the bundle need from a front-end."""

    kind: str
    cache_dtype: np.dtype
    """dtype of the on-disk cache (float16 halves log-mel caches at ~0.01 dB; waveforms stay exact)."""

    def output_shape(self, num_samples: int, channels: int) -> tuple[int, ...]:
        """Shape of one example's model input for clips of ``num_samples`` x ``channels``."""

    def __call__(self, waveforms, *, sample_rate: int):
        """``[batch, samples, channels]`` float32 clips -> model inputs ``[batch, *output_shape]`` (a tf graph)."""

    def parameters(self) -> dict[str, Any]:
        """``kind`` and everything that changes the output: hashed into the cache key, and what the
        device must compute before the int8 model (stated in the bundle)."""


_FRONTENDS: Registry[Callable[[Any], FrontEnd]] = Registry("front-end")


def register(kind: str) -> Callable:
    """Decorator registering ``factory(features_config) -> FrontEnd`` under ``kind``."""
    return _FRONTENDS.register(kind)


def available() -> tuple[str, ...]:
    return _FRONTENDS.available()


def make(kind: str, features_config: Any) -> FrontEnd:
    """The front-end ``kind`` configured from a recipe's ``features`` section (or any object with its fields)."""
    return _FRONTENDS.get(kind)(features_config)


from tfasc.data.frontends import log_mel, scalogram, waveform  # noqa: E402,F401  (registration)
