"""Named SQL, parsed once from ``queries.sql``.

A query starts at a ``-- name: <name>`` line; the comment lines after it
describe it; the rest, up to the next name, is the statement.
"""

import pathlib
import re

HERE = pathlib.Path(__file__).parent

#: The migrations folder; files are applied in name order (``NNNN_what.sql``).
MIGRATIONS_DIR = HERE / "migrations"

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def _parse(text):
    parts = _NAME.split(text)
    queries = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        lines = [line for line in body.strip().splitlines() if not line.startswith("--")]
        queries[name] = "\n".join(lines).strip()
    return queries


QUERIES = _parse((HERE / "queries.sql").read_text())


def migrations():
    """``[(version, name, sql)]`` in the order they apply."""
    out = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        version = int(path.name.split("_", 1)[0])
        out.append((version, path.stem, path.read_text()))
    return out
