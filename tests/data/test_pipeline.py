"""Feature extraction, cache and tf.data pipeline on real WAV files written by the test."""

import dataclasses
import os

import librosa
import numpy as np
import pytest
import soundfile as sf

from tfasc.data.datasets.base import DatasetError, Example
from tfasc.data.features import LogMelParams
from tfasc.data.frontends.log_mel import LogMelFrontEnd
from tfasc.data.pipeline import BadAudioError, extract_features, label_targets, make_dataset, standardization

RATE = 8000
PARAMS = LogMelParams(n_fft=256, hop_length=128, n_mels=16, top_db=80.0)


def write_clips(folder, count, seconds=0.5, channels=2):
    rng = np.random.default_rng(0)
    examples = []
    for i in range(count):
        path = folder / f"clip{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal((int(RATE * seconds), channels))).astype(np.float32), RATE, subtype="PCM_16")
        examples.append(Example(path=path, labels=("ab"[i % 2],), split="train"))
    return examples


def extract(examples, **kwargs):
    kwargs.setdefault("cache_dir", None)
    return extract_features(examples, sample_rate=RATE, duration_s=0.5, channels=2, frontend=LogMelFrontEnd(PARAMS), **kwargs)


def test_features_match_librosa_on_files(tmp_path):
    examples = write_clips(tmp_path, 3)
    result = extract(examples)
    assert result.features.shape == (3, 16, 32, 2)
    audio, _ = sf.read(examples[1].path, dtype="float32", always_2d=True)
    mel = librosa.feature.melspectrogram(y=audio.T, sr=RATE, n_fft=256, hop_length=128, n_mels=16, pad_mode="constant")
    reference = np.moveaxis(librosa.power_to_db(mel, top_db=80.0), 0, -1)
    keep = reference > reference.max() - 80
    assert np.abs(result.features[1] - reference)[keep].max() < 0.1


def test_cache_is_reused_and_invalidated(tmp_path):
    examples = write_clips(tmp_path, 4)
    cache = tmp_path / "cache"
    first = extract(examples, cache_dir=cache)
    second = extract(examples, cache_dir=cache)
    assert first.cache_entry == second.cache_entry
    np.testing.assert_array_equal(first.features, second.features)
    # Cached float16 values stay within 0.05 dB of the float32 computation.
    assert np.abs(np.asarray(first.features, np.float32) - extract(examples).features).max() < 0.05
    # Different feature parameters → a different entry.
    other = extract_features(examples, sample_rate=RATE, duration_s=0.5, channels=2, frontend=LogMelFrontEnd(dataclasses.replace(PARAMS, n_mels=8)), cache_dir=cache)
    assert other.cache_entry != first.cache_entry and other.features.shape[1] == 8
    # A file rewritten on disk → a different entry whose features follow the new audio.
    sf.write(examples[0].path, np.zeros((RATE // 2, 2), np.float32), RATE, subtype="PCM_16")
    os.utime(examples[0].path, ns=(1, 1))
    fresh = extract(examples, cache_dir=cache)
    assert fresh.cache_entry != first.cache_entry
    assert not np.allclose(np.asarray(fresh.features[0], np.float32), np.asarray(first.features[0], np.float32))
    assert len([p for p in cache.iterdir()]) == 3  # no temporary folders left behind


def test_bad_files_stop_or_are_skipped(tmp_path):
    examples = write_clips(tmp_path, 3)
    (tmp_path / "clip1.wav").write_bytes(b"")
    (tmp_path / "clip2.wav").write_bytes(b"RIFF....WAVEnot really")
    cache = tmp_path / "cache"
    with pytest.raises(BadAudioError) as error:
        extract(examples, cache_dir=cache)
    message = str(error.value)
    assert "2 of 3 audio files could not be read" in message
    assert f"{tmp_path / 'clip1.wav'}: file is empty" in message and str(tmp_path / "clip2.wav") in message
    assert "data.skip_bad_files" in message
    assert not any(cache.iterdir())  # nothing half-written
    skipped = extract(examples, cache_dir=cache, skip_bad_files=True)
    assert [e.path.name for e in skipped.examples] == ["clip0.wav"]
    assert len(skipped.skipped) == 2 and skipped.features.shape[0] == 1
    again = extract(examples, cache_dir=cache, skip_bad_files=True)
    assert again.skipped == skipped.skipped and again.features.shape[0] == 1


def test_label_targets():
    examples = [Example(path="x", labels=("b",)), Example(path="y", labels=("a",))]
    np.testing.assert_array_equal(label_targets(examples, ["a", "b"]), [[0, 1], [1, 0]])
    multi = [Example(path="x", labels=("a", "b"))]
    np.testing.assert_array_equal(label_targets(multi, ["a", "b"], multi_label=True), [[1, 1]])
    with pytest.raises(DatasetError, match="x: unknown label 'c'"):
        label_targets([Example(path="x", labels=("c",))], ["a", "b"])


def batches(dataset, count):
    return [(x.numpy(), y.numpy()) for x, y in dataset.take(count)]


def test_dataset_is_deterministic_given_seed():
    features = np.arange(20 * 2 * 3 * 1, dtype=np.float32).reshape(20, 2, 3, 1)
    targets = np.eye(4, dtype=np.float32)[np.arange(20) % 4]
    make = lambda seed: make_dataset(features, targets, batch_size=6, shuffle=True, seed=seed, repeat=True)
    a, b, c = batches(make(1), 8), batches(make(1), 8), batches(make(2), 8)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert any(not np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))
    # Each epoch (20 examples → 4 batches of 6, 6, 6, 2) covers every example once, in a new order.
    first_epoch = np.concatenate([x[:, 0, 0, 0] for x, _ in a[:4]]) / 6
    second_epoch = np.concatenate([x[:, 0, 0, 0] for x, _ in a[4:8]]) / 6
    assert sorted(first_epoch) == list(range(20)) and sorted(second_epoch) == list(range(20))
    assert not np.array_equal(first_epoch, second_epoch)
    # Targets travel with their features.
    for x, y in a:
        np.testing.assert_array_equal(y.argmax(1), (x[:, 0, 0, 0] / 6).astype(int) % 4)


def test_standardization_and_order():
    rng = np.random.default_rng(0)
    features = rng.normal(3.0, 2.0, (50, 4, 5, 2)).astype(np.float32)
    mean, std = standardization(features, chunk=7)
    assert mean == pytest.approx(features.mean(), rel=1e-5) and std == pytest.approx(features.std(), rel=1e-4)
    targets = np.zeros((50, 2), np.float32)
    x = np.concatenate([b[0] for b in batches(make_dataset(features, targets, batch_size=16, shuffle=False, mean=mean, std=std), 10)])
    np.testing.assert_allclose(x, (features - mean) / std, atol=1e-5)
