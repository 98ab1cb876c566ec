"""Batch augmentations on ``x [batch, freq, time, channels]``, ``y [batch, classes]`` (graph-mode, seeded)."""

from tfasc.augment.masking import specaugment  # noqa: F401
from tfasc.augment.mixing import AugmentPolicy, apply_policy, cutmix, freqmix, make_batch_augmenter, mixup  # noqa: F401
