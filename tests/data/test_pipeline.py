"""Feature extraction, cache and tf.data pipeline on real WAV files written by the test."""

import dataclasses
import os

import librosa
import numpy as np
import pytest
import soundfile as sf

import tensorflow as tf

from tfasc.augment.mixing import AugmentPolicy, make_batch_augmenter
from tfasc.data.datasets.base import DatasetError, Example
from tfasc.data.features import LogMelParams
from tfasc.data.frontends.log_mel import LogMelFrontEnd
from tfasc.data.normalization import fit_normalization
from tfasc.data.pipeline import BadAudioError, extract_features, label_targets, make_dataset

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
    normalization = fit_normalization("global", features, chunk=7)
    (mean,), (std,) = normalization.mean, normalization.std
    assert mean == pytest.approx(features.mean(), rel=1e-5) and std == pytest.approx(features.std(), rel=1e-4)
    targets = np.zeros((50, 2), np.float32)
    x = np.concatenate([b[0] for b in batches(make_dataset(features, targets, batch_size=16, shuffle=False, normalize=normalization), 10)])
    np.testing.assert_allclose(x, (features - mean) / std, atol=1e-5)


def test_non_finite_audio_is_listed_or_skipped(tmp_path):
    examples = write_clips(tmp_path, 4)
    for name, bad in (("clip1.wav", np.nan), ("clip3.wav", np.inf)):
        audio = np.full((RATE // 2, 2), 0.1, np.float32)
        audio[100:105, 1] = bad
        sf.write(tmp_path / name, audio, RATE, subtype="FLOAT")
    cache = tmp_path / "cache"
    with pytest.raises(BadAudioError) as error:
        extract(examples, cache_dir=cache)
    message = str(error.value)
    assert "2 of 4 audio files could not be read" in message
    assert f"{tmp_path / 'clip1.wav'}: contains non-finite samples (5 NaN/inf values)" in message
    assert f"{tmp_path / 'clip3.wav'}: contains non-finite samples (5 NaN/inf values)" in message
    assert not any(cache.iterdir())
    skipped = extract(examples, cache_dir=cache, skip_bad_files=True)
    assert [e.path.name for e in skipped.examples] == ["clip0.wav", "clip2.wav"]
    assert [path for path, _ in skipped.skipped] == [str(tmp_path / "clip1.wav"), str(tmp_path / "clip3.wav")]
    assert np.isfinite(np.asarray(skipped.features, np.float32)).all() and skipped.features.shape[0] == 2


class SqrtOfMean:
    """A front-end whose output is NaN for a clip of negative mean: a stand-in for a pathological one."""

    kind = "sqrt_of_mean"
    cache_dtype = np.dtype(np.float32)

    def output_shape(self, num_samples, channels):
        return (channels,)

    def __call__(self, waveforms, *, sample_rate):
        return tf.sqrt(tf.reduce_mean(waveforms, axis=1))

    def parameters(self):
        return {"kind": self.kind}


def test_non_finite_features_are_never_cached(tmp_path):
    signs = [1, -1, 1, 1, -1, 1, 1, 1, 1, 1]  # more than one extraction batch of 8
    examples = []
    for i, sign in enumerate(signs):
        path = tmp_path / f"c{i}.wav"
        sf.write(path, np.full((RATE // 2, 2), 0.04 * (i + 1) * sign), RATE, subtype="PCM_16")
        examples.append(Example(path=path, labels=("a",)))
    run = lambda **kw: extract_features(examples, sample_rate=RATE, duration_s=0.5, channels=2, frontend=SqrtOfMean(),
                                        cache_dir=tmp_path / "cache", **kw)
    with pytest.raises(BadAudioError, match=r"(?s)2 of 10 .*c1.wav: features are not finite \(2 NaN/inf values.*c4.wav"):
        run()
    result = run(skip_bad_files=True)
    good = [i for i, sign in enumerate(signs) if sign > 0]
    assert [e.path.name for e in result.examples] == [f"c{i}.wav" for i in good]
    assert [p for p, _ in result.skipped] == [str(tmp_path / "c1.wav"), str(tmp_path / "c4.wav")]
    # Each kept row is sqrt of its own clip's mean (read back by libsndfile): rows did not shift.
    expected = [np.sqrt(sf.read(examples[i].path, dtype="float32")[0].mean(0)) for i in good]
    np.testing.assert_allclose(result.features, expected, rtol=1e-5)
    again = run(skip_bad_files=True)  # from the cache
    assert again.cache_entry == result.cache_entry and again.skipped == result.skipped
    np.testing.assert_array_equal(again.features, result.features)


@pytest.mark.parametrize("n, batch, drop_remainder, start", [(10, 4, False, 5), (10, 4, True, 3), (12, 4, False, 7), (7, 8, False, 2)])
def test_resumed_dataset_continues_the_stream(n, batch, drop_remainder, start):
    features = np.arange(n * 3 * 2 * 1, dtype=np.float32).reshape(n, 3, 2, 1)
    targets = np.eye(n, dtype=np.float32)  # target i marks example i
    augment = make_batch_augmenter(AugmentPolicy(mixup_prob=1.0, mixup_alpha=0.4), base_seed=3)
    make = lambda start_batch: make_dataset(features, targets, batch_size=batch, shuffle=True, seed=7, augment=augment,
                                            repeat=True, drop_remainder=drop_remainder, start_batch=start_batch)
    per_pass = n // batch if drop_remainder else -(-n // batch)
    total = start + 2 * per_pass + 1
    full = batches(make(0), total)
    resumed = batches(make(start), total - start)
    assert len(resumed) == total - start
    for (xa, ya), (xb, yb) in zip(full[start:], resumed):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    # Mixup happened, and each pass covers every example once: the examples with the largest
    # share of each mixed target row, pass by pass, are a permutation of all examples.
    assert any(not np.array_equal(y, y.round()) for _, y in full)
    plain = batches(make_dataset(features, targets, batch_size=batch, shuffle=True, seed=7, repeat=True,
                                 drop_remainder=drop_remainder), 3 * per_pass)
    orders = [np.concatenate([y.argmax(1) for _, y in plain[p * per_pass : (p + 1) * per_pass]]) for p in range(3)]
    for order in orders:
        if drop_remainder:
            assert len(order) == per_pass * batch and len(set(order)) == len(order)
        else:
            assert sorted(order) == list(range(n))
    assert not all(np.array_equal(orders[0], order) for order in orders[1:])


def test_dataset_without_repeat_is_one_pass():
    features = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
    targets = np.zeros((10, 1), np.float32)
    x = [b[0][:, 0, 0, 0] for b in batches(make_dataset(features, targets, batch_size=4, shuffle=False, start_batch=1), 10)]
    assert [list(b) for b in x] == [[4, 5, 6, 7], [8, 9]]
    shuffled = batches(make_dataset(features, targets, batch_size=4, shuffle=True, seed=1), 10)
    assert len(shuffled) == 3 and sorted(np.concatenate([b[0][:, 0, 0, 0] for b in shuffled])) == list(range(10))
