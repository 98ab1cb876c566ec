"""SpecAugment-style frequency and time masking on batches of features (Park et al., 2019).

Features are laid out ``[batch, freq, time, channels]``. Everything here is graph-compatible (usable
inside ``tf.data.Dataset.map`` after ``batch``), vectorized over the batch (no Python loop over
examples), and driven by stateless random ops from an explicit ``seed``: a shape-``[2]`` integer
tensor, so the same seed gives the same masks and a pipeline can pass one seed per batch.
"""

from __future__ import annotations

import tfasc  # noqa: F401  (selects tf_keras before TensorFlow is imported)

import tensorflow as tf

MASK_FILLS = ("mean", "zero")


def as_seed(seed) -> tf.Tensor:
    """``seed`` as the shape-``[2]`` int64 tensor stateless random ops take."""
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    if seed.shape.rank is not None and seed.shape != (2,):
        raise ValueError(f"seed must have shape [2] (stateless random ops), got shape {seed.shape}")
    return seed


def split_seed(seed, num: int) -> tf.Tensor:
    """``num`` independent seeds ``[num, 2]`` derived from ``seed``."""
    return tf.random.experimental.stateless_split(as_seed(seed), num=num)


def outer(rows: tf.Tensor, cols: tf.Tensor) -> tf.Tensor:
    """Per-example outer product ``[batch, M] x [batch, N] -> [batch, M, N]``.

    A batched matmul with inner size 1: on CPU several times faster than a broadcasting multiply
    or ``tf.where`` of the same size (measured ~5x for a [32, 64, 100, 2] batch), which keeps the
    masks of this package cheap.
    """
    return tf.matmul(rows[:, :, tf.newaxis], cols[:, tf.newaxis, :])


def over_channels(plane: tf.Tensor, values: tf.Tensor) -> tf.Tensor:
    """``plane [batch, freq, time]`` times ``values [batch, channels]`` -> ``[batch, freq, time, channels]``."""
    shape = tf.shape(plane)
    flat = tf.reshape(plane, tf.stack([shape[0], shape[1] * shape[2], 1]))
    out = tf.matmul(flat, values[:, tf.newaxis, :])
    return tf.reshape(out, tf.stack([shape[0], shape[1], shape[2], tf.shape(values)[1]]))


def random_spans(
    batch: tf.Tensor, count: int, max_width: int, size: tf.Tensor, seed
) -> tf.Tensor:
    """Boolean ``[batch, size]``: union of ``count`` random spans per example.

    Each span has an integer width uniform in ``{0, ..., min(max_width, size)}`` and a start uniform
    in ``{0, ..., size - width}``, so it never leaves the axis.
    """
    width_seed, start_seed = tf.unstack(split_seed(seed, 2))
    size_f = tf.cast(size, tf.float32)
    max_w = tf.minimum(tf.cast(max_width, tf.float32), size_f)
    width = tf.floor(tf.random.stateless_uniform([batch, count], width_seed) * (max_w + 1.0))
    width = tf.minimum(width, max_w)  # guards the (measure-zero) u == 1 rounding case
    start = tf.floor(tf.random.stateless_uniform([batch, count], start_seed) * (size_f - width + 1.0))
    start = tf.minimum(start, size_f - width)
    position = tf.cast(tf.range(size), tf.float32)[tf.newaxis, tf.newaxis, :]  # [1, 1, size]
    inside = (position >= start[..., tf.newaxis]) & (position < (start + width)[..., tf.newaxis])
    return tf.reduce_any(inside, axis=1)


def specaugment(
    x: tf.Tensor,
    freq_masks: int,
    freq_width: int,
    time_masks: int,
    time_width: int,
    seed,
    fill: str = "mean",
) -> tf.Tensor:
    """Mask ``freq_masks`` frequency bands and ``time_masks`` time spans of every example.

    ``x``: ``[batch, freq, time, channels]``. Every example draws its own masks (widths up to
    ``freq_width`` bins / ``time_width`` frames, see :func:`random_spans`). Masked cells are set to

    * ``fill="mean"`` (default): the example's own mean over frequency and time, per channel, taken
      before masking. Log-mel features are usually not zero-mean (dB values), where a zero would be
      an unnaturally loud or quiet patch; for standardized features this equals zero.
    * ``fill="zero"``: 0, as in the SpecAugment paper (whose features were normalized).
    """
    if fill not in MASK_FILLS:
        raise ValueError(f"specaugment: fill must be one of {MASK_FILLS}, got {fill!r}")
    for key, value in (
        ("freq_masks", freq_masks), ("freq_width", freq_width),
        ("time_masks", time_masks), ("time_width", time_width),
    ):
        if int(value) < 0:
            raise ValueError(f"specaugment: {key} must be >= 0, got {value!r}")
    x = tf.convert_to_tensor(x)
    if x.shape.rank != 4:
        raise ValueError(f"specaugment: x must be [batch, freq, time, channels], got shape {x.shape}")
    if not ((freq_masks > 0 and freq_width > 0) or (time_masks > 0 and time_width > 0)):
        return x
    shape = tf.shape(x)
    batch, freq, time, channels = shape[0], shape[1], shape[2], shape[3]
    freq_seed, time_seed = tf.unstack(split_seed(seed, 2))
    keep_rows = tf.ones(tf.stack([batch, freq]), x.dtype)  # 1 = not masked
    keep_cols = tf.ones(tf.stack([batch, time]), x.dtype)
    if freq_masks > 0 and freq_width > 0:
        keep_rows = 1.0 - tf.cast(random_spans(batch, int(freq_masks), int(freq_width), freq, freq_seed), x.dtype)
    if time_masks > 0 and time_width > 0:
        keep_cols = 1.0 - tf.cast(random_spans(batch, int(time_masks), int(time_width), time, time_seed), x.dtype)
    keep = outer(keep_rows, keep_cols)  # [batch, freq, time]: 0 on masked rows and columns
    # x * keep + fill * (1 - keep): exact x where kept, exact fill where masked.
    out = x * over_channels(keep, tf.ones(tf.stack([batch, channels]), x.dtype))
    if fill == "mean":
        fill_value = tf.reduce_mean(x, axis=[1, 2])  # [batch, channels]
        out = out + over_channels(1.0 - keep, fill_value)
    return out
