"""Folder-per-class layout, for any user's own labelled recordings.

Either one folder per class, split deterministically by hashing each file's relative path::

    root/<class>/**/*.{wav,flac,mp3,ogg}

or explicit split folders, each holding class folders::

    root/train/<class>/...     -> "train"
    root/evaluate/<class>/...  -> "evaluate"
    root/test/<class>/...      -> "evaluate" when there is no evaluate/ folder, else "test"

A ``test/`` folder beside ``train/`` alone is the common "train/test" convention, so it becomes the
split training is evaluated on. Files and folders whose names start with ``.`` are ignored.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tfasc.data.datasets._common import resolve_root
from tfasc.data.datasets.base import DatasetError, DatasetIndex, DatasetOptionError, Example

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")
SPLIT_FOLDERS = ("train", "evaluate", "test")


def hash_fraction(relative_path: str) -> float:
    """A stable number in ``[0, 1)`` from a POSIX relative path (SHA-1, so identical on every machine)."""
    digest = hashlib.sha1(relative_path.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _visible_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _audio_files(class_dir: Path) -> list[Path]:
    """Audio files anywhere below ``class_dir``, sorted; an empty class folder is an error."""
    files = sorted(
        p
        for p in class_dir.rglob("*")
        if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith(".")
    )
    if not files:
        raise DatasetError(f"{class_dir}: class folder holds no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    return files


def _split_folders(root: Path) -> dict[str, str]:
    """``{folder name: split}`` when the root uses split folders, else ``{}``."""
    present = {name for name in SPLIT_FOLDERS if (root / name).is_dir()}
    if not present:
        return {}
    if "train" not in present or present == {"train"}:
        raise DatasetError(
            f"{root}: found split folder(s) {sorted(present)}; expected train/ together with "
            "evaluate/ or test/ (or no split folders, only class folders)"
        )
    test_split = "test" if "evaluate" in present else "evaluate"
    mapping = {"train": "train", "evaluate": "evaluate", "test": test_split}
    return {name: mapping[name] for name in SPLIT_FOLDERS if name in present}


def load_folder(root: str | Path, *, eval_fraction: float = 0.2) -> DatasetIndex:
    """Index a folder-per-class dataset (layouts in the module docstring).

    Args:
        root: dataset directory.
        eval_fraction: without split folders, the share of files put in ``"evaluate"``: a file
            goes there when :func:`hash_fraction` of its path relative to ``root`` is below this,
            so the split is stable across machines and as files are added. Ignored with split folders.

    Returns:
        Examples labelled by their class folder; classes are the sorted class folder names (of
        ``train/`` with split folders); attribute ``relative_path``.
    """
    is_number = isinstance(eval_fraction, (int, float)) and not isinstance(eval_fraction, bool)
    if not is_number or not 0 <= eval_fraction < 1:
        raise DatasetOptionError(f"option eval_fraction={eval_fraction!r} must be a number in [0, 1)")
    root = resolve_root(root, "folder")
    splits = _split_folders(root)
    split_roots = {root / name: split for name, split in splits.items()} if splits else {root: None}

    classes: tuple[str, ...] = ()
    examples = []
    for split_root, split in split_roots.items():
        class_dirs = _visible_dirs(split_root)
        if not class_dirs:
            raise DatasetError(f"{split_root}: no class folders (expected <class>/*.wav etc.)")
        names = tuple(d.name for d in class_dirs)
        if not classes:
            classes = names  # train/ comes first, so it fixes the vocabulary
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise DatasetError(
                f"{split_root}: class folder(s) {unknown} have no counterpart in {root / 'train'}"
            )
        for class_dir in class_dirs:
            for path in _audio_files(class_dir):
                relative = path.relative_to(root).as_posix()
                example_split = split or ("evaluate" if hash_fraction(relative) < eval_fraction else "train")
                examples.append(
                    Example(
                        path=path,
                        labels=(class_dir.name,),
                        split=example_split,
                        attributes={"relative_path": relative},
                    )
                )
    return DatasetIndex(name="folder", examples=tuple(examples), classes=classes)
