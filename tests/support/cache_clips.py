"""Tiny stereo noise clips and the log-mel front-end the feature-cache tests extract them with."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from tfasc.data.datasets.base import Example
from tfasc.data.features import LogMelParams
from tfasc.data.frontends.log_mel import LogMelFrontEnd
from tfasc.data.pipeline import extract_features

RATE = 8000
PARAMS = LogMelParams(n_fft=256, hop_length=128, n_mels=16, top_db=80.0)


def write_clips(folder, count, seed=0, bad=()):
    """``count`` clips of 0.5 s stereo noise (16-bit WAV) seeded by ``seed``; those numbered in ``bad``
    are empty files (undecodable)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(count):
        path = folder / f"clip{i}.wav"
        audio = 0.1 * rng.standard_normal((RATE // 2, 2))
        if i in bad:
            path.write_bytes(b"")
        else:
            sf.write(path, audio, RATE, subtype="PCM_16")
        examples.append(Example(path=path, labels=("a",)))
    return examples


def extract(examples, cache, **kwargs):
    """``extract_features`` of 0.5 s stereo clips at :data:`RATE` with the log-mel front-end of :data:`PARAMS`."""
    return extract_features(examples, sample_rate=RATE, duration_s=0.5, channels=2, frontend=LogMelFrontEnd(PARAMS),
                            cache_dir=cache, **kwargs)
