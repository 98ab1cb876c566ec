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

import hashlib
import multiprocessing
import os
import pickle
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
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
from tfasc.errors import UserError
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
    workers: int = 1,
    shard_clips: int | None = None,
) -> FeatureSet:
    """Compute (or read from the cache) the model inputs of ``examples``.

    The clips are cut into shards of ``shard_clips`` consecutive clips (:mod:`tfasc.data.cache`),
    computed by up to ``workers`` processes, each writing its shard's rows into the entry's
    ``features.npy``; the features are bit-identical whatever the number of workers.

    Args:
        frontend: what turns decoded clips into model inputs (:func:`tfasc.data.frontends.make`).
        cache_dir: folder of the on-disk cache; None computes in memory every time. Opening it
            removes the leftovers of interrupted builds; a damaged entry is rebuilt (only its
            damaged shards when the rest checks out).
        skip_bad_files: skip undecodable files, and clips whose features are not finite (reported
            in ``FeatureSet.skipped``), instead of raising.
        description: what the features are for (progress bar, and the cache index for humans).
        cache_max_bytes: after writing an entry, evict least-recently-used ones until the cache
            holds at most this many bytes (None: no limit).
        cache_keep_since: never evict entries used at or after this time (seconds since the epoch):
            the other feature sets of the same data preparation.
        workers: processes computing shards (``data.feature_workers``): 1 (default) for this
            process only, 0 for one per CPU. Never more than there are shards; one shard is computed here. Workers
            are spawned (TensorFlow is not fork-safe), which re-imports the ``__main__`` module: a
            script calling this at import time needs the ``if __name__ == "__main__":`` guard.
        shard_clips: clips per shard (default :data:`tfasc.data.cache.SHARD_CLIPS`).

    Raises:
        BadAudioError: naming every undecodable (or non-finite) file and why, unless skipping is allowed.
        FeatureWorkerError: a worker process failed (its exception is the cause).
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
        repair = partial(_repair_shards, examples=examples, sample_rate=sample_rate, num_samples=num_samples,
                         channels=channels, frontend=frontend, workers=workers, description=description)
        cached = feature_cache.read_entry(entry, repair=repair)
        if cached is not None:
            features, index = cached
            if _index_fits(index, len(examples), len(features)):
                kept = [examples[i] for i in index["kept"]]
                return FeatureSet(features, tuple(kept), tuple(map(tuple, index["skipped"])), str(entry))
            # The checksums cover features.npy only; an index that does not fit these clips is damaged too.
            log(f"cache entry {entry.name} is damaged (its index does not fit the {len(examples)} clips); "
                "removing it and rebuilding")
            remove(entry)

    writer = feature_cache.EntryWriter(entry, (len(examples), *shape), dtype=frontend.cache_dtype) if entry is not None else None
    out = writer.features if writer else np.zeros((len(examples), *shape), np.float32)
    spec = _ShardSpec(sample_rate, num_samples, channels, frontend, np.dtype(out.dtype),
                      str(writer.features_path) if writer else None)
    shard_clips = shard_clips or feature_cache.SHARD_CLIPS
    spans = feature_cache.shard_spans(len(examples), shard_clips)
    # Each shard first writes its kept rows from the row of its first clip: its own range, whatever the order.
    jobs = [_ShardJob(n, first, tuple(e.path for e in examples[first : first + count]), first, count)
            for n, (first, count) in enumerate(spans)]
    try:
        with _progress(len(examples), description) as bar:
            results = _run_shards(spec, jobs, out, workers=_worker_count(workers, len(jobs), frontend), progress=bar.update)
        skipped = [(path, reason) for _, path, reason in sorted(f for r in results for f in r.failures)]
        if skipped and not skip_bad_files:
            listing = "\n".join(f"  {path}: {reason}" for path, reason in skipped[:20])
            more = f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else ""
            raise BadAudioError(
                f"{len(skipped)} of {len(examples)} audio files could not be read:\n{listing}{more}\n"
                "Fix or remove them, or set data.skip_bad_files: true to skip them."
            )
        shards = _compact(out, jobs, results)
    except BaseException:
        if writer:
            writer.abort()
        raise
    kept_indices = [i for result in results for i in result.kept]
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
        "shard_clips": shard_clips,
        "shards": shards,
    }
    writer.commit(len(kept), index)
    if cache_max_bytes is not None:
        feature_cache.enforce_cap(cache_dir, cache_max_bytes, keep=entry, used_since=cache_keep_since)
    cached = feature_cache.read_entry(entry, verify=False)  # just written and hashed
    # None only if another process removed the entry meanwhile; the rows are still mapped here.
    features = cached[0] if cached is not None else out[: len(kept)]
    return FeatureSet(features, kept, tuple(skipped), str(entry))


class FeatureWorkerError(RuntimeError):
    """A worker process computing a shard of features failed; its exception is the ``__cause__``."""


# Rows moved at a time when compacting an entry after skipped clips (bounds the memory it takes).
_MOVE_ROWS = 64


@dataclass(frozen=True)
class _ShardSpec:
    """What the shards of one extraction share (pickled to the worker processes)."""

    sample_rate: int
    num_samples: int
    channels: int
    frontend: FrontEnd
    dtype: np.dtype
    features_path: str | None
    """The ``features.npy`` being written (opened ``r+`` by workers), or None: workers return their rows."""


@dataclass(frozen=True)
class _ShardJob:
    number: int
    first_clip: int
    paths: tuple
    """The shard's clips, in order (``first_clip`` is the first)."""
    first_row: int
    """Where its kept rows go, one after the other ..."""
    capacity: int
    """... in at most this many rows."""


@dataclass
class _ShardResult:
    number: int
    kept: list[int]
    """Clip numbers (in the whole list) of the rows written, in order."""
    failures: list[tuple[int, str, str]]
    """``(clip number, path, reason)`` of each clip skipped."""
    sha256: str
    """Of the bytes of the rows written."""
    rows: np.ndarray | None = None
    """The rows, when the spec has no file to write them to."""


_WORKER_EXTRACTORS: dict[bytes, Callable] = {}


def _worker_extractor(spec: _ShardSpec) -> Callable:
    """The traced front-end of ``spec``, traced once per process (a worker computes several shards)."""
    key = pickle.dumps((spec.frontend, spec.sample_rate, spec.num_samples, spec.channels))
    if key not in _WORKER_EXTRACTORS:
        _WORKER_EXTRACTORS.clear()
        _WORKER_EXTRACTORS[key] = feature_function(spec.frontend, spec.sample_rate, spec.num_samples, spec.channels)
    return _WORKER_EXTRACTORS[key]


def _extract_shard(spec: _ShardSpec, job: _ShardJob, *, target: np.ndarray | None = None,
                   extract: Callable | None = None, progress: Callable[[int], object] | None = None) -> _ShardResult:
    """Decode one shard's clips and write the features of those that decode (and are finite) to
    ``target[0:]``, one after the other; clips go through the front-end ``_EXTRACT_BATCH`` at a
    time, batches starting at the shard's first clip (the same batches whatever the workers).

    Without ``target`` (in a worker process) the rows go to ``spec.features_path`` from
    ``job.first_row``, or to a new array returned in the result.
    """
    mapped = returned = None
    if target is None:
        if spec.features_path is not None:
            mapped = np.lib.format.open_memmap(spec.features_path, mode="r+")
            target = mapped[job.first_row : job.first_row + job.capacity]
        else:
            shape = spec.frontend.output_shape(spec.num_samples, spec.channels)
            target = returned = np.zeros((job.capacity, *shape), spec.dtype)
    extract = extract or _worker_extractor(spec)
    kept: list[int] = []
    failures: list[tuple[int, str, str]] = []
    pending: list[tuple[int, np.ndarray]] = []
    digest = hashlib.sha256()

    def flush():
        if not pending:
            return
        with np.errstate(over="ignore", invalid="ignore"):  # overflow to the cache dtype is caught below
            values = np.asarray(extract(np.stack([audio for _, audio in pending])).numpy(), dtype=target.dtype)
        non_finite = [count_non_finite(row) for row in values]
        for (i, _), bad in zip(pending, non_finite):
            if bad:
                # A NaN row in the cache would poison the standardization and every epoch's loss.
                path = job.paths[i - job.first_clip]
                failures.append((i, str(path), f"features are not finite ({bad} NaN/inf values in {target.dtype})"))
        good = np.ascontiguousarray(values[[bad == 0 for bad in non_finite]])
        if len(kept) + len(good) > len(target):
            raise feature_cache.DamagedEntry(f"shard {job.number} keeps more clips than its {len(target)} rows")
        target[len(kept) : len(kept) + len(good)] = good
        digest.update(good.data)
        kept.extend(i for (i, _), bad in zip(pending, non_finite) if not bad)
        pending.clear()

    for offset, path in enumerate(job.paths):
        i = job.first_clip + offset
        try:
            pending.append((i, load_audio(path, sample_rate=spec.sample_rate, channels=spec.channels,
                                          num_samples=spec.num_samples)))
        except AudioDecodeError as error:
            failures.append((i, error.path, error.reason))
        if len(pending) == _EXTRACT_BATCH:
            flush()
        if progress is not None:
            progress(1)
    flush()
    if mapped is not None:
        mapped.flush()
        del target, mapped
    rows = returned[: len(kept)] if returned is not None else None
    return _ShardResult(job.number, kept, failures, digest.hexdigest(), rows)


def _worker_count(workers: int, shards: int, frontend: FrontEnd) -> int:
    """Processes to use: ``workers`` (0: one per CPU), at most one per shard, 1 if the front-end cannot be pickled."""
    count = min(workers or os.cpu_count() or 1, shards)
    if count > 1:
        try:
            pickle.dumps(frontend)
        except Exception as error:  # noqa: BLE001 (any pickling failure)
            log(f"the {getattr(frontend, 'kind', type(frontend).__name__)} front-end cannot be sent to worker "
                f"processes ({type(error).__name__}: {error}); computing the features in this process")
            return 1
    return count


def _run_shards(spec: _ShardSpec, jobs: Sequence[_ShardJob], out: np.ndarray, *, workers: int,
                progress: Callable[[int], object]) -> list[_ShardResult]:
    """Compute ``jobs`` here (``workers`` <= 1 or a single job) or in ``workers`` spawned processes
    (TensorFlow is not fork-safe); their rows land in ``out`` from each job's ``first_row``.
    Results in job order.

    Raises:
        FeatureWorkerError: a worker failed (a user error or a damaged entry is re-raised as is);
            the other workers are stopped.
    """
    if workers <= 1 or len(jobs) <= 1:
        extract = feature_function(spec.frontend, spec.sample_rate, spec.num_samples, spec.channels)
        return [_extract_shard(spec, job, target=out[job.first_row : job.first_row + job.capacity],
                               extract=extract, progress=progress) for job in jobs]
    results = []
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        with _worker_environment(workers):
            futures = {pool.submit(_extract_shard, spec, job): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                result = future.result()
            except (UserError, feature_cache.DamagedEntry):
                raise
            except Exception as error:
                last = job.first_clip + len(job.paths) - 1
                raise FeatureWorkerError(
                    f"computing shard {job.number} of the features (clips {job.first_clip}-{last}, from "
                    f"{job.paths[0]}) failed in a worker process: {type(error).__name__}: {error}"
                ) from error
            if result.rows is not None:
                out[job.first_row : job.first_row + len(result.rows)] = result.rows
            progress(len(job.paths))
            results.append(result)
    except BaseException:
        # Stop the other shards now rather than when they finish (minutes each).
        pool.shutdown(wait=False, cancel_futures=True)
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        raise
    finally:
        pool.shutdown(wait=True)
    return sorted(results, key=lambda result: result.number)


@contextmanager
def _worker_environment(workers: int):
    """Processes started meanwhile import TensorFlow without its start-up notices (this process
    showed them once) and share the CPUs (``workers`` processes of one intra-op thread per CPU each
    would oversubscribe them), unless the user set these variables."""
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    # GPU memory grown on demand: each worker would otherwise take nearly all of it.
    settings = {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_NUM_INTRAOP_THREADS": threads, "TF_NUM_INTEROP_THREADS": threads,
                "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
    added = [name for name in settings if name not in os.environ]
    os.environ.update({name: settings[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _compact(out: np.ndarray, jobs: Sequence[_ShardJob], results: Sequence[_ShardResult]) -> list[dict]:
    """Move each shard's rows down to follow the previous shard's (clips were skipped), and return
    the shards' records for the index (the bytes of the rows, hence their checksums, are unchanged)."""
    row_bytes = int(np.prod(out.shape[1:], dtype=np.int64)) * out.dtype.itemsize
    records, cursor = [], 0
    for job, result in zip(jobs, results):
        rows = len(result.kept)
        if job.first_row != cursor:
            for start in range(0, rows, _MOVE_ROWS):  # first rows first: never overwrites one still to move
                stop = min(start + _MOVE_ROWS, rows)
                out[cursor + start : cursor + stop] = out[job.first_row + start : job.first_row + stop]
        records.append(feature_cache.shard_record(job.first_clip, len(job.paths), cursor, rows, row_bytes, result.sha256))
        cursor += rows
    return records


def _repair_shards(entry: Path, index: dict, damaged: list[int], *, examples: Sequence[Example], sample_rate: int,
                   num_samples: int, channels: int, frontend: FrontEnd, workers: int, description: str) -> None:
    """Recompute the ``damaged`` shards of ``entry`` into a copy of it and commit the copy in its place.

    Raises:
        DamagedEntry: the index does not fit these clips, or the recomputed rows differ from the
            recorded ones (then the whole entry is rebuilt).
    """
    if not _index_fits(index, len(examples), index["rows"]) or sum(s["clips"] for s in index["shards"]) != len(examples):
        raise feature_cache.DamagedEntry(f"its index does not fit the {len(examples)} clips")
    writer = feature_cache.EntryWriter.copy_of(entry)
    try:
        shape = tuple(frontend.output_shape(num_samples, channels))
        if writer.features.shape[1:] != shape or writer.features.dtype != np.dtype(frontend.cache_dtype):
            raise feature_cache.DamagedEntry(f"its features are {writer.features.dtype} {list(writer.features.shape[1:])}, "
                                             f"not {np.dtype(frontend.cache_dtype)} {list(shape)}")
        spec = _ShardSpec(sample_rate, num_samples, channels, frontend, writer.features.dtype, str(writer.features_path))
        shards = [index["shards"][n] for n in damaged]
        jobs = [_ShardJob(n, s["first_clip"], tuple(e.path for e in examples[s["first_clip"] : s["first_clip"] + s["clips"]]),
                          s["first_row"], s["rows"]) for n, s in zip(damaged, shards)]
        with _progress(sum(s["clips"] for s in shards), f"{description} (repair)") as bar:
            results = _run_shards(spec, jobs, writer.features, workers=_worker_count(workers, len(jobs), frontend),
                                  progress=bar.update)
        for n, shard, result in zip(damaged, shards, results):
            recorded = [i for i in index["kept"] if shard["first_clip"] <= i < shard["first_clip"] + shard["clips"]]
            if result.kept != recorded or result.sha256 != shard["sha256"]:
                raise feature_cache.DamagedEntry(
                    f"recomputing {feature_cache.describe_shard(n, shard)} did not reproduce its recorded rows")
        repaired = datetime.now(timezone.utc).isoformat(timespec="seconds")
        writer.commit(index["rows"], {**index, "repaired": [*index.get("repaired", []), repaired]})
    except BaseException:
        writer.abort()
        raise
    log(f"cache entry {entry.name}: recomputed {len(jobs)} shard(s) ({sum(len(j.paths) for j in jobs)} clips)")


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
    part: tuple[int, int] = (0, 1),
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

    ``part=(i, n)`` yields only the ``i``-th of ``n`` equal slices of every batch (rows ``[i b / n,
    (i + 1) b / n)`` of a batch of ``b``; one replica's share, :mod:`tfasc.training.distribute`),
    gathering no other row. ``transform`` and ``augment`` are then called with ``part=(i, first
    row)``: per-example randomness keyed by the example's row in the whole batch stays what it is
    on one device; what draws for the batch as a whole (mixing partners) must fold ``i`` into its seed.
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
    part_index, parts = part
    if not 0 <= part_index < parts:
        raise ValueError(f"part {part}: expected (index, count) with 0 <= index < count")
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
        position = {}
        if parts > 1:
            rows = tf.shape(indices, out_type=tf.int64)[0]
            first, end = rows * part_index // parts, rows * (part_index + 1) // parts
            indices = indices[first:end]
            position = {"part": (part_index, first)}
        x, y = tf.numpy_function(gather, [indices], (tf.float32, tf.float32), stateful=False)
        x.set_shape((None, *feature_shape_))
        y.set_shape((None, targets.shape[1]))
        if transform is not None:
            x, y = transform(x, y, batch_index, **position)
            if normalize is not None:
                x = tf.numpy_function(normalize_batch, [x], tf.float32, stateful=False)
            x.set_shape((None, *transformed_shape))
        if augment is not None:
            return augment(x, y, batch_index, **position)
        return x, y

    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
