"""Fixture writers for the dataset layout tests: tiny real WAV files and metadata in real layouts.

Each fixture returns a factory taking the rows a test spells out by hand, so a test's expectations
sit next to the data they are checked against.
"""

from __future__ import annotations

import csv
import wave
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pytest


def write_wav(path: Path, *, seconds: float = 0.01, sample_rate: int = 8000, channels: int = 1) -> Path:
    """A short valid 16-bit PCM WAV file (a quiet sine), written with the stdlib ``wave`` module."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = int(seconds * sample_rate)
    tone = (1000 * np.sin(2 * np.pi * 440 * np.arange(frames) / sample_rate)).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(np.repeat(tone[:, None], channels, axis=1).tobytes())
    return path


def write_table(path: Path, rows: Sequence[Sequence[str]], delimiter: str) -> Path:
    """Rows (header first) as a delimited text file, quoted the way the real metadata files are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return path


@pytest.fixture
def wav():
    """The :func:`write_wav` helper."""
    return write_wav


@pytest.fixture
def dcase_layout(tmp_path):
    """``make(meta, setup, missing_audio=()) -> root`` writing a DCASE development layout.

    ``meta`` is the meta.csv rows (header first); ``setup`` maps a file name such as
    ``fold1_train.csv`` to its rows (header first). Audio is written for every meta.csv filename
    except those in ``missing_audio``.
    """

    def make(meta: Sequence[Sequence[str]], setup: dict[str, Sequence[Sequence[str]]], missing_audio: Iterable[str] = ()) -> Path:
        root = tmp_path / "dcase"
        write_table(root / "meta.csv", meta, "\t")
        skip = set(missing_audio)
        for row in meta[1:]:
            if row[0] not in skip:
                write_wav(root / row[0], channels=2)
        for name, rows in setup.items():
            write_table(root / "evaluation_setup" / name, rows, "\t")
        return root

    return make


@pytest.fixture
def esc50_layout(tmp_path):
    """``make(rows, missing_audio=()) -> root`` writing ``meta/esc50.csv`` and ``audio/``."""

    def make(rows: Sequence[Sequence[str]], missing_audio: Iterable[str] = ()) -> Path:
        root = tmp_path / "ESC-50-master"
        write_table(root / "meta" / "esc50.csv", rows, ",")
        skip = set(missing_audio)
        for row in rows[1:]:
            if row[0] not in skip:
                write_wav(root / "audio" / row[0])
        return root

    return make


@pytest.fixture
def urbansound8k_layout(tmp_path):
    """``make(rows, audio_folds=None) -> root`` writing ``metadata/UrbanSound8K.csv`` and ``audio/fold*/``.

    ``audio_folds`` maps a slice file name to the fold folder its audio is written in (default:
    its metadata fold; ``None`` writes no audio for it).
    """

    def make(rows: Sequence[Sequence[str]], audio_folds: dict[str, int | None] | None = None) -> Path:
        root = tmp_path / "UrbanSound8K"
        write_table(root / "metadata" / "UrbanSound8K.csv", rows, ",")
        header = list(rows[0])
        for row in rows[1:]:
            name, fold = row[header.index("slice_file_name")], int(row[header.index("fold")])
            fold = (audio_folds or {}).get(name, fold)
            if fold is not None:
                write_wav(root / "audio" / f"fold{fold}" / name)
        return root

    return make


@pytest.fixture
def audioset_layout(tmp_path):
    """``make(labels, segments_text, audio_names, segments_name=...) -> root`` writing an AudioSet layout.

    ``labels`` are the ``class_labels_indices.csv`` rows (header first), ``segments_text`` the
    segments CSV verbatim, ``audio_names`` the files created in ``audio/``. The loader never
    decodes audio, so every file holds WAV bytes whatever its extension.
    """

    def make(
        labels: Sequence[Sequence[str]],
        segments_text: str,
        audio_names: Iterable[str],
        segments_name: str = "balanced_train_segments.csv",
    ) -> Path:
        root = tmp_path / "audioset"
        write_table(root / "class_labels_indices.csv", labels, ",")
        (root / segments_name).write_text(segments_text, encoding="utf-8")
        (root / "audio").mkdir(parents=True, exist_ok=True)
        for name in audio_names:
            write_wav(root / "audio" / name)
        return root

    return make


@pytest.fixture
def files_layout(tmp_path):
    """``make(relative_paths, subdir="data") -> root``: a WAV for each ``.wav``/``.flac``/... path, a
    text file for any other path, under ``tmp_path/subdir``."""

    def make(relative_paths: Iterable[str], subdir: str = "data") -> Path:
        root = tmp_path / subdir
        root.mkdir(parents=True, exist_ok=True)
        for relative in relative_paths:
            path = root / relative
            if path.suffix.lower() in (".wav", ".flac", ".mp3", ".ogg"):
                write_wav(path)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("not audio\n")
        return root

    return make
