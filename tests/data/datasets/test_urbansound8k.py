"""UrbanSound8K layout loader, on a hand-written ``metadata/UrbanSound8K.csv``."""

from __future__ import annotations

import pytest

from tfasc.data.datasets import DatasetError, load

HEADER = ("slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class")
ROWS = [
    HEADER,
    ("100032-3-0-0.wav", "100032", "0.0", "0.317551", "1", "5", "3", "dog_bark"),
    ("100263-2-0-117.wav", "100263", "58.5", "62.5", "1", "5", "2", "children_playing"),
    ("100648-1-0-0.wav", "100648", "4.823", "5.471", "2", "10", "1", "car_horn"),
    ("100648-1-1-0.wav", "100648", "8.998", "10.052", "2", "10", "1", "car_horn"),
    ("101415-3-0-2.wav", "101415", "1.0", "5.0", "1", "1", "3", "dog_bark"),
    ("102305-6-0-0.wav", "102305", "0.0", "2.61", "1", "1", "6", "gun_shot"),
    ("127873-0-0-0.wav", "127873", "0.0", "4.0", "2", "1", "0", "air_conditioner"),
]


def test_classes_by_class_id_fold_paths_and_groups(urbansound8k_layout):
    root = urbansound8k_layout(ROWS)
    index = load("urbansound8k", root)
    assert index.classes == ("air_conditioner", "car_horn", "children_playing", "dog_bark", "gun_shot")
    assert len(index.examples) == 7
    # Default eval_fold is 10: the two car_horn slices of recording 100648.
    assert [e.path.name for e in index.split("evaluate")] == ["100648-1-0-0.wav", "100648-1-1-0.wav"]
    assert {e.group for e in index.split("evaluate")} == {"100648"}
    assert len(index.split("train")) == 5
    horn = index.split("evaluate")[0]
    assert horn.path == (root / "audio" / "fold10" / "100648-1-0-0.wav").resolve()
    assert horn.fold == 10
    assert horn.labels == ("car_horn",)
    assert horn.attributes["salience"] == "2"
    assert horn.attributes["start"] == "4.823"


def test_eval_fold_option(urbansound8k_layout):
    index = load("urbansound8k", urbansound8k_layout(ROWS), eval_fold=1)
    assert sorted(e.path.name for e in index.split("evaluate")) == ["101415-3-0-2.wav", "102305-6-0-0.wav", "127873-0-0-0.wav"]
    with pytest.raises(ValueError, match=r"eval_fold=2 is not one of the folds .*\[1, 5, 10\]"):
        load("urbansound8k", urbansound8k_layout(ROWS), eval_fold=2)


def test_audio_in_the_wrong_fold_folder_is_named(urbansound8k_layout):
    root = urbansound8k_layout(ROWS, audio_folds={"100263-2-0-117.wav": 4})
    with pytest.raises(DatasetError, match=r"UrbanSound8K\.csv: audio file listed on line 3: .*fold5/100263-2-0-117\.wav does not exist"):
        load("urbansound8k", root)


def test_class_id_naming_two_classes_is_an_error(urbansound8k_layout):
    rows = ROWS + [("99999-3-0-0.wav", "99999", "0.0", "1.0", "1", "1", "3", "dog")]
    with pytest.raises(DatasetError, match=r"UrbanSound8K\.csv:9: classID 3 is 'dog' here but 'dog_bark' earlier"):
        load("urbansound8k", urbansound8k_layout(rows))


def test_missing_column_and_missing_file(tmp_path, urbansound8k_layout):
    with pytest.raises(DatasetError, match=r"metadata/UrbanSound8K\.csv.*not found"):
        load("urbansound8k", tmp_path)
    rows = [HEADER[:-1]] + [row[:-1] for row in ROWS[1:]]
    with pytest.raises(DatasetError, match=r"lacks column\(s\) \['class'\]"):
        load("urbansound8k", urbansound8k_layout(rows))


def test_unknown_option(urbansound8k_layout):
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'esc10'.*valid options: eval_fold"):
        load("urbansound8k", urbansound8k_layout(ROWS), esc10=True)


def test_slice_file_name_outside_its_fold_folder_names_file_line_and_path(urbansound8k_layout):
    rows = [*ROWS[:2], ("../../../escape.wav", "100263", "58.5", "62.5", "1", "5", "2", "children_playing"), *ROWS[3:]]
    root = urbansound8k_layout(rows)
    with pytest.raises(DatasetError, match=r"UrbanSound8K\.csv:3: audio path '\.\./\.\./\.\./escape\.wav' leads outside .*fold5"):
        load("urbansound8k", root)
