"""DCASE acoustic scene development layouts: 2020 Task 1B and 2019 Task 1A.

Both TAU Urban Acoustic Scenes development sets share one layout::

    root/meta.csv                            tab-separated: filename  scene_label  identifier [source_label]
    root/audio/<scene>-<city>-<location>-<segment>-<device>.wav
    root/evaluation_setup/fold{N}_train.csv     tab-separated: filename  scene_label
    root/evaluation_setup/fold{N}_evaluate.csv  tab-separated: filename  scene_label
    root/evaluation_setup/fold{N}_test.csv      optional, header: filename

2019 Task 1A labels the ten original scenes; 2020 Task 1B (TAU Urban Acoustic Scenes 2020 3Class)
labels three (indoor, outdoor, transportation) while the filenames keep the original scene, which
this loader records as the ``scene`` attribute. Examples are grouped by city (parsed from the
filename) because the official setup evaluates on cities unseen in training.
"""

from __future__ import annotations

from pathlib import Path

from tfasc.data.datasets._common import (
    check_files_exist,
    metadata_path,
    read_table,
    resolve_root,
)
from tfasc.data.datasets.base import DatasetError, DatasetIndex, DatasetOptionError, Example

META_COLUMNS = ("filename", "scene_label")
FILENAME_FIELDS = ("scene", "city", "location", "segment", "device")


def parse_dcase_filename(filename: str) -> dict[str, str] | None:
    """Split ``audio/<scene>-<city>-<location>-<segment>-<device>.wav`` into its five fields.

    Scene names use underscores (``street_pedestrian``), so the stem splits into exactly five
    hyphen-separated fields; any other shape returns ``None``.
    """
    parts = Path(filename).stem.split("-")
    if len(parts) != len(FILENAME_FIELDS) or not all(parts):
        return None
    return dict(zip(FILENAME_FIELDS, parts))


def _read_setup(path: Path, labels: dict[str, str], classes: set[str], *, labeled: bool) -> dict[str, int]:
    """Filenames of one evaluation-setup list (with their line numbers), checked against meta.csv."""
    what = f"evaluation setup list {path.name}"
    rows = read_table(path, delimiter="\t", required=META_COLUMNS if labeled else ("filename",), what=what)
    listed: dict[str, int] = {}
    for line, row in rows:
        filename = row["filename"]
        if filename not in labels:
            raise DatasetError(f"{path}:{line}: {filename!r} is not listed in meta.csv")
        if filename in listed:
            raise DatasetError(
                f"{path}:{line}: {filename!r} is listed twice (first on line {listed[filename]})"
            )
        if labeled:
            label = row["scene_label"]
            if label not in classes:
                raise DatasetError(
                    f"{path}:{line}: unknown scene label {label!r} for {filename!r}; "
                    f"meta.csv labels are {sorted(classes)}"
                )
            if label != labels[filename]:
                raise DatasetError(
                    f"{path}:{line}: {filename!r} is labeled {label!r} but meta.csv says {labels[filename]!r}"
                )
        listed[filename] = line
    return listed


def load_dcase_layout(root: str | Path, *, name: str, fold: int = 1) -> DatasetIndex:
    """Index a TAU Urban Acoustic Scenes development set laid out as in the module docstring.

    Args:
        root: dataset directory holding ``meta.csv``, ``audio/`` and ``evaluation_setup/``.
        name: dataset name recorded in the index (``"dcase2020_1b"`` or ``"dcase2019_1a"``).
        fold: evaluation setup fold; reads ``fold{fold}_train.csv`` and ``fold{fold}_evaluate.csv``.

    Returns:
        Every meta.csv row as an :class:`Example`: ``split`` is ``"train"`` / ``"evaluate"`` from the
        setup lists, ``"test"`` for a file only in ``fold{fold}_test.csv``, else ``None``;
        ``group`` is the city; ``attributes`` hold ``identifier``, ``scene``, ``city``,
        ``location``, ``segment``, ``device`` (the last five when the filename parses) and
        ``source_label`` where meta.csv has it. Classes are the sorted meta.csv scene labels.
    """
    if isinstance(fold, bool) or not isinstance(fold, int) or fold < 1:
        raise DatasetOptionError(f"option fold={fold!r} must be a positive integer")
    root = resolve_root(root, name)
    meta_path = root / "meta.csv"
    meta_rows = read_table(meta_path, delimiter="\t", required=META_COLUMNS, what=f"{name} meta.csv")
    labels: dict[str, str] = {}
    paths: dict[str, tuple[Path, int]] = {}
    for line, row in meta_rows:
        if row["filename"] in labels:
            raise DatasetError(f"{meta_path}:{line}: {row['filename']!r} is listed twice")
        if not row["scene_label"]:
            raise DatasetError(f"{meta_path}:{line}: empty scene_label for {row['filename']!r}")
        labels[row["filename"]] = row["scene_label"]
        paths[row["filename"]] = (metadata_path(root, row["filename"], metadata=meta_path, line=line), line)
    if not labels:
        raise DatasetError(f"{meta_path}: no rows below the header")
    classes = set(labels.values())
    check_files_exist(paths.values(), meta_path)

    setup = root / "evaluation_setup"
    train = _read_setup(setup / f"fold{fold}_train.csv", labels, classes, labeled=True)
    evaluate = _read_setup(setup / f"fold{fold}_evaluate.csv", labels, classes, labeled=True)
    both = sorted(set(train) & set(evaluate))
    if both:
        raise DatasetError(
            f"{setup / f'fold{fold}_evaluate.csv'}:{evaluate[both[0]]}: {both[0]!r} is also in "
            f"fold{fold}_train.csv ({len(both)} file(s) in both lists)"
        )
    test_path = setup / f"fold{fold}_test.csv"
    test = _read_setup(test_path, labels, classes, labeled=False) if test_path.exists() else {}

    examples = []
    for _, row in meta_rows:
        filename = row["filename"]
        split = "train" if filename in train else "evaluate" if filename in evaluate else (
            "test" if filename in test else None
        )
        parsed = parse_dcase_filename(filename) or {}
        attributes = {"identifier": row.get("identifier", ""), **parsed}
        if "source_label" in row:
            attributes["source_label"] = row["source_label"]
            attributes.setdefault("device", row["source_label"])
        examples.append(
            Example(
                path=paths[filename][0],
                labels=(labels[filename],),
                split=split,
                group=parsed.get("city"),
                attributes=attributes,
            )
        )
    return DatasetIndex(name=name, examples=tuple(examples), classes=tuple(sorted(classes)))


def load_dcase2020_1b(root: str | Path, *, fold: int = 1) -> DatasetIndex:
    """DCASE 2020 Task 1B (TAU Urban Acoustic Scenes 2020 3Class) development set.

    See :func:`load_dcase_layout`.
    """
    return load_dcase_layout(root, name="dcase2020_1b", fold=fold)


def load_dcase2019_1a(root: str | Path, *, fold: int = 1) -> DatasetIndex:
    """DCASE 2019 Task 1A (TAU Urban Acoustic Scenes 2019) development set; see :func:`load_dcase_layout`."""
    return load_dcase_layout(root, name="dcase2019_1a", fold=fold)
