"""A small synthesized dataset in AudioSet's real layout, with learnable multi-label clips.

::

    root/class_labels_indices.csv        index,mid,display_name
    root/balanced_train_segments.csv     "#" header lines, then  YTID, start, end, "mid1,mid2"
    root/unbalanced_train_segments.csv   (deliberately unbalanced: the first class in most clips)
    root/eval_segments.csv               (classes equally likely)
    root/audio/<YTID>.wav                one file per segment (a few named Y<YTID>.wav, the other lookup rule)

Each class is a sound the front-end separates: a steady tone in its own band, or noise bursts. A clip
mixes one to three classes (random level and phase) over quiet background noise.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

#: (mid, display name, sound): a tone at that frequency in Hz, or ``"bursts"`` of noise.
CLASSES = (
    ("/m/0tone1", "Low hum", 300.0),
    ("/m/0tone2", "Whistle", 1100.0),
    ("/m/0tone3", "Beep", 2400.0),
    ("/m/0burst", "Clatter", "bursts"),
)
#: How likely each class is to be a clip's first label in the unbalanced training list.
UNBALANCED_WEIGHTS = (0.72, 0.16, 0.08, 0.04)


@dataclass(frozen=True)
class Segment:
    ytid: str
    start: float
    labels: tuple[int, ...]
    """Class indices into :data:`CLASSES`."""


def class_sound(kind, samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """One class's sound, peak about 1: a tone with a random phase, or four noise bursts."""
    t = np.arange(samples) / sample_rate
    if kind == "bursts":
        envelope = (np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 2 * np.pi)) > 0.3).astype(np.float64)
        return envelope * rng.uniform(-1, 1, samples)
    return np.sin(2 * np.pi * kind * t + rng.uniform(0, 2 * np.pi))


def clip_audio(labels, samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A mix of the classes ``labels`` at random levels over background noise, float32 in [-1, 1]."""
    mix = 0.02 * rng.standard_normal(samples)
    for label in labels:
        mix += rng.uniform(0.1, 0.3) * class_sound(CLASSES[label][2], samples, sample_rate, rng)
    return np.clip(mix, -1, 1).astype(np.float32)


def draw_labels(rng: np.random.Generator, weights) -> tuple[int, ...]:
    """One to three distinct classes: the first by ``weights``, a second (half the clips) and a third
    (a fifth of the clips) uniformly among the rest."""
    first = int(rng.choice(len(CLASSES), p=np.asarray(weights) / np.sum(weights)))
    extra = int(rng.random() < 0.5) + int(rng.random() < 0.2)
    rest = rng.permutation([c for c in range(len(CLASSES)) if c != first])[:extra]
    return tuple(sorted([first, *map(int, rest)]))


def write_segments_csv(path: Path, segments) -> None:
    """A segments CSV as AudioSet ships it: three ``#`` lines, then quoted comma-joined label mids."""
    labels = {label for s in segments for label in s.labels}
    with path.open("w", newline="", encoding="utf-8") as handle:
        handle.write(f"# Segments csv created by tests/support/audioset_layout.py\n"
                     f"# num_ytids={len(segments)}, num_segs={len(segments)}, num_unique_labels={len(labels)}, "
                     f"num_positive_labels={sum(len(s.labels) for s in segments)}\n"
                     "# YTID, start_seconds, end_seconds, positive_labels\n")
        for s in segments:
            mids = ",".join(CLASSES[label][0] for label in s.labels)
            handle.write(f'{s.ytid}, {s.start:.3f}, {s.start + 10:.3f}, "{mids}"\n')


def write_audioset_layout(root: Path, *, unbalanced_clips: int = 96, balanced_clips: int = 16, eval_clips: int = 48,
                          sample_rate: int = 8000, duration_s: float = 1.0, seed: int = 0) -> dict[str, list[Segment]]:
    """Write the layout under ``root``; the segments of each CSV (``unbalanced_train``,
    ``balanced_train``, ``eval``) with their class indices."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    with (root / "class_labels_indices.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["index", "mid", "display_name"])
        writer.writerows([i, mid, name] for i, (mid, name, _) in enumerate(CLASSES))
    uniform = np.ones(len(CLASSES))
    lists = {"unbalanced_train": (unbalanced_clips, UNBALANCED_WEIGHTS), "balanced_train": (balanced_clips, uniform),
             "eval": (eval_clips, uniform)}
    samples = int(round(sample_rate * duration_s))
    written = {}
    for name, (count, weights) in lists.items():
        segments = [Segment(f"{name[:2]}{i:05d}-x_", float(rng.integers(0, 30)) * 10, draw_labels(rng, weights))
                    for i in range(count)]
        for i, segment in enumerate(segments):
            file_name = f"Y{segment.ytid}.wav" if i % 7 == 3 else f"{segment.ytid}.wav"
            sf.write(root / "audio" / file_name, clip_audio(segment.labels, samples, sample_rate, rng), sample_rate,
                     subtype="PCM_16")
        write_segments_csv(root / f"{name}_segments.csv", segments)
        written[name] = segments
    return written


def multi_hot(segments, num_classes: int = len(CLASSES)) -> np.ndarray:
    """``[segments, classes]`` 0/1 targets of ``segments``."""
    targets = np.zeros((len(segments), num_classes), np.float32)
    for row, segment in enumerate(segments):
        targets[row, list(segment.labels)] = 1
    return targets
