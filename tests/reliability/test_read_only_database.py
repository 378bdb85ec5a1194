"""The database turns read-only for some seconds under steady submits: a
failover, a demoted primary (``default_transaction_read_only`` and a reload,
on an embedded PostgreSQL of this module's own).

psycopg2 reports a refused write as ``InternalError`` (SQLSTATE 25006), not
a disconnect.  Reproduced before the fix: 8 s of it under steady submits
answered 38 valid submits 500, and a training that finished meanwhile had no
retried final write.  Now every submit in the window is a 503 with
``Retry-After`` (reads stay 200), the training that finished in it is
recorded ``completed`` once the database takes writes again, on its first
attempt, and everything acknowledged completes.
"""

import threading
import time

import psycopg2
import pytest
import requests

from support import ApiClient, DRY, pids_with, start_api
from reliability_support import FINAL, Stopwatch, run_row, step_of, training, wait_all_final, wait_row

pytestmark = pytest.mark.training

READ_ONLY_S = 8
#: Steps a second of the tiny training on 2 cores (see test_database_restart.py).
STEPS_PER_S = 65
FLEET_ENV = dict(HEARTBEAT_TIMEOUT_S=5, REAPER_INTERVAL_S=1, ORPHAN_AGE_S=5, TRAIN_CONCURRENCY=1)


def set_read_only(url, on):
    """What a demoted primary looks like to its clients: every session's next
    transaction is read-only (the superuser's own session is kept writable
    to undo it)."""
    conn = psycopg2.connect(url, options="-c default_transaction_read_only=off")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            if on:
                cur.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            else:
                cur.execute("ALTER SYSTEM RESET default_transaction_read_only")
            cur.execute("SELECT pg_reload_conf()")
    finally:
        conn.close()


def test_a_read_only_database_is_503_and_loses_no_finished_training(own_pg, data_dir, log_dir, worker_launch,
                                                                      report):
    server, url = own_pg
    api = start_api(url, data_dir, log_dir)
    launch = worker_launch(workers=1, threads=4, url=url, **FLEET_ENV)
    client = ApiClient(api.url)
    conn = psycopg2.connect(url)
    conn.autocommit = True
    answers, acked, stop = [], [], threading.Event()

    def submitter():
        i = 0
        while not stop.is_set():
            i += 1
            t = Stopwatch()
            try:
                response = requests.post(f"{api.url}/api/tunix/run", params={"mode": "async"},
                                         json=dict(DRY, seed=i), headers={"Idempotency-Key": f"ro-{i}"}, timeout=15)
            except requests.RequestException as exc:
                answers.append((None, t(), repr(exc), {}))
                continue
            answers.append((response.status_code, t(), response.text[:300], response.headers))
            if response.status_code == 202:
                acked.append(response.json()["run_id"])
            time.sleep(0.1)

    try:
        # Given a training that will finish inside the read-only window
        steps = int((READ_ONLY_S / 2 + 1) * STEPS_PER_S)
        run_id = client.submit(training(max_steps=steps), mode="async").json()["run_id"]
        wait_row(conn, run_id, lambda r: r["status"] == "running" and step_of(r) >= 10, 120, "training")
        thread = threading.Thread(target=submitter, daemon=True)
        thread.start()
        time.sleep(1)
        before = len(answers)
        # When the database refuses writes for READ_ONLY_S seconds
        set_read_only(url, True)
        window = Stopwatch()
        reads = []
        while window() < READ_ONLY_S:
            reads.append(requests.get(f"{api.url}/api/tunix/runs/{run_id}", timeout=15).status_code)
            time.sleep(0.5)
        during = answers[before:]
        status_in_window = run_row(conn, run_id)["status"]
        trained_through = bool(pids_with(f"{run_id}/"))
        set_read_only(url, False)
        time.sleep(2)
        stop.set()
        thread.join(timeout=30)
        # Then no answer was a 500: a submit in the window is a 503 with Retry-After, a read a 200
        codes = {}
        for status, *_ in answers:
            codes[status] = codes.get(status, 0) + 1
        assert 500 not in codes and None not in codes, codes
        refused = [a for a in during if a[0] == 503]
        assert refused, f"no submit was refused while the database was read-only: {codes}"
        assert all(h.get("Retry-After") for *_, h in refused)
        assert any("read-only" in text for _, _, text, _ in refused), refused[:2]
        assert set(reads) == {200}, reads
        # And submits are accepted again without restarting anything (the pool's
        # read-only connections were dropped; the API and the workers took new ones)
        assert answers[-1][0] == 202, answers[-3:]
        # And the training that finished in the window is recorded completed, on its
        # first attempt, with all its steps: not trained again
        row = wait_row(conn, run_id, lambda r: r["status"] in FINAL, 120, "final")
        assert row["status"] == "completed", row
        assert row["attempts"] == 1 and row["result"]["steps"] == steps, row
        # And every acknowledged submit completes
        c = wait_all_final(conn, timeout=120)
        assert c["by_status"] == {"completed": c["rows"]}, c
        assert c["rows"] == 1 + len(set(acked)), (c, len(set(acked)))
        assert c["attempts"] == c["rows"], c
        assert launch.proc.poll() is None and api.proc.poll() is None
        report(f"database read-only {READ_ONLY_S}s under steady submits: answers {codes}, "
               f"{len(refused)} submits in the window 503 with Retry-After, {len(reads)} reads 200; the "
               f"{steps}-step training ({'still training' if trained_through else 'done'}) was "
               f"{status_in_window} at the window's end and completed on attempt 1; "
               f"{c['rows']} runs completed, 0 lost, {c['attempts']} attempts")
    finally:
        stop.set()
        conn.close()
        launch.stop()
        api.stop()
