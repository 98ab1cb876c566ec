"""Folder-per-class layout loader."""

from __future__ import annotations

import hashlib

import pytest

from tfasc.data.datasets import DatasetError, load


def expected_evaluate(relative_paths, fraction):
    """The documented rule, computed here from hashlib: first 8 bytes of SHA-1 / 2**64 < fraction."""
    return {
        p for p in relative_paths
        if int(hashlib.sha1(p.encode()).hexdigest()[:16], 16) / 2**64 < fraction
    }


def test_class_folders_with_hash_split(files_layout):
    files = [f"dog/bark_{i}.wav" for i in range(30)] + [f"cat/meow_{i}.flac" for i in range(30)]
    files += ["cat/nested/purr.OGG", "dog/notes.txt", "dog/.hidden.wav", "README.md"]
    root = files_layout(files)
    index = load("folder", root)
    assert index.classes == ("cat", "dog")
    # 30 + 30 + the nested .OGG; notes.txt, the hidden file and README.md are not audio examples.
    assert len(index.examples) == 61
    relative = {e.attributes["relative_path"] for e in index.examples}
    assert "cat/nested/purr.OGG" in relative and "dog/.hidden.wav" not in relative
    evaluate = {e.attributes["relative_path"] for e in index.split("evaluate")}
    assert evaluate == expected_evaluate(relative, 0.2)
    assert 4 <= len(evaluate) <= 22  # 0.2 of 61 is about 12
    assert all(e.labels == (e.attributes["relative_path"].split("/")[0],) for e in index.examples)
    assert load("folder", root) == index  # deterministic


def test_hash_split_is_stable_as_files_are_added(files_layout, wav):
    root = files_layout([f"a/{i}.wav" for i in range(20)] + [f"b/{i}.wav" for i in range(20)])
    before = {e.attributes["relative_path"]: e.split for e in load("folder", root, eval_fraction=0.5).examples}
    for i in range(20, 40):
        wav(root / "a" / f"{i}.wav")
    after = {e.attributes["relative_path"]: e.split for e in load("folder", root, eval_fraction=0.5).examples}
    assert len(after) == 60
    assert all(after[p] == split for p, split in before.items())
    assert len(load("folder", root, eval_fraction=0.0).split("train")) == 60


def test_train_and_evaluate_folders_define_splits(files_layout):
    root = files_layout(["train/yes/1.wav", "train/yes/2.wav", "train/no/1.wav", "evaluate/yes/3.wav", "evaluate/no/2.wav"])
    index = load("folder", root)
    assert index.classes == ("no", "yes")
    assert sorted((e.split, e.label, e.path.name) for e in index.examples) == [
        ("evaluate", "no", "2.wav"), ("evaluate", "yes", "3.wav"),
        ("train", "no", "1.wav"), ("train", "yes", "1.wav"), ("train", "yes", "2.wav"),
    ]


def test_test_folder_is_evaluate_without_evaluate_folder_else_test(files_layout):
    root = files_layout(["train/yes/1.wav", "train/no/1.wav", "test/yes/2.wav"], subdir="two")
    assert [e.split for e in load("folder", root).examples if e.path.name == "2.wav"] == ["evaluate"]
    root = files_layout(["train/yes/1.wav", "train/no/0.wav", "evaluate/no/1.wav", "test/yes/2.wav"], subdir="three")
    assert sorted(e.split for e in load("folder", root).examples) == ["evaluate", "test", "train", "train"]


def test_empty_class_folder_is_named(files_layout):
    root = files_layout(["dog/1.wav", "cat/readme.txt"])
    with pytest.raises(DatasetError, match=r"cat: class folder holds no audio files"):
        load("folder", root)


def test_no_class_folders(files_layout):
    root = files_layout(["loose.wav"])
    with pytest.raises(DatasetError, match="no class folders"):
        load("folder", root)


def test_evaluate_class_unknown_to_train(files_layout):
    root = files_layout(["train/yes/1.wav", "evaluate/maybe/1.wav"])
    with pytest.raises(DatasetError, match=r"evaluate: class folder\(s\) \['maybe'\] have no counterpart"):
        load("folder", root)


def test_train_folder_alone_is_ambiguous(files_layout):
    root = files_layout(["train/yes/1.wav"])
    with pytest.raises(DatasetError, match=r"split folder\(s\) \['train'\]"):
        load("folder", root)


def test_option_errors(files_layout):
    root = files_layout(["dog/1.wav"])
    with pytest.raises(ValueError, match=r"eval_fraction=1.5 must be a number in \[0, 1\)"):
        load("folder", root, eval_fraction=1.5)
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'eval_fold'.*valid options: eval_fraction"):
        load("folder", root, eval_fold=1)
