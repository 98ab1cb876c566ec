"""Free Spoken Digit Dataset loader: hand-made fixtures and the real 3,000 recordings."""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import pytest

from tfasc.data.datasets import LOADERS, DatasetError, available, load

# The shared data folder sits beside the repository checkout: <repo>/../shared/data/fsdd.
REAL_FSDD = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "fsdd"

NAMES = [
    "0_george_0.wav", "0_george_5.wav", "1_george_4.wav", "1_george_12.wav",
    "0_theo_3.wav", "7_theo_49.wav", "9_jackson_5.wav", "9_jackson_0.wav",
]


def test_index_split_is_official(files_layout):
    root = files_layout([f"recordings/{n}" for n in NAMES] + ["README.md"])
    index = load("fsdd", root)
    assert index.classes == tuple("0123456789")
    assert len(index.examples) == 8
    assert sorted(e.path.name for e in index.split("evaluate")) == [
        "0_george_0.wav", "0_theo_3.wav", "1_george_4.wav", "9_jackson_0.wav",
    ]
    seven = next(e for e in index.examples if e.path.name == "7_theo_49.wav")
    assert seven.labels == ("7",) and seven.group == "theo" and seven.split == "train"
    assert seven.attributes == {"speaker": "theo", "index": "49"}
    assert seven.path == (root / "recordings" / "7_theo_49.wav").resolve()


def test_files_directly_in_root(files_layout):
    index = load("fsdd", files_layout(NAMES))
    assert len(index.examples) == 8


def test_speaker_split(files_layout):
    root = files_layout([f"recordings/{n}" for n in NAMES])
    index = load("fsdd", root, split="speaker", eval_speaker="theo")
    assert sorted(e.path.name for e in index.split("evaluate")) == ["0_theo_3.wav", "7_theo_49.wav"]
    assert {e.group for e in index.split("train")} == {"george", "jackson"}


def test_unknown_or_missing_speaker_lists_speakers(files_layout):
    root = files_layout([f"recordings/{n}" for n in NAMES])
    with pytest.raises(ValueError, match=r"eval_speaker='nobody' is not a speaker .*\['george', 'jackson', 'theo'\]"):
        load("fsdd", root, split="speaker", eval_speaker="nobody")
    with pytest.raises(ValueError, match="eval_speaker is required"):
        load("fsdd", root, split="speaker")
    with pytest.raises(ValueError, match=r"split='random' is not one of \['index', 'speaker'\]"):
        load("fsdd", root, split="random")


def test_malformed_filename_is_named(files_layout):
    root = files_layout([f"recordings/{n}" for n in NAMES] + ["recordings/ten_george_1.wav"])
    with pytest.raises(DatasetError, match=r"ten_george_1\.wav: file name does not match"):
        load("fsdd", root)


def test_no_recordings(tmp_path):
    with pytest.raises(DatasetError, match="no .* recordings found"):
        load("fsdd", tmp_path)


def test_registry_lists_every_layout():
    assert available() == ("audioset", "dcase2019_1a", "dcase2020_1b", "esc50", "folder", "fsdd", "ravdess", "urbansound8k")
    assert set(LOADERS) == set(available())
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'speaker' \(did you mean 'eval_speaker'\?\)"):
        load("fsdd", ".", speaker="theo")


@pytest.mark.skipif(not (REAL_FSDD / "recordings").is_dir(), reason=f"real FSDD not at {REAL_FSDD}")
def test_real_fsdd_recordings():
    names = [n for n in os.listdir(REAL_FSDD / "recordings") if n.endswith(".wav")]
    hand_evaluate = sum(int(re.match(r"\d+_\w+?_(\d+)\.wav$", n).group(1)) < 5 for n in names)
    speakers = {n.split("_")[1] for n in names}

    index = load("fsdd", REAL_FSDD)
    assert len(index.examples) == len(names) == 3000
    assert index.classes == tuple(str(d) for d in range(10))
    assert Counter(e.label for e in index.examples) == {str(d): 300 for d in range(10)}
    assert len(index.split("evaluate")) == hand_evaluate == 10 * len(speakers) * 5 == 300
    assert len(index.split("train")) == 3000 - hand_evaluate
    assert {e.group for e in index.examples} == speakers

    held_out = sorted(speakers)[0]
    by_speaker = load("fsdd", REAL_FSDD, split="speaker", eval_speaker=held_out)
    assert len(by_speaker.split("evaluate")) == sum(n.split("_")[1] == held_out for n in names) == 500
