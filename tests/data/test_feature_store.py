"""The sharded feature store: shards built in parallel processes are bit-identical to one process's,
each shard's checksum is checked, and a damaged shard is recomputed (or the entry rebuilt).

Only two tests spawn worker processes (each imports TensorFlow: several seconds)."""

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

import tfasc.data.pipeline as pipeline
from tfasc.cache import list_cache
from tfasc.data.frontends.log_mel import LogMelFrontEnd
from tfasc.data.pipeline import BadAudioError, FeatureWorkerError, extract_features

from support.cache_clips import PARAMS, RATE, extract, write_clips

ROW_BYTES = 16 * 32 * 2 * 2  # [16 mels, 32 frames, 2 channels] float16


def direct_features(path):
    """The front-end called directly on the clip as libsndfile reads it, stored as the cache stores it."""
    audio, _ = sf.read(path, dtype="float32", always_2d=True)
    return np.asarray(LogMelFrontEnd(PARAMS)(tf.constant(audio[None]), sample_rate=RATE))[0].astype(np.float16)


def entry_of(result):
    return os.path.join(os.path.dirname(result.cache_entry), os.path.basename(result.cache_entry))


def read_index(result):
    return json.loads(open(os.path.join(entry_of(result), "index.json")).read())


def check_shards(result, expected):
    """The index lists ``expected`` shards ``(first_clip, clips, first_row, rows)`` whose checksums are
    SHA-256 of those rows' bytes in features.npy (as the test reads them)."""
    index = read_index(result)
    data = open(os.path.join(entry_of(result), "features.npy"), "rb").read()
    header = index["header"]["bytes"]
    assert index["format"] == 3 and index["size"] == len(data) and index["row_bytes"] == ROW_BYTES
    assert [(s["first_clip"], s["clips"], s["first_row"], s["rows"]) for s in index["shards"]] == expected
    for shard in index["shards"]:
        start = header + shard["first_row"] * ROW_BYTES
        rows = data[start : start + shard["rows"] * ROW_BYTES]
        assert shard["bytes"] == len(rows) == shard["rows"] * ROW_BYTES
        assert shard["sha256"] == hashlib.sha256(rows).hexdigest()
    return index


def test_parallel_build_with_skipped_files_equals_one_process(tmp_path):
    """2 worker processes, 3-clip shards, an undecodable file in two shards: same entry bit for bit."""
    examples = write_clips(tmp_path / "audio", 10, bad=(4, 7))
    one = extract(examples, tmp_path / "one", workers=1, shard_clips=3, skip_bad_files=True)
    two = extract(examples, tmp_path / "two", workers=2, shard_clips=3, skip_bad_files=True)
    assert os.path.basename(one.cache_entry) == os.path.basename(two.cache_entry)  # the key ignores the workers
    one_bytes = open(os.path.join(entry_of(one), "features.npy"), "rb").read()
    two_bytes = open(os.path.join(entry_of(two), "features.npy"), "rb").read()
    assert one_bytes == two_bytes and np.asarray(two.features).tobytes() == np.asarray(one.features).tobytes()
    good = [i for i in range(10) if i not in (4, 7)]
    for result in (one, two):
        assert [e.path.name for e in result.examples] == [f"clip{i}.wav" for i in good]
        assert result.skipped == tuple((str(examples[i].path), "file is empty (0 bytes)") for i in (4, 7))
        # Kept rows are contiguous, in clip order; the rows of a shard after a skip moved down.
        index = check_shards(result, [(0, 3, 0, 3), (3, 3, 3, 2), (6, 3, 5, 2), (9, 1, 7, 1)])
        assert index["kept"] == good and index["rows"] == 8 and index["shard_clips"] == 3
    # Each row is its own clip's features, computed by the front-end directly.
    reference = np.stack([direct_features(examples[i].path) for i in good])
    np.testing.assert_array_equal(np.asarray(two.features), reference)
    # Read back from the cache (all shards verified), and listed with its shards.
    again = extract(examples, tmp_path / "two", workers=2, shard_clips=3, skip_bad_files=True)
    assert again.cache_entry == two.cache_entry and np.asarray(again.features).tobytes() == np.asarray(one.features).tobytes()
    line = next(line for line in list_cache(tmp_path / "two").splitlines() if line.startswith(os.path.basename(two.cache_entry)))
    assert "8 x [16x32x2] float16 in 4 shards" in line and "2 skipped" in line


def test_bad_files_in_a_parallel_build_stop_it_like_one_process(tmp_path):
    examples = write_clips(tmp_path / "audio", 7, bad=(1, 5))
    (tmp_path / "audio" / "clip5.wav").write_bytes(b"RIFF....WAVEnot really")
    errors = []
    for workers, cache in ((1, tmp_path / "one"), (2, tmp_path / "two")):
        with pytest.raises(BadAudioError) as error:
            extract(examples, cache, workers=workers, shard_clips=3)
        assert not any(cache.iterdir())  # nothing half-written
        errors.append(str(error.value))
    assert errors[0] == errors[1]
    assert "2 of 7 audio files could not be read" in errors[1] and f"{examples[1].path}: file is empty" in errors[1]
    assert str(examples[5].path) in errors[1] and "data.skip_bad_files" in errors[1]


def flip_byte(path, offset):
    with open(path, "r+b") as handle:
        handle.seek(offset)
        value = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes([value ^ 0x10]))


def test_a_damaged_shard_alone_is_recomputed(tmp_path, capsys, monkeypatch):
    examples = write_clips(tmp_path / "audio", 10)
    cache = tmp_path / "cache"
    first = extract(examples, cache, workers=1, shard_clips=3)
    features_path = os.path.join(entry_of(first), "features.npy")
    good = open(features_path, "rb").read()
    index = read_index(first)
    flip_byte(features_path, index["header"]["bytes"] + 7 * ROW_BYTES + 5)  # in row 7: shard 2 (clips 6-8)
    decoded = []
    load_audio = pipeline.load_audio
    monkeypatch.setattr(pipeline, "load_audio", lambda path, **kw: decoded.append(os.path.basename(path)) or load_audio(path, **kw))
    capsys.readouterr()
    repaired = extract(examples, cache, workers=1, shard_clips=3)
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "damaged" in line]
    assert len(lines) == 1 and os.path.basename(first.cache_entry) in lines[0]
    assert "shard 2 (clips 6-8) of features.npy does not match its SHA-256 checksum" in lines[0]
    assert "recomputing that shard" in lines[0] and "rebuilding" not in out
    assert decoded == ["clip6.wav", "clip7.wav", "clip8.wav"]  # only that shard's clips
    assert repaired.cache_entry == first.cache_entry and open(features_path, "rb").read() == good
    assert read_index(repaired)["created"] == index["created"] and len(read_index(repaired)["repaired"]) == 1
    check_shards(repaired, [(0, 3, 0, 3), (3, 3, 3, 3), (6, 3, 6, 3), (9, 1, 9, 1)])
    extract(examples, cache, workers=1, shard_clips=3)
    assert "damaged" not in capsys.readouterr().out


def test_a_shard_that_recomputes_differently_rebuilds_the_entry(tmp_path, capsys):
    examples = write_clips(tmp_path / "audio", 7)
    cache = tmp_path / "cache"
    first = extract(examples, cache, workers=1, shard_clips=3)
    good = np.array(first.features)
    index_path = os.path.join(entry_of(first), "index.json")
    index = json.loads(open(index_path).read())
    index["shards"][1]["sha256"] = "0" * 64  # a checksum the recomputed rows cannot match
    open(index_path, "w").write(json.dumps(index))
    capsys.readouterr()
    rebuilt = extract(examples, cache, workers=1, shard_clips=3)
    lines = [line for line in capsys.readouterr().out.splitlines() if "damaged" in line]
    assert len(lines) == 2 and "shard 1 (clips 3-5)" in lines[0] and "recomputing that shard" in lines[0]
    assert "repair failed: recomputing shard 1 (clips 3-5) did not reproduce its recorded rows" in lines[1]
    assert "removing it and rebuilding" in lines[1]
    np.testing.assert_array_equal(np.asarray(rebuilt.features), good)
    check_shards(rebuilt, [(0, 3, 0, 3), (3, 3, 3, 3), (6, 1, 6, 1)])


def test_format_2_entry_is_rebuilt(tmp_path, capsys):
    examples = write_clips(tmp_path / "audio", 3)
    first = extract(examples, tmp_path / "cache")
    index_path = os.path.join(entry_of(first), "index.json")
    old = {key: value for key, value in json.loads(open(index_path).read()).items() if key not in ("shards", "header")}
    open(index_path, "w").write(json.dumps({**old, "format": 2, "sha256": "0" * 64}))
    capsys.readouterr()
    extract(examples, tmp_path / "cache")
    out = capsys.readouterr().out
    assert "has format 2, expected 3 (older tfasc)" in out and "removing it and rebuilding" in out
    check_shards(first, [(0, 3, 0, 3)])


class Unpicklable(LogMelFrontEnd):
    """A front-end holding a lambda: it cannot be sent to worker processes."""

    def __init__(self):
        super().__init__(PARAMS)
        object.__setattr__(self, "hook", lambda: None)


def test_a_front_end_that_cannot_be_pickled_is_computed_here(tmp_path, capsys):
    examples = write_clips(tmp_path / "audio", 5)
    result = extract_features(examples, sample_rate=RATE, duration_s=0.5, channels=2, frontend=Unpicklable(),
                              cache_dir=None, workers=2, shard_clips=2)
    assert "cannot be sent to worker processes" in capsys.readouterr().out
    np.testing.assert_array_equal(result.features.astype(np.float16), np.stack([direct_features(e.path) for e in examples]))


def test_a_failing_worker_aborts_the_build(tmp_path, monkeypatch):
    """A worker's exception (here in a thread standing in for a process) is re-raised, naming the shard."""
    examples = write_clips(tmp_path / "audio", 6)
    monkeypatch.setattr(pipeline, "ProcessPoolExecutor", lambda workers, mp_context: ThreadPoolExecutor(workers))
    extract_shard = pipeline._extract_shard

    def failing(spec, job, **kwargs):
        if job.number == 1:
            raise MemoryError("out of memory in the worker")
        return extract_shard(spec, job, **kwargs)

    monkeypatch.setattr(pipeline, "_extract_shard", failing)
    cache = tmp_path / "cache"
    with pytest.raises(FeatureWorkerError, match=r"shard 1 of the features \(clips 3-5, from .*clip3.wav\) failed in a "
                                                 r"worker process: MemoryError: out of memory in the worker") as error:
        extract(examples, cache, workers=2, shard_clips=3)
    assert isinstance(error.value.__cause__, MemoryError)
    assert not any(cache.iterdir())  # the temporary entry is gone
