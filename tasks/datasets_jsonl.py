"""JSONL prompt/completion datasets: parsing and validation (pure Python).

Format: UTF-8 text, one JSON object per line::

    {"prompt": "What is 2 + 2?", "completion": "4"}

* ``prompt`` must be a string (it may be empty);
* ``completion`` must be a non-empty string;
* other keys are allowed and ignored;
* blank (whitespace-only) lines are skipped;
* a file must hold at least one record.

Every error is a ``ValueError`` whose message starts with ``line N: `` (N is
the 1-based physical line number in the file), except the "no records" error.
Used both by the API (to reject a bad dataset before queueing a run) and by
``workers/training/data.py`` (the training exits 2 with the same message).
"""

import json
from dataclasses import dataclass

#: Refuse absurdly long lines before parsing them (bytes).
MAX_LINE_BYTES = 1_000_000


@dataclass(frozen=True)
class Record:
    line: int
    prompt: str
    completion: str


def parse_line(raw, line_no):
    """Parse one physical line (bytes or str).  None for a blank line."""
    if isinstance(raw, bytes):
        if len(raw) > MAX_LINE_BYTES:
            raise ValueError(f"line {line_no}: line is longer than {MAX_LINE_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"line {line_no}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    else:
        text = raw
    if line_no == 1 and text.startswith("\ufeff"):
        text = text[1:]  # tolerate a UTF-8 byte order mark
    if not text.strip():
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"line {line_no}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"line {line_no}: expected a JSON object, got {type(obj).__name__}")
    missing = [key for key in ("prompt", "completion") if key not in obj]
    if missing:
        raise ValueError(f"line {line_no}: missing field(s) {', '.join(repr(k) for k in missing)}")
    prompt, completion = obj["prompt"], obj["completion"]
    if not isinstance(prompt, str):
        raise ValueError(f"line {line_no}: 'prompt' must be a string, got {type(prompt).__name__}")
    if not isinstance(completion, str):
        raise ValueError(f"line {line_no}: 'completion' must be a string, got {type(completion).__name__}")
    if not completion:
        raise ValueError(f"line {line_no}: 'completion' must not be empty")
    return Record(line=line_no, prompt=prompt, completion=completion)


def iter_records(lines):
    """Records from an iterable of physical lines (bytes or str)."""
    for line_no, raw in enumerate(lines, start=1):
        record = parse_line(raw, line_no)
        if record is not None:
            yield record


def parse_bytes(data):
    """Every record of a whole file's content (bytes or str)."""
    if isinstance(data, bytes):
        lines = data.split(b"\n")
    else:
        lines = data.split("\n")
    records = list(iter_records(lines))
    if not records:
        raise ValueError("no records: the dataset holds no prompt/completion line")
    return records


def load_jsonl(path):
    """Every record of the file at ``path`` (list of ``Record``)."""
    with open(path, "rb") as fh:
        records = list(iter_records(line.rstrip(b"\r\n") for line in fh))
    if not records:
        raise ValueError("no records: the dataset holds no prompt/completion line")
    return records


def validate_jsonl(path):
    """Check the file at ``path``; return its number of records.

    Raises ValueError("line N: ...") on the first bad line, ValueError("no
    records: ...") for an empty file, OSError when it cannot be read.
    """
    count = 0
    with open(path, "rb") as fh:
        for _ in iter_records(line.rstrip(b"\r\n") for line in fh):
            count += 1
    if not count:
        raise ValueError("no records: the dataset holds no prompt/completion line")
    return count
