"""Augmentations, graph-mode and seeded.

- Batch augmentations on ``x [batch, freq, time, channels]``, ``y [batch, classes]``
  (:mod:`tfasc.augment.mixing`, :mod:`tfasc.augment.masking`): mixup, FreqMix, CutMix, SpecAugment.
- Per-example waveform augmentations on ``x [samples, channels]`` (:mod:`tfasc.augment.waveform`):
  speed perturbation, pitch shift, time shift, impulse-response convolution, background noise at
  a random SNR, gain, and AclNet's window / standardize / crop; the recipe's ``augment.waveform``.
"""

from tfasc.augment.masking import specaugment  # noqa: F401
from tfasc.augment.mixing import AugmentPolicy, apply_policy, cutmix, freqmix, make_batch_augmenter, mixup  # noqa: F401
from tfasc.augment.waveform import (  # noqa: F401
    ImpulseResponseBank, NoiseBank, WaveformAugmentPolicy, augment_batch, make_waveform_augmenter,
)
