"""On-disk feature cache keyed by what the features depend on.

The key hashes the feature parameters, the audio reading parameters and every file's path, size
and modification time, so changing any of them selects a different entry: a stale cache is never
reused. An entry is built in a temporary folder and renamed into place when complete, so an
interrupted build leaves nothing that looks valid.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from tfasc.files import remove, replace, temporary_sibling

CACHE_FORMAT = 1
FEATURES_FILE = "features.npy"
INDEX_FILE = "index.json"


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
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def read_entry(entry: Path) -> tuple[np.ndarray, dict] | None:
    """The cached features (memory-mapped, read-only) and index of a complete entry, else None."""
    features_path, index_path = entry / FEATURES_FILE, entry / INDEX_FILE
    if not (features_path.is_file() and index_path.is_file()):
        return None
    index = json.loads(index_path.read_text())
    return np.load(features_path, mmap_mode="r")[: index["rows"]], index


class EntryWriter:
    """Write one cache entry into a temporary folder beside ``entry``; ``commit`` renames it into place."""

    def __init__(self, entry: Path, shape: tuple[int, ...], dtype=np.float16):
        self.entry = entry
        self.tmp = temporary_sibling(entry, directory=True)
        self.features = np.lib.format.open_memmap(self.tmp / FEATURES_FILE, mode="w+", dtype=dtype, shape=shape)

    def commit(self, rows: int, index: dict) -> Path:
        """Keep the first ``rows`` rows, write the index and rename the entry into place."""
        # Rows past ``rows`` (room left by skipped files) stay in the file; readers slice them off.
        self.features.flush()
        self.features = None
        (self.tmp / INDEX_FILE).write_text(json.dumps({**index, "rows": rows}))
        return replace(self.tmp, self.entry)

    def abort(self) -> None:
        self.features = None
        remove(self.tmp)
