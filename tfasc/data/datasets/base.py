"""Typed dataset index shared by every layout loader.

A loader reads a dataset's real layout on disk and returns a :class:`DatasetIndex`; it never
decodes audio. Splits are named ``"train"`` and ``"evaluate"`` (plus ``"test"`` where a layout has
an unlabeled test list); examples a layout puts in no split have ``split=None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from tfasc.errors import UserError


class DatasetError(UserError):
    """Metadata that does not match the layout: a missing file, an unknown label, a bad row."""


class DatasetOptionError(DatasetError):
    """A loader option (a key of the recipe's ``data`` section) that is unknown, missing or out of range."""


@dataclass(frozen=True)
class Example:
    """One audio clip.

    Attributes:
        path: absolute path of the audio file.
        labels: class names; one for single-label datasets, any number for multi-label ones.
        split: ``"train"``, ``"evaluate"``, ``"test"`` or ``None`` when the layout assigns none.
        fold: cross-validation fold number where the layout has folds (ESC-50, UrbanSound8K).
        group: what recordings are grouped by for leakage-free splits: city (DCASE),
            speaker (FSDD), source recording (ESC-50, UrbanSound8K), ...
        attributes: other metadata from the layout (device, identifier, salience, ...).
    """

    path: Path
    labels: tuple[str, ...]
    split: str | None = None
    fold: int | None = None
    group: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The single label of a single-label example."""
        if len(self.labels) != 1:
            raise DatasetError(f"{self.path}: expected exactly one label, found {list(self.labels)}")
        return self.labels[0]


@dataclass(frozen=True)
class DatasetIndex:
    """Every example of a dataset and its class vocabulary (in label-index order)."""

    name: str
    examples: tuple[Example, ...]
    classes: tuple[str, ...]
    multi_label: bool = False

    def split(self, name: str) -> tuple[Example, ...]:
        """Examples whose ``split`` is ``name``."""
        return tuple(e for e in self.examples if e.split == name)
