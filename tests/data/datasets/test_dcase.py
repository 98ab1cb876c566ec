"""DCASE 2020 Task 1B / 2019 Task 1A development layout loader, on hand-written fixtures."""

from __future__ import annotations

import re

import pytest

from tfasc.data.datasets import DatasetError, load
from tfasc.data.datasets.dcase import parse_dcase_filename

META_2020 = [
    ("filename", "scene_label", "identifier"),
    ("audio/airport-barcelona-0-0-a.wav", "indoor", "barcelona-0"),
    ("audio/airport-barcelona-0-1-a.wav", "indoor", "barcelona-0"),
    ("audio/bus-helsinki-1-0-a.wav", "transportation", "helsinki-1"),
    ("audio/street_traffic-lisbon-4-0-a.wav", "outdoor", "lisbon-4"),
    ("audio/park-milan-2-0-a.wav", "outdoor", "milan-2"),
    ("audio/tram-milan-3-0-a.wav", "transportation", "milan-3"),
    ("audio/metro_station-paris-5-0-a.wav", "indoor", "paris-5"),
]
TRAIN_2020 = [
    ("filename", "scene_label"),
    ("audio/airport-barcelona-0-0-a.wav", "indoor"),
    ("audio/airport-barcelona-0-1-a.wav", "indoor"),
    ("audio/bus-helsinki-1-0-a.wav", "transportation"),
    ("audio/street_traffic-lisbon-4-0-a.wav", "outdoor"),
]
EVALUATE_2020 = [
    ("filename", "scene_label"),
    ("audio/park-milan-2-0-a.wav", "outdoor"),
    ("audio/tram-milan-3-0-a.wav", "transportation"),
]
TEST_2020 = [("filename",), ("audio/park-milan-2-0-a.wav",), ("audio/tram-milan-3-0-a.wav",)]


def setup_2020(**replace):
    files = {"fold1_train.csv": TRAIN_2020, "fold1_evaluate.csv": EVALUATE_2020, "fold1_test.csv": TEST_2020}
    files.update(replace)
    return files


def by_name(index):
    return {e.path.name: e for e in index.examples}


def test_2020_3class_layout_gives_splits_labels_and_city_groups(dcase_layout):
    root = dcase_layout(META_2020, setup_2020())
    index = load("dcase2020_1b", root)
    assert index.name == "dcase2020_1b"
    assert index.classes == ("indoor", "outdoor", "transportation")
    assert not index.multi_label
    assert len(index.examples) == 7
    examples = by_name(index)
    assert {n for n, e in examples.items() if e.split == "train"} == {
        "airport-barcelona-0-0-a.wav", "airport-barcelona-0-1-a.wav",
        "bus-helsinki-1-0-a.wav", "street_traffic-lisbon-4-0-a.wav",
    }
    assert {n for n, e in examples.items() if e.split == "evaluate"} == {"park-milan-2-0-a.wav", "tram-milan-3-0-a.wav"}
    # metro_station-paris is in no setup list.
    assert examples["metro_station-paris-5-0-a.wav"].split is None
    tram = examples["tram-milan-3-0-a.wav"]
    assert tram.labels == ("transportation",)
    assert tram.group == "milan"
    assert tram.path == (root / "audio" / "tram-milan-3-0-a.wav").resolve()
    assert tram.path.is_absolute()
    assert tram.attributes["scene"] == "tram"
    assert tram.attributes["device"] == "a"
    assert tram.attributes["identifier"] == "milan-3"
    assert tram.attributes["location"] == "3"
    assert [e.group for e in index.examples] == ["barcelona", "barcelona", "helsinki", "lisbon", "milan", "milan", "paris"]
    assert len(index.split("train")) == 4 and len(index.split("evaluate")) == 2


def test_2019_layout_with_source_label_and_ten_scenes(dcase_layout):
    meta = [
        ("filename", "scene_label", "identifier", "source_label"),
        ("audio/street_pedestrian-vienna-10-2-a.wav", "street_pedestrian", "vienna-10", "a"),
        ("audio/airport-lyon-3-0-a.wav", "airport", "lyon-3", "a"),
        ("audio/bus-prague-7-1-a.wav", "bus", "prague-7", "a"),
    ]
    train = [("filename", "scene_label"), ("audio/airport-lyon-3-0-a.wav", "airport"), ("audio/bus-prague-7-1-a.wav", "bus")]
    evaluate = [("filename", "scene_label"), ("audio/street_pedestrian-vienna-10-2-a.wav", "street_pedestrian")]
    root = dcase_layout(meta, {"fold1_train.csv": train, "fold1_evaluate.csv": evaluate})
    index = load("dcase2019_1a", root)
    assert index.name == "dcase2019_1a"
    assert index.classes == ("airport", "bus", "street_pedestrian")
    pedestrian = by_name(index)["street_pedestrian-vienna-10-2-a.wav"]
    assert pedestrian.split == "evaluate"
    assert pedestrian.group == "vienna"
    assert pedestrian.attributes["source_label"] == "a"
    assert pedestrian.attributes["segment"] == "2"


def test_fold_option_reads_that_folds_setup_files(dcase_layout):
    train = [("filename", "scene_label"), ("audio/park-milan-2-0-a.wav", "outdoor")]
    evaluate = [("filename", "scene_label"), ("audio/bus-helsinki-1-0-a.wav", "transportation")]
    root = dcase_layout(META_2020, {**setup_2020(), "fold2_train.csv": train, "fold2_evaluate.csv": evaluate})
    examples = by_name(load("dcase2020_1b", root, fold=2))
    assert examples["park-milan-2-0-a.wav"].split == "train"
    assert examples["bus-helsinki-1-0-a.wav"].split == "evaluate"
    assert sum(e.split is None for e in examples.values()) == 5


def test_file_only_in_the_test_list_gets_split_test(dcase_layout):
    test = TEST_2020 + [("audio/metro_station-paris-5-0-a.wav",)]
    root = dcase_layout(META_2020, setup_2020(**{"fold1_test.csv": test}))
    assert by_name(load("dcase2020_1b", root))["metro_station-paris-5-0-a.wav"].split == "test"


def test_parse_dcase_filename():
    assert parse_dcase_filename("audio/street_pedestrian-london-263-7982-s2.wav") == {
        "scene": "street_pedestrian", "city": "london", "location": "263", "segment": "7982", "device": "s2",
    }
    assert parse_dcase_filename("audio/not-a-dcase-name.wav") is None


def test_unparseable_filename_has_no_group_but_loads(dcase_layout):
    meta = [("filename", "scene_label", "identifier"), ("audio/clip1.wav", "indoor", "x-1")]
    root = dcase_layout(meta, {"fold1_train.csv": [("filename", "scene_label"), ("audio/clip1.wav", "indoor")],
                               "fold1_evaluate.csv": [("filename", "scene_label")]})
    (example,) = load("dcase2020_1b", root).examples
    assert example.group is None and "scene" not in example.attributes and example.split == "train"


def test_missing_meta_csv_is_named(tmp_path):
    with pytest.raises(DatasetError, match=r"meta\.csv.*not found"):
        load("dcase2020_1b", tmp_path)


def test_missing_root_is_named(tmp_path):
    with pytest.raises(DatasetError, match="nowhere.*not found"):
        load("dcase2020_1b", tmp_path / "nowhere")


def test_missing_setup_file_is_named(dcase_layout):
    files = setup_2020()
    del files["fold1_evaluate.csv"]
    root = dcase_layout(META_2020, files)
    with pytest.raises(DatasetError, match=r"fold1_evaluate\.csv.*not found"):
        load("dcase2020_1b", root)
    with pytest.raises(DatasetError, match=r"fold3_train\.csv.*not found"):
        load("dcase2020_1b", root, fold=3)


def test_setup_row_not_in_meta_names_file_and_line(dcase_layout):
    evaluate = EVALUATE_2020 + [("audio/bus-oslo-9-0-a.wav", "transportation")]
    root = dcase_layout(META_2020, setup_2020(**{"fold1_evaluate.csv": evaluate}))
    with pytest.raises(DatasetError, match=r"fold1_evaluate\.csv:4: 'audio/bus-oslo-9-0-a\.wav' is not listed in meta\.csv"):
        load("dcase2020_1b", root)


def test_setup_label_disagreeing_with_meta_names_line(dcase_layout):
    train = list(TRAIN_2020)
    train[3] = ("audio/bus-helsinki-1-0-a.wav", "outdoor")
    root = dcase_layout(META_2020, setup_2020(**{"fold1_train.csv": train}))
    with pytest.raises(DatasetError, match=r"fold1_train\.csv:4: .*labeled 'outdoor' but meta\.csv says 'transportation'"):
        load("dcase2020_1b", root)


def test_unknown_label_in_setup_file(dcase_layout):
    train = list(TRAIN_2020)
    train[1] = ("audio/airport-barcelona-0-0-a.wav", "airport")
    root = dcase_layout(META_2020, setup_2020(**{"fold1_train.csv": train}))
    with pytest.raises(DatasetError, match=r"fold1_train\.csv:2: unknown scene label 'airport'"):
        load("dcase2020_1b", root)


def test_file_in_both_train_and_evaluate_is_an_error(dcase_layout):
    evaluate = EVALUATE_2020 + [("audio/bus-helsinki-1-0-a.wav", "transportation")]
    root = dcase_layout(META_2020, setup_2020(**{"fold1_evaluate.csv": evaluate}))
    with pytest.raises(DatasetError, match=r"bus-helsinki-1-0-a\.wav' is also in fold1_train\.csv"):
        load("dcase2020_1b", root)


def test_one_missing_audio_file_is_named_with_its_line(dcase_layout):
    root = dcase_layout(META_2020, setup_2020(), missing_audio=["audio/bus-helsinki-1-0-a.wav"])
    with pytest.raises(DatasetError, match=r"meta\.csv: audio file listed on line 4: .*bus-helsinki-1-0-a\.wav does not exist"):
        load("dcase2020_1b", root)


def test_many_missing_audio_files_report_count_and_first_few(dcase_layout):
    all_files = [row[0] for row in META_2020[1:]]
    root = dcase_layout(META_2020, setup_2020(), missing_audio=all_files)
    with pytest.raises(DatasetError, match=r"7 audio files listed do not exist \(first 5\)") as caught:
        load("dcase2020_1b", root)
    message = str(caught.value)
    assert "airport-barcelona-0-0-a.wav" in message
    assert "metro_station-paris-5-0-a.wav" not in message  # the 7th is only counted


def test_comma_separated_meta_says_tab_was_expected(dcase_layout, tmp_path):
    root = dcase_layout(META_2020, setup_2020())
    (root / "meta.csv").write_text("filename,scene_label,identifier\naudio/x.wav,indoor,x-0\n")
    with pytest.raises(DatasetError, match=r"meta\.csv:1: header .* lacks column\(s\) \['filename', 'scene_label'\].*tab-separated"):
        load("dcase2020_1b", root)


def test_unknown_option_names_the_valid_ones(dcase_layout):
    root = dcase_layout(META_2020, setup_2020())
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'folds' \(did you mean 'fold'\?\).*valid options: fold"):
        load("dcase2020_1b", root, folds=1)
    with pytest.raises(ValueError, match="fold=0"):
        load("dcase2020_1b", root, fold=0)


def test_unknown_dataset_name_suggests_the_nearest():
    with pytest.raises(ValueError, match=r"unknown dataset 'dcase2020_1a'; did you mean 'dcase2020_1b'\?"):
        load("dcase2020_1a", ".")


@pytest.mark.parametrize("bad", ["../outside.wav", "audio/../../outside.wav", "ABSOLUTE"])
def test_meta_path_outside_the_root_names_file_line_and_path(dcase_layout, tmp_path, bad):
    # The fixture writes the audio file too (outside the root): it is refused, not merely missing.
    bad = str(tmp_path / "outside.wav") if bad == "ABSOLUTE" else bad
    meta = [*META_2020[:3], (bad, "indoor", "x-0"), *META_2020[3:]]
    root = dcase_layout(meta, setup_2020())
    assert (tmp_path / "outside.wav").is_file()
    kind = "is absolute" if bad.startswith("/") else "leads outside"
    with pytest.raises(DatasetError, match=rf"meta\.csv:4: audio path '{re.escape(bad)}' {kind}"):
        load("dcase2020_1b", root)


def test_meta_path_with_dot_dot_inside_the_root_is_normalised(dcase_layout):
    meta = [META_2020[0], ("audio/../audio/airport-barcelona-0-0-a.wav", "indoor", "barcelona-0"), *META_2020[2:]]
    train = [TRAIN_2020[0], ("audio/../audio/airport-barcelona-0-0-a.wav", "indoor"), *TRAIN_2020[2:]]
    root = dcase_layout(meta, setup_2020(**{"fold1_train.csv": train}))
    first = load("dcase2020_1b", root).examples[0]
    assert first.path == root.resolve() / "audio" / "airport-barcelona-0-0-a.wav"
