"""The feature cache checks itself: damaged entries are rebuilt, orphans cleaned, size capped; and its CLI."""

import json
import os
import time
import subprocess
import sys

import numpy as np
import pytest

from support.cache_clips import extract, write_clips


def folder_size(path):
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def swap_kept_rows(index_path):
    index = json.loads(index_path.read_text())
    index["kept"][1], index["kept"][2] = index["kept"][2], index["kept"][1]
    index_path.write_text(json.dumps(index))


def flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


REBUILT, REPAIRED = "removing it and rebuilding", "recomputing that shard"
DAMAGES = {
    "truncated": (lambda e: (e / "features.npy").write_bytes((e / "features.npy").read_bytes()[:-100]), "truncated", REBUILT),
    # A flipped bit in the rows of a shard: only that shard is recomputed (and checked against its checksum).
    "bit flip": (lambda e: flip_last_byte(e / "features.npy"), "shard 0 (clips 0-3) of features.npy does not match its SHA-256",
                 REPAIRED),
    "header": (lambda e: (e / "features.npy").write_bytes(b"garbage!" + (e / "features.npy").read_bytes()[8:]),
               "header does not match its SHA-256", REBUILT),
    "no index": (lambda e: (e / "index.json").unlink(), "index.json is missing", REBUILT),
    "bad index": (lambda e: (e / "index.json").write_text('{"rows": 4, "kep'), "index.json is unreadable", REBUILT),
    "old index": (lambda e: (e / "index.json").write_text(json.dumps({"rows": 4, "kept": [0, 1, 2, 3], "skipped": []})),
                  "format None", REBUILT),
    # Valid JSON, right format, but rows that do not fit the clips (the checksums cover features.npy only).
    "kept rows": (lambda e: swap_kept_rows(e / "index.json"), "index does not fit", REBUILT),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_entry_is_rebuilt(tmp_path, capsys, damage):
    examples = write_clips(tmp_path / "audio", 4)
    cache = tmp_path / "cache"
    first = extract(examples, cache)
    good = np.array(first.features)
    entry = cache / os.path.basename(first.cache_entry)
    breaks, reason, action = DAMAGES[damage]
    breaks(entry)
    capsys.readouterr()
    rebuilt = extract(examples, cache)
    lines = [line for line in capsys.readouterr().out.splitlines() if "damaged" in line]
    assert len(lines) == 1 and entry.name in lines[0] and reason in lines[0] and action in lines[0]
    assert rebuilt.cache_entry == first.cache_entry
    np.testing.assert_array_equal(rebuilt.features, good)
    # ... which is the fresh computation, stored as float16.
    fresh = extract(examples, None).features
    np.testing.assert_array_equal(np.asarray(rebuilt.features), fresh.astype(np.float16))
    extract(examples, cache)  # the rebuilt entry is good
    assert "damaged" not in capsys.readouterr().out


def test_index_describes_the_entry(tmp_path):
    examples = write_clips(tmp_path / "audio", 3)
    result = extract(examples, tmp_path / "cache", description="features (train)")
    index = json.loads((tmp_path / "cache" / os.path.basename(result.cache_entry) / "index.json").read_text())
    import hashlib

    data = (tmp_path / "cache" / os.path.basename(result.cache_entry) / "features.npy").read_bytes()
    assert index["format"] == 3 and index["size"] == len(data)
    header = index["header"]["bytes"]
    assert data[:6] == b"\x93NUMPY" and index["header"]["sha256"] == hashlib.sha256(data[:header]).hexdigest()
    row_bytes = 16 * 32 * 2 * 2
    assert index["row_bytes"] == row_bytes and len(data) == header + 3 * row_bytes
    assert index["shards"] == [{"first_clip": 0, "clips": 3, "first_row": 0, "rows": 3, "bytes": 3 * row_bytes,
                                "sha256": hashlib.sha256(data[header:]).hexdigest()}]
    assert index["description"] == "features (train)" and index["rows"] == 3
    assert index["feature_shape"] == [16, 32, 2] and index["dtype"] == "float16"
    assert index["parameters"]["features"]["n_mels"] == 16 and index["created"].startswith("20")


LIVE_WRITER = """
import sys, time
from pathlib import Path
from tfasc.data.cache import EntryWriter
writer = EntryWriter(Path(sys.argv[1]), (2, 3))
print(writer.tmp, flush=True)
time.sleep(120)
"""


def test_orphans_are_cleaned_but_a_live_build_is_kept(tmp_path, capsys):
    cache = tmp_path / "cache"
    cache.mkdir()
    # A writer killed after locking: its lock file is there but no process holds it.
    killed = cache / f".{'a' * 24}.tmp-x1"
    killed.mkdir()
    (killed / "writer.lock").touch()
    (killed / "features.npy").write_bytes(b"\0" * 1000)
    # Killed before locking, long ago; and a fresh lockless one (a writer about to lock).
    old = cache / f".{'b' * 24}.tmp-x2"
    old.mkdir()
    os.utime(old, (1, 1))
    fresh = cache / f".{'c' * 24}.tmp-x3"
    fresh.mkdir()
    # A writer building in another process right now.
    writer = subprocess.Popen([sys.executable, "-c", LIVE_WRITER, str(cache / ("d" * 24))], stdout=subprocess.PIPE, text=True)
    try:
        live = writer.stdout.readline().strip()
        assert live and os.path.isdir(live)
        extract(write_clips(tmp_path / "audio", 2), cache)
        assert not killed.exists() and not old.exists()
        assert fresh.exists() and os.path.isdir(live)
        out = capsys.readouterr().out
        assert killed.name in out and old.name in out and "interrupted build" in out
        # kill -9 releases the writer's lock: its folder is an orphan now.
        writer.kill()
        writer.wait()
        extract(write_clips(tmp_path / "audio", 2), cache)
        assert not os.path.exists(live)
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()


def test_least_recently_used_entries_are_evicted(tmp_path, capsys):
    cache = tmp_path / "cache"
    sets = [write_clips(tmp_path / f"audio{k}", 3, seed=k) for k in range(4)]
    a = extract(sets[0], cache)
    b = extract(sets[1], cache)
    entry_a, entry_b = (cache / os.path.basename(r.cache_entry) for r in (a, b))
    size = folder_size(entry_a)
    os.utime(entry_a / "last_used", (1000, 1000))  # A older than B ...
    os.utime(entry_b / "last_used", (2000, 2000))
    extract(sets[0], cache)  # ... until A is read again: B is now the least recently used
    capsys.readouterr()
    c = extract(sets[2], cache, cache_max_bytes=int(2.5 * size))
    entry_c = cache / os.path.basename(c.cache_entry)
    assert sorted(cache.iterdir()) == sorted([entry_a, entry_c])
    lines = [line for line in capsys.readouterr().out.splitlines() if "evicted" in line]
    assert len(lines) == 1 and entry_b.name in lines[0]
    # A cap below one entry: everything else goes, the new entry stays and says so.
    d = extract(sets[3], cache, cache_max_bytes=0)
    assert [p.name for p in cache.iterdir()] == [os.path.basename(d.cache_entry)]
    out = capsys.readouterr().out
    assert out.count("evicted") == 2 and "alone exceeds" in out
    assert np.asarray(d.features).shape == (3, 16, 32, 2)



def test_eviction_spares_the_entries_of_the_same_data_preparation(tmp_path):
    """Train and evaluation features of one run must not evict each other under a small cap."""
    cache = tmp_path / "cache"
    sets = [write_clips(tmp_path / f"audio{k}", 3, seed=k) for k in range(3)]
    old = extract(sets[0], cache)
    os.utime(cache / os.path.basename(old.cache_entry) / "last_used", (1000, 1000))
    started = time.time() - 1.0
    train = extract(sets[1], cache, cache_max_bytes=0, cache_keep_since=started)
    evaluation = extract(sets[2], cache, cache_max_bytes=0, cache_keep_since=started)
    kept = sorted(p.name for p in cache.iterdir())
    assert kept == sorted(os.path.basename(r.cache_entry) for r in (train, evaluation))


def cli(*args):
    # The cache tool needs no TensorFlow: it must not load it.
    code = ("import sys, tfasc.cache; status = tfasc.cache.main(sys.argv[1:]); "
            "assert 'tensorflow' not in sys.modules; sys.exit(status)")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)


def test_list_and_clear(tmp_path):
    cache = tmp_path / "cache"
    a = extract(write_clips(tmp_path / "a", 3), cache, description="features (train)")
    b = extract(write_clips(tmp_path / "b", 2, seed=1), cache, description="features (evaluate)")
    key_a, key_b = os.path.basename(a.cache_entry), os.path.basename(b.cache_entry)
    flip_last_byte(cache / key_b / "features.npy")
    orphan = cache / f".{key_a}.tmp-zz"
    orphan.mkdir()
    (orphan / "writer.lock").touch()
    (cache / "README").write_text("not an entry")

    listed = cli("list", "--dir", str(cache))
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    line_a = next(line for line in lines if line.startswith(key_a))
    assert "3 x [16x32x2] float16 in 1 shard " in line_a and "features (train)" in line_a and "last used" in line_a
    assert any(line.startswith(key_b) and "evaluate" in line for line in lines)  # size matches: damage not seen yet
    assert any(line.startswith(orphan.name) and "orphan" in line for line in lines)
    total = folder_size(cache / key_a) + folder_size(cache / key_b) + folder_size(orphan)
    assert lines[-1] == f"2 entries, {total / 1e3:.1f} kB in {cache}"
    verified = cli("list", "--verify", "--dir", str(cache)).stdout
    assert any(line.startswith(key_b) and "DAMAGED" in line and "shard 0 (clips 0-1)" in line and "SHA-256" in line
               for line in verified.splitlines())

    cleared = cli("clear", "--dir", str(cache), key_b)
    assert cleared.returncode == 0 and cleared.stdout.startswith("freed ") and "1 entries" in cleared.stdout
    assert not (cache / key_b).exists() and (cache / key_a).exists() and orphan.exists()
    cleared = cli("clear", "--dir", str(cache))
    assert cleared.returncode == 0 and "1 entries, 1 leftovers" in cleared.stdout
    assert [p.name for p in cache.iterdir()] == ["README"]


@pytest.mark.parametrize("args, expected", [
    (["list", "--dir", "{missing}"], "no feature cache folder there"),
    (["clear", "--dir", "{missing}"], "no feature cache folder there"),
    (["clear", "--dir", "{cache}", "0123456789abcdef01234567"], "no cache entry 0123456789abcdef01234567"),
])
def test_cli_user_errors_are_one_line_and_exit_2(tmp_path, args, expected):
    (tmp_path / "cache").mkdir()
    result = cli(*(a.format(missing=tmp_path / "nope", cache=tmp_path / "cache") for a in args))
    assert result.returncode == 2
    err = result.stderr.strip()
    assert err.startswith("error: ") and expected in err and "\n" not in err and "Traceback" not in err
