"""Atomic writes: a file or folder appears complete under its name or not at all.

Everything is written to a temporary sibling (same folder, so the final rename stays on one file
system) and renamed into place; a kill or an error at any point leaves the old content, never a
half-written one. Used for reports, models, bundles, cache entries and stage results alike.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


#: Glob of the names :func:`temporary_sibling` makes (``.<name>.tmp-<random>``).
TEMPORARY_GLOB = ".*.tmp-*"


def is_temporary(name: str) -> bool:
    """Whether ``name`` is one :func:`temporary_sibling` made (a leftover when its writer is gone)."""
    return fnmatch.fnmatchcase(name, TEMPORARY_GLOB)


def temporary_sibling(path: Path | str, *, directory: bool = False) -> Path:
    """A fresh temporary path beside ``path`` that keeps its suffix (``model.save`` picks the format by it).

    With ``directory`` the folder is created; otherwise the path does not exist yet.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        return Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    handle, name = tempfile.mkstemp(prefix=f".{path.stem}.tmp-", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    os.unlink(name)
    return Path(name)


def remove(path: Path | str) -> None:
    """Remove a file or a folder tree if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def replace(tmp: Path | str, path: Path | str) -> Path:
    """Rename ``tmp`` onto ``path``; a folder replaces an existing folder (old one moved aside first)."""
    tmp, path = Path(tmp), Path(path)
    if not (tmp.is_dir() and path.exists()):
        os.replace(tmp, path)
        return path
    retired = temporary_sibling(path, directory=True)
    os.rename(path, retired / path.name)  # rename cannot replace a non-empty folder
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(retired / path.name, path)  # put the old content back
        raise
    shutil.rmtree(retired, ignore_errors=True)
    return path


@contextlib.contextmanager
def atomic_path(path: Path | str, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; renamed onto ``path`` when the block succeeds.

    On any exception (or interrupt) the temporary is removed and ``path`` keeps its old content.
    """
    tmp = temporary_sibling(path, directory=directory)
    try:
        yield tmp
        replace(tmp, path)
    except BaseException:
        remove(tmp)
        raise


def write_atomic(path: Path | str, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
    return Path(path)


def sha256_file(path: Path | str, digest=None, *, offset: int = 0, length: int | None = None) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (cache entries can be gigabytes). With
    ``digest`` (a ``hashlib`` object) the file is fed into it instead and its hex digest returned.
    ``offset`` / ``length``: only ``length`` bytes from ``offset`` (hashlib releases the GIL: threads
    hash ranges of one file in parallel).

    Raises:
        OSError: unreadable, or ending before ``offset + length``.
    """
    digest = digest or hashlib.sha256()
    with open(path, "rb") as handle:
        handle.seek(offset)
        left = length
        while left is None or left > 0:
            block = handle.read(1 << 20 if left is None else min(1 << 20, left))
            if not block:
                if left is not None:
                    raise OSError(f"{path} ends {left} bytes early")
                break
            digest.update(block)
            if left is not None:
                left -= len(block)
    return digest.hexdigest()
