"""The helpers shared by the layout loaders: where a metadata row's audio path may point."""

from __future__ import annotations

import pytest

from tfasc.data.datasets import DatasetError
from tfasc.data.datasets._common import metadata_path


@pytest.mark.parametrize(
    "name, message",
    [
        ("", "empty audio file name"),
        ("../x.wav", "audio path '../x.wav' leads outside"),
        ("a/../../x.wav", "audio path 'a/../../x.wav' leads outside"),
        ("/abs/x.wav", "audio path '/abs/x.wav' is absolute"),
        ("C:\\data\\x.wav", "is absolute"),
        ("C:x.wav", "is absolute"),
    ],
)
def test_paths_leaving_the_base_name_metadata_line_and_path(tmp_path, name, message):
    with pytest.raises(DatasetError) as error:
        metadata_path(tmp_path / "root", name, metadata=tmp_path / "meta.csv", line=7)
    assert str(error.value).startswith(f"{tmp_path / 'meta.csv'}:7: ")
    assert message in str(error.value)


def test_paths_inside_are_normalised_and_a_sibling_with_the_same_prefix_is_outside(tmp_path):
    base = tmp_path / "root"
    assert metadata_path(base, "a/./b/../x.wav", metadata=tmp_path / "m", line=2) == base / "a" / "x.wav"
    with pytest.raises(DatasetError, match="leads outside"):
        metadata_path(base, "../root2/x.wav", metadata=tmp_path / "m", line=2)


def test_symlinks_inside_the_root_are_followed(tmp_path):
    # Documented choice: the check is lexical, so an audio/ folder linked to another disk works.
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.wav").write_bytes(b"")
    base = tmp_path / "root"
    base.mkdir()
    (base / "audio").symlink_to(tmp_path / "elsewhere")
    path = metadata_path(base, "audio/x.wav", metadata=tmp_path / "m", line=2)
    assert path == base / "audio" / "x.wav" and path.is_file()
