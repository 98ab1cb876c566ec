"""On-disk feature cache keyed by what the features depend on, that checks itself shard by shard.

The key hashes the feature parameters, the audio reading parameters and every file's path, size
and modification time, so changing any of them selects a different entry: a stale cache is never
reused. An entry is built in a temporary folder ``.<key>.tmp-*`` beside it and renamed into place
when complete, so an interrupted build leaves nothing that looks valid.

Layout of ``cache_dir``::

    <key>/features.npy      [examples, *feature_shape]; the first ``rows`` rows are valid
    <key>/index.json        rows, kept/skipped files, the shards, size of features.npy, SHA-256 of its
                            header, and what a human needs to recognise the entry (created,
                            description, shape, parameters)
    <key>/last_used         empty; its mtime orders least-recently-used eviction
    .<key>.tmp-*/writer.lock  held (flock) by the building process for as long as it lives

An entry is one memory-mapped ``features.npy`` (training gathers rows at random by example index)
cut into **shards**: contiguous ranges of clips in file order (:data:`SHARD_CLIPS` each, the last one
shorter), built in parallel by worker processes (:func:`tfasc.data.pipeline.extract_features`). The
kept rows of a shard are contiguous too, and the shards' rows follow each other in clip order.
``index.json`` (format 3) records for each shard::

    {"first_clip": 0, "clips": 1024, "first_row": 0, "rows": 1023, "bytes": ..., "sha256": ...}

``bytes`` and ``sha256`` cover the shard's rows in ``features.npy``, which start at byte
``header.bytes + first_row * row_bytes``. Rows past ``rows`` (room left by skipped files) are in the
file but in no shard; readers slice them off.

A committed entry is never modified in place, so the size and checksums recorded at commit tell a
damaged entry (truncated, bit-flipped, index lost) from a good one. One whose shards alone fail
their checksums is repaired: the caller recomputes those shards' clips into a copy of the entry,
checks them against the recorded checksums and commits the copy in its place
(:func:`read_entry` with ``repair``). Any other damage (or a repair that does not reproduce the
recorded bytes) removes the entry, with a log line, and it is rebuilt: never reused. Entries of an
older index format (format 2 had one checksum of the whole file) count as damaged and are rebuilt.
Kept free of TensorFlow so that ``python -m tfasc.cache`` starts instantly.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from tfasc.errors import UserError
from tfasc.files import remove, replace, sha256_file, temporary_sibling
from tfasc.log import log

CACHE_FORMAT = 1
"""Hashed into every key; bump it when the meaning of an entry's files changes."""
INDEX_FORMAT = 3
"""``index.json`` layout; format 3 records the shards, each with the size and SHA-256 of its rows."""
SHARD_CLIPS = 256
"""Clips per shard (the last one of an entry holds the rest): the unit of parallel extraction, of
verification and of repair. Small enough that the 9,185 training clips of DCASE 2020 1B make 36
shards to share among the workers of a many-core machine, large enough that each shard's work
(256 clips of 10 s stereo at 48 kHz: ~120 MB of float16 log-mels at hop 1024) dwarfs a worker's
start (importing TensorFlow: seconds)."""
FEATURES_FILE = "features.npy"
INDEX_FILE = "index.json"
LAST_USED_FILE = "last_used"
LOCK_FILE = "writer.lock"
KEY_LENGTH = 24
# A temporary folder without a lock file is either a writer between creating it and locking it
# (microseconds), a folder ``tfasc.files.replace`` moved aside (milliseconds), or left by a process
# killed in between: old enough, it can only be the last.
_LOCKLESS_GRACE_S = 300.0

_ENTRY_NAME = re.compile(rf"[0-9a-f]{{{KEY_LENGTH}}}")
_TEMP_NAME = re.compile(rf"\.[0-9a-f]{{{KEY_LENGTH}}}\.tmp-.+")


class CacheError(UserError):
    """A cache folder or entry the user named that does not exist."""


class DamagedEntry(Exception):
    """An entry whose files disagree with its index; the message says how."""


class DamagedShards(DamagedEntry):
    """An entry whose index and header are good but whose ``shards`` (numbers) fail their checksums."""

    def __init__(self, message: str, shards: list[int], index: dict):
        super().__init__(message)
        self.shards = shards
        self.index = index


@dataclass(frozen=True)
class EntryInfo:
    """One folder of a cache as ``python -m tfasc.cache list`` shows it."""

    path: Path
    size: int
    last_used: float
    """Seconds since the epoch."""
    status: str
    """``ok``, ``damaged``, ``orphan`` (left by an interrupted build) or ``building`` (a live writer)."""
    index: dict | None = None
    problem: str | None = None
    """Why the entry is damaged."""

    @property
    def key(self) -> str:
        return self.path.name


# -- keys ---------------------------------------------------------------------------------------


def file_fingerprint(path: Path) -> list:
    """``[path, size, mtime_ns]``, or ``[path, None, None]`` for a file that cannot be stat'ed."""
    try:
        stat = os.stat(path)
    except OSError:
        return [str(path), None, None]
    return [str(path), stat.st_size, stat.st_mtime_ns]


def cache_key(parameters: dict, paths: Iterable[Path]) -> str:
    """Hex digest of the parameters and the fingerprint of every file, in order."""
    payload = {
        "format": CACHE_FORMAT,
        "parameters": parameters,
        "files": [file_fingerprint(Path(p)) for p in paths],
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


def is_entry_name(name: str) -> bool:
    """Only folders named like a key are entries: anything else in the folder is left alone."""
    return bool(_ENTRY_NAME.fullmatch(name))


def is_temp_name(name: str) -> bool:
    return bool(_TEMP_NAME.fullmatch(name))


# -- small file helpers -------------------------------------------------------------------------


def tree_size(path: Path) -> int:
    """Bytes of every file under ``path`` (files that vanish meanwhile count 0)."""
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def format_size(size: int) -> str:
    """Decimal units, like ``data.cache_max_gb``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def mark_used(entry: Path) -> None:
    """Record that ``entry`` was just read or written (the eviction order)."""
    try:
        (entry / LAST_USED_FILE).touch()
    except OSError:
        pass  # removed meanwhile by another process: nothing left to order


def last_used(entry: Path) -> float:
    """When ``entry`` was last read or written (its stamp, else its index, else the folder)."""
    for path in (entry / LAST_USED_FILE, entry / INDEX_FILE, entry):
        stamp = _mtime(path)
        if stamp is not None:
            return stamp
    return 0.0


# -- shards -------------------------------------------------------------------------------------


def shard_spans(num_clips: int, shard_clips: int = SHARD_CLIPS) -> list[tuple[int, int]]:
    """``(first_clip, clips)`` of each shard of an entry of ``num_clips`` clips, in order."""
    if shard_clips < 1:
        raise ValueError(f"shard_clips must be at least 1, got {shard_clips}")
    return [(first, min(shard_clips, num_clips - first)) for first in range(0, num_clips, shard_clips)]


def shard_record(first_clip: int, clips: int, first_row: int, rows: int, row_bytes: int, sha256: str) -> dict:
    """One shard of ``index.json``: its clips, its rows (kept clips) and the size and SHA-256 of their bytes."""
    return {"first_clip": first_clip, "clips": clips, "first_row": first_row, "rows": rows,
            "bytes": rows * row_bytes, "sha256": sha256}


def describe_shard(number: int, shard: dict) -> str:
    """``shard 3 (clips 3072-4095)``: how log lines name a shard."""
    first, clips = shard["first_clip"], shard["clips"]
    return f"shard {number} (clips {first}-{first + clips - 1})"


def npy_data_offset(path: Path) -> int:
    """Bytes of the ``.npy`` header of ``path``: where its first row starts.

    Raises:
        ValueError: not a ``.npy`` file.
    """
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            np.lib.format.read_array_header_1_0(handle)
        else:
            np.lib.format.read_array_header_2_0(handle)
        return handle.tell()


def _check_shards(index: dict) -> None:
    """The shards cover the clips ``0..n`` and the rows ``0..rows`` in order, and agree with ``kept``.

    Raises:
        DamagedEntry: saying what does not fit.
    """
    shards, row_bytes = index["shards"], index["row_bytes"]
    kept = np.sort(np.array([i for i in index["kept"] if isinstance(i, int)], np.int64))
    fields = ("first_clip", "clips", "first_row", "rows", "bytes")
    next_clip = next_row = 0
    for number, shard in enumerate(shards):
        if not (isinstance(shard, dict) and all(isinstance(shard.get(f), int) for f in fields)
                and isinstance(shard.get("sha256"), str)):
            raise DamagedEntry(f"{INDEX_FILE} has a malformed shard {number}")
        kept_here = int(np.searchsorted(kept, shard["first_clip"] + shard["clips"]) - np.searchsorted(kept, shard["first_clip"]))
        if (shard["first_clip"] != next_clip or shard["first_row"] != next_row or shard["clips"] < 1
                or not 0 <= shard["rows"] <= shard["clips"] or shard["bytes"] != shard["rows"] * row_bytes
                or kept_here != shard["rows"]):
            raise DamagedEntry(f"{INDEX_FILE} has an inconsistent {describe_shard(number, shard)}")
        next_clip += shard["clips"]
        next_row += shard["rows"]
    if next_row != index["rows"]:
        raise DamagedEntry(f"{INDEX_FILE}: its shards hold {next_row} rows, not the {index['rows']} it says")


# -- reading and verifying ----------------------------------------------------------------------


def load_index(entry: Path) -> dict:
    """The entry's ``index.json``, checked for the keys a reader relies on and the consistency of its shards.

    Raises:
        DamagedEntry: missing, unreadable, not JSON, inconsistent, or of an older format (without shards).
    """
    try:
        index = json.loads((entry / INDEX_FILE).read_text())
    except FileNotFoundError:
        raise DamagedEntry(f"{INDEX_FILE} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DamagedEntry(f"{INDEX_FILE} is unreadable ({type(error).__name__})") from None
    if not isinstance(index, dict):
        raise DamagedEntry(f"{INDEX_FILE} is not a mapping")
    if index.get("format") != INDEX_FORMAT:
        raise DamagedEntry(f"{INDEX_FILE} has format {index.get('format')}, expected {INDEX_FORMAT} (older tfasc)")
    expected = {"rows": int, "kept": list, "skipped": list, "size": int, "row_bytes": int, "header": dict, "shards": list}
    wrong = [key for key, kind in expected.items() if not isinstance(index.get(key), kind)]
    header = index.get("header")
    if isinstance(header, dict) and not (isinstance(header.get("bytes"), int) and isinstance(header.get("sha256"), str)):
        wrong.append("header")
    if wrong:
        raise DamagedEntry(f"{INDEX_FILE} lacks a valid {', '.join(wrong)}")
    _check_shards(index)
    if index["header"]["bytes"] + index["rows"] * index["row_bytes"] > index["size"]:
        raise DamagedEntry(f"{INDEX_FILE}: its {index['rows']} rows do not fit in {index['size']} bytes")
    return index


def verify_entry(entry: Path, *, checksum: bool = True, threads: int | None = None) -> dict:
    """The index of ``entry`` after checking ``features.npy`` against it: size, then the SHA-256 of its
    header and of every shard (``threads`` at a time; default up to 8).

    Raises:
        DamagedShards: only shards fail their checksums (the message names them).
        DamagedEntry: anything else that does not match.
    """
    index = load_index(entry)
    features_path = entry / FEATURES_FILE
    try:
        size = os.stat(features_path).st_size
    except OSError:
        raise DamagedEntry(f"{FEATURES_FILE} is missing") from None
    if size != index["size"]:
        raise DamagedEntry(f"{FEATURES_FILE} is {size} bytes, the index recorded {index['size']} (truncated or overwritten)")
    if not checksum:
        return index
    header, shards = index["header"], index["shards"]
    offset, row_bytes = header["bytes"], index["row_bytes"]
    ranges = [(0, header["bytes"])] + [(offset + s["first_row"] * row_bytes, s["bytes"]) for s in shards]
    workers = max(1, min(len(ranges), threads or min(8, os.cpu_count() or 1)))
    try:
        with ThreadPoolExecutor(workers) as pool:
            digests = list(pool.map(lambda span: sha256_file(features_path, offset=span[0], length=span[1]), ranges))
    except OSError as error:
        raise DamagedEntry(f"{FEATURES_FILE} is unreadable ({error.strerror or error})") from None
    if digests[0] != header["sha256"]:
        raise DamagedEntry(f"{FEATURES_FILE}'s header does not match its SHA-256 checksum (corrupted on disk)")
    damaged = [n for n, (shard, digest) in enumerate(zip(shards, digests[1:])) if digest != shard["sha256"]]
    if damaged:
        names = ", ".join(describe_shard(n, shards[n]) for n in damaged)
        raise DamagedShards(f"{names} of {FEATURES_FILE} {'does' if len(damaged) == 1 else 'do'} not match "
                            f"{'its' if len(damaged) == 1 else 'their'} SHA-256 checksum (corrupted on disk)", damaged, index)
    return index


def open_features(entry: Path, index: dict) -> np.ndarray:
    """The valid rows of ``features.npy``, memory-mapped read-only.

    Raises:
        DamagedEntry: an unreadable ``.npy`` header, or fewer rows than the index says.
    """
    try:
        features = np.load(entry / FEATURES_FILE, mmap_mode="r")
    except (OSError, ValueError, EOFError) as error:
        raise DamagedEntry(f"{FEATURES_FILE} is unreadable ({error})") from None
    rows = index["rows"]
    if features.ndim == 0 or len(features) < rows or len(index["kept"]) != rows:
        raise DamagedEntry(f"{FEATURES_FILE} of shape {features.shape} does not hold the {rows} rows of the index")
    return features[:rows]


Repair = Callable[[Path, dict, list], None]
"""``repair(entry, index, shards)``: recompute the damaged ``shards`` of ``entry`` and commit it
again (:meth:`EntryWriter.copy_of`); raises :class:`DamagedEntry` when that does not reproduce them."""


def read_entry(entry: Path, *, verify: bool = True, repair: Repair | None = None) -> tuple[np.ndarray, dict] | None:
    """The cached features (memory-mapped, read-only) and index of a good entry, else None.

    A damaged entry is removed with a log line saying why, and None returned: the caller
    (``extract_features``) then rebuilds it. When only shards fail their checksums and ``repair`` is
    given, it recomputes them instead (logged, naming the shards); if that fails the entry is
    removed as above. ``verify=False`` skips the checksums (only for an entry this process has just
    committed).
    """
    entry = Path(entry)
    if not os.path.lexists(entry):
        return None
    repaired = False
    while True:
        try:
            if not entry.is_dir():
                raise DamagedEntry("it is not a folder")
            index = verify_entry(entry, checksum=verify)
            features = open_features(entry, index)
            break
        except DamagedShards as damage:
            if repair is None or repaired:
                failure = damage
            else:
                log(f"cache entry {entry.name} is damaged ({damage}); recomputing "
                    f"{'that shard' if len(damage.shards) == 1 else 'those shards'}")
                try:
                    repair(entry, damage.index, damage.shards)
                    repaired = True
                    continue  # verify the repaired entry from scratch
                except DamagedEntry as error:
                    failure = DamagedEntry(f"the repair failed: {error}")
                except (OSError, UserError, RuntimeError) as error:  # no room for the copy, a worker failed: rebuild
                    failure = DamagedEntry(f"the repair failed ({type(error).__name__}: {str(error)[:200]})")
        except DamagedEntry as damage:
            failure = damage
        log(f"cache entry {entry.name} is damaged ({failure}); removing it and rebuilding")
        remove(entry)
        return None
    mark_used(entry)
    return features, index


# -- writing ------------------------------------------------------------------------------------


def _hold_lock(folder: Path) -> int:
    """Create ``folder/writer.lock`` already locked, and return its descriptor (keep it open).

    The file is locked under a staging name no one else looks at, then renamed: a cleaner never
    sees the lock file unlocked while its writer lives. The kernel drops the lock when the process
    ends, however it ends.
    """
    staging = folder / f"{LOCK_FILE}.new"
    descriptor = os.open(staging, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(staging, folder / LOCK_FILE)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


class EntryWriter:
    """Write one cache entry into a locked temporary folder beside ``entry``; ``commit`` renames it into place.

    ``features`` is the memory-mapped ``features.npy`` being written, at ``features_path``: other
    processes may open it too (``np.lib.format.open_memmap(path, mode="r+")``) and write their rows.
    """

    def __init__(self, entry: Path, shape: tuple[int, ...] | None, dtype=np.float16, *, copy_from: Path | None = None):
        self.entry = Path(entry)
        self.tmp = temporary_sibling(self.entry, directory=True)
        self._lock: int | None = None
        self.features_path = self.tmp / FEATURES_FILE
        try:
            self._lock = _hold_lock(self.tmp)
            if copy_from is not None:
                shutil.copyfile(copy_from, self.features_path)
                self.features = np.lib.format.open_memmap(self.features_path, mode="r+")
            else:
                self.features = np.lib.format.open_memmap(self.features_path, mode="w+", dtype=dtype, shape=shape)
        except BaseException:
            self.abort()
            raise

    @classmethod
    def copy_of(cls, entry: Path) -> "EntryWriter":
        """A writer of a copy of the committed ``entry`` (to repair shards of it): commit replaces the entry."""
        entry = Path(entry)
        return cls(entry, None, copy_from=entry / FEATURES_FILE)

    def commit(self, rows: int, index: dict) -> Path:
        """Keep the first ``rows`` rows, write the index and rename the entry into place.

        ``index["shards"]`` (:func:`shard_record`) lists the shards with the checksums of their rows
        as written; the size of the file and the SHA-256 of its header are added here.
        """
        # Rows past ``rows`` (room left by skipped files) stay in the file; readers slice them off.
        try:
            self.features.flush()
            row_bytes = int(np.prod(self.features.shape[1:], dtype=np.int64)) * self.features.dtype.itemsize
            self.features = None
            header = npy_data_offset(self.features_path)
            record = {
                **index,
                "format": INDEX_FORMAT,
                "created": index.get("created") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "rows": rows,
                "size": os.stat(self.features_path).st_size,
                "row_bytes": row_bytes,
                "header": {"bytes": header, "sha256": sha256_file(self.features_path, length=header)},
            }
            (self.tmp / INDEX_FILE).write_text(json.dumps(record, indent=1))
            (self.tmp / LAST_USED_FILE).touch()
            # Unlocked but seconds old, the folder is still safe from cleaners (_LOCKLESS_GRACE_S).
            (self.tmp / LOCK_FILE).unlink()
            path = replace(self.tmp, self.entry)
        except BaseException:
            self.abort()
            raise
        self._release()
        return path

    def abort(self) -> None:
        self.features = None
        remove(self.tmp)
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


# -- orphans, eviction, listing -----------------------------------------------------------------


def temp_is_orphan(tmp: Path, *, now: float | None = None) -> bool:
    """True when no live process is building in ``tmp``: its lock can be taken, or it has none and is old."""
    try:
        descriptor = os.open(tmp / LOCK_FILE, os.O_RDWR)
    except FileNotFoundError:
        stamp = _mtime(tmp)
        return stamp is not None and (now or time.time()) - stamp > _LOCKLESS_GRACE_S
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # held: a build in progress
    finally:
        os.close(descriptor)  # also releases the lock we may have taken
    return True


def _children(cache_dir: Path) -> list[Path]:
    try:
        return sorted(Path(cache_dir).iterdir())
    except OSError:
        return []


def entries(cache_dir: Path) -> list[Path]:
    """Folders of ``cache_dir`` named like a key (complete entries, good or damaged)."""
    return [p for p in _children(cache_dir) if is_entry_name(p.name)]


def temporaries(cache_dir: Path) -> list[Path]:
    """Temporary build folders ``.<key>.tmp-*`` of ``cache_dir``, live or orphaned."""
    return [p for p in _children(cache_dir) if is_temp_name(p.name) and p.is_dir()]


def clean_orphans(cache_dir: Path) -> list[tuple[Path, int]]:
    """Remove the temporary folders left by interrupted builds (never a live one); ``(path, size)`` of each."""
    removed = []
    for tmp in temporaries(cache_dir):
        if temp_is_orphan(tmp):
            size = tree_size(tmp)
            remove(tmp)
            log(f"removed {format_size(size)} left in the feature cache by an interrupted build ({tmp.name})")
            removed.append((tmp, size))
    return removed


def enforce_cap(cache_dir: Path, max_bytes: int, *, keep: Path, used_since: float | None = None) -> list[tuple[Path, int]]:
    """Evict least-recently-used entries other than ``keep`` until the cache holds at most ``max_bytes``.

    ``keep`` (the entry just written) stays even when it alone exceeds the cap: it is about to be read.
    So do entries used at or after ``used_since`` (seconds since the epoch): the other splits of the
    run that is preparing its data, which would otherwise evict each other on every run.
    Returns ``(path, size)`` of each evicted entry.
    """
    keep = Path(keep)
    sizes = {entry: tree_size(entry) for entry in entries(cache_dir)}
    protected = {keep} | ({e for e in sizes if last_used(e) >= used_since} if used_since is not None else set())
    total = sum(sizes.values())
    if sizes.get(keep, 0) > max_bytes:
        log(f"cache entry {keep.name} ({format_size(sizes[keep])}) alone exceeds data.cache_max_gb "
            f"({format_size(max_bytes)}); keeping it")
    evicted = []
    for entry in sorted((e for e in sizes if e not in protected), key=last_used):
        if total <= max_bytes:
            break
        remove(entry)
        total -= sizes[entry]
        log(f"evicted cache entry {entry.name} ({format_size(sizes[entry])}, least recently used) "
            f"to keep the cache under data.cache_max_gb ({format_size(max_bytes)})")
        evicted.append((entry, sizes[entry]))
    return evicted


def describe(entry: Path, *, checksum: bool = False) -> EntryInfo:
    """What ``entry`` holds and whether it is damaged (without the checksum unless asked: it reads every byte)."""
    size, used = tree_size(entry), last_used(entry)
    try:
        index = verify_entry(entry, checksum=checksum)
        open_features(entry, index)
    except DamagedEntry as damage:
        return EntryInfo(entry, size, used, "damaged", problem=str(damage))
    return EntryInfo(entry, size, used, "ok", index=index)


def scan(cache_dir: Path, *, checksum: bool = False) -> list[EntryInfo]:
    """Every entry and temporary folder of ``cache_dir``, entries first."""
    infos = [describe(entry, checksum=checksum) for entry in entries(cache_dir)]
    for tmp in temporaries(cache_dir):
        status = "orphan" if temp_is_orphan(tmp) else "building"
        infos.append(EntryInfo(tmp, tree_size(tmp), last_used(tmp), status))
    return infos


def require_dir(cache_dir: Path | str) -> Path:
    """``cache_dir`` as a Path; a missing folder is the user's to fix.

    Raises:
        CacheError: when it is not a folder.
    """
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        raise CacheError(f"{cache_dir}: no feature cache folder there (data.cache_dir of the recipe; default .tfasc_cache)")
    return cache_dir
