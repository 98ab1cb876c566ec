"""AudioSet layout (Gemmeke et al., 2017): multi-label 10-second YouTube segments.

::

    root/class_labels_indices.csv   index,mid,display_name    (527 classes)
    root/<segments_csv>             e.g. balanced_train_segments.csv
    root/audio/<clip files>         downloaded by the user

A segments CSV starts with ``#`` comment lines, then one row per segment::

    --PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"

Audio lookup rule: the audio directory is listed once (not recursively); a segment's file is the
first existing name among, in this order, ``{YTID}``, ``Y{YTID}``, ``{YTID}_{start:.3f}_{end:.3f}``,
each tried with ``.wav``, then ``.flac``, then ``.mp3`` before moving to the next name.

Downloads of AudioSet are almost never complete. With ``missing="skip"`` rows whose audio is absent
are dropped; the loader returns an :class:`AudioSetIndex` (a :class:`DatasetIndex`) whose
``skipped`` field lists the dropped YouTube ids, and logs a warning with the count.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tfasc.data.datasets._common import (
    MISSING_LISTED,
    check_option_in,
    classes_by_index,
    parse_int,
    read_table,
    require_file,
    resolve_root,
)
from tfasc.data.datasets.base import DatasetError, DatasetIndex, Example

_LOG = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3")
SPLITS = ("train", "evaluate", "test")
MISSING_POLICIES = ("error", "skip")


@dataclass(frozen=True)
class AudioSetIndex(DatasetIndex):
    """A :class:`DatasetIndex` that also records the segments dropped for lack of audio.

    Attributes:
        skipped: YouTube ids of segments whose audio file was absent (``missing="skip"``).
    """

    skipped: tuple[str, ...] = ()


def audio_candidates(ytid: str, start: float, end: float) -> list[str]:
    """File names tried for a segment, in lookup order (see the module docstring)."""
    stems = (ytid, f"Y{ytid}", f"{ytid}_{start:.3f}_{end:.3f}")
    return [stem + ext for stem in stems for ext in AUDIO_EXTENSIONS]


def read_label_vocabulary(path: Path) -> tuple[tuple[str, ...], dict[str, str]]:
    """Class names ordered by ``index`` and the ``mid -> display_name`` map of a labels CSV."""
    columns = ("index", "mid", "display_name")
    rows = read_table(path, delimiter=",", required=columns, what="AudioSet labels CSV")
    if not rows:
        raise DatasetError(f"{path}: no rows below the header")
    names: dict[str, str] = {}
    triples = []
    for line, row in rows:
        index = parse_int(row["index"], path=path, line=line, column="index")
        if row["mid"] in names:
            raise DatasetError(f"{path}:{line}: mid {row['mid']!r} is listed twice")
        names[row["mid"]] = row["display_name"]
        triples.append((index, row["display_name"], line))
    return classes_by_index(triples, path, "index"), names


def read_segments(path: Path) -> list[tuple[int, str, float, float, tuple[str, ...]]]:
    """``(line, ytid, start, end, mids)`` for every segment row of an AudioSet segments CSV."""
    require_file(path, "AudioSet segments CSV")
    segments = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            fields = next(csv.reader([text], skipinitialspace=True))
            if len(fields) != 4:
                raise DatasetError(
                    f"{path}:{line}: {len(fields)} field(s), expected 4: "
                    'YTID, start_seconds, end_seconds, "label1,label2"'
                )
            ytid, start, end, mids = (field.strip() for field in fields)
            try:
                start_s, end_s = float(start), float(end)
            except ValueError:
                raise DatasetError(f"{path}:{line}: start/end {start!r}, {end!r} are not numbers") from None
            labels = tuple(mid.strip() for mid in mids.split(",") if mid.strip())
            if not labels:
                raise DatasetError(f"{path}:{line}: segment {ytid!r} has no labels")
            segments.append((line, ytid, start_s, end_s, labels))
    return segments


def _resolve(root: Path, path: str | Path) -> Path:
    path = Path(path).expanduser()
    return path if path.is_absolute() else root / path


def load_audioset(
    root: str | Path,
    *,
    segments_csv: str | Path | Sequence[str | Path],
    eval_segments_csv: str | Path | None = None,
    labels_csv: str | Path = "class_labels_indices.csv",
    audio_dir: str | Path = "audio",
    split: str = "train",
    missing: str = "error",
) -> AudioSetIndex:
    """Index AudioSet segments CSVs as a multi-label dataset.

    Args:
        root: dataset directory; relative ``segments_csv``, ``labels_csv``, ``audio_dir`` are under it.
        segments_csv: one segments list (e.g. ``balanced_train_segments.csv``) or several (e.g. the
            balanced and the unbalanced training lists, as the ERANN and PANNs training sets).
        eval_segments_csv: a segments list whose rows are the ``"evaluate"`` split (e.g.
            ``eval_segments.csv``), so one recipe trains and evaluates; None: only ``segments_csv``.
        labels_csv: the class vocabulary (``index,mid,display_name``).
        audio_dir: directory of the clip files (lookup rule in the module docstring).
        split: the split every example of ``segments_csv`` gets (``"train"``, ``"evaluate"``, ``"test"``).
        missing: ``"error"`` raises naming the absent files; ``"skip"`` drops their rows and
            records them in :attr:`AudioSetIndex.skipped` (and logs a warning).

    Returns:
        An :class:`AudioSetIndex` with ``multi_label=True``; labels are display names, classes are
        ordered by ``index``; ``group`` is the YouTube id; attributes ``ytid``, ``start_seconds``,
        ``end_seconds``.
    """
    check_option_in("split", split, SPLITS)
    check_option_in("missing", missing, MISSING_POLICIES)
    root = resolve_root(root, "audioset")
    labels_path = _resolve(root, labels_csv)
    audio = _resolve(root, audio_dir)
    classes, display_names = read_label_vocabulary(labels_path)
    if not audio.is_dir():
        raise DatasetError(f"{audio}: AudioSet audio directory not found")
    # One directory listing instead of nine stat calls per row: unbalanced_train has 2M rows.
    present = {entry.name for entry in audio.iterdir()}
    lists = [(_resolve(root, path), split) for path in _as_list(segments_csv)]
    if eval_segments_csv is not None:
        lists.append((_resolve(root, eval_segments_csv), "evaluate"))
    examples, skipped = [], []
    for segments_path, list_split in lists:
        found, absent = _index_segments(segments_path, list_split, audio, present, display_names, labels_path)
        if absent and missing == "error":
            shown = "; ".join(
                f"line {line}: {ytid} (tried {names[0]}, ...)" for line, ytid, names in absent[:MISSING_LISTED]
            )
            raise DatasetError(
                f"{segments_path}: audio of {len(absent)} segment(s) not found in {audio}: {shown}. "
                "Pass missing='skip' to drop them."
            )
        if absent:
            _LOG.warning("%s: skipped %d of %d segments whose audio is absent from %s",
                         segments_path, len(absent), len(found) + len(absent), audio)
        if not found:
            raise DatasetError(f"{segments_path}: no segment has audio in {audio}")
        examples.extend(found)
        skipped.extend(ytid for _, ytid, _ in absent)
    return AudioSetIndex(
        name="audioset",
        examples=tuple(examples),
        classes=classes,
        multi_label=True,
        skipped=tuple(skipped),
    )


def _as_list(value) -> list:
    return [value] if isinstance(value, (str, Path)) else list(value)


def _index_segments(segments_path: Path, split: str, audio: Path, present: set[str], display_names: dict,
                    labels_path: Path) -> tuple[list[Example], list]:
    """The examples of one segments CSV whose audio is present, and ``(line, ytid, candidates)`` of
    those whose audio is not."""
    segments = read_segments(segments_path)
    if not segments:
        raise DatasetError(f"{segments_path}: no segment rows below the '#' comment header")
    examples, absent = [], []
    for line, ytid, start, end, mids in segments:
        unknown = [mid for mid in mids if mid not in display_names]
        if unknown:
            raise DatasetError(f"{segments_path}:{line}: unknown label mid(s) {unknown}, not in {labels_path}")
        candidates = audio_candidates(ytid, start, end)
        found = next((name for name in candidates if name in present), None)
        if found is None:
            absent.append((line, ytid, candidates))
            continue
        examples.append(
            Example(
                path=audio / found,
                labels=tuple(display_names[mid] for mid in mids),
                split=split,
                group=ytid,
                attributes={"ytid": ytid, "start_seconds": f"{start:.3f}", "end_seconds": f"{end:.3f}"},
            )
        )
    return examples, absent
