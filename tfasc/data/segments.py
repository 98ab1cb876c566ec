"""Segments: each clip's features cut into non-overlapping pieces of ``features.segment_frames`` frames.

Wu & Lee (Sec. 3.1, 4.2) feed a CNN segments of 128 frames of a clip's features and give the clip the
mean of its segments' class probabilities. With ``features.segment_frames: N`` a clip's front-end
output ``[freq, frames, channels]`` is cut into ``k = frames // N`` segments ``[freq, N, channels]``
(a trailing remainder shorter than ``N`` frames is dropped); every segment is one model input:

- training uses every segment as an example, with its clip's label;
- normalization is fitted on the segments and applied per segment (``per_clip`` modes use each
  *segment's* own statistics, which is what the device can compute on the one input it holds);
- a clip's probabilities are the mean of its ``k`` segments' probabilities (after softmax or
  sigmoid): :func:`tfasc.evaluate.clip_probabilities`, used by evaluation, export and prediction.

The feature cache keeps whole clips; :class:`Segments` is a lazy view of them (rows read on demand,
a memory-mapped cache is never loaded whole). Segment ``i`` is clip ``i // k``, frames
``[(i % k) * N, (i % k + 1) * N)``: a clip's segments are consecutive rows, in time order.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tfasc.config.load import RecipeError

#: Axis of the frames in one example ``[freq, frames, channels]``.
TIME_AXIS = 1


def _check(example_shape: Sequence[int], segment_frames: int) -> int:
    """The frames of one example ``[freq, frames, channels]``; a :class:`RecipeError` otherwise."""
    shape = tuple(int(d) for d in example_shape)
    if len(shape) != 3:
        raise RecipeError(
            f"features.segment_frames: {segment_frames}: cuts features laid out [freq, frames, channels], but the "
            f"front-end makes examples of shape {list(shape)} (features.kind: waveform has no frames; set "
            "features.segment_frames to null)")
    if isinstance(segment_frames, bool) or not isinstance(segment_frames, (int, np.integer)) or segment_frames < 1:
        raise RecipeError(f"features.segment_frames: {segment_frames!r}: expected a positive number of frames")
    frames = shape[TIME_AXIS]
    if frames < segment_frames:
        raise RecipeError(
            f"features.segment_frames: {segment_frames} is more than the {frames} frames of a clip; lower it or "
            "lengthen data.duration_s")
    return frames


def segments_per_clip(example_shape: Sequence[int], segment_frames: int | None) -> int:
    """``frames // segment_frames`` for one example ``[freq, frames, channels]`` (1 without segments)."""
    if segment_frames is None:
        return 1
    return _check(example_shape, segment_frames) // segment_frames


def segment_shape(example_shape: Sequence[int], segment_frames: int | None) -> tuple[int, ...]:
    """The model input of one segment, ``[freq, segment_frames, channels]`` (the example without segments)."""
    shape = tuple(int(d) for d in example_shape)
    if segment_frames is None:
        return shape
    _check(shape, segment_frames)
    return shape[:TIME_AXIS] + (int(segment_frames),) + shape[TIME_AXIS + 1:]


class Segments:
    """The segments of ``clips [n, freq, frames, channels]`` as an array-like ``[n * k, freq, N, channels]``
    that reads rows on demand: ``len``, ``shape``, ``ndim``, ``size``, ``dtype``, and indexing by an
    integer, a slice or an integer array (a new array of the source's dtype; the source is not copied whole)."""

    def __init__(self, clips, segment_frames: int):
        self.clips = clips
        self.segment_frames = int(segment_frames)
        self.per_clip = segments_per_clip(clips.shape[1:], segment_frames)
        self.shape = (len(clips) * self.per_clip, *segment_shape(clips.shape[1:], segment_frames))
        self.dtype = clips.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        if isinstance(index, tuple):
            raise TypeError("Segments: index rows only (an integer, a slice or an integer array)")
        if isinstance(index, slice):
            rows = np.arange(len(self))[index]
        else:
            rows = np.asarray(index)
            if rows.dtype == bool or not np.issubdtype(rows.dtype, np.integer):
                raise TypeError(f"Segments: expected integer row indices, got dtype {rows.dtype}")
        scalar = rows.ndim == 0
        rows = np.atleast_1d(rows).astype(np.int64)
        if rows.size and (rows.min() < -len(self) or rows.max() >= len(self)):
            raise IndexError(f"Segments: row index out of range for {len(self)} segments")
        rows = np.where(rows < 0, rows + len(self), rows)
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        n = self.segment_frames
        clip_of, part_of = np.divmod(rows, self.per_clip)
        for j, (clip, part) in enumerate(zip(clip_of.tolist(), part_of.tolist())):
            out[j] = self.clips[clip, :, part * n:(part + 1) * n]
        return out[0] if scalar else out

    def __array__(self, dtype=None, copy=None):
        values = self[:]
        return values if dtype is None else values.astype(dtype)


def segmented(clips, segment_frames: int | None):
    """The model inputs of ``clips [n, freq, frames, channels]``: their :class:`Segments`, or ``clips``
    themselves without ``segment_frames``."""
    return clips if segment_frames is None else Segments(clips, segment_frames)
