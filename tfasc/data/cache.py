"""On-disk feature cache keyed by what the features depend on, that checks itself.

The key hashes the feature parameters, the audio reading parameters and every file's path, size
and modification time, so changing any of them selects a different entry: a stale cache is never
reused. An entry is built in a temporary folder ``.<key>.tmp-*`` beside it and renamed into place
when complete, so an interrupted build leaves nothing that looks valid.

Layout of ``cache_dir``::

    <key>/features.npy      [examples, *feature_shape]; the first ``rows`` rows are valid
    <key>/index.json        rows, kept/skipped files, size and SHA-256 of features.npy, and what a
                            human needs to recognise the entry (created, description, shape, parameters)
    <key>/last_used         empty; its mtime orders least-recently-used eviction
    .<key>.tmp-*/writer.lock  held (flock) by the building process for as long as it lives

A committed entry is never modified, so the size and checksum recorded at commit tell a damaged
entry (truncated, bit-flipped, index lost) from a good one: it is removed, logged and rebuilt,
never reused. Kept free of TensorFlow so that ``python -m tfasc.cache`` starts instantly.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import numpy as np

from tfasc.errors import UserError
from tfasc.files import remove, replace, sha256_file, temporary_sibling
from tfasc.log import log

CACHE_FORMAT = 1
"""Hashed into every key; bump it when the meaning of an entry's files changes."""
INDEX_FORMAT = 2
"""``index.json`` layout; format 2 records the size and SHA-256 of ``features.npy``."""
FEATURES_FILE = "features.npy"
INDEX_FILE = "index.json"
LAST_USED_FILE = "last_used"
LOCK_FILE = "writer.lock"
KEY_LENGTH = 24
_BLOCK = 1 << 20
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


# -- reading and verifying ----------------------------------------------------------------------


def load_index(entry: Path) -> dict:
    """The entry's ``index.json``, checked for the keys a reader relies on.

    Raises:
        DamagedEntry: missing, unreadable, not JSON, or of an older format without a checksum.
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
    expected = {"rows": int, "kept": list, "skipped": list, "size": int, "sha256": str}
    wrong = [key for key, kind in expected.items() if not isinstance(index.get(key), kind)]
    if wrong:
        raise DamagedEntry(f"{INDEX_FILE} lacks a valid {', '.join(wrong)}")
    return index


def verify_entry(entry: Path, *, checksum: bool = True) -> dict:
    """The index of ``entry`` after checking ``features.npy`` against it (size, then SHA-256).

    Raises:
        DamagedEntry: saying what does not match.
    """
    index = load_index(entry)
    features_path = entry / FEATURES_FILE
    try:
        size = os.stat(features_path).st_size
    except OSError:
        raise DamagedEntry(f"{FEATURES_FILE} is missing") from None
    if size != index["size"]:
        raise DamagedEntry(f"{FEATURES_FILE} is {size} bytes, the index recorded {index['size']} (truncated or overwritten)")
    if checksum:
        try:
            digest = sha256_file(features_path)
        except OSError as error:
            raise DamagedEntry(f"{FEATURES_FILE} is unreadable ({error.strerror or error})") from None
        if digest != index["sha256"]:
            raise DamagedEntry(f"{FEATURES_FILE} does not match its SHA-256 checksum (corrupted on disk)")
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


def read_entry(entry: Path, *, verify: bool = True) -> tuple[np.ndarray, dict] | None:
    """The cached features (memory-mapped, read-only) and index of a good entry, else None.

    A damaged entry is removed with a log line saying why, and None returned: the caller
    (``extract_features``) then rebuilds it. ``verify=False`` skips the checksum (only for an entry
    this process has just committed).
    """
    entry = Path(entry)
    if not os.path.lexists(entry):
        return None
    try:
        if not entry.is_dir():
            raise DamagedEntry("it is not a folder")
        index = verify_entry(entry, checksum=verify)
        features = open_features(entry, index)
    except DamagedEntry as damage:
        log(f"cache entry {entry.name} is damaged ({damage}); removing it and rebuilding")
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
    """Write one cache entry into a locked temporary folder beside ``entry``; ``commit`` renames it into place."""

    def __init__(self, entry: Path, shape: tuple[int, ...], dtype=np.float16):
        self.entry = Path(entry)
        self.tmp = temporary_sibling(self.entry, directory=True)
        self._lock: int | None = None
        try:
            self._lock = _hold_lock(self.tmp)
            self.features = np.lib.format.open_memmap(self.tmp / FEATURES_FILE, mode="w+", dtype=dtype, shape=shape)
        except BaseException:
            self.abort()
            raise

    def commit(self, rows: int, index: dict) -> Path:
        """Keep the first ``rows`` rows, write the index (with size and checksum) and rename the entry into place."""
        # Rows past ``rows`` (room left by skipped files) stay in the file; readers slice them off.
        try:
            self.features.flush()
            self.features = None
            features_path = self.tmp / FEATURES_FILE
            record = {
                **index,
                "format": INDEX_FORMAT,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "rows": rows,
                "size": os.stat(features_path).st_size,
                "sha256": sha256_file(features_path),
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
