"""From examples to a ``tf.data`` pipeline of batches.

decode → resample → channels → crop/pad → front-end (log-mel, or the waveform itself; see
:mod:`tfasc.data.frontends`) → (cache) → order (a seeded permutation per pass, or balanced draws by class) → batch → gather →
(per-example waveform augmentation and the front-end, when training augments the decoded clips) →
normalize (:mod:`tfasc.data.normalization`) → batch augment → prefetch.
Features are computed once per clip (and kept on disk when caching), then every epoch reads them
back: on DCASE-sized data the feature extraction would otherwise dominate training. Features are
laid out ``[examples, n_mels, frames, channels]`` (log-mel) or ``[examples, samples, channels]``
(waveform).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

import tfasc  # noqa: F401
import tensorflow as tf

from tfasc.data import cache as feature_cache
from tfasc.data.audio import AudioDecodeError, count_non_finite, load_audio
from tfasc.data.datasets.base import DatasetError, Example
from tfasc.data.frontends import FrontEnd
from tfasc.files import remove
from tfasc.log import log

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


def feature_function(frontend: FrontEnd, sample_rate: int, num_samples: int, channels: int) -> Callable:
    """The front-end as one traced graph with a fixed signature: a batch ``[clips, num_samples, channels]``
    of one length (training's extraction, and prediction's windows)."""
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
    cache_max_bytes: int | None = None,
    cache_keep_since: float | None = None,
) -> FeatureSet:
    """Compute (or read from the cache) the model inputs of ``examples``.

    Args:
        frontend: what turns decoded clips into model inputs (:func:`tfasc.data.frontends.make`).
        cache_dir: folder of the on-disk cache; None computes in memory every time. Opening it
            removes the leftovers of interrupted builds; a damaged entry is rebuilt.
        skip_bad_files: skip undecodable files, and clips whose features are not finite (reported
            in ``FeatureSet.skipped``), instead of raising.
        description: what the features are for (progress bar, and the cache index for humans).
        cache_max_bytes: after writing an entry, evict least-recently-used ones until the cache
            holds at most this many bytes (None: no limit).
        cache_keep_since: never evict entries used at or after this time (seconds since the epoch):
            the other feature sets of the same data preparation.

    Raises:
        BadAudioError: naming every undecodable (or non-finite) file and why, unless skipping is allowed.
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
        cache_dir = Path(cache_dir)
        feature_cache.clean_orphans(cache_dir)
        entry = cache_dir / feature_cache.cache_key(parameters, (e.path for e in examples))
        cached = feature_cache.read_entry(entry)
        if cached is not None:
            features, index = cached
            if _index_fits(index, len(examples), len(features)):
                kept = [examples[i] for i in index["kept"]]
                return FeatureSet(features, tuple(kept), tuple(map(tuple, index["skipped"])), str(entry))
            # The checksum covers features.npy only; an index that does not fit these clips is damaged too.
            log(f"cache entry {entry.name} is damaged (its index does not fit the {len(examples)} clips); "
                "removing it and rebuilding")
            remove(entry)

    writer = feature_cache.EntryWriter(entry, (len(examples), *shape), dtype=frontend.cache_dtype) if entry is not None else None
    out = writer.features if writer else np.zeros((len(examples), *shape), np.float32)
    extract = feature_function(frontend, sample_rate, num_samples, channels)
    kept_indices: list[int] = []
    failures: list[tuple[int, str, str]] = []  # (example index, path, reason)
    pending: list[tuple[int, np.ndarray]] = []

    def flush():
        if not pending:
            return
        with np.errstate(over="ignore", invalid="ignore"):  # overflow to the cache dtype is caught below
            values = np.asarray(extract(np.stack([audio for _, audio in pending])).numpy(), dtype=out.dtype)
        non_finite = [count_non_finite(row) for row in values]
        for (i, _), bad in zip(pending, non_finite):
            if bad:
                # A NaN row in the cache would poison the standardization and every epoch's loss.
                failures.append((i, str(examples[i].path), f"features are not finite ({bad} NaN/inf values in {out.dtype})"))
        good = values[[bad == 0 for bad in non_finite]]
        out[len(kept_indices) : len(kept_indices) + len(good)] = good
        kept_indices.extend(i for (i, _), bad in zip(pending, non_finite) if not bad)
        pending.clear()

    try:
        with _progress(len(examples), description) as bar:
            for i, example in enumerate(examples):
                try:
                    pending.append(
                        (i, load_audio(example.path, sample_rate=sample_rate, channels=channels, num_samples=num_samples))
                    )
                except AudioDecodeError as error:
                    failures.append((i, error.path, error.reason))
                if len(pending) == _EXTRACT_BATCH:
                    flush()
                bar.update(1)
            flush()
        skipped = [(path, reason) for _, path, reason in sorted(failures)]
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
    if not writer:
        return FeatureSet(out[: len(kept)], kept, tuple(skipped))
    index = {
        "description": description,
        "feature_shape": list(shape),
        "dtype": str(np.dtype(frontend.cache_dtype)),
        "parameters": parameters,
        "kept": kept_indices,
        "skipped": skipped,
    }
    writer.commit(len(kept), index)
    if cache_max_bytes is not None:
        feature_cache.enforce_cap(cache_dir, cache_max_bytes, keep=entry, used_since=cache_keep_since)
    cached = feature_cache.read_entry(entry, verify=False)  # just written and hashed
    # None only if another process removed the entry meanwhile; the rows are still mapped here.
    features = cached[0] if cached is not None else out[: len(kept)]
    return FeatureSet(features, kept, tuple(skipped), str(entry))


def _index_fits(index: dict, num_examples: int, num_rows: int) -> bool:
    """Whether a cache index's ``kept`` rows are strictly increasing clip numbers, one per feature row."""
    kept, skipped = index.get("kept"), index.get("skipped")
    return (
        isinstance(kept, list) and isinstance(skipped, list) and len(kept) == num_rows
        and all(isinstance(i, int) and 0 <= i < num_examples for i in kept)
        and all(a < b for a, b in zip(kept, kept[1:]))
        and all(isinstance(pair, list) and len(pair) == 2 for pair in skipped)
    )


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


def batches_per_pass(num_examples: int, batch_size: int, *, drop_remainder: bool = False) -> int:
    """Batches one pass over the examples makes (the last one short unless ``drop_remainder``)."""
    return num_examples // batch_size if drop_remainder else -(-num_examples // batch_size)


def _index_batches(pass_index, *, num_examples: int, batch_size: int, per_pass: int, shuffle: bool, seed: int):
    """The ``per_pass`` batches of example indices of pass ``pass_index``.

    The order is a stateless permutation seeded by ``(seed, pass)``: a pure function of its
    arguments, so any pass can be produced without running the ones before it (a resumed run).
    """
    order = tf.range(num_examples, dtype=tf.int64)
    if shuffle:
        pass_seed = tf.stack([tf.constant(seed, tf.int64), tf.cast(pass_index, tf.int64)])
        order = tf.random.experimental.stateless_shuffle(order, seed=pass_seed)
    return tf.data.Dataset.range(per_pass).map(lambda j: order[j * batch_size : (j + 1) * batch_size])


SAMPLING = ("shuffle", "balanced")
"""``make_dataset``'s orders of training examples (``data.sampling``)."""


@dataclass(frozen=True)
class ClassLists:
    """Each class's examples for balanced sampling, concatenated: class ``k``'s (the ``k``-th class
    with any) are ``members[starts[k] : starts[k] + sizes[k]]``."""

    members: np.ndarray
    starts: np.ndarray
    sizes: np.ndarray


def class_lists(targets: np.ndarray) -> ClassLists:
    """The examples of every class that has any (a multi-label example is in each of its classes'
    lists; positive: a target ``>= 0.5``). A class without examples cannot be drawn and is left out.

    Raises:
        ValueError: when no example has a positive target.
    """
    examples, classes = np.nonzero(np.asarray(targets) >= 0.5)
    if not len(examples):
        raise ValueError("balanced sampling needs examples with a positive target; none has one")
    members = examples[np.argsort(classes, kind="stable")].astype(np.int64)  # by class, then example
    sizes = np.bincount(classes)
    sizes = sizes[sizes > 0].astype(np.int64)
    return ClassLists(members, np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64), sizes)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijection of uint64 whose outputs look independent of its inputs."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def random_keys(*parts) -> np.ndarray:
    """Pseudo-random uint64 keys, a pure function of the integers ``parts`` (numpy-broadcast).

    A counter-based hash instead of a seeded generator: the keys of any (pass, class, epoch) come
    without generating those before, and a whole block of them in one vectorized call."""
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps by design
        keys = np.zeros(np.broadcast_shapes(*(np.shape(part) for part in parts)), np.uint64)
        for part in parts:
            keys = _mix64((keys + np.uint64(0x9E3779B97F4A7C15)) ^ np.asarray(part).astype(np.uint64))
    return keys


def _permutations(seed: int, stream: int, rows: np.ndarray, length: int) -> np.ndarray:
    """``[len(rows), length]``: row ``i`` a permutation of ``range(length)`` seeded by
    ``(seed, stream, rows[i])`` (``rows`` may also be ``[n, 2]`` pairs)."""
    rows = np.asarray(rows, np.int64).reshape(len(rows), -1)
    columns = [rows[:, [c]] for c in range(rows.shape[1])]
    keys = random_keys(seed % 2**64, stream, *columns, np.arange(length, dtype=np.int64)[np.newaxis])
    return np.argsort(keys, axis=1, kind="stable")


def balanced_draws(first: int, count: int, lists: ClassLists, seed: int) -> np.ndarray:
    """Example indices of balanced draws ``first .. first + count - 1`` (PANNs' balanced sampler, made stateless).

    Draws go through the classes in cycles: cycle ``c`` (draws ``c*K .. c*K + K - 1`` of ``K``
    classes) visits every class once, in an order seeded by ``(seed, c)``. So each class is drawn
    for the ``c``-th time in cycle ``c``, and takes the next example of its own list: position
    ``c mod size`` of the list's permutation seeded by ``(seed, class, c div size)``, so every
    example of a class is drawn once before any twice (the list reshuffled each time it is used up).
    Draw ``t`` depends on ``(seed, t)`` alone, however many draws came before.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    num_classes = len(lists.sizes)
    cycle, slot = np.divmod(np.arange(first, first + count, dtype=np.int64), num_classes)
    cycles = np.arange(cycle[0], cycle[-1] + 1)
    drawn_class = _permutations(seed, 0, cycles, num_classes)[cycle - cycle[0], slot]
    drawn = np.empty(count, np.int64)
    for k in np.unique(drawn_class):
        rows = np.flatnonzero(drawn_class == k)
        epoch, position = np.divmod(cycle[rows], lists.sizes[k])
        epochs = np.arange(epoch[0], epoch[-1] + 1)
        orders = _permutations(seed, 1, np.stack([np.full_like(epochs, k), epochs], axis=1), int(lists.sizes[k]))
        drawn[rows] = lists.members[lists.starts[k] + orders[epoch - epochs[0], position]]
    return drawn


def _balanced_index_batches(pass_index, *, lists: ClassLists, batch_size: int, per_pass: int, seed: int):
    """The ``per_pass`` full batches of pass ``pass_index`` of balanced draws (:func:`balanced_draws`)."""
    draws_per_pass = per_pass * batch_size

    def draws(p):
        return balanced_draws(int(p) * draws_per_pass, draws_per_pass, lists, seed)

    order = tf.numpy_function(draws, [tf.cast(pass_index, tf.int64)], tf.int64, stateful=False)
    return tf.data.Dataset.from_tensor_slices(tf.reshape(order, [per_pass, batch_size]))


def make_dataset(
    features: np.ndarray,
    targets: np.ndarray,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    normalize: Callable[[np.ndarray], np.ndarray] | None = None,
    transform: Callable | None = None,
    transformed_shape: Sequence[int] | None = None,
    augment: Callable | None = None,
    repeat: bool = False,
    drop_remainder: bool = False,
    start_batch: int = 0,
    sampling: str = "shuffle",
) -> tf.data.Dataset:
    """Batches ``(features [batch, *input_shape], targets [batch, classes])``.

    Examples are gathered from ``features`` (which may be a memory-mapped cache) a batch at a time.
    The stream is a pure function of ``seed`` and the global batch index: pass ``p`` (one epoch's
    worth of examples, each exactly once) is ordered by a permutation seeded by ``(seed, p)`` with
    ``shuffle`` (so every pass is reshuffled), in index order without, and batched on its own.
    ``transform(x, y, batch_index) -> (x, y)`` (graph mode) turns a gathered batch into model inputs of
    ``transformed_shape`` before normalization: the per-example waveform augmentation, mixing of
    waveforms (which mixes the targets too) and the front-end when ``features`` holds decoded clips. ``normalize`` (numpy, e.g. a
    :class:`tfasc.data.normalization.Normalization`) maps a batch to model inputs.
    ``augment(x, y, batch_index)`` is applied to whole normalized batches (see :mod:`tfasc.augment`)
    with the global batch index. With ``repeat`` the dataset is endless (train with ``steps_per_epoch``),
    otherwise it is pass 0 alone.

    ``sampling="balanced"`` (needs ``shuffle``) draws the examples by class instead
    (:func:`balanced_draws`, PANNs' balanced sampler): every class with examples appears equally
    often however unbalanced ``targets`` are, an example without a positive target never; a pass is
    still ``per_pass`` batches, all full.

    ``start_batch=k`` yields exactly what the dataset with ``start_batch=0`` yields from its k-th
    batch on, without loading the features of the batches it skips: a resumed training run
    (``k = finished_epochs * steps_per_epoch``) continues the order and augmentations where the
    interrupted one stopped instead of replaying epoch 0's.
    """
    if len(features) != len(targets):
        raise ValueError(f"features ({len(features)}) and targets ({len(targets)}) differ in length")
    if len(features) == 0:
        raise ValueError("cannot make a dataset from zero examples")
    if start_batch < 0:
        raise ValueError(f"start_batch must be >= 0, got {start_batch}")
    if sampling not in SAMPLING:
        raise ValueError(f"sampling {sampling!r}: expected one of {SAMPLING}")
    if sampling == "balanced" and not shuffle:
        raise ValueError("balanced sampling draws at random; it needs shuffle=True")
    if (transform is None) != (transformed_shape is None):
        raise ValueError("transform and transformed_shape go together")
    feature_shape_ = tuple(features.shape[1:])
    per_pass = batches_per_pass(len(features), batch_size, drop_remainder=drop_remainder)
    if per_pass == 0:
        raise ValueError(f"{len(features)} examples make no full batch of {batch_size} (drop_remainder)")

    def gather(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(indices)  # sorted reads are kind to a memory-mapped file
        rows = np.empty((len(indices), *feature_shape_), np.float32)
        rows[order] = features[indices[order]]
        if transform is None and normalize is not None:
            rows = normalize(rows)
        return rows, targets[indices]

    def normalize_batch(x):
        return np.asarray(normalize(x), np.float32)

    if sampling == "balanced":
        index_batches = partial(_balanced_index_batches, lists=class_lists(targets), batch_size=batch_size,
                                per_pass=per_pass, seed=seed)
    else:
        index_batches = partial(_index_batches, num_examples=len(features), batch_size=batch_size, per_pass=per_pass,
                                shuffle=shuffle, seed=seed)
    if repeat:
        first_pass, offset = divmod(start_batch, per_pass)
        indices = tf.data.Dataset.counter(first_pass).flat_map(index_batches).skip(offset)
        indices = indices.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))
    else:
        indices = index_batches(tf.constant(0, tf.int64)).skip(start_batch)
    dataset = indices.enumerate(start=start_batch)  # (global batch index, example indices)

    def load(batch_index, indices):
        x, y = tf.numpy_function(gather, [indices], (tf.float32, tf.float32), stateful=False)
        x.set_shape((None, *feature_shape_))
        y.set_shape((None, targets.shape[1]))
        if transform is not None:
            x, y = transform(x, y, batch_index)
            if normalize is not None:
                x = tf.numpy_function(normalize_batch, [x], tf.float32, stateful=False)
            x.set_shape((None, *transformed_shape))
        if augment is not None:
            return augment(x, y, batch_index)
        return x, y

    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
