"""Migrations: applied once, whoever runs them and however many at once;
recorded with their checksum; refused when the database is ahead of the code
or a file changed; bounded by ``lock_timeout``; re-runnable outside a
transaction."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from tasks import migrate
from tasks.sql import MIGRATIONS_DIR, migrations

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
        # (all four are connected and trying for the lock: they really run at once)
        wait_for(lambda: scalar(holder, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                        "AND application_name = 'tunix-rt-migrate' "
                                        "AND query LIKE '%%pg_try_advisory_lock%%'") == 4,
                 timeout=30, message="4 migrators waiting")
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


# --------------------------------------------------------------------------
# Checksums, and a database ahead of the code


def checksums(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT name, checksum FROM tunix_schema_migrations ORDER BY version")
        return dict(cur.fetchall())


def migrations_copy(tmp_path, **extra):
    """The shipped migrations copied to a folder, plus ``extra`` files (name without .sql: text)."""
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    for name, text in extra.items():
        (folder / f"{name}.sql").write_text(text)
    return folder


def test_each_applied_migration_is_recorded_with_the_sha256_of_its_files_text(databases):
    # Given a database migrated by this code
    conn = connect(databases.create())
    # Then each row holds the sha256 of its file, as the file reads now
    files = sorted(MIGRATIONS_DIR.glob("*.sql"))
    assert checksums(conn) == {path.stem: hashlib.sha256(path.read_text().encode()).hexdigest() for path in files}
    conn.close()


def test_rows_applied_before_there_were_checksums_get_the_current_files_one_on_the_next_run(databases):
    # Given a database migrated before the checksum column existed (the old 0010 and 0011 included)
    url = databases.create()
    conn = connect(url)
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE tunix_schema_migrations DROP COLUMN checksum")
    # Then it is not refused, and nothing is pending
    found = migrate.state(conn)
    assert (found.conflicts, found.pending) == (False, [])
    # When it is migrated
    assert migrate.migrate(url) == []
    # Then every row holds its file's checksum, and a second run finds nothing to do
    assert checksums(conn) == {m.name: m.checksum for m in migrations()}
    assert migrate.state(conn).backfill == []
    conn.close()


def test_a_migration_file_changed_after_it_was_applied_is_refused_naming_the_file_and_both_checksums(databases,
                                                                                                   tmp_path):
    # Given a migrated database, and code whose 0005 differs from what was applied, with one new migration
    url = databases.create()
    folder = migrations_copy(tmp_path, **{"9001_new_table": "CREATE TABLE probe (x integer);"})
    edited = next(folder.glob("0005_*.sql"))
    recorded = hashlib.sha256(edited.read_text().encode()).hexdigest()
    edited.write_text(edited.read_text() + "\n-- edited after it was applied\n")
    current = hashlib.sha256(edited.read_text().encode()).hexdigest()
    # When it is migrated
    with pytest.raises(migrate.SchemaMismatch) as refused:
        migrate.migrate(url, directory=folder)
    # Then it is refused, naming the file and both checksums, and nothing was applied
    message = str(refused.value)
    assert edited.name in message and recorded in message and current in message
    conn = connect(url)
    assert scalar(conn, "SELECT to_regclass('probe') IS NULL")
    assert migrate.state(conn, folder).pending == ["9001_new_table"]
    conn.close()


def test_a_database_with_a_migration_this_code_does_not_know_is_refused_with_or_without_auto_migrate(databases):
    # Given a database that newer code migrated further (one more row than this code knows)
    url = databases.create()
    conn = connect(url)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO tunix_schema_migrations (version, name, checksum) VALUES (9999, '9999_newer', 'x')")
    last = migrations()[-1].name
    want = (f"database has migration 9999_newer that this code does not know: upgrade this worker "
            f"(code knows up to {last})")
    # When a worker starts on it, migrating or not
    for auto in (True, False):
        with pytest.raises(migrate.SchemaMismatch) as refused:
            migrate.ensure_schema(url, auto_migrate=auto, who="this worker")
        # Then it is refused with that sentence
        assert str(refused.value) == want
    conn.close()


def test_without_auto_migrate_a_start_applies_nothing_and_names_the_pending_migrations(databases):
    # Given a database one migration behind
    url = databases.create()
    conn = connect(url)
    last = migrations()[-1]
    with conn.cursor() as cur:
        cur.execute("DELETE FROM tunix_schema_migrations WHERE version = %s", (last.version,))
    # When a process starts with AUTO_MIGRATE=0
    with pytest.raises(migrate.MigrationsPending, match=last.name):
        migrate.ensure_schema(url, auto_migrate=False)
    # Then nothing was applied
    assert migrate.pending(conn) == [last.name]
    conn.close()


def tunix_migrate(url, *args):
    """The console script ``tunix-migrate`` (setup.cfg), run on ``url``."""
    script = os.path.join(os.path.dirname(sys.executable), "tunix-migrate")
    env = dict(os.environ, DATABASE_URL=url, PYTHONPATH=str(ROOT))
    return subprocess.run([script, *args], env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=60)


def test_tunix_migrate_check_exits_1_pending_0_current_2_ahead_or_changed(databases):
    # Given a blank database: 1, naming every migration
    url = databases.create(migrated=False)
    behind = tunix_migrate(url, "--check")
    assert (behind.returncode, behind.stderr.strip()) == (1, f"migrations pending: {', '.join(ALL)}")
    # When plain tunix-migrate runs, it applies them, after which --check is 0
    applied = tunix_migrate(url)
    assert applied.returncode == 0 and ALL[-1] in applied.stdout, applied.stderr
    current = tunix_migrate(url, "--check")
    assert current.returncode == 0 and ALL[-1] in current.stdout, current.stderr
    conn = connect(url)
    # Given a recorded checksum that differs from its file: 2, naming the file
    with conn.cursor() as cur:
        cur.execute("UPDATE tunix_schema_migrations SET checksum = 'abc' WHERE version = 1")
    changed = tunix_migrate(url, "--check")
    assert changed.returncode == 2 and "0001_dramatiq_queue.sql" in changed.stderr and "abc" in changed.stderr
    # And plain tunix-migrate refuses it the same way
    assert tunix_migrate(url).returncode == 2
    # Given a migration this code does not know: 2, naming it
    with conn.cursor() as cur:
        cur.execute("UPDATE tunix_schema_migrations SET checksum = NULL WHERE version = 1")
        cur.execute("INSERT INTO tunix_schema_migrations (version, name) VALUES (9999, '9999_newer')")
    ahead = tunix_migrate(url, "--check")
    assert ahead.returncode == 2 and "9999_newer" in ahead.stderr
    conn.close()


# --------------------------------------------------------------------------
# lock_timeout, and migrations outside a transaction


def test_a_migration_blocked_by_a_held_lock_fails_in_bounded_time_and_leaves_nothing(databases, tmp_path):
    # Given a migration of two statements whose second needs a lock another session holds
    url = databases.create()
    folder = migrations_copy(tmp_path, **{
        "9001_blocked": "CREATE TABLE probe (x integer);\nALTER TABLE tunix_runs ADD COLUMN probe integer;\n"})
    blocker = connect(url)
    blocker.autocommit = False
    scalar(blocker, "SELECT count(*) FROM tunix_runs")  # ACCESS SHARE, held until it commits
    try:
        # When it is migrated with a short lock_timeout
        started = time.monotonic()
        with pytest.raises(migrate.LockTimeout, match="9001_blocked could not get a lock within lock_timeout 200ms"):
            migrate.migrate(url, directory=folder, lock_timeout="200ms")
        # Then it fails in bounded time (not when the blocker ends)
        assert time.monotonic() - started < 5
    finally:
        blocker.rollback()
    # And nothing of it is applied: no table, no column, no version row
    conn = connect(url)
    assert scalar(conn, "SELECT to_regclass('probe') IS NULL")
    assert scalar(conn, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'tunix_runs' "
                        "AND column_name = 'probe'") == 0
    assert migrate.state(conn, folder).pending == ["9001_blocked"]
    # When the next run finds the lock free
    assert migrate.migrate(url, directory=folder, lock_timeout="200ms") == ["9001_blocked"]
    assert migrate.state(conn, folder).pending == []
    blocker.close()
    conn.close()


def test_a_concurrent_index_build_that_failed_leaves_an_invalid_index_the_next_run_drops_and_builds(databases,
                                                                                                  tmp_path):
    # Given a no-transaction migration that builds an index CONCURRENTLY
    url = databases.create()
    conn = connect(url)
    scalar(conn, "CREATE TABLE probe (x integer) ; SELECT 1")
    folder = migrations_copy(tmp_path, **{
        "9001_probe_index": "-- tunix: no-transaction\n"
                            "CREATE INDEX CONCURRENTLY IF NOT EXISTS probe_x ON probe (x);\n"})
    # And a writer of the table holding its transaction open, so the build waits for it past lock_timeout
    writer = connect(url)
    writer.autocommit = False
    with writer.cursor() as cur:
        cur.execute("INSERT INTO probe VALUES (1)")
    try:
        # When it is migrated
        with pytest.raises(migrate.LockTimeout, match="9001_probe_index.*re-runnable"):
            migrate.migrate(url, directory=folder, lock_timeout="300ms")
    finally:
        writer.commit()
    # Then the failed build left an INVALID index and no version row
    assert scalar(conn, "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = 'probe_x'::regclass")
    assert migrate.state(conn, folder).pending == ["9001_probe_index"]
    # When the next run goes
    assert migrate.migrate(url, directory=folder, lock_timeout="300ms") == ["9001_probe_index"]
    # Then the index is valid (dropped and built again, not kept by IF NOT EXISTS) and recorded
    assert scalar(conn, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'probe_x'::regclass")
    assert migrate.state(conn, folder).pending == []
    writer.close()
    conn.close()


def test_the_shipped_no_transaction_migrations_run_again_over_what_they_already_did(databases):
    # Given a migrated database where 0010 and 0011 ran but their rows were not written
    # (a failure after their last statement), and 0011's index half gone
    url = databases.create()
    conn = connect(url)
    shipped = {m.version: m for m in migrations()}
    assert not shipped[10].transactional and not shipped[11].transactional
    with conn.cursor() as cur:
        cur.execute("DELETE FROM tunix_schema_migrations WHERE version IN (10, 11)")
        cur.execute("DROP INDEX tunix_runs_queued_trainings")
    # When it is migrated again
    assert migrate.migrate(url) == [shipped[10].name, shipped[11].name]
    # Then both are recorded, the index is back and valid, and the status CHECK is validated
    assert migrate.state(conn).pending == []
    assert scalar(conn, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'tunix_runs_queued_trainings'::regclass")
    assert scalar(conn, "SELECT convalidated FROM pg_constraint WHERE conname = 'tunix_runs_status_check'")
    assert scalar(conn, "SELECT pg_get_indexdef('tunix_runs_deferred'::regclass)").endswith(
        "(priority DESC, created_at) WHERE (status = 'deferred'::text)")
    conn.close()
