"""RAVDESS loader on hand-made ``Actor_NN/`` trees named by the published convention.

Livingstone & Russo (2018), the dataset's README: ``MM-VV-EE-II-SS-RR-AA.wav`` = modality
(01 full-AV, 02 video-only, 03 audio-only), vocal channel (01 speech, 02 song), emotion (below),
intensity (01 normal, 02 strong; none strong for neutral), statement (01 "Kids are talking by the
door", 02 "Dogs are sitting by the door"), repetition (01, 02), actor (01-24, odd male, even
female). Speech has all eight emotions, song the first six.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from tfasc.config import RecipeError, load_recipe
from tfasc.config.load import check_options
from tfasc.data.datasets import LOADERS, DatasetError, DatasetOptionError, available, load, options_of

EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")  # codes 01..08
SONG_EMOTIONS = EMOTIONS[:6]
#: The documented 4-fold split: contiguous blocks of six actors.
FOUR_FOLDS = {1: set(range(1, 7)), 2: set(range(7, 13)), 3: set(range(13, 19)), 4: set(range(19, 25))}


def name(emotion: int, intensity: int, statement: int, repetition: int, actor: int, *, channel=1, modality=3) -> str:
    fields = (modality, channel, emotion, intensity, statement, repetition, actor)
    return "-".join(f"{field:02d}" for field in fields) + ".wav"


def actor_names(actor: int, *, channel: int = 1) -> list[str]:
    """Every recording one actor made for a channel: 60 speech, 44 song."""
    emotions = range(1, 9) if channel == 1 else range(1, 7)
    return [
        name(emotion, intensity, statement, repetition, actor, channel=channel)
        for emotion in emotions
        for intensity in ((1,) if emotion == 1 else (1, 2))
        for statement in (1, 2)
        for repetition in (1, 2)
    ]


def in_actor_folders(names: list[str], prefix: str = "") -> list[str]:
    return [f"{prefix}Actor_{n[-6:-4]}/{n}" for n in names]


def test_name_fields_give_label_group_fold_and_attributes(files_layout):
    names = ["03-01-05-02-01-02-07.wav", "03-01-01-01-02-01-20.wav", "01-01-08-02-02-02-01.wav"]
    root = files_layout(in_actor_folders(names))
    index = load("ravdess", root, eval_fold=2)
    assert index.name == "ravdess" and index.classes == EMOTIONS
    by_name = {e.path.name: e for e in index.examples}

    angry = by_name["03-01-05-02-01-02-07.wav"]
    assert angry.path == (root / "Actor_07" / "03-01-05-02-01-02-07.wav").resolve()
    assert (angry.labels, angry.group, angry.fold, angry.split) == (("angry",), "actor_07", 2, "evaluate")
    assert angry.attributes == {
        "actor": "07", "gender": "male", "vocal_channel": "speech", "modality": "audio_only",
        "intensity": "strong", "statement": "Kids are talking by the door", "repetition": "2",
    }
    neutral = by_name["03-01-01-01-02-01-20.wav"]
    assert (neutral.labels, neutral.group, neutral.fold, neutral.split) == (("neutral",), "actor_20", 4, "train")
    assert neutral.attributes["gender"] == "female"
    assert neutral.attributes["statement"] == "Dogs are sitting by the door"
    # Audio cut from a full audio-video file is kept; its modality is recorded.
    surprised = by_name["01-01-08-02-02-02-01.wav"]
    assert surprised.labels == ("surprised",) and surprised.attributes["modality"] == "full_av"
    assert surprised.fold == 1 and surprised.split == "train"


def test_full_speech_set_has_1440_recordings_in_four_actor_disjoint_folds(files_layout):
    names = [n for actor in range(1, 25) for n in actor_names(actor)]
    root = files_layout(in_actor_folders(names))
    index = load("ravdess", root, eval_fold=3)

    assert len(index.examples) == 1440
    assert Counter(e.label for e in index.examples) == {"neutral": 96, **{e: 192 for e in EMOTIONS[1:]}}
    for fold, actors in FOUR_FOLDS.items():
        in_fold = [e for e in index.examples if e.fold == fold]
        assert len(in_fold) == 360
        assert {e.group for e in in_fold} == {f"actor_{a:02d}" for a in actors}
        assert Counter(e.attributes["gender"] for e in in_fold) == {"male": 180, "female": 180}
    folds_of_actor = {}
    for example in index.examples:
        folds_of_actor.setdefault(example.group, set()).add(example.fold)
    assert len(folds_of_actor) == 24 and all(len(f) == 1 for f in folds_of_actor.values())
    assert {e.group for e in index.split("evaluate")} == {f"actor_{a:02d}" for a in FOUR_FOLDS[3]}
    assert len(index.split("evaluate")) == 360 and len(index.split("train")) == 1080


@pytest.mark.parametrize(
    "folds, actor, fold",
    [(2, 12, 1), (2, 13, 2), (3, 8, 1), (3, 9, 2), (8, 3, 1), (8, 4, 2), (8, 24, 8), (24, 17, 17)],
)
def test_other_fold_counts_are_contiguous_actor_blocks(files_layout, folds, actor, fold):
    root = files_layout(in_actor_folders([name(3, 1, 1, 1, actor)]))
    example = load("ravdess", root, folds=folds, eval_fold=fold).examples[0]
    assert (example.fold, example.split) == (fold, "evaluate")


def test_zip_folders_one_level_down_subfolders_and_non_audio(files_layout):
    speech = [name(2, 2, 1, 1, 1), name(4, 1, 2, 2, 1)]
    song = [name(2, 1, 1, 1, 1, channel=2), name(6, 2, 2, 1, 2, channel=2)]
    root = files_layout(
        in_actor_folders(speech, "Audio_Speech_Actors_01-24/")
        + in_actor_folders(song, "Audio_Song_Actors_01-24/")
        + ["Audio_Speech_Actors_01-24/Actor_01/takes/" + name(3, 1, 1, 1, 1)]
        + ["Audio_Speech_Actors_01-24/Actor_01/notes.txt", "Audio_Speech_Actors_01-24/Actor_01/._" + speech[0]]
        + ["__MACOSX/Actor_01/._" + speech[0], "README.md"]
    )
    speech_index = load("ravdess", root)
    assert sorted(e.path.name for e in speech_index.examples) == sorted(speech + [name(3, 1, 1, 1, 1)])
    assert [e.labels for e in speech_index.examples if "takes" in e.path.parts] == [("happy",)]

    song_index = load("ravdess", root, vocal_channel="song")
    assert song_index.classes == SONG_EMOTIONS
    assert sorted(e.path.name for e in song_index.examples) == sorted(song)
    assert {e.attributes["vocal_channel"] for e in song_index.examples} == {"song"}
    assert [e.group for e in song_index.examples] == ["actor_01", "actor_02"]

    both = load("ravdess", root, vocal_channel="both")
    assert both.classes == EMOTIONS and len(both.examples) == 5


def test_song_only_tree_has_no_speech(files_layout):
    root = files_layout(in_actor_folders(actor_names(5, channel=2)))
    assert len(load("ravdess", root, vocal_channel="song").examples) == 44
    with pytest.raises(DatasetError, match=r"no RAVDESS speech recordings"):
        load("ravdess", root)


@pytest.mark.parametrize(
    "folder, file, message",
    [
        ("Actor_01", "03-01-05-02-01-01.wav", r"03-01-05-02-01-01\.wav: file name does not match the RAVDESS convention"),
        ("Actor_01", "03-01-5-02-01-01-01.wav", r"03-01-5-02-01-01-01\.wav: file name does not match"),
        ("Actor_01", "03-01-09-01-01-01-01.wav", r"03-01-09-01-01-01-01\.wav: emotion field is '09', expected one of 01 neutral"),
        ("Actor_01", "03-03-01-01-01-01-01.wav", r"03-03-01-01-01-01-01\.wav: vocal channel field is '03'"),
        ("Actor_01", "03-01-01-02-01-01-01.wav", r"03-01-01-02-01-01-01\.wav: intensity field is '02' \(strong\), but neutral"),
        ("Actor_01", "03-02-07-01-01-01-01.wav", r"03-02-07-01-01-01-01\.wav: emotion 'disgust' in a song"),
        ("Actor_01", "03-01-03-01-01-01-02.wav", r"Actor_01/03-01-03-01-01-01-02\.wav: actor field is 02 but the file is in Actor_01"),
        ("Actor_25", "03-01-03-01-01-01-25.wav", r"Actor_25: actor folder name is not Actor_01 to Actor_24"),
    ],
)
def test_malformed_names_are_one_line_errors_naming_the_file(files_layout, folder, file, message):
    root = files_layout(in_actor_folders(actor_names(1)) + [f"{folder}/{file}"])
    with pytest.raises(DatasetError, match=message) as error:
        load("ravdess", root)
    assert "\n" not in str(error.value)


def test_second_copy_of_a_recording_is_an_error(files_layout):
    root = files_layout([f"Actor_01/{name(3, 1, 1, 1, 1)}", f"Actor_01/copy/{name(3, 1, 1, 1, 1)}"])
    with pytest.raises(DatasetError, match=r"03-01-03-01-01-01-01\.wav: same recording as"):
        load("ravdess", root)


def test_missing_actor_folders_and_empty_eval_fold(files_layout, tmp_path):
    with pytest.raises(DatasetError, match=r"no Actor_01 \.\.\. Actor_24 folders found"):
        load("ravdess", tmp_path)
    root = files_layout(in_actor_folders([name(3, 1, 1, 1, 1)]))
    with pytest.raises(DatasetError, match=r"no speech recordings of fold 4 \(actors 19 to 24\)"):
        load("ravdess", root, eval_fold=4)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"eval_fold": 5}, r"option eval_fold=5 is not one of the folds 1 to 4"),
        ({"eval_fold": 0}, r"option eval_fold=0 is not one of the folds 1 to 4"),
        ({"folds": 8, "eval_fold": 9}, r"option eval_fold=9 is not one of the folds 1 to 8"),
        ({"folds": 5}, r"option folds=5 is not one of \[2, 3, 4, 6, 8, 12, 24\]"),
        ({"vocal_channel": "choir"}, r"option vocal_channel='choir' is not one of \['speech', 'song', 'both'\]"),
    ],
)
def test_bad_option_values_name_the_option(files_layout, options, message):
    root = files_layout(in_actor_folders([name(3, 1, 1, 1, 1)]))
    with pytest.raises(DatasetOptionError, match=message):
        load("ravdess", root, **options)


def test_registered_with_its_options():
    assert "ravdess" in available() and LOADERS["ravdess"].__name__ == "load_ravdess"
    assert options_of("ravdess") == {"vocal_channel": "speech", "folds": 4, "eval_fold": 1}
    with pytest.raises(DatasetOptionError, match=r"'eval_folds' \(did you mean 'eval_fold'\?\)"):
        load("ravdess", ".", eval_folds=2)


def test_recipe_data_section_accepts_ravdess_options(tmp_path):
    path = tmp_path / "ravdess.yaml"
    path.write_text("data:\n  dataset: ravdess\n  root: data/ravdess\n  vocal_channel: song\n  folds: 4\n  eval_fold: 2\n")
    recipe = load_recipe(path)
    assert recipe.data.options == {"vocal_channel": "song", "folds": 4, "eval_fold": 2}
    check_options("data", recipe.data.options, LOADERS[recipe.data.dataset])
    with pytest.raises(RecipeError, match=re.escape("data.vocal_channel: expected one of 'speech', 'song', 'both', got 'choir'")):
        check_options("data", {"vocal_channel": "choir"}, LOADERS["ravdess"])
    with pytest.raises(RecipeError, match=re.escape("data.eval_fold: expected an integer, got 'two'")):
        check_options("data", {"eval_fold": "two"}, LOADERS["ravdess"])
