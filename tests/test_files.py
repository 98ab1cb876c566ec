"""Tests for tfasc.files: a file or folder appears complete under its name or not at all."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tfasc import files


def names(folder: Path) -> list[str]:
    """Everything in ``folder``, hidden temporaries included."""
    return sorted(p.name for p in folder.iterdir())


def test_write_atomic_writes_text_and_bytes_and_replaces(tmp_path):
    path = tmp_path / "report.json"
    assert files.write_atomic(path, "först\n") == path
    assert path.read_bytes() == "först\n".encode("utf-8")
    files.write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    files.write_atomic(tmp_path / "new" / "deeper" / "x.bin", b"x")  # parents are created
    assert names(tmp_path) == ["new", "report.json"]


def test_error_inside_atomic_path_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "model.keras"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with files.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert path.read_text() == "old"
    assert names(tmp_path) == ["model.keras"]
    with pytest.raises(KeyboardInterrupt):  # an interrupt is not an Exception, and is handled too
        with files.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert path.read_text() == "old" and names(tmp_path) == ["model.keras"]


def test_error_inside_atomic_folder_keeps_the_old_folder(tmp_path):
    out = tmp_path / "deploy"
    out.mkdir()
    (out / "model.h").write_text("old")
    with pytest.raises(ValueError):
        with files.atomic_path(out, directory=True) as tmp:
            (tmp / "model.h").write_text("new")
            raise ValueError
    assert names(out) == ["model.h"] and (out / "model.h").read_text() == "old"
    assert names(tmp_path) == ["deploy"]


def test_folder_replaces_a_non_empty_folder(tmp_path):
    out = tmp_path / "deploy"
    out.mkdir()
    (out / "stale.txt").write_text("from the old bundle")
    (out / "sub").mkdir()
    (out / "sub" / "deep.txt").write_text("old")
    with files.atomic_path(out, directory=True) as tmp:
        assert tmp.is_dir() and tmp.parent == tmp_path and not list(tmp.iterdir())
        (tmp / "model.h").write_text("new")
    assert names(out) == ["model.h"] and (out / "model.h").read_text() == "new"
    assert names(tmp_path) == ["deploy"]  # the old folder moved aside was removed


def test_failed_rename_puts_the_old_folder_back(tmp_path, monkeypatch):
    out = tmp_path / "deploy"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    new = files.temporary_sibling(out, directory=True)
    (new / "model.h").write_text("new")
    real_rename = os.rename

    def rename(src, dst):
        if Path(src) == new:  # the old folder is already aside when the new one fails to move in
            raise OSError("disk gone")
        real_rename(src, dst)

    monkeypatch.setattr(files.os, "rename", rename)
    with pytest.raises(OSError, match="disk gone"):
        files.replace(new, out)
    assert (out / "keep.txt").read_text() == "old"


def test_temporary_keeps_the_suffix_and_lives_beside_the_target(tmp_path):
    path = tmp_path / "runs" / "model.keras"
    tmp = files.temporary_sibling(path)
    assert tmp.suffix == ".keras" and tmp.parent == path.parent and not tmp.exists()
    assert tmp.name.startswith(".")  # hidden: never mistaken for a result
    assert files.temporary_sibling(path) != tmp
    with files.atomic_path(path) as inside:
        assert inside.suffix == ".keras" and inside.parent == path.parent
        inside.write_text("done")
    assert path.read_text() == "done"


def test_a_killed_writer_leaves_the_old_file(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("old")
    script = textwrap.dedent(f"""
        import os, signal
        from tfasc.files import atomic_path
        with atomic_path({str(path)!r}) as tmp:
            tmp.write_text("half written")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert completed.returncode == -signal.SIGKILL
    assert path.read_text() == "old"
    # SIGKILL runs no clean-up: the hidden partial stays beside the target, never under its name.
    leftovers = [name for name in names(tmp_path) if name != "report.json"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".report.tmp-")


def test_temporary_names_are_recognized_and_others_are_not(tmp_path):
    names = [files.temporary_sibling(tmp_path / "model.keras").name,
             files.temporary_sibling(tmp_path / "deploy", directory=True).name]
    assert all(files.is_temporary(name) for name in names)
    for name in ("model.keras", ".lock", "normalization.json", "tmp-model", ".model.keras"):
        assert not files.is_temporary(name)


def test_sha256_of_a_range_of_a_file_is_hashlib_of_those_bytes(tmp_path):
    import hashlib

    data = os.urandom(3 * (1 << 20) + 12345)  # more than two 1 MiB blocks
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert files.sha256_file(path) == hashlib.sha256(data).hexdigest()
    for offset, length in ((0, 0), (0, 100), (17, (1 << 20) + 5), (len(data) - 9, 9)):
        assert files.sha256_file(path, offset=offset, length=length) == hashlib.sha256(data[offset:offset + length]).hexdigest()
    with pytest.raises(OSError, match="ends 4 bytes early"):
        files.sha256_file(path, offset=len(data) - 6, length=10)
