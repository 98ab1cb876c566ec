"""UrbanSound8K layout (Salamon et al., 2014): 8,732 clips (up to 4 s) of 10 classes in 10 folds.

::

    root/metadata/UrbanSound8K.csv   slice_file_name,fsID,start,end,salience,fold,classID,class
    root/audio/fold{fold}/<slice_file_name>

Slices of one Freesound recording (``fsID``) share a fold, so ``group`` is ``fsID``. The authors ask
for 10-fold cross-validation on the predefined folds, never a reshuffle.
"""

from __future__ import annotations

from pathlib import Path

from tfasc.data.datasets._common import (
    check_files_exist,
    classes_by_index,
    metadata_path,
    parse_int,
    read_table,
    resolve_root,
)
from tfasc.data.datasets.base import DatasetError, DatasetIndex, DatasetOptionError, Example

COLUMNS = ("slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class")


def load_urbansound8k(root: str | Path, *, eval_fold: int = 10) -> DatasetIndex:
    """Index UrbanSound8K for one cross-validation round.

    Args:
        root: dataset directory holding ``metadata/UrbanSound8K.csv`` and ``audio/fold*/``.
        eval_fold: examples of this fold are ``"evaluate"``, all others ``"train"``.

    Returns:
        Examples with ``fold`` from the CSV and ``group=fsID``; attributes ``fsID``, ``start``,
        ``end``, ``salience``, ``classID``. Classes ordered by ``classID``.
    """
    root = resolve_root(root, "urbansound8k")
    meta = root / "metadata" / "UrbanSound8K.csv"
    rows = read_table(meta, delimiter=",", required=COLUMNS, what="UrbanSound8K metadata UrbanSound8K.csv")
    if not rows:
        raise DatasetError(f"{meta}: no rows below the header")
    parsed = [
        (
            line,
            row,
            parse_int(row["fold"], path=meta, line=line, column="fold"),
            parse_int(row["classID"], path=meta, line=line, column="classID"),
        )
        for line, row in rows
    ]
    folds = sorted({fold for _, _, fold, _ in parsed})
    if eval_fold not in folds:
        raise DatasetOptionError(f"option eval_fold={eval_fold!r} is not one of the folds in {meta}: {folds}")
    classes = classes_by_index(((c, row["class"], line) for line, row, _, c in parsed), meta, "classID")

    paths = [
        metadata_path(root / "audio" / f"fold{fold}", row["slice_file_name"], metadata=meta, line=line)
        for line, row, fold, _ in parsed
    ]
    check_files_exist(((path, line) for path, (line, _, _, _) in zip(paths, parsed)), meta)
    examples = tuple(
        Example(
            path=path,
            labels=(row["class"],),
            split="evaluate" if fold == eval_fold else "train",
            fold=fold,
            group=row["fsID"],
            attributes={k: row[k] for k in ("fsID", "start", "end", "salience", "classID")},
        )
        for path, (line, row, fold, _) in zip(paths, parsed)
    )
    return DatasetIndex(name="urbansound8k", examples=examples, classes=classes)
