"""ESC-50 layout (Piczak, 2015): 2,000 five-second clips of 50 classes in 5 folds.

::

    root/meta/esc50.csv   filename,fold,target,category,esc10,src_file,take
    root/audio/<filename>                e.g. 1-100032-A-0.wav

Clips cut from one source recording (``src_file``) share a fold, so ``group`` is ``src_file``.
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

COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
_BOOLEAN = {"true": True, "false": False}


def load_esc50(root: str | Path, *, eval_fold: int = 1, esc10: bool = False) -> DatasetIndex:
    """Index ESC-50 for one cross-validation round.

    Args:
        root: dataset directory holding ``meta/esc50.csv`` and ``audio/``.
        eval_fold: examples of this fold are ``"evaluate"``, all others ``"train"``.
        esc10: keep only the ESC-10 subset (rows whose ``esc10`` column is ``True``).

    Returns:
        Examples with ``fold`` from the CSV and ``group=src_file``; attributes ``target``,
        ``take``, ``esc10``. Classes ordered by ``target`` (only ESC-10 classes when ``esc10``).
    """
    root = resolve_root(root, "esc50")
    meta = root / "meta" / "esc50.csv"
    rows = read_table(meta, delimiter=",", required=COLUMNS, what="ESC-50 metadata esc50.csv")
    kept = []
    for line, row in rows:
        flag = _BOOLEAN.get(row["esc10"].lower())
        if flag is None:
            raise DatasetError(f"{meta}:{line}: column 'esc10' is {row['esc10']!r}, expected True or False")
        if esc10 and not flag:
            continue
        fold = parse_int(row["fold"], path=meta, line=line, column="fold")
        target = parse_int(row["target"], path=meta, line=line, column="target")
        path = metadata_path(root / "audio", row["filename"], metadata=meta, line=line)
        kept.append((line, row, fold, target, path))
    if not kept:
        raise DatasetError(f"{meta}: no {'ESC-10 ' if esc10 else ''}rows below the header")
    folds = sorted({fold for _, _, fold, _, _ in kept})
    if eval_fold not in folds:
        raise DatasetOptionError(f"option eval_fold={eval_fold!r} is not one of the folds in {meta}: {folds}")
    classes = classes_by_index(((t, row["category"], line) for line, row, _, t, _ in kept), meta, "target")
    check_files_exist(((path, line) for line, _, _, _, path in kept), meta)
    examples = tuple(
        Example(
            path=path,
            labels=(row["category"],),
            split="evaluate" if fold == eval_fold else "train",
            fold=fold,
            group=row["src_file"],
            attributes={"target": str(target), "take": row["take"], "esc10": row["esc10"]},
        )
        for line, row, fold, target, path in kept
    )
    return DatasetIndex(name="esc50", examples=examples, classes=classes)
