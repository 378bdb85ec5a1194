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


def test_a_file_named_by_its_content_gets_its_name_once_written_and_a_refused_one_leaves_nothing(tmp_path):
    written = []
    with atomic_write(tmp_path, name=lambda: f"{len(written)}.txt") as fh:
        fh.write(b"abc")
        written.append(1)
    assert [p.name for p in tmp_path.iterdir()] == ["1.txt"]
    with pytest.raises(ValueError):
        with atomic_write(tmp_path, name=lambda: "2.txt") as fh:
            fh.write(b"bad")
            fh.flush()
            with open(fh.name, "rb") as check:  # the temporary file, read before the rename
                assert check.read() == b"bad"
            raise ValueError("refused")
    assert [p.name for p in tmp_path.iterdir()] == ["1.txt"]
