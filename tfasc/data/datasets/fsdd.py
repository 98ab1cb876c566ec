"""Free Spoken Digit Dataset layout: 3,000 8 kHz recordings of the digits 0-9 by 6 speakers.

::

    root/recordings/{digit}_{speaker}_{index}.wav      (or the files directly in root)

The official split puts indices 0-4 of every digit and speaker in the test set ("evaluate" here)
and 5-49 in training. Leaving one speaker out is the harder split a deployed keyword model faces.
"""

from __future__ import annotations

import re
from pathlib import Path

from tfasc.data.datasets._common import check_option_in, resolve_root
from tfasc.data.datasets.base import DatasetError, DatasetIndex, DatasetOptionError, Example

FILENAME = re.compile(r"^(?P<digit>[0-9])_(?P<speaker>[A-Za-z0-9]+)_(?P<index>[0-9]+)\.wav$")
CLASSES = tuple(str(digit) for digit in range(10))
SPLITS = ("index", "speaker")
#: Official split: recordings with an index below this are the test ("evaluate") set.
OFFICIAL_EVAL_INDICES = 5


def _recordings_dir(root: Path) -> Path:
    nested = root / "recordings"
    return nested if nested.is_dir() else root


def load_fsdd(root: str | Path, *, split: str = "index", eval_speaker: str | None = None) -> DatasetIndex:
    """Index the Free Spoken Digit Dataset.

    Args:
        root: dataset directory holding ``recordings/`` (or the ``.wav`` files themselves).
        split: ``"index"``: the official split, indices 0-4 ``"evaluate"``, others ``"train"``;
            ``"speaker"``: ``eval_speaker``'s recordings ``"evaluate"``, other speakers ``"train"``.
        eval_speaker: the held-out speaker; required for (and only used by) ``split="speaker"``.

    Returns:
        Classes ``"0"`` ... ``"9"``; ``group`` is the speaker; attributes ``speaker``, ``index``.
    """
    check_option_in("split", split, SPLITS)
    if split == "speaker" and eval_speaker is None:
        raise DatasetOptionError("option eval_speaker is required when split='speaker'")
    root = resolve_root(root, "fsdd")
    directory = _recordings_dir(root)
    parsed = []
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.suffix.lower() != ".wav":
            continue
        match = FILENAME.match(path.name)
        if match is None:
            raise DatasetError(f"{path}: file name does not match {{digit}}_{{speaker}}_{{index}}.wav")
        parsed.append((path, match["digit"], match["speaker"], int(match["index"])))
    if not parsed:
        raise DatasetError(f"{directory}: no {{digit}}_{{speaker}}_{{index}}.wav recordings found")
    speakers = sorted({speaker for _, _, speaker, _ in parsed})
    if split == "speaker" and eval_speaker not in speakers:
        raise DatasetOptionError(f"option eval_speaker={eval_speaker!r} is not a speaker in {directory}: {speakers}")

    def split_of(speaker: str, index: int) -> str:
        held_out = speaker == eval_speaker if split == "speaker" else index < OFFICIAL_EVAL_INDICES
        return "evaluate" if held_out else "train"

    examples = tuple(
        Example(
            path=path,
            labels=(digit,),
            split=split_of(speaker, index),
            group=speaker,
            attributes={"speaker": speaker, "index": str(index)},
        )
        for path, digit, speaker, index in parsed
    )
    return DatasetIndex(name="fsdd", examples=examples, classes=CLASSES)
