"""AudioSet layout loader, on a hand-written segments CSV in the real format."""

from __future__ import annotations

import logging

import pytest

from tfasc.data.datasets import AudioSetIndex, DatasetError, load
from tfasc.data.datasets.audioset import audio_candidates

LABELS = [
    ("index", "mid", "display_name"),
    ("0", "/m/09x0r", "Speech"),
    ("1", "/m/05zppz", "Male speech, man speaking"),
    ("2", "/m/0ytgt", "Child speech, kid speaking"),
    ("3", "/m/015p6", "Bird"),
]
SEGMENTS = """\
# Segments csv created Sun Mar  5 10:54:31 2017
# num_ytids=4, num_segs=4, num_unique_labels=4, num_positive_labels=7
# YTID, start_seconds, end_seconds, positive_labels
--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/m/05zppz"
-0RWZT-miFs, 420.000, 430.000, "/m/015p6"
-1LrH01Ei1w, 0.000, 10.000, "/m/09x0r,/m/0ytgt,/m/015p6"
-1nilez17Dg, 30.000, 40.000, "/m/05zppz"
"""
# One file per naming rule; the fourth segment has no audio.
AUDIO = ["--PJHxphWEs.wav", "Y-0RWZT-miFs.flac", "-1LrH01Ei1w_0.000_10.000.mp3"]


def test_missing_audio_is_an_error_by_default(audioset_layout):
    root = audioset_layout(LABELS, SEGMENTS, AUDIO)
    with pytest.raises(DatasetError, match=r"audio of 1 segment\(s\) not found .*line 7: -1nilez17Dg.*missing='skip'"):
        load("audioset", root, segments_csv="balanced_train_segments.csv")


def test_skip_drops_absent_rows_and_records_them(audioset_layout, caplog):
    root = audioset_layout(LABELS, SEGMENTS, AUDIO)
    with caplog.at_level(logging.WARNING, logger="tfasc.data.datasets.audioset"):
        index = load("audioset", root, segments_csv="balanced_train_segments.csv", missing="skip")
    assert isinstance(index, AudioSetIndex)
    assert index.skipped == ("-1nilez17Dg",)
    assert "skipped 1 of 4 segments" in caplog.text
    assert index.multi_label
    assert index.classes == ("Speech", "Male speech, man speaking", "Child speech, kid speaking", "Bird")
    assert [e.path.name for e in index.examples] == AUDIO
    assert [e.labels for e in index.examples] == [
        ("Speech", "Male speech, man speaking"),
        ("Bird",),
        ("Speech", "Child speech, kid speaking", "Bird"),
    ]
    assert all(e.split == "train" for e in index.examples)
    second = index.examples[1]
    assert second.group == "-0RWZT-miFs"
    assert second.attributes == {"ytid": "-0RWZT-miFs", "start_seconds": "420.000", "end_seconds": "430.000"}
    assert second.path == (root / "audio" / "Y-0RWZT-miFs.flac").resolve()


def test_lookup_prefers_plain_ytid_then_wav(audioset_layout):
    assert audio_candidates("abc", 1.5, 11.5) == [
        "abc.wav", "abc.flac", "abc.mp3",
        "Yabc.wav", "Yabc.flac", "Yabc.mp3",
        "abc_1.500_11.500.wav", "abc_1.500_11.500.flac", "abc_1.500_11.500.mp3",
    ]
    root = audioset_layout(LABELS, SEGMENTS, AUDIO + ["Y--PJHxphWEs.wav", "--PJHxphWEs.flac", "-1nilez17Dg.mp3"])
    index = load("audioset", root, segments_csv="balanced_train_segments.csv")
    assert index.examples[0].path.name == "--PJHxphWEs.wav"
    assert index.examples[3].path.name == "-1nilez17Dg.mp3"
    assert index.skipped == ()


def test_split_option_absolute_paths_and_custom_audio_dir(audioset_layout, tmp_path, wav):
    root = audioset_layout(LABELS, SEGMENTS, [], segments_name="eval_segments.csv")
    clips = tmp_path / "clips"
    for name in AUDIO + ["-1nilez17Dg.wav"]:
        wav(clips / name)
    index = load(
        "audioset", root, segments_csv=root / "eval_segments.csv", audio_dir=clips, split="evaluate",
        labels_csv=root / "class_labels_indices.csv",
    )
    assert len(index.split("evaluate")) == 4
    assert index.examples[3].path == (clips / "-1nilez17Dg.wav").resolve()


def test_unknown_mid_names_line(audioset_layout):
    segments = SEGMENTS.replace('"/m/015p6"', '"/m/015p6,/m/zzzz"')
    root = audioset_layout(LABELS, segments, AUDIO)
    with pytest.raises(DatasetError, match=r"balanced_train_segments\.csv:5: unknown label mid\(s\) \['/m/zzzz'\]"):
        load("audioset", root, segments_csv="balanced_train_segments.csv", missing="skip")


def test_malformed_segment_row(audioset_layout):
    root = audioset_layout(LABELS, SEGMENTS + "abc, 1.0, 2.0\n", AUDIO)
    with pytest.raises(DatasetError, match=r"balanced_train_segments\.csv:8: 3 field\(s\), expected 4"):
        load("audioset", root, segments_csv="balanced_train_segments.csv", missing="skip")


def test_option_errors(audioset_layout):
    root = audioset_layout(LABELS, SEGMENTS, AUDIO)
    with pytest.raises(ValueError, match=r"requires option\(s\) \['segments_csv'\]"):
        load("audioset", root)
    with pytest.raises(ValueError, match=r"missing='ignore' is not one of \['error', 'skip'\]"):
        load("audioset", root, segments_csv="balanced_train_segments.csv", missing="ignore")
    with pytest.raises(ValueError, match=r"split='validation' is not one of"):
        load("audioset", root, segments_csv="balanced_train_segments.csv", split="validation")
    with pytest.raises(DatasetError, match=r"unbalanced_train_segments\.csv: AudioSet segments CSV not found"):
        load("audioset", root, segments_csv="unbalanced_train_segments.csv")


def test_several_training_lists_and_an_evaluation_list(audioset_layout):
    root = audioset_layout(LABELS, SEGMENTS, AUDIO + ["-1nilez17Dg.wav"])
    unbalanced = SEGMENTS.replace("--PJHxphWEs", "unbal00001").replace("-0RWZT-miFs", "unbal00002")
    (root / "unbalanced_train_segments.csv").write_text(unbalanced.split("-1LrH01Ei1w")[0], encoding="utf-8")
    (root / "eval_segments.csv").write_text(SEGMENTS.split("--PJHxphWEs")[0] + '-1nilez17Dg, 30.000, 40.000, "/m/015p6"\n',
                                            encoding="utf-8")
    for name in ("unbal00001.wav", "unbal00002.wav"):
        (root / "audio" / name).write_bytes((root / "audio" / "-1nilez17Dg.wav").read_bytes())
    index = load("audioset", root, segments_csv=["balanced_train_segments.csv", "unbalanced_train_segments.csv"],
                 eval_segments_csv="eval_segments.csv")
    assert [e.group for e in index.split("train")] == [
        "--PJHxphWEs", "-0RWZT-miFs", "-1LrH01Ei1w", "-1nilez17Dg", "unbal00001", "unbal00002"]
    assert [(e.group, e.labels) for e in index.split("evaluate")] == [("-1nilez17Dg", ("Bird",))]
