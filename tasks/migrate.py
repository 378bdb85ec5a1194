"""Apply the versioned SQL migrations in ``tasks/sql/migrations``: ``tunix-migrate``.

    tunix-migrate              # apply what is missing (DATABASE_URL)
    tunix-migrate --check      # say whether the schema is what this code knows

Several processes may start at once: each takes a session advisory lock
(``MIGRATION_LOCK``), the first applies, the others wait for it and then
find nothing left to do.  They poll for it (``pg_try_advisory_lock``) rather
than wait in ``pg_advisory_lock``: a session waiting there holds a snapshot,
and ``CREATE INDEX CONCURRENTLY`` waits for every older snapshot, so the
migrator building an index and the one waiting for its lock deadlocked.
(Code from before this polled nothing: such a process still waiting in
``pg_advisory_xact_lock`` during an upgrade is ended by PostgreSQL's deadlock
detector, or ends the build, and whichever failed retries on its next run.)
Each migration commits on its own, with its version row.

**What is recorded.** ``tunix_schema_migrations`` holds one row per applied
migration: version, name and the sha256 of the file's text (``checksum``).
The column came after the table: ``migrate`` adds it (``ADD COLUMN IF NOT
EXISTS``), and a row applied before it (checksum NULL) is given the current
file's checksum on the next run.  That rule is what keeps databases that
applied the old 0010 and 0011 working: those two were rewritten (a CHECK
added ``NOT VALID`` then validated, indexes built ``CONCURRENTLY``) into
the same end state, their rows exist, and their NULL checksums become the new
files' ones.  From then on a file whose text differs from what was recorded
is refused (``SchemaMismatch``): a change to the schema is a new migration.

**Which database a process refuses.** One that holds a migration this code
does not know (newer code applied it), or one whose recorded checksum
differs from the file's: a worker launch and ``make run`` exit 2 with the
reason, and the API refuses to start when the database answers.  A running
API stays ready on a database ahead of it (``/readyz`` 200 with
``"migrations": "ahead"`` and the sentence: a rolling upgrade's old pods serve
until new ones are ready), and is unready (503) on a changed checksum.  With ``AUTO_MIGRATE=0``
(the Helm chart: its hook runs ``tunix-migrate``) no process migrates; a
worker launch exits 2 naming the pending migrations and the API is not
ready until they are applied.

**Locks.** Each statement waits at most ``LOCK_TIMEOUT`` for its lock: an
``ALTER TABLE`` queued behind a long transaction would otherwise hold every
query of that table behind it.  A transactional migration that times out
leaves nothing (no statement, no version row) and ``LockTimeout`` says so;
the next run (a worker launch the supervisor restarts, or ``tunix-migrate``
again) tries again.

**No-transaction migrations.** A file whose first line is ``-- tunix:
no-transaction`` runs one statement at a time, outside a transaction, so it
can ``CREATE INDEX CONCURRENTLY`` and ``VALIDATE CONSTRAINT`` without a long
``ACCESS EXCLUSIVE`` lock (an explicit ``BEGIN; ... COMMIT;`` inside it
groups the statements that must go together).  Its version row is written
after its last statement, so one that fails halfway runs again from the top
next time: every statement must be re-runnable (``IF NOT EXISTS``, ``DROP
... IF EXISTS`` first), and an index that a failed ``CONCURRENTLY`` build
left INVALID is dropped and built again before its ``CREATE INDEX
CONCURRENTLY IF NOT EXISTS`` (which would otherwise keep it as it is).

Exit status of ``tunix-migrate``: 0 applied (or nothing to apply) / schema
current; 1 migrations pending (``--check``) or a migration could not get its
lock; 2 the database is ahead of this code or a checksum differs (or no
``DATABASE_URL``); 3 the database did not answer.
"""

import argparse
import functools
import logging
import re
import sys
import time
from dataclasses import dataclass, field

import psycopg2
import psycopg2.errors

from . import db
from .settings import settings_at_start
from .sql import MIGRATIONS_DIR, migrations

logger = logging.getLogger(__name__)

#: Arbitrary constant: the advisory lock all migrating processes queue on.
MIGRATION_LOCK = 7_231_402_118

#: Seconds between two tries for ``MIGRATION_LOCK`` while another process holds it.
LOCK_POLL_S = 0.1

#: How long one statement of a migration waits for a table's lock.  An
#: ``ALTER TABLE`` waiting for ``ACCESS EXCLUSIVE`` queues every later reader
#: and writer of the table behind it, so a migration stuck behind a long
#: transaction would stall the API and the workers; with this it fails in
#: seconds, leaves nothing applied, and the next run tries again.
LOCK_TIMEOUT = "5s"

CREATE_VERSIONS = """
CREATE TABLE IF NOT EXISTS tunix_schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

#: The checksum column, added to tables made before it (rows keep NULL until backfilled).
ADD_CHECKSUM = "ALTER TABLE tunix_schema_migrations ADD COLUMN IF NOT EXISTS checksum text"

#: ``CREATE [UNIQUE] INDEX CONCURRENTLY IF NOT EXISTS <name>``: the index a failed build may have left INVALID.
_CONCURRENT_INDEX = re.compile(
    r"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s+([\w.\"]+)", re.IGNORECASE)


# NOTE: these errors live here, not in tasks/errors.py: only a process's
# start (and this command) meets them, and the API maps none to a status.
class MigrationError(Exception):
    """Base of the errors a migration run or a start check raises."""


class SchemaMismatch(MigrationError):
    """Raised when the database holds a migration this code does not know, or
    one whose file changed after it was applied: a process refuses it."""

    def __init__(self, state, who="this code"):
        super().__init__("; ".join(state.problems(who)))
        self.state = state


class MigrationsPending(MigrationError):
    """Raised at a start with ``AUTO_MIGRATE=0`` when migrations are pending."""

    def __init__(self, names):
        super().__init__(f"migrations not applied: {', '.join(names)} (AUTO_MIGRATE=0: apply them with "
                         "tunix-migrate, e.g. the Helm chart's hook)")
        self.names = names


class LockTimeout(MigrationError):
    """Raised when a statement of a migration waited ``LOCK_TIMEOUT`` for a lock."""


@dataclass
class SchemaState:
    """What the database holds, compared with what this code knows."""

    #: Names of the known migrations not applied yet, in order.
    pending: list = field(default_factory=list)
    #: Names of applied migrations this code does not know (newer code applied them).
    unknown: list = field(default_factory=list)
    #: ``(file name, recorded checksum, file's checksum)`` of applied migrations whose file changed.
    changed: list = field(default_factory=list)
    #: The last migration this code knows.
    known_up_to: str = ""
    #: ``Migration`` objects to apply (those of ``pending``).
    todo: list = field(default_factory=list)
    #: ``(version, checksum)`` of applied rows with no checksum yet.
    backfill: list = field(default_factory=list)

    @property
    def conflicts(self):
        """True when a process must refuse this database."""
        return bool(self.unknown or self.changed)

    def problems(self, who="this code"):
        """The reasons to refuse the database, one sentence each (``who``: what to upgrade)."""
        out = []
        if self.unknown:
            noun = "migration" if len(self.unknown) == 1 else "migrations"
            out.append(f"database has {noun} {', '.join(self.unknown)} that this code does not know: "
                       f"upgrade {who} (code knows up to {self.known_up_to or 'none'})")
        for name, recorded, current in self.changed:
            out.append(f"migration {name} changed after it was applied: the database recorded sha256 {recorded}, "
                       f"the file has sha256 {current} (restore the file; a schema change is a new migration)")
        return out


@functools.lru_cache(maxsize=1)
def _shipped():
    # What this process' code knows: read once, so a checkout changed under
    # a running process does not change its answer.
    return tuple(migrations(MIGRATIONS_DIR))


def known(directory=None):
    """The migrations of ``directory`` (default: the shipped ones, read once per process)."""
    return list(_shipped()) if directory is None else migrations(directory)


def _applied(conn):
    """``{version: (name, checksum or None)}`` recorded on ``conn``'s database."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('tunix_schema_migrations') IS NOT NULL")
        if not cur.fetchone()[0]:
            return {}
        # to_jsonb: a table made before the checksum column answers NULL, not an error.
        cur.execute("SELECT version, name, to_jsonb(m) ->> 'checksum' FROM tunix_schema_migrations m")
        return {version: (name, checksum) for version, name, checksum in cur.fetchall()}


def state(conn, directory=None):
    """Compare ``conn``'s database with the migrations of ``directory``; reads only."""
    code = known(directory)
    applied = _applied(conn)
    found = SchemaState(known_up_to=code[-1].name if code else "")
    by_version = {m.version: m for m in code}
    for version in sorted(applied):
        name, checksum = applied[version]
        mine = by_version.get(version)
        if mine is None or mine.name != name:
            found.unknown.append(name)
        elif checksum is None:
            found.backfill.append((version, mine.checksum))
        elif checksum != mine.checksum:
            found.changed.append((f"{name}.sql", checksum, mine.checksum))
    found.todo = [m for m in code if m.version not in applied]
    found.pending = [m.name for m in found.todo]
    return found


def pending(conn):
    """Names of migrations not applied yet on ``conn``'s database."""
    return state(conn).pending


def migrate(url, directory=None, lock_timeout=LOCK_TIMEOUT, who="this code"):
    """Apply what is missing; return the names applied.

    Raises:
      SchemaMismatch: the database is ahead of this code or a file changed
        (checked under the lock, before anything is applied).
      LockTimeout: a statement waited ``lock_timeout`` for its lock; that
        migration left no version row (a transactional one nothing at all).
    """
    applied = []
    conn = db.connect(url, application_name="tunix-rt-migrate")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            _take_migration_lock(cur)
            cur.execute(CREATE_VERSIONS)
            # Only when missing: ALTER TABLE locks the table even when IF NOT EXISTS finds the column.
            cur.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 'tunix_schema_migrations'::regclass "
                        "AND attname = 'checksum' AND NOT attisdropped")
            if not cur.fetchone()[0]:
                cur.execute(ADD_CHECKSUM)
        found = state(conn, directory)
        if found.conflicts:
            raise SchemaMismatch(found, who)
        with conn.cursor() as cur:
            for version, checksum in found.backfill:
                cur.execute("UPDATE tunix_schema_migrations SET checksum = %s WHERE version = %s AND checksum IS NULL",
                            (checksum, version))
        for migration in found.todo:
            logger.info("applying migration %s%s", migration.name,
                        "" if migration.transactional else " (no transaction)")
            try:
                if migration.transactional:
                    _apply_in_transaction(conn, migration, lock_timeout)
                else:
                    _apply_statements(conn, migration, lock_timeout)
            except psycopg2.errors.LockNotAvailable as exc:
                left = ("nothing of it was applied" if migration.transactional else
                        "it is re-runnable and left no version row")
                raise LockTimeout(
                    f"migration {migration.name} could not get a lock within lock_timeout {lock_timeout} "
                    f"({str(exc).strip()}): another session holds it; {left}, and the next run tries again"
                ) from None
            applied.append(migration.name)
    finally:
        conn.close()  # (and with it the advisory lock)
    return applied


def _take_migration_lock(cur):
    # A session lock, not a transaction's: migrations commit one by one.
    # Polled, between statements, so this session holds no snapshot while it
    # waits (see the module's doc).
    waiting = False
    while True:
        cur.execute("SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK,))
        if cur.fetchone()[0]:
            return
        if not waiting:
            waiting = True
            logger.info("another process is migrating; waiting for it")
        time.sleep(LOCK_POLL_S)


def _record(cur, migration):
    cur.execute("INSERT INTO tunix_schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum))


def _apply_in_transaction(conn, migration, lock_timeout):
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL lock_timeout = %s", (lock_timeout,))
            cur.execute(migration.sql)
            _record(cur, migration)
        conn.commit()
    finally:
        if not conn.closed:
            conn.rollback()  # after the commit: a no-op
            conn.autocommit = True


def _apply_statements(conn, migration, lock_timeout):
    with conn.cursor() as cur:
        cur.execute("SET lock_timeout = %s", (lock_timeout,))
        for statement in migration.statements:
            index = _CONCURRENT_INDEX.match(statement)
            if index:
                _drop_if_invalid(cur, index.group(1))
            cur.execute(statement)
        _record(cur, migration)
        cur.execute("RESET lock_timeout")
    # (on an error the caller closes the connection: an explicit BEGIN the
    # file opened is rolled back with it)


def _drop_if_invalid(cur, index):
    cur.execute("SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", (index,))
    row = cur.fetchone()
    if row and row[0]:
        logger.warning("index %s is INVALID (a CONCURRENTLY build failed): dropping it to build it again", index)
        cur.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {index}")


def ensure_schema(url, auto_migrate=True, who="this code"):
    """A process' start: migrate (``AUTO_MIGRATE``), or check that nothing is pending.

    Returns the names applied.

    Raises:
      SchemaMismatch: the database is ahead of this code, or a file changed.
      MigrationsPending: ``auto_migrate`` is off and migrations are pending.
      LockTimeout: see ``migrate``.
    """
    if auto_migrate:
        return migrate(url, who=who)
    conn = db.connect(url, application_name="tunix-rt-schema-check")
    try:
        found = state(conn)
    finally:
        conn.close()
    if found.conflicts:
        raise SchemaMismatch(found, who)
    if found.pending:
        raise MigrationsPending(found.pending)
    return []


def check(url):
    """``tunix-migrate --check``: (exit status, lines to print)."""
    try:
        conn = db.connect(url, application_name="tunix-rt-migrate-check")
        try:
            found = state(conn)
        finally:
            conn.close()
    except psycopg2.Error as exc:
        return 3, [f"database unavailable: {str(exc).strip()}"]
    if found.conflicts:
        return 2, found.problems("tunix-migrate and every process to this version or later")
    if found.pending:
        return 1, [f"migrations pending: {', '.join(found.pending)}"]
    return 0, [f"schema current: up to {found.known_up_to}"]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="tunix-migrate", description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--check", action="store_true",
                        help="apply nothing; exit 0 when the schema is what this code knows, 1 when migrations "
                             "are pending, 2 when the database is ahead or a checksum differs, 3 when it does "
                             "not answer")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    url = settings_at_start().database_url
    if not url:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 2
    if args.check:
        code, lines = check(url)
        for line in lines:
            print(line, file=sys.stdout if code == 0 else sys.stderr)
        return code
    try:
        names = migrate(url, who="tunix-migrate")
    except SchemaMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except LockTimeout as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except psycopg2.OperationalError as exc:
        print(f"database unavailable: {str(exc).strip()}", file=sys.stderr)
        return 3
    print(f"applied {len(names)} migration(s): {', '.join(names) or 'none needed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
