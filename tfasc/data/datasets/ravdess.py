"""RAVDESS layout (Livingstone & Russo, 2018; Zenodo record 1188976): emotional speech and song by
24 actors. The speech set is 1,440 recordings (24 actors x 60), eight emotions; the song set is
1,012 (23 actors x 44: actor 18 has none), six emotions (no disgust or surprised).

::

    root/Actor_01/ ... root/Actor_24/                  (or one folder down, as the zips unpack:
    root/Audio_Speech_Actors_01-24/Actor_01/ ...        several such folders side by side are read)
    Actor_NN/**/MM-VV-EE-II-SS-RR-AA.wav

Each file name is seven two-digit fields: modality (01 full audio-video, 02 video-only, 03
audio-only), vocal channel (01 speech, 02 song), emotion (01 neutral, 02 calm, 03 happy, 04 sad,
05 angry, 06 fearful, 07 disgust, 08 surprised), intensity (01 normal, 02 strong; neutral has
no strong), statement (01 "Kids are talking by the door", 02 "Dogs are sitting by the door"),
repetition (01, 02) and actor (01-24; odd male, even female), which must match the ``Actor_NN``
folder. The audio zips only hold modality 03, but audio taken from the video files is audio too, so
every modality is accepted and kept as the ``modality`` attribute.

Only ``.wav`` files are read; other files, and files or folders whose names start with ``.`` (such
as the ``._`` metadata files macOS archives carry), are ignored. Any other ``.wav`` name that breaks
the convention is an error.

Folds are actor-disjoint and fixed by actor number, never by what is on disk: ``folds`` contiguous
blocks of ``24 / folds`` actors. With the default 4 folds: fold 1 = actors 1-6, fold 2 = 7-12,
fold 3 = 13-18, fold 4 = 19-24, each 3 male and 3 female (the paper's 4-fold protocol keeps every
actor in one fold). Blocks of an odd size (8 or 24 folds) cannot be gender-balanced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tfasc.data.datasets._common import check_option_in, resolve_root
from tfasc.data.datasets.base import DatasetError, DatasetIndex, DatasetOptionError, Example

ACTORS = 24
MODALITIES = {"01": "full_av", "02": "video_only", "03": "audio_only"}
VOCAL_CHANNELS = {"01": "speech", "02": "song"}
#: Emotion codes in order; their names, in this order, are the class vocabulary.
EMOTIONS = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
}
#: Emotions the song set was recorded with.
SONG_EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful")
INTENSITIES = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
REPETITIONS = {"01": "1", "02": "2"}
VOCAL_CHANNEL_OPTIONS = ("speech", "song", "both")
#: Fold counts that cut the 24 actors into equal contiguous blocks (one fold cannot train).
FOLD_COUNTS = tuple(n for n in range(2, ACTORS + 1) if ACTORS % n == 0)

FILENAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)\.wav$", re.IGNORECASE)
ACTOR_FOLDER = re.compile(r"^Actor_(\d\d)$")
CONVENTION = "MM-VV-EE-II-SS-RR-AA.wav (seven two-digit fields)"


@dataclass(frozen=True)
class Recording:
    """What one RAVDESS file name says, its codes decoded to names."""

    modality: str
    vocal_channel: str
    emotion: str
    intensity: str
    statement: str
    repetition: str
    actor: int

    @property
    def gender(self) -> str:
        return "male" if self.actor % 2 else "female"


def _field(path: Path, what: str, code: str, names: dict[str, str]) -> str:
    if code not in names:
        valid = ", ".join(f"{c} {n}" for c, n in names.items())
        raise DatasetError(f"{path}: {what} field is {code!r}, expected one of {valid}")
    return names[code]


def parse_name(path: Path) -> Recording:
    """Decode a RAVDESS file name; a name that breaks the convention is a :class:`DatasetError`."""
    match = FILENAME.match(path.name)
    if match is None:
        raise DatasetError(f"{path}: file name does not match the RAVDESS convention {CONVENTION}")
    modality, channel, emotion, intensity, statement, repetition, actor = match.groups()
    recording = Recording(
        modality=_field(path, "modality", modality, MODALITIES),
        vocal_channel=_field(path, "vocal channel", channel, VOCAL_CHANNELS),
        emotion=_field(path, "emotion", emotion, EMOTIONS),
        intensity=_field(path, "intensity", intensity, INTENSITIES),
        statement=_field(path, "statement", statement, STATEMENTS),
        repetition=_field(path, "repetition", repetition, REPETITIONS),
        actor=int(actor),
    )
    if not 1 <= recording.actor <= ACTORS:
        raise DatasetError(f"{path}: actor field is {actor!r}, expected 01 to {ACTORS}")
    if recording.emotion == "neutral" and recording.intensity == "strong":
        raise DatasetError(f"{path}: intensity field is '02' (strong), but neutral recordings only have 01 (normal)")
    if recording.vocal_channel == "song" and recording.emotion not in SONG_EMOTIONS:
        raise DatasetError(
            f"{path}: emotion {recording.emotion!r} in a song (vocal channel 02); "
            f"the song set has only {', '.join(SONG_EMOTIONS)}"
        )
    return recording


def fold_of(actor: int, folds: int) -> int:
    """The fold (1-based) of ``actor``: contiguous blocks of ``24 // folds`` actors."""
    return (actor - 1) // (ACTORS // folds) + 1


def classes_for(vocal_channel: str) -> tuple[str, ...]:
    """Emotion names in code order: the six song emotions for ``"song"``, all eight otherwise."""
    return SONG_EMOTIONS if vocal_channel == "song" else tuple(EMOTIONS.values())


def _actor_folders(root: Path) -> list[Path]:
    """``Actor_NN`` folders in ``root``, else in the folders one level down (as the zips unpack)."""

    def actor_dirs(parent: Path) -> list[Path]:
        return [p for p in parent.iterdir() if p.is_dir() and p.name.startswith("Actor_")]

    direct = actor_dirs(root)
    if direct:
        return sorted(direct)
    below = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(folder for parent in below for folder in actor_dirs(parent))


def _folder_actor(folder: Path) -> int:
    match = ACTOR_FOLDER.match(folder.name)
    if match is None or not 1 <= int(match[1]) <= ACTORS:
        raise DatasetError(f"{folder}: actor folder name is not Actor_01 to Actor_{ACTORS}")
    return int(match[1])


def _wav_files(folder: Path) -> list[Path]:
    """``.wav`` files anywhere below ``folder``, skipping hidden files and folders."""
    return sorted(
        path for path in folder.rglob("*")
        if path.is_file() and path.suffix.lower() == ".wav"
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def _read_recordings(root: Path) -> list[tuple[Path, Recording]]:
    """Every ``.wav`` below the actor folders, decoded; the actor field must match its folder and a
    file name may occur once (a second copy would be counted twice)."""
    folders = _actor_folders(root)
    if not folders:
        raise DatasetError(f"{root}: no Actor_01 ... Actor_{ACTORS} folders found in it or one level below")
    recordings: list[tuple[Path, Recording]] = []
    seen: dict[str, Path] = {}
    for folder in folders:
        actor = _folder_actor(folder)
        for path in _wav_files(folder):
            recording = parse_name(path)
            if recording.actor != actor:
                raise DatasetError(f"{path}: actor field is {recording.actor:02d} but the file is in {folder.name}")
            key = path.name.lower()
            if key in seen:
                raise DatasetError(f"{path}: same recording as {seen[key]}; keep one copy of the dataset under {root}")
            seen[key] = path
            recordings.append((path, recording))
    return recordings


def load_ravdess(
    root: str | Path,
    *,
    vocal_channel: Literal["speech", "song", "both"] = "speech",
    folds: int = 4,
    eval_fold: int = 1,
) -> DatasetIndex:
    """Index RAVDESS for one round of actor-disjoint cross-validation.

    Args:
        root: folder holding the ``Actor_NN`` folders, or folders that each hold them.
        vocal_channel: ``"speech"`` (the 1,440-file set the ERANNs paper uses), ``"song"`` or ``"both"``.
        folds: number of actor folds; one of 2, 3, 4, 6, 8, 12, 24 (see the module docstring).
        eval_fold: examples of this fold (1 to ``folds``) are ``"evaluate"``, all others ``"train"``.

    Returns:
        One label, the emotion name; classes in emotion-code order (eight, or six for ``"song"``);
        ``group`` the actor (``"actor_01"``); attributes ``actor``, ``gender``, ``vocal_channel``,
        ``modality``, ``intensity``, ``statement``, ``repetition``.
    """
    check_option_in("vocal_channel", vocal_channel, VOCAL_CHANNEL_OPTIONS)
    check_option_in("folds", folds, FOLD_COUNTS)
    if eval_fold not in range(1, folds + 1):
        raise DatasetOptionError(f"option eval_fold={eval_fold!r} is not one of the folds 1 to {folds} (folds={folds})")
    root = resolve_root(root, "ravdess")
    kept = [
        (path, recording) for path, recording in _read_recordings(root)
        if vocal_channel in ("both", recording.vocal_channel)
    ]
    if not kept:
        raise DatasetError(f"{root}: no RAVDESS {vocal_channel} recordings ({CONVENTION}) found in the actor folders")
    if not any(fold_of(recording.actor, folds) == eval_fold for _, recording in kept):
        size = ACTORS // folds
        raise DatasetError(
            f"{root}: no {vocal_channel} recordings of fold {eval_fold} "
            f"(actors {(eval_fold - 1) * size + 1} to {eval_fold * size}), the one option eval_fold evaluates"
        )
    examples = tuple(
        Example(
            path=path,
            labels=(recording.emotion,),
            split="evaluate" if fold_of(recording.actor, folds) == eval_fold else "train",
            fold=fold_of(recording.actor, folds),
            group=f"actor_{recording.actor:02d}",
            attributes={
                "actor": f"{recording.actor:02d}",
                "gender": recording.gender,
                "vocal_channel": recording.vocal_channel,
                "modality": recording.modality,
                "intensity": recording.intensity,
                "statement": recording.statement,
                "repetition": recording.repetition,
            },
        )
        for path, recording in kept
    )
    return DatasetIndex(name="ravdess", examples=examples, classes=classes_for(vocal_channel))
