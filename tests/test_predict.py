"""``python -m tfasc.predict``: a tiny trained run's predictions against independent references
(tf.lite.Interpreter on the bundle's int8 model, the float model's own ``predict``, windows cut by hand)."""

from __future__ import annotations

import csv
import json
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from tfasc import predict as P

from support.recipes import RATE, WINDOW, write_tiny_recipe
from support.tflite_reference import tflite_logits


# -- pure functions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "num_samples, hop, expected",
    [
        (4000, 2000, [0]),  # exactly one window
        (1000, 2000, [0]),  # shorter: one zero-padded window
        (12000, 2000, [0, 2000, 4000, 6000, 8000]),
        (12000, 4000, [0, 4000, 8000]),
        (12000, 2400, [0, 2400, 4800, 7200, 8000]),  # the last window ends with the clip
        (4001, 4000, [0, 1]),
    ],
)
def test_window_starts(num_samples, hop, expected):
    assert P.window_starts(num_samples, WINDOW, hop) == expected


def test_hop_default_is_half_the_window_and_bad_hops_are_user_errors():
    from tfasc.errors import UserError

    assert P.hop_samples(None, window=WINDOW, sample_rate=RATE) == 2000
    assert P.hop_samples(0.3, window=WINDOW, sample_rate=RATE) == 2400
    for hop in (0.0, -1.0, 0.6):
        with pytest.raises(UserError, match=f"--hop {hop}: expected seconds above 0 and at most"):
            P.hop_samples(hop, window=WINDOW, sample_rate=RATE)


def test_folders_expand_to_their_audio_files_recursively_sorted(tmp_path):
    for name in ("b.wav", "a/z.FLAC", "a/y.mp3", "c.ogg", "notes.txt", "a/deeper/x.wav"):
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    explicit = tmp_path / "in" / "notes.txt"  # named explicitly: taken whatever its extension
    files, problems = P.audio_files([explicit, tmp_path / "in", tmp_path / "empty", tmp_path / "gone.wav"])
    root = tmp_path / "in"
    assert files == [explicit, root / "a/deeper/x.wav", root / "a/y.mp3", root / "a/z.FLAC", root / "b.wav", root / "c.ogg"]
    assert problems == [(str(tmp_path / "empty"), "folder holds no audio files (.wav .flac .mp3 .ogg)"),
                        (str(tmp_path / "gone.wav"), "no such file or folder")]


# -- one tiny run, shared ------------------------------------------------------------------------


def read_pcm16(path: Path) -> np.ndarray:
    with wave.open(str(path)) as handle:
        assert handle.getsampwidth() == 2 and handle.getnchannels() == 1
        return np.frombuffer(handle.readframes(handle.getnframes()), np.int16)


def write_pcm16(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(np.asarray(samples, np.int16).tobytes())
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A trained and exported tiny run, its evaluation clips and their inputs as training computed
    them (the cached features of its data preparation, normalized)."""
    from tfasc.config import load_recipe
    from tfasc.data.prepare import normalized, prepare_data
    from tfasc.train import main

    base = tmp_path_factory.mktemp("predict")
    recipe_file = write_tiny_recipe(base)
    run_dir = base / "run"
    assert main([str(recipe_file), "--out", str(run_dir)]) == 0
    data = prepare_data(load_recipe(run_dir / "recipe.yaml"))
    normalization = json.loads((run_dir / "normalization.json").read_text())
    assert normalization == {"mode": "global", "mean": list(data.normalization.mean), "std": list(data.normalization.std)}
    return {
        "dir": run_dir,
        "clips": [Path(e.path) for e in data.eval.examples],
        "inputs": normalized(data.eval.features, data),
        "classes": list(data.index.classes),
    }


def softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, np.float64)
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def tflite_reference(tflite_path: Path, inputs: np.ndarray) -> np.ndarray:
    """Softmax of the int8 model's dequantized outputs with TFLite's reference kernels (which TFLite
    Micro matches bit for bit)."""
    return softmax(tflite_logits(tflite_path, inputs, reference=True))


def printed(capsys) -> tuple[list[list[str]], str]:
    captured = capsys.readouterr()
    return [line.split("\t") for line in captured.out.splitlines()], captured.err


@pytest.mark.slow
def test_int8_scores_are_the_tflite_interpreters_on_trainings_input(run, capsys):
    _, predictions, failures = P.predict(run["dir"], run["clips"])
    assert not failures
    expected = tflite_reference(run["dir"] / "deploy" / "model_int8.tflite", run["inputs"])
    scores = np.stack([p.scores for p in predictions])
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-12)
    assert [p.windows for p in predictions] == [1] * len(run["clips"])

    assert P.main([str(run["dir"]), *map(str, run["clips"])]) == 0
    lines, err = printed(capsys)
    assert err == ""
    assert [line[0] for line in lines] == list(map(str, run["clips"]))
    assert [line[1] for line in lines] == [run["classes"][i] for i in expected.argmax(axis=1)]
    assert [float(line[2]) for line in lines] == pytest.approx(expected.max(axis=1), abs=5e-5)


@pytest.mark.slow
def test_float_scores_are_the_float_models_predict(run):
    import tf_keras as keras

    model = keras.models.load_model(run["dir"] / "model.keras", compile=False)  # this test's own run
    expected = softmax(model.predict(run["inputs"], verbose=0))
    classifier, predictions, failures = P.predict(run["dir"], run["clips"], use_float=True)
    assert not failures and classifier.model == "float"
    np.testing.assert_allclose(np.stack([p.scores for p in predictions]), expected, rtol=0, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("use_float", [False, True])
@pytest.mark.parametrize("hop_s, starts", [(None, [0, 2000, 4000, 6000, 8000]), (0.3, [0, 2400, 4800, 7200, 8000])])
def test_a_long_clip_is_the_mean_of_its_windows(run, tmp_path, use_float, hop_s, starts):
    pcm = np.concatenate([read_pcm16(path) for path in run["clips"][:3]])
    assert len(pcm) == 3 * WINDOW
    long_clip = write_pcm16(tmp_path / "long.wav", pcm)
    # Each window cut by hand into its own file: one model input each, no windowing involved.
    pieces = [write_pcm16(tmp_path / f"window_{s}.wav", pcm[s:s + WINDOW]) for s in starts]
    _, (whole,), _ = P.predict(run["dir"], [long_clip], use_float=use_float, hop_s=hop_s)
    _, windows, _ = P.predict(run["dir"], pieces, use_float=use_float)
    assert whole.windows == len(starts) and all(w.windows == 1 for w in windows)
    # int8: the same integer arithmetic whatever the batch; float: Keras batches the windows together.
    atol = 1e-6 if use_float else 1e-12
    np.testing.assert_allclose(whole.scores, np.mean([w.scores for w in windows], axis=0), rtol=0, atol=atol)


@pytest.mark.slow
def test_a_short_clip_is_zero_padded_like_training(run, tmp_path):
    pcm = read_pcm16(run["clips"][0])[:2500]
    short = write_pcm16(tmp_path / "short.wav", pcm)
    padded = write_pcm16(tmp_path / "padded.wav", np.concatenate([pcm, np.zeros(WINDOW - len(pcm), np.int16)]))
    _, (a, b), _ = P.predict(run["dir"], [short, padded])
    np.testing.assert_array_equal(a.scores, b.scores)


@pytest.mark.slow
def test_folders_and_csv_json_outputs(run, tmp_path, capsys):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    copies = [shutil.copy(run["clips"][0], folder / "b.wav"), shutil.copy(run["clips"][1], folder / "sub" / "a.wav")]
    (folder / "readme.txt").write_text("not audio, not listed")
    out_csv, out_json = tmp_path / "out" / "scores.csv", tmp_path / "out" / "scores.json"
    assert P.main([str(run["dir"]), str(folder), "--csv", str(out_csv), "--json", str(out_json)]) == 0
    lines, _ = printed(capsys)
    paths = [str(folder / "b.wav"), str(folder / "sub" / "a.wav")]
    assert [line[0] for line in lines] == paths and len(copies) == 2

    document = json.loads(out_json.read_text())
    assert document["model"] == "int8" and document["classes"] == run["classes"] and document["failures"] == []
    assert document["window_s"] == 0.5 and document["hop_s"] == 0.25 and document["multi_label"] is False
    expected = tflite_reference(run["dir"] / "deploy" / "model_int8.tflite", run["inputs"][:2])
    for entry, line, reference in zip(document["predictions"], lines, expected):
        scores = [entry["scores"][name] for name in run["classes"]]
        np.testing.assert_allclose(scores, reference, rtol=0, atol=1e-12)
        assert entry["label"] == line[1] == run["classes"][int(np.argmax(scores))]
        assert entry["score"] == max(scores) and entry["windows"] == 1

    rows = list(csv.DictReader(out_csv.open()))
    assert list(rows[0]) == ["path", "label", "score", *run["classes"]]
    for row, entry in zip(rows, document["predictions"]):
        assert row["path"] == entry["path"] and row["label"] == entry["label"]
        assert float(row["score"]) == entry["score"]
        assert [float(row[name]) for name in run["classes"]] == [entry["scores"][name] for name in run["classes"]]
    assert not list(out_csv.parent.glob(".*tmp*"))  # written atomically, no temporaries left


def error_lines(err: str) -> list[str]:
    lines = err.splitlines()
    assert all(line.startswith("error: ") for line in lines) and "Traceback" not in err, err
    return lines


@pytest.mark.slow
def test_a_bad_file_is_one_line_and_exit_2_while_the_others_are_classified(run, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(64)))
    missing = tmp_path / "missing.wav"
    good = run["clips"][:2]
    out_json = tmp_path / "scores.json"
    assert P.main([str(run["dir"]), str(good[0]), str(corrupt), str(missing), str(good[1]), "--json", str(out_json)]) == 2
    lines, err = printed(capsys)
    assert [line[0] for line in lines] == list(map(str, good))
    errors = error_lines(err)
    assert len(errors) == 2
    assert errors[0].startswith(f"error: {missing}: no such file or folder")
    assert errors[1].startswith(f"error: {corrupt}: not decodable audio")
    document = json.loads(out_json.read_text())
    assert [p["path"] for p in document["predictions"]] == list(map(str, good))
    assert [f["path"] for f in document["failures"]] == [str(missing), str(corrupt)]


@pytest.mark.slow
@pytest.mark.parametrize(
    "make_run_dir, extra, expected",
    [
        (lambda run, tmp: tmp / "no_such_run", [], "not a tfasc run directory (no recipe.yaml)"),
        (lambda run, tmp: tmp, [], "not a tfasc run directory (no recipe.yaml)"),
        (lambda run, tmp: run["dir"], ["--hop", "1.5"], "--hop 1.5: expected seconds above 0 and at most"),
    ],
)
def test_an_unusable_run_is_one_line_and_exit_2(run, tmp_path, capsys, make_run_dir, extra, expected):
    run_dir = make_run_dir(run, tmp_path)
    assert P.main([str(run_dir), str(run["clips"][0]), *extra]) == 2
    lines, err = printed(capsys)
    assert lines == [] and len(error_lines(err)) == 1 and expected in err, err


@pytest.mark.slow
def test_the_int8_model_is_checked_against_the_manifest(run, tmp_path, capsys):
    from tfasc.training.rundir import Manifest

    copy = Path(shutil.copytree(run["dir"], tmp_path / "run"))
    clip = str(run["clips"][0])
    model = copy / "deploy" / "model_int8.tflite"
    model.write_bytes(model.read_bytes()[:-1] + b"\x00")  # changed since the export recorded it
    assert P.main([str(copy), clip]) == 2
    _, err = printed(capsys)
    assert len(error_lines(err)) == 1 and "stage 'predict' refused its input" in err and "deploy" in err

    Manifest(copy).forget(["export"])  # a run that was never exported
    assert P.main([str(copy), clip]) == 2
    _, err = printed(capsys)
    assert len(error_lines(err)) == 1 and f"{copy}: has no int8 export" in err
    assert P.main([str(copy), clip, "--float"]) == 0
    lines, _ = printed(capsys)
    assert len(lines) == 1 and lines[0][0] == clip


def test_a_model_taking_any_length_takes_the_recipes_windows():
    from tfasc.training.rundir import RunDirError

    P._check_io(Path("model.keras"), (None, 1), 3, (WINDOW, 1), ["a", "b", "c"])  # aclnet's input
    with pytest.raises(RunDirError, match=r"takes inputs \[None, 2\]"):
        P._check_io(Path("model.keras"), (None, 2), 3, (WINDOW, 1), ["a", "b", "c"])
