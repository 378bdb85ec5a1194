"""Named SQL, parsed once from the ``*.sql`` files here (not the migrations).

Each file holds the queries of one aggregate of the registry, beside its
module in ``tasks/registry/`` (``runs.sql`` for ``runs.py`` and so on).  A
query starts at a ``-- name: <name>`` line; the comment lines after it
describe it; the rest, up to the next name, is the statement.  A name is
unique across the files: ``QUERIES`` is one mapping, and a name written twice
is an error at import that names both places.  A status set of the lifecycle
is written by its name (``status IN :HELD``) and spelled out here from
``tasks.lifecycle.SQL_SETS``, so no query lists statuses by hand and a new
status reaches every query that means its set.

``cursor.py`` runs a named query in one call (rows as dicts or tuples, a hot
statement prepared once per session).

The migrations are read by ``migrations()``: one ``Migration`` per file,
with its checksum and whether it runs in a transaction (``tasks/migrate.py``
applies them and says why some do not).
"""

import hashlib
import pathlib
import re
from typing import NamedTuple

HERE = pathlib.Path(__file__).parent

#: The migrations folder; files are applied in name order (``NNNN_what.sql``).
MIGRATIONS_DIR = HERE / "migrations"

#: A migration whose first line is this runs outside a transaction, one
#: statement at a time (``CREATE INDEX CONCURRENTLY`` cannot run in one).
NO_TRANSACTION = "-- tunix: no-transaction"

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
#: ``:HELD`` and the like; not ``::jsonb`` (a cast) nor ``%(name)s``.
_SET = re.compile(r"(?<![:\w]):([A-Z][A-Z_]*)\b")


def _spell_sets(statement, source):
    from ..lifecycle import SQL_SETS, RunStatus

    def literal(match):
        try:
            statuses = SQL_SETS[match.group(1)]
        except KeyError:
            raise ValueError(f"{source} names no status set {match.group(1)!r}; sets: "
                             f"{', '.join(SQL_SETS)}") from None
        return "(" + ", ".join(f"'{s.value}'" for s in sorted(statuses, key=list(RunStatus).index)) + ")"

    return _SET.sub(literal, statement)


def _parse(text, source="<text>"):
    parts = _NAME.split(text)
    queries = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        if name in queries:
            raise ValueError(f"{source} names the query {name!r} twice")
        lines = [line for line in body.strip().splitlines() if not line.startswith("--")]
        queries[name] = _spell_sets("\n".join(lines).strip(), source)
    return queries


def query_files():
    """The files of named queries, in name order."""
    return sorted(HERE.glob("*.sql"))


def _load(paths):
    queries, found_in = {}, {}
    for path in paths:
        for name, statement in _parse(path.read_text(), path.name).items():
            if name in found_in:
                raise ValueError(f"the query {name!r} is named in both {found_in[name]} and {path.name}")
            found_in[name] = path.name
            queries[name] = statement
    return queries


QUERIES = _load(query_files())


class Migration(NamedTuple):
    """One file of ``migrations/``; unpacks as ``(version, name, sql)``."""

    version: int
    #: The file's stem, ``NNNN_what``.
    name: str
    #: The file's text.
    sql: str

    @property
    def checksum(self):
        """sha256 of the file's text (hex), recorded when it is applied."""
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def transactional(self):
        """False when the first line is ``NO_TRANSACTION``."""
        return self.sql.split("\n", 1)[0].strip() != NO_TRANSACTION

    @property
    def statements(self):
        """The statements of a no-transaction migration, each run on its own.

        A statement ends with a line that ends with ``;``; whole-line ``--``
        comments are left out.  Simple on purpose: such a migration holds
        DDL, no function body (those belong in a transactional one).
        """
        statements, lines = [], []
        for line in self.sql.splitlines():
            if line.lstrip().startswith("--") or not line.strip():
                continue
            lines.append(line)
            if line.rstrip().endswith(";"):
                statements.append("\n".join(lines).strip())
                lines = []
        if lines:
            statements.append("\n".join(lines).strip())
        return statements


def migrations(directory=None):
    """``[Migration(version, name, sql)]`` of ``directory`` (default
    ``MIGRATIONS_DIR``) in the order they apply."""
    out = []
    for path in sorted(pathlib.Path(directory or MIGRATIONS_DIR).glob("*.sql")):
        version = int(path.name.split("_", 1)[0])
        out.append(Migration(version, path.stem, path.read_text()))
    return out
