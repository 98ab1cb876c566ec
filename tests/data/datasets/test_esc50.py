"""ESC-50 layout loader, on a hand-written ``meta/esc50.csv``."""

from __future__ import annotations

import re

import pytest

from tfasc.data.datasets import DatasetError, load

HEADER = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
ROWS = [
    HEADER,
    ("1-100032-A-0.wav", "1", "0", "dog", "True", "100032", "A"),
    ("1-100032-B-0.wav", "1", "0", "dog", "True", "100032", "B"),
    ("2-100038-A-14.wav", "2", "14", "chirping_birds", "False", "100038", "A"),
    ("3-100210-A-41.wav", "3", "41", "chainsaw", "True", "100210", "A"),
    ("4-101296-A-1.wav", "4", "1", "rooster", "True", "101296", "A"),
    ("5-103415-A-14.wav", "5", "14", "chirping_birds", "False", "103415", "A"),
]


def test_classes_follow_target_order_and_eval_fold_defines_split(esc50_layout):
    root = esc50_layout(ROWS)
    index = load("esc50", root)
    # target order 0, 1, 14, 41 -- not alphabetical.
    assert index.classes == ("dog", "rooster", "chirping_birds", "chainsaw")
    assert len(index.examples) == 6
    assert [e.split for e in index.examples] == ["evaluate", "evaluate", "train", "train", "train", "train"]
    assert [e.fold for e in index.examples] == [1, 1, 2, 3, 4, 5]
    assert [e.group for e in index.examples] == ["100032", "100032", "100038", "100210", "101296", "103415"]
    first = index.examples[0]
    assert first.labels == ("dog",)
    assert first.path == (root / "audio" / "1-100032-A-0.wav").resolve()
    assert first.attributes == {"target": "0", "take": "A", "esc10": "True"}


def test_other_eval_fold(esc50_layout):
    index = load("esc50", esc50_layout(ROWS), eval_fold=5)
    assert [e.path.name for e in index.split("evaluate")] == ["5-103415-A-14.wav"]
    assert len(index.split("train")) == 5


def test_esc10_keeps_only_esc10_rows_and_classes(esc50_layout):
    index = load("esc50", esc50_layout(ROWS), esc10=True, eval_fold=3)
    assert index.classes == ("dog", "rooster", "chainsaw")
    assert [e.path.name for e in index.examples] == [
        "1-100032-A-0.wav", "1-100032-B-0.wav", "3-100210-A-41.wav", "4-101296-A-1.wav",
    ]
    assert [e.path.name for e in index.split("evaluate")] == ["3-100210-A-41.wav"]


def test_eval_fold_not_in_metadata_lists_folds(esc50_layout):
    with pytest.raises(ValueError, match=r"eval_fold=6 is not one of the folds .*\[1, 2, 3, 4, 5\]"):
        load("esc50", esc50_layout(ROWS), eval_fold=6)


def test_missing_audio_is_named(esc50_layout):
    root = esc50_layout(ROWS, missing_audio=["3-100210-A-41.wav"])
    with pytest.raises(DatasetError, match=r"esc50\.csv: audio file listed on line 5: .*3-100210-A-41\.wav does not exist"):
        load("esc50", root)


def test_target_naming_two_categories_is_an_error(esc50_layout):
    rows = ROWS + [("5-200000-A-1.wav", "5", "1", "hen", "False", "200000", "A")]
    with pytest.raises(DatasetError, match=r"esc50\.csv:8: target 1 is 'hen' here but 'rooster' earlier"):
        load("esc50", esc50_layout(rows))


def test_bad_values_name_line_and_column(esc50_layout):
    rows = list(ROWS)
    rows[2] = ("1-100032-B-0.wav", "one", "0", "dog", "True", "100032", "B")
    with pytest.raises(DatasetError, match=r"esc50\.csv:3: column 'fold' is 'one', expected an integer"):
        load("esc50", esc50_layout(rows))


def test_bad_esc10_flag(esc50_layout):
    rows = list(ROWS)
    rows[1] = ("1-100032-A-0.wav", "1", "0", "dog", "yes", "100032", "A")
    with pytest.raises(DatasetError, match=r"esc50\.csv:2: column 'esc10' is 'yes'"):
        load("esc50", esc50_layout(rows))


def test_missing_metadata_and_unknown_option(tmp_path, esc50_layout):
    with pytest.raises(DatasetError, match=r"meta/esc50\.csv.*not found"):
        load("esc50", tmp_path)
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'fold'.*valid options: eval_fold, esc10"):
        load("esc50", esc50_layout(ROWS), fold=1)


@pytest.mark.parametrize("bad, kind", [("../../outside.wav", "leads outside"), ("../meta/esc50.csv", "leads outside"), ("ABSOLUTE", "is absolute")])
def test_filename_outside_the_audio_folder_names_file_line_and_path(esc50_layout, tmp_path, bad, kind):
    bad = str(tmp_path / "outside.wav") if bad == "ABSOLUTE" else bad
    rows = [*ROWS[:3], (bad, "2", "14", "chirping_birds", "False", "100038", "A"), *ROWS[4:]]
    root = esc50_layout(rows, missing_audio=["../meta/esc50.csv"])
    with pytest.raises(DatasetError, match=rf"esc50\.csv:4: audio path '{re.escape(bad)}' {kind}"):
        load("esc50", root)
