"""Helpers shared by the layout loaders: reading metadata tables and checking files on disk.

Every error is a :class:`~tfasc.data.datasets.base.DatasetError` that names the file (and the line,
where a row is at fault) and says what the layout expected. Every audio path a metadata row names
goes through :func:`metadata_path`, which keeps it inside the folder the layout reads it from.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Iterable, Sequence

from tfasc.data.datasets.base import DatasetError, DatasetOptionError

#: How many missing files an error message lists before it only gives the count.
MISSING_LISTED = 5

Row = tuple[int, dict[str, str]]


def resolve_root(root: str | Path, dataset: str) -> Path:
    """Absolute dataset root; a missing or non-directory root is a :class:`DatasetError`."""
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise DatasetError(f"{path}: {dataset} root directory not found")
    return path


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a file, else a :class:`DatasetError` saying which layout file is missing."""
    if not path.is_file():
        raise DatasetError(f"{path}: {what} not found")
    return path


def read_table(path: Path, *, delimiter: str, required: Sequence[str], what: str) -> list[Row]:
    """Rows of a delimited text table with a header line, as ``(line_number, {column: value})``.

    Values are stripped of surrounding whitespace; blank lines are skipped; extra columns are kept.
    A missing file, a header lacking one of ``required`` columns or a row with fewer fields than
    the header is a :class:`DatasetError` naming the file (and line).
    """
    require_file(path, what)
    sep_name = "tab" if delimiter == "\t" else repr(delimiter)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise DatasetError(f"{path}: {what} is empty; expected a header with {list(required)}")
        header = [name.strip() for name in header]
        absent = [name for name in required if name not in header]
        if absent:
            raise DatasetError(
                f"{path}:1: header {header} lacks column(s) {absent}; expected {list(required)} "
                f"({sep_name}-separated)"
            )
        rows: list[Row] = []
        for fields in reader:
            if not any(field.strip() for field in fields):
                continue
            if len(fields) < len(header):
                raise DatasetError(
                    f"{path}:{reader.line_num}: {len(fields)} field(s) {fields}, expected "
                    f"{len(header)} ({sep_name}-separated columns {header})"
                )
            rows.append((reader.line_num, {h: f.strip() for h, f in zip(header, fields)}))
    return rows


def parse_int(value: str, *, path: Path, line: int, column: str) -> int:
    """``int(value)`` or a :class:`DatasetError` naming the file, line and column."""
    try:
        return int(value)
    except ValueError:
        raise DatasetError(f"{path}:{line}: column {column!r} is {value!r}, expected an integer") from None


def metadata_path(base: Path, name: str, *, metadata: Path, line: int) -> Path:
    """The audio file a metadata row names: ``base / name``, which must stay inside ``base``.

    ``base`` is the folder the layout resolves the metadata's file names against (the dataset root
    for DCASE, ``root/audio`` for ESC-50, ``root/audio/fold<N>`` for UrbanSound8K); it is already
    absolute and resolved (:func:`resolve_root`). An empty name, an absolute path (POSIX or with a
    Windows drive) or a relative path that ``..`` leads outside ``base`` is a :class:`DatasetError`
    naming the metadata file, the line and the path.

    The check is lexical (``os.path.normpath``), on what the metadata says: symbolic links inside
    the dataset are followed and not checked, so an ``audio/`` folder linked to another disk keeps
    working. The returned path is normalised (no ``.`` or ``..`` parts).
    """
    if not name:
        raise DatasetError(f"{metadata}:{line}: empty audio file name")
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        raise DatasetError(
            f"{metadata}:{line}: audio path {name!r} is absolute; metadata paths must be relative to {base}"
        )
    joined = os.path.normpath(os.path.join(base, name))
    if os.path.commonpath([joined, os.path.normpath(base)]) != os.path.normpath(base):
        raise DatasetError(
            f"{metadata}:{line}: audio path {name!r} leads outside {base} (to {joined}); "
            "metadata paths must stay inside the dataset"
        )
    return Path(joined)


def check_files_exist(listed: Iterable[tuple[Path, int]], metadata: Path) -> None:
    """Raise if any ``(audio_path, line)`` listed in ``metadata`` is not a file on disk.

    One missing file is named with its line; many are reported as a count plus the first few, so a
    half-extracted archive gives one readable message.
    """
    missing = [(path, line) for path, line in listed if not path.is_file()]
    if not missing:
        return
    shown = "; ".join(f"line {line}: {path}" for path, line in missing[:MISSING_LISTED])
    if len(missing) == 1:
        raise DatasetError(f"{metadata}: audio file listed on {shown} does not exist")
    more = f" (first {MISSING_LISTED})" if len(missing) > MISSING_LISTED else ""
    raise DatasetError(
        f"{metadata}: {len(missing)} audio files listed do not exist{more}: {shown}"
    )


def classes_by_index(pairs: Iterable[tuple[int, str, int]], path: Path, what: str) -> tuple[str, ...]:
    """Class names ordered by their integer index, from ``(index, name, line)`` triples.

    An index naming two classes (or a class with two indices) is a :class:`DatasetError`.
    """
    by_index: dict[int, str] = {}
    index_of: dict[str, int] = {}
    for index, name, line in pairs:
        if by_index.setdefault(index, name) != name:
            raise DatasetError(
                f"{path}:{line}: {what} {index} is {name!r} here but {by_index[index]!r} earlier"
            )
        if index_of.setdefault(name, index) != index:
            raise DatasetError(
                f"{path}:{line}: class {name!r} has {what} {index} here but {index_of[name]} earlier"
            )
    return tuple(by_index[i] for i in sorted(by_index))


def check_option_in(name: str, value, valid: Iterable) -> None:
    """``ValueError`` naming the option when ``value`` is not one of ``valid``."""
    valid = list(valid)
    if value not in valid:
        raise DatasetOptionError(f"option {name}={value!r} is not one of {valid}")
