"""The JSONL prompt/completion validator (pure Python, no JAX)."""

import json
import pathlib

import pytest

from tasks.datasets_jsonl import Record, load_jsonl, parse_bytes, parse_line, validate_jsonl

SHIPPED = pathlib.Path(__file__).resolve().parents[2] / "tasks" / "data" / "text-sft.jsonl"


def write(tmp_path, text, name="data.jsonl"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def line(prompt="Q?", completion=" A."):
    return json.dumps({"prompt": prompt, "completion": completion})


def test_good_file_counts_records(tmp_path):
    path = write(tmp_path, "\n".join([line("a", "b"), line("", "only completion"), line("ü", "ñ")]) + "\n")
    assert validate_jsonl(path) == 3
    records = load_jsonl(path)
    assert records[0] == Record(line=1, prompt="a", completion="b")
    assert records[1].prompt == ""
    assert records[2].completion == "ñ"


def test_blank_lines_are_skipped_but_numbering_is_physical(tmp_path):
    path = write(tmp_path, line() + "\n\n   \n" + line("x", "y") + "\n")
    assert validate_jsonl(path) == 2
    assert [r.line for r in load_jsonl(path)] == [1, 4]


def test_crlf_bom_and_no_final_newline(tmp_path):
    path = write(tmp_path, "\ufeff" + line() + "\r\n" + line("x", "y"))
    assert validate_jsonl(path) == 2


def test_extra_keys_are_ignored(tmp_path):
    path = write(tmp_path, json.dumps({"prompt": "p", "completion": "c", "id": 7}) + "\n")
    assert validate_jsonl(path) == 1


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ('{"prompt": "x"', "invalid JSON"),
        ("not json at all", "invalid JSON"),
        ('["prompt", "completion"]', "expected a JSON object"),
        ('{"completion": "c"}', "missing field(s) 'prompt'"),
        ('{"prompt": "p"}', "missing field(s) 'completion'"),
        ("{}", "missing field(s) 'prompt', 'completion'"),
        ('{"prompt": 1, "completion": "c"}', "'prompt' must be a string"),
        ('{"prompt": "p", "completion": null}', "'completion' must be a string"),
        ('{"prompt": "p", "completion": ""}', "'completion' must not be empty"),
    ],
)
def test_malformed_line_reports_its_number(tmp_path, bad, fragment):
    path = write(tmp_path, "\n".join([line(), line(), bad, line()]) + "\n")
    with pytest.raises(ValueError) as info:
        validate_jsonl(path)
    message = str(info.value)
    assert message.startswith("line 3: ")
    assert fragment in message
    with pytest.raises(ValueError, match=r"^line 3: "):
        load_jsonl(path)


def test_first_bad_line_wins(tmp_path):
    path = write(tmp_path, "\n".join([line(), "{", "{"]) + "\n")
    with pytest.raises(ValueError, match=r"^line 2: "):
        validate_jsonl(path)


def test_invalid_utf8_names_the_line(tmp_path):
    path = write(tmp_path, line().encode() + b"\n" + b'{"prompt": "\xff", "completion": "c"}\n')
    with pytest.raises(ValueError, match=r"^line 2: not valid UTF-8"):
        validate_jsonl(path)


@pytest.mark.parametrize("text", ["", "\n\n", "  \n"])
def test_empty_file_is_an_error(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match="no records"):
        validate_jsonl(path)
    with pytest.raises(ValueError, match="no records"):
        load_jsonl(path)


def test_missing_file_raises_oserror(tmp_path):
    with pytest.raises(OSError):
        validate_jsonl(tmp_path / "absent.jsonl")


def test_parse_bytes_and_str():
    data = line("a", "b") + "\n" + line("c", "d") + "\n"
    assert [r.prompt for r in parse_bytes(data.encode())] == ["a", "c"]
    assert [r.completion for r in parse_bytes(data)] == ["b", "d"]
    with pytest.raises(ValueError, match=r"^line 2: "):
        parse_bytes(line() + "\n{oops}\n")
    with pytest.raises(ValueError, match="no records"):
        parse_bytes(b"")


def test_parse_line_blank_and_too_long():
    assert parse_line(b"  ", 5) is None
    with pytest.raises(ValueError, match=r"^line 9: line is longer"):
        parse_line(b"x" * 1_000_001, 9)


def test_shipped_dataset_is_valid():
    count = validate_jsonl(SHIPPED)
    assert 24 <= count <= 1000
    assert len({(r.prompt, r.completion) for r in load_jsonl(SHIPPED)}) == count  # no duplicates
