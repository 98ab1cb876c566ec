"""Synthetic DCASE 2020 Task 1B dataset: layout, audio format, leakage-free splits, learnability."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from tfasc.data import synthesize
from tfasc.data.datasets import load
from tfasc.data.synthesize import main, synthesize_dcase2020_1b

# The official 10-scene -> 3-class mapping of DCASE 2020 Task 1B, written out independently.
THREE_CLASS = {
    "airport": "indoor", "shopping_mall": "indoor", "metro_station": "indoor",
    "street_pedestrian": "outdoor", "public_square": "outdoor", "street_traffic": "outdoor", "park": "outdoor",
    "bus": "transportation", "tram": "transportation", "metro": "transportation",
}
CLIPS, SAMPLE_RATE, DURATION_S, CHANNELS = 120, 16000, 2.0, 2


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return synthesize_dcase2020_1b(
        tmp_path_factory.mktemp("synth") / "dcase", clips=CLIPS, seed=0,
        sample_rate=SAMPLE_RATE, duration_s=DURATION_S, channels=CHANNELS,
    )


def test_layout_parses_with_the_dcase2020_1b_loader(dataset):
    index = load("dcase2020_1b", dataset)
    assert index.classes == ("indoor", "outdoor", "transportation")
    assert len(index.examples) == CLIPS
    train, evaluate = index.split("train"), index.split("evaluate")
    assert len(train) + len(evaluate) == CLIPS
    assert 0.2 * CLIPS <= len(evaluate) <= 0.4 * CLIPS
    for split in (train, evaluate):
        assert {e.label for e in split} == set(index.classes)
    for example in index.examples:
        assert example.path.name.endswith("-a.wav")
        assert THREE_CLASS[example.attributes["scene"]] == example.label
    test_list = (dataset / "evaluation_setup" / "fold1_test.csv").read_text().split("\n")
    assert test_list[0] == "filename"
    assert sorted(filter(None, test_list[1:])) == sorted(f"audio/{e.path.name}" for e in evaluate)


def test_milan_is_unseen_in_training_and_locations_do_not_leak(dataset):
    index = load("dcase2020_1b", dataset)
    assert "milan" not in {e.group for e in index.split("train")}
    assert "milan" in {e.group for e in index.split("evaluate")}
    assert len({e.group for e in index.examples}) >= 5
    train_locations = {e.attributes["identifier"] for e in index.split("train")}
    evaluate_locations = {e.attributes["identifier"] for e in index.split("evaluate")}
    assert not train_locations & evaluate_locations
    assert all(e.attributes["identifier"] == f"{e.group}-{e.attributes['location']}" for e in index.examples)


def test_files_are_pcm_wav_at_the_requested_format(dataset):
    files = sorted((dataset / "audio").glob("*.wav"))
    assert len(files) == CLIPS
    for path in files:
        with wave.open(str(path), "rb") as handle:
            assert handle.getframerate() == SAMPLE_RATE
            assert handle.getnchannels() == CHANNELS
            assert handle.getsampwidth() == 2
            assert handle.getnframes() == int(SAMPLE_RATE * DURATION_S)
            pcm = np.frombuffer(handle.readframes(handle.getnframes()), "<i2").reshape(-1, CHANNELS)
        assert 0 < np.abs(pcm).max() <= 32767
        # Stereo with inter-channel differences (delay, level, partly independent noise), not a
        # copied channel, yet both channels carry the scene at comparable level.
        assert not np.array_equal(pcm[:, 0], pcm[:, 1])
        left, right = np.sqrt(np.mean(pcm.astype(float) ** 2, axis=0))
        assert 0.4 < left / right < 2.5


def log_mel_band_means(path: Path) -> np.ndarray:
    """Gain-invariant spectral shape: mean log-mel per band, minus its mean over bands (librosa)."""
    import librosa

    with wave.open(str(path), "rb") as handle:
        pcm = np.frombuffer(handle.readframes(handle.getnframes()), "<i2").reshape(-1, handle.getnchannels())
        rate = handle.getframerate()
    mono = pcm.astype(np.float32).mean(axis=1) / 32768.0
    mel = librosa.feature.melspectrogram(y=mono, sr=rate, n_fft=1024, hop_length=512, n_mels=40)
    bands = librosa.power_to_db(mel).mean(axis=1)
    return bands - bands.mean()


def test_classes_are_separable_by_a_nearest_centroid_on_log_mel(dataset):
    index = load("dcase2020_1b", dataset)
    features = {e.path: log_mel_band_means(e.path) for e in index.examples}
    centroids = {
        c: np.mean([features[e.path] for e in index.split("train") if e.label == c], axis=0) for c in index.classes
    }
    evaluate = index.split("evaluate")
    predicted = [min(centroids, key=lambda c: np.sum((features[e.path] - centroids[c]) ** 2)) for e in evaluate]
    accuracy = np.mean([p == e.label for p, e in zip(predicted, evaluate)])
    # Chance is 1/3; measured 0.83 (seed 0), 0.83 (seed 1), 0.92 (seed 2) with 36 evaluate clips.
    assert accuracy >= 0.6, accuracy


def test_same_seed_same_bytes_other_seed_other_audio(tmp_path):
    def files(out):
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    kwargs = dict(clips=12, sample_rate=8000, duration_s=0.5, channels=1)
    first = files(synthesize_dcase2020_1b(tmp_path / "a", seed=7, **kwargs))
    again = files(synthesize_dcase2020_1b(tmp_path / "b", seed=7, **kwargs))
    other = files(synthesize_dcase2020_1b(tmp_path / "c", seed=8, **kwargs))
    assert first == again
    assert len(first) == 12 + 4  # audio + meta.csv + three setup lists
    audio_bytes = lambda tree: sorted(v for k, v in tree.items() if k.startswith("audio/"))  # noqa: E731
    assert not set(audio_bytes(first)) & set(audio_bytes(other))


def test_refuses_non_empty_dir_and_accepts_empty_one(tmp_path):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty; refusing to overwrite"):
        synthesize_dcase2020_1b(occupied, clips=12, seed=0, sample_rate=8000, duration_s=0.2, channels=1)
    assert [p.name for p in occupied.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    out = synthesize_dcase2020_1b(empty, clips=12, seed=0, sample_rate=8000, duration_s=0.2, channels=1)
    assert (out / "meta.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "occupied"]  # no temporary left behind


def test_failure_midway_leaves_nothing(tmp_path, monkeypatch):
    real_write = synthesize.write_wav
    written = []

    def write_then_fail(path, audio, sample_rate):
        written.append(path)
        if len(written) == 5:
            raise OSError("disk full")
        real_write(path, audio, sample_rate)

    monkeypatch.setattr(synthesize, "write_wav", write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        synthesize_dcase2020_1b(tmp_path / "out", clips=12, seed=0, sample_rate=8000, duration_s=0.2, channels=1)
    assert len(written) == 5
    assert list(tmp_path.iterdir()) == []  # neither out/ nor the temporary build folder


def test_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="clips=5 is too few"):
        synthesize_dcase2020_1b(tmp_path / "x", clips=5, seed=0)
    with pytest.raises(ValueError, match="must include 'milan'"):
        synthesize_dcase2020_1b(tmp_path / "x", clips=12, seed=0, cities=("paris", "lyon"))
    with pytest.raises(ValueError, match="channels=3"):
        synthesize_dcase2020_1b(tmp_path / "x", clips=12, seed=0, channels=3)
    assert not (tmp_path / "x").exists()


def test_cli_writes_and_reports(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main([str(out), "--dataset", "dcase2020_1b", "--clips", "12", "--seed", "3",
                 "--sample-rate", "8000", "--duration", "0.25", "--channels", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "12 clips" in printed
    with wave.open(str(next((out / "audio").glob("*.wav"))), "rb") as handle:
        assert (handle.getframerate(), handle.getnchannels(), handle.getnframes()) == (8000, 1, 2000)
    index = load("dcase2020_1b", out)
    assert f"train {len(index.split('train'))}, evaluate {len(index.split('evaluate'))}" in printed


def test_cli_refuses_existing_output_without_traceback(tmp_path, capsys):
    (tmp_path / "taken.txt").write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--clips", "12", "--seed", "0"])
    assert exit_info.value.code == 2
    assert "not empty; refusing to overwrite" in capsys.readouterr().err
