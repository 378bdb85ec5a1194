"""The audit trail's writer thread (app/audit_writer.py), on real PostgreSQL."""

import logging

import psycopg2

from app import audit_writer
from app.audit_writer import AuditWriter

from support import free_port


def row(i):
    return dict(user_name=None, role=None, token_id=None, action="runs.submit", method="POST",
                path=f"/api/tunix/run/{i}", run_ids=[], status=202, remote_addr="127.0.0.1", detail={"i": i})


def written(url):
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*), count(DISTINCT xmin::text) FROM tunix_audit")
            return cur.fetchone()
    finally:
        conn.close()


def test_rows_handed_over_together_are_written_together_and_flush_waits_for_them(databases):
    # Given a writer on a database of its own, and 250 rows handed over at once (as a burst
    # of requests does)
    database_url = databases.create()
    writer = AuditWriter(database_url)
    for i in range(250):
        writer.put(row(i))
    # When a reader flushes it (GET /api/tunix/audit does)
    assert writer.flush(10)
    # Then every row is there, written in a few statements (100 rows each), not one a row
    rows, transactions = written(database_url)
    assert rows == 250
    assert transactions <= 4
    # And a row handed over later is written by a batch of its own, which flush waits for too
    writer.put(row(250))
    assert writer.flush(10)
    assert written(database_url)[0] == 251


def test_rows_the_database_never_takes_go_to_the_log_and_flush_returns(monkeypatch, caplog):
    # Given a writer whose database does not answer, and little patience
    monkeypatch.setattr(audit_writer, "PATIENCE_S", 0.5)
    writer = AuditWriter(f"postgresql://nobody@127.0.0.1:{free_port()}/none")
    # When rows are handed over
    with caplog.at_level(logging.ERROR, logger="app.audit_writer"):
        writer.put(row(1))
        writer.put(row(2))
        # Then flush returns once they are given up, and each is in the log, loud
        assert writer.flush(20)
    lost = [r.getMessage() for r in caplog.records if "AUDIT ROWS NOT WRITTEN" in r.getMessage()]
    assert len(lost) == 2
    assert all("/api/tunix/run/" in message for message in lost)
