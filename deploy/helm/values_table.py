"""The chart README's values table, from the comments of values.yaml.

    python deploy/helm/values_table.py            # print the table
    python deploy/helm/values_table.py --write    # replace it in tunix-rt/README.md
    python deploy/helm/values_table.py --check    # exit 1 when the README's differs

Every key of ``tunix-rt/values.yaml`` has its description in the comment
lines right above it (a blank line ends a comment).  The table lists every
key by its dotted path, its default as written, and that description, in
the file's order; a key without a comment is an error (``entries`` raises),
so the file stays fully documented.  The chart's tests run ``--check``'s
comparison and the "every key documented" rule.

The parser reads the block style values.yaml is written in: one key per
line, nested mappings by indentation, lists and small mappings in flow
style (``[...]``, ``{...}``) on the key's line.
"""

import pathlib
import re
import sys

HERE = pathlib.Path(__file__).resolve().parent
VALUES = HERE / "tunix-rt" / "values.yaml"
README = HERE / "tunix-rt" / "README.md"
START, END = "<!-- values-table:start -->", "<!-- values-table:end -->"

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[^\s#][^:]*?):(?:\s+(?P<value>.*))?$")


class Undocumented(ValueError):
    """Raised when a key of values.yaml has no comment above it."""


def entries(text):
    """``(path, default, description)`` for every key, in the file's order.

    ``default`` is the value as written (``None`` for a mapping opened on
    the next lines).

    Raises:
      Undocumented: naming every key without a comment.
    """
    found, missing, stack, comment = [], [], [], []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            comment = []
            continue
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
            continue
        match = _KEY.match(line)
        if match is None:
            raise ValueError(f"values.yaml:{number}: not a `key: value` line: {line!r}")
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([key for _, key in stack] + [match["key"]])
        value = match["value"]
        if not comment:
            missing.append(f"{path} (line {number})")
        found.append((path, value, " ".join(comment)))
        if value is None:
            stack.append((indent, match["key"]))
        comment = []
    if missing:
        raise Undocumented("keys without a comment: " + ", ".join(missing))
    return found


def table(text):
    """The markdown table of ``entries``."""
    lines = ["| key | default | description |", "| --- | --- | --- |"]
    for path, value, description in entries(text):
        shown = "" if value is None else f"`{value}`"
        lines.append(f"| `{path}` | {shown} | {description.replace('|', '&#124;')} |")
    return "\n".join(lines) + "\n"


def with_table(readme, text):
    """``readme`` with the section between the markers replaced by ``table(text)``."""
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table(text)}{END}{tail}"


def main(argv):
    text = VALUES.read_text()
    if argv == []:
        sys.stdout.write(table(text))
        return 0
    readme = README.read_text()
    if argv == ["--write"]:
        README.write_text(with_table(readme, text))
        return 0
    if argv == ["--check"]:
        if with_table(readme, text) != readme:
            print(f"{README} is out of date: run python {__file__} --write", file=sys.stderr)
            return 1
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
