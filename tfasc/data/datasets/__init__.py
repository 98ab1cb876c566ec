"""Dataset layout loaders: ``load(name, root, **options) -> DatasetIndex``.

Each loader reads one dataset's real layout on disk (metadata tables, audio folders, official
splits) and returns a :class:`DatasetIndex` of :class:`Example` s; none decodes audio.

==================  ==========================================  ==============================
name                layout                                      options
==================  ==========================================  ==============================
``dcase2020_1b``    TAU Urban Acoustic Scenes 2020 3Class dev   ``fold``
``dcase2019_1a``    TAU Urban Acoustic Scenes 2019 dev          ``fold``
``esc50``           ESC-50                                      ``eval_fold``, ``esc10``
``urbansound8k``    UrbanSound8K                                ``eval_fold``
``audioset``        AudioSet segments CSV + audio folder        ``segments_csv``, ``labels_csv``,
                                                                ``audio_dir``, ``split``, ``missing``
``folder``          ``root/<class>/*.wav`` (+ split folders)    ``eval_fraction``
``fsdd``            Free Spoken Digit Dataset                   ``split``, ``eval_speaker``
``ravdess``         RAVDESS (``Actor_NN/`` folders)             ``vocal_channel``, ``folds``,
                                                                ``eval_fold``
==================  ==========================================  ==============================
"""

from __future__ import annotations

import difflib
import inspect
from pathlib import Path
from typing import Callable

from tfasc.data.datasets.audioset import AudioSetIndex, load_audioset
from tfasc.data.datasets.base import DatasetError, DatasetIndex, DatasetOptionError, Example
from tfasc.data.datasets.dcase import load_dcase2019_1a, load_dcase2020_1b
from tfasc.data.datasets.esc50 import load_esc50
from tfasc.data.datasets.folder import load_folder
from tfasc.data.datasets.fsdd import load_fsdd
from tfasc.data.datasets.ravdess import load_ravdess
from tfasc.data.datasets.urbansound8k import load_urbansound8k

#: Loader of every layout, by dataset name: ``fn(root, **options) -> DatasetIndex``.
LOADERS: dict[str, Callable[..., DatasetIndex]] = {
    "dcase2020_1b": load_dcase2020_1b,
    "dcase2019_1a": load_dcase2019_1a,
    "esc50": load_esc50,
    "urbansound8k": load_urbansound8k,
    "audioset": load_audioset,
    "folder": load_folder,
    "fsdd": load_fsdd,
    "ravdess": load_ravdess,
}

__all__ = [
    "LOADERS",
    "AudioSetIndex",
    "DatasetError",
    "DatasetOptionError",
    "DatasetIndex",
    "Example",
    "available",
    "load",
    "options_of",
]


def available() -> tuple[str, ...]:
    """Names of every dataset layout, sorted."""
    return tuple(sorted(LOADERS))


def options_of(name: str) -> dict[str, object]:
    """Options of loader ``name`` and their defaults (``inspect.Parameter.empty`` when required)."""
    parameters = inspect.signature(_loader(name)).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _loader(name: str) -> Callable[..., DatasetIndex]:
    if name not in LOADERS:
        close = difflib.get_close_matches(name, LOADERS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DatasetOptionError(f"unknown dataset {name!r}{hint} Available: {', '.join(available())}")
    return LOADERS[name]


def load(name: str, root: str | Path, **options) -> DatasetIndex:
    """Index dataset ``name`` stored at ``root`` (see the table in the module docstring).

    Unknown or missing options are a ``ValueError`` naming them and the valid ones; layout problems
    are a :class:`DatasetError` naming the file (and line).
    """
    loader = _loader(name)
    valid = options_of(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        hints = []
        for option in unknown:
            close = difflib.get_close_matches(option, valid, n=1)
            hints.append(f"{option!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise DatasetOptionError(
            f"unknown option(s) {', '.join(hints)} for dataset {name!r}; valid options: {', '.join(valid)}"
        )
    required = [
        key for key, default in valid.items() if default is inspect.Parameter.empty and key not in options
    ]
    if required:
        raise DatasetOptionError(f"dataset {name!r} requires option(s) {required}; valid options: {', '.join(valid)}")
    return loader(root, **options)
