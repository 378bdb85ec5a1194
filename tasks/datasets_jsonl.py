"""JSONL datasets: parsing and validation (pure Python).

Format: UTF-8 text, one JSON object per line, every line of one kind
(``RECORD_KINDS``), the kind of the first::

    {"prompt": "What is 2 + 2?", "completion": "4"}                   completion (sft)
    {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No."}         preference (dpo)
    {"prompt": "What is 2 + 2?", "answer": "4"}                       prompt_answer (grpo)

* ``prompt`` must be a string (it may be empty); every other named field a
  non-empty string;
* a line is a preference pair when it has ``chosen`` or ``rejected``, a
  prompt/completion pair when it has ``completion``, a prompt with an
  answer when it has ``answer``;
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


#: Record kind -> its fields, in order.  ``tasks/run_spec.py``'s
#: ``METHOD_DATA`` says which kind each training method takes.
RECORD_KINDS = {
    "completion": ("prompt", "completion"),
    "preference": ("prompt", "chosen", "rejected"),
    "prompt_answer": ("prompt", "answer"),
}
#: What a kind is, in the words an error uses.
KIND_NAMES = {
    "completion": "prompt/completion pairs",
    "preference": "preference pairs ({prompt, chosen, rejected})",
    "prompt_answer": "prompts with answers ({prompt, answer})",
}


@dataclass(frozen=True)
class Record:
    line: int
    prompt: str
    completion: str = None
    chosen: str = None
    rejected: str = None
    answer: str = None

    @property
    def kind(self):
        if self.chosen is not None:
            return "preference"
        return "completion" if self.completion is not None else "prompt_answer"


def _kind_of(obj):
    if "chosen" in obj or "rejected" in obj:
        return "preference"
    if "answer" in obj and "completion" not in obj:
        return "prompt_answer"
    return "completion"


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
    fields = RECORD_KINDS[_kind_of(obj)]
    missing = [key for key in fields if key not in obj]
    if missing:
        raise ValueError(f"line {line_no}: missing field(s) {', '.join(repr(k) for k in missing)}")
    for key in fields:
        if not isinstance(obj[key], str):
            raise ValueError(f"line {line_no}: {key!r} must be a string, got {type(obj[key]).__name__}")
        if key != "prompt" and not obj[key]:
            raise ValueError(f"line {line_no}: {key!r} must not be empty")
    return Record(line=line_no, **{key: obj[key] for key in fields})


def iter_records(lines):
    """Records from an iterable of physical lines (bytes or str), all of
    the first one's kind."""
    kind = None
    for line_no, raw in enumerate(lines, start=1):
        record = parse_line(raw, line_no)
        if record is None:
            continue
        if kind is None:
            kind = record.kind
        elif record.kind != kind:
            raise ValueError(f"line {line_no}: a {KIND_NAMES[record.kind]} line in a file of "
                             f"{KIND_NAMES[kind]} (the first line's kind)")
        yield record


def parse_bytes(data):
    """Every record of a whole file's content (bytes or str)."""
    if isinstance(data, bytes):
        lines = data.split(b"\n")
    else:
        lines = data.split("\n")
    records = list(iter_records(lines))
    if not records:
        raise ValueError("no records: the dataset holds no record line")
    return records


def load_jsonl(path):
    """Every record of the file at ``path`` (list of ``Record``)."""
    with open(path, "rb") as fh:
        records = list(iter_records(line.rstrip(b"\r\n") for line in fh))
    if not records:
        raise ValueError("no records: the dataset holds no record line")
    return records


def jsonl_kind(path):
    """The record kind of the file at ``path`` (its first record's), None when
    it holds none or cannot be read: a listing's answer, not a validation."""
    try:
        with open(path, "rb") as fh:
            for line_no, raw in enumerate(fh, start=1):
                try:
                    record = parse_line(raw.rstrip(b"\r\n"), line_no)
                except ValueError:
                    return None
                if record is not None:
                    return record.kind
    except OSError:
        return None
    return None


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
        raise ValueError("no records: the dataset holds no record line")
    return count
