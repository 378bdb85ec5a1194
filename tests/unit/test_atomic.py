"""The one atomic write (tasks/atomic.py)."""

import pytest

from tasks.atomic import atomic_write


def test_a_reader_sees_the_old_content_until_the_new_one_is_complete(tmp_path):
    path = tmp_path / "f.json"
    path.write_text("old")
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write("new, half")
        assert path.read_text() == "old"
        fh.write(" and whole")
    assert path.read_text() == "new, half and whole"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as fh:
            fh.write(b"partial")
            raise RuntimeError("disk full")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]
