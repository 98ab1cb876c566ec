"""From examples to a ``tf.data`` pipeline of batches.

decode → resample → channels → crop/pad → front-end (log-mel, or the waveform itself; see
:mod:`tfasc.data.frontends`) → (cache) → standardize → shuffle → batch → augment → prefetch.
Features are computed once per clip (and kept on disk when caching), then every epoch reads them
back: on DCASE-sized data the feature extraction would otherwise dominate training. Features are
laid out ``[examples, n_mels, frames, channels]`` (log-mel) or ``[examples, samples, channels]``
(waveform).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

import tfasc  # noqa: F401
import tensorflow as tf

from tfasc.data import cache as feature_cache
from tfasc.data.audio import AudioDecodeError, load_audio
from tfasc.data.datasets.base import DatasetError, Example
from tfasc.data.frontends import FrontEnd

# Clips go through the feature graph this many at a time: large enough to amortize the call,
# small enough to bound memory for 10 s stereo 48 kHz clips.
_EXTRACT_BATCH = 8


class BadAudioError(DatasetError):
    """Audio files that could not be decoded, when the recipe does not allow skipping them."""


@dataclass(frozen=True)
class FeatureSet:
    """Features of the examples that decoded, in order, and the files that were skipped."""

    features: np.ndarray
    """``[examples, *input_shape]`` model inputs (the front-end's cache dtype on disk, float32 in memory)."""
    examples: tuple[Example, ...]
    skipped: tuple[tuple[str, str], ...] = ()
    """``(path, reason)`` of every file skipped."""
    cache_entry: str | None = None


def _feature_function(frontend: FrontEnd, sample_rate: int, num_samples: int, channels: int) -> Callable:
    # One traced graph per extraction with a fixed signature: a batch of clips of one length.
    @tf.function(input_signature=[tf.TensorSpec([None, num_samples, channels], tf.float32)])
    def extract(waveforms):
        return frontend(waveforms, sample_rate=sample_rate)

    return extract


def _progress(total: int, description: str):
    from tqdm import tqdm

    # ``disable=None`` hides the bar when stderr is not a terminal (CI logs).
    return tqdm(total=total, desc=description, unit="clip", file=sys.stderr, disable=None, leave=False)


def extract_features(
    examples: Sequence[Example],
    *,
    sample_rate: int,
    duration_s: float,
    channels: int,
    frontend: FrontEnd,
    cache_dir: Path | str | None = None,
    skip_bad_files: bool = False,
    description: str = "features",
) -> FeatureSet:
    """Compute (or read from the cache) the model inputs of ``examples``.

    Args:
        frontend: what turns decoded clips into model inputs (:func:`tfasc.data.frontends.make`).
        cache_dir: folder of the on-disk cache; None computes in memory every time.
        skip_bad_files: skip undecodable files (reported in ``FeatureSet.skipped``) instead of raising.

    Raises:
        BadAudioError: naming every undecodable file and why, unless skipping is allowed.
    """
    examples = tuple(examples)
    num_samples = int(round(sample_rate * duration_s))
    shape = frontend.output_shape(num_samples, channels)
    parameters = {
        "sample_rate": sample_rate,
        "num_samples": num_samples,
        "channels": channels,
        "features": frontend.parameters(),
        "skip_bad_files": skip_bad_files,
    }
    entry = None
    if cache_dir is not None:
        entry = Path(cache_dir) / feature_cache.cache_key(parameters, (e.path for e in examples))
        cached = feature_cache.read_entry(entry)
        if cached is not None:
            features, index = cached
            kept = [examples[i] for i in index["kept"]]
            return FeatureSet(features, tuple(kept), tuple(map(tuple, index["skipped"])), str(entry))

    writer = feature_cache.EntryWriter(entry, (len(examples), *shape), dtype=frontend.cache_dtype) if entry is not None else None
    out = writer.features if writer else np.zeros((len(examples), *shape), np.float32)
    extract = _feature_function(frontend, sample_rate, num_samples, channels)
    kept_indices: list[int] = []
    skipped: list[tuple[str, str]] = []
    pending: list[np.ndarray] = []

    def flush():
        if pending:
            rows = len(kept_indices) - len(pending)
            out[rows : rows + len(pending)] = extract(np.stack(pending)).numpy()
            pending.clear()

    try:
        with _progress(len(examples), description) as bar:
            for i, example in enumerate(examples):
                try:
                    pending.append(
                        load_audio(example.path, sample_rate=sample_rate, channels=channels, num_samples=num_samples)
                    )
                    kept_indices.append(i)
                except AudioDecodeError as error:
                    skipped.append((error.path, error.reason))
                if len(pending) == _EXTRACT_BATCH:
                    flush()
                bar.update(1)
            flush()
        if skipped and not skip_bad_files:
            listing = "\n".join(f"  {path}: {reason}" for path, reason in skipped[:20])
            more = f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else ""
            raise BadAudioError(
                f"{len(skipped)} of {len(examples)} audio files could not be read:\n{listing}{more}\n"
                "Fix or remove them, or set data.skip_bad_files: true to skip them."
            )
    except BaseException:
        if writer:
            writer.abort()
        raise
    kept = tuple(examples[i] for i in kept_indices)
    if writer:
        writer.commit(len(kept), {"kept": kept_indices, "skipped": skipped})
        features, _ = feature_cache.read_entry(entry)
        return FeatureSet(features, kept, tuple(skipped), str(entry))
    return FeatureSet(out[: len(kept)], kept, tuple(skipped))


def label_targets(examples: Sequence[Example], classes: Sequence[str], *, multi_label: bool = False) -> np.ndarray:
    """One-hot (or multi-hot) float32 targets ``[examples, classes]``.

    Raises:
        DatasetError: for a label outside ``classes``, naming the file.
    """
    index = {name: i for i, name in enumerate(classes)}
    targets = np.zeros((len(examples), len(classes)), np.float32)
    for row, example in enumerate(examples):
        if not multi_label and len(example.labels) != 1:
            raise DatasetError(f"{example.path}: expected one label, found {list(example.labels)}")
        for label in example.labels:
            if label not in index:
                raise DatasetError(f"{example.path}: unknown label {label!r}; expected one of {list(classes)}")
            targets[row, index[label]] = 1.0
    return targets


def standardization(features: np.ndarray, *, chunk: int = 256) -> tuple[float, float]:
    """Mean and standard deviation over every value of ``features`` (read in chunks)."""
    total, total_sq, count = 0.0, 0.0, 0
    for start in range(0, len(features), chunk):
        block = np.asarray(features[start : start + chunk], dtype=np.float64)
        total += block.sum()
        total_sq += np.square(block).sum()
        count += block.size
    if count == 0:
        raise ValueError("cannot standardize an empty feature set")
    mean = total / count
    return float(mean), float(np.sqrt(max(total_sq / count - mean * mean, 1e-12)))


def standardize(features: np.ndarray, mean: float, std: float) -> np.ndarray:
    """``(features - mean) / std`` as float32: the model's input."""
    return (np.asarray(features, np.float32) - np.float32(mean)) * np.float32(1.0 / std)


def make_dataset(
    features: np.ndarray,
    targets: np.ndarray,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    mean: float = 0.0,
    std: float = 1.0,
    augment: Callable | None = None,
    repeat: bool = False,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batches ``(features [batch, *input_shape], targets [batch, classes])``.

    Examples are gathered from ``features`` (which may be a memory-mapped cache) a batch at a time.
    With ``shuffle`` the order is reshuffled every epoch but fully determined by ``seed``.
    ``augment(x, y, batch_index)`` is applied to whole batches (see :mod:`tfasc.augment`); with
    ``repeat`` the dataset is endless and the batch index keeps counting across epochs, so every
    epoch draws new augmentations (train with ``steps_per_epoch``).
    """
    if len(features) != len(targets):
        raise ValueError(f"features ({len(features)}) and targets ({len(targets)}) differ in length")
    if len(features) == 0:
        raise ValueError("cannot make a dataset from zero examples")
    feature_shape_ = tuple(features.shape[1:])

    def gather(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(indices)  # sorted reads are kind to a memory-mapped file
        rows = np.empty((len(indices), *feature_shape_), np.float32)
        rows[order] = features[indices[order]]
        return standardize(rows, mean, std), targets[indices]

    dataset = tf.data.Dataset.range(len(features))
    if shuffle:
        dataset = dataset.shuffle(len(features), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)

    def load(indices):
        x, y = tf.numpy_function(gather, [indices], (tf.float32, tf.float32), stateful=False)
        x.set_shape((None, *feature_shape_))
        y.set_shape((None, targets.shape[1]))
        return x, y

    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if repeat:
        dataset = dataset.repeat()
    if augment is not None:
        dataset = dataset.enumerate().map(
            lambda i, batch: augment(batch[0], batch[1], i), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
    return dataset.prefetch(tf.data.AUTOTUNE)
