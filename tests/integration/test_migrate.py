"""Migrations: applied once, whoever runs them and however many at once."""

import json
import subprocess
import sys

from tasks import migrate
from tasks.sql import migrations

from support import ROOT, connect, scalar, wait_for

ALL = [name for _, name, _ in migrations()]

MIGRATE_AND_PRINT = "import json, sys; from tasks.migrate import migrate; print(json.dumps(migrate(sys.argv[1])))"


def applied_versions(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT version, name FROM tunix_schema_migrations ORDER BY version")
        return cur.fetchall()


def test_a_blank_database_is_reported_as_missing_every_migration(databases):
    url = databases.create(migrated=False)
    conn = connect(url)
    try:
        assert migrate.pending(conn) == ALL
    finally:
        conn.close()


def test_migrating_twice_applies_everything_once_then_nothing(databases):
    # Given a blank database
    url = databases.create(migrated=False)
    # When it is migrated twice
    first = migrate.migrate(url)
    second = migrate.migrate(url)
    # Then the first applies every migration in order and the second none
    assert first == ALL
    assert second == []
    conn = connect(url)
    try:
        assert applied_versions(conn) == [(v, n) for v, n, _ in migrations()]
        assert migrate.pending(conn) == []
        assert scalar(conn, "SELECT to_regclass('tunix_runs') IS NOT NULL")
        assert scalar(conn, "SELECT to_regclass('dramatiq.queue') IS NOT NULL")
    finally:
        conn.close()


def test_four_processes_migrating_at_once_apply_each_migration_once_without_error(databases):
    # Given a blank database, and the migration lock held so the four processes pile up on it
    url = databases.create(migrated=False)
    holder = connect(url)
    scalar(holder, "SELECT pg_advisory_lock(%s)::text", (migrate.MIGRATION_LOCK,))
    procs = [subprocess.Popen([sys.executable, "-c", MIGRATE_AND_PRINT, url], cwd=str(ROOT),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    try:
        # (all four are waiting on the lock: they really run at once)
        wait_for(lambda: scalar(holder, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                                        "AND database = (SELECT oid FROM pg_database WHERE datname = "
                                        "current_database())") == 4, timeout=30, message="4 migrators waiting")
        # When the lock is released
        scalar(holder, "SELECT pg_advisory_unlock(%s)", (migrate.MIGRATION_LOCK,))
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    # Then every process exits 0; exactly one applied everything, the others nothing
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    applied = sorted((json.loads(out) for out, _ in outputs), key=len)
    assert applied == [[], [], [], ALL]
    assert applied_versions(holder) == [(v, n) for v, n, _ in migrations()]
    holder.close()


def test_readiness_sees_a_partially_migrated_database(databases):
    # Given a database where only the first migration is recorded
    url = databases.create()
    conn = connect(url)
    with conn.cursor() as cur:
        cur.execute("DELETE FROM tunix_schema_migrations WHERE version > 1")
    # Then the others are pending
    assert migrate.pending(conn) == ALL[1:]
    conn.close()
