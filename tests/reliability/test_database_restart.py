"""PostgreSQL stopped and started again under a running fleet.

The server is an embedded one of this module's own (``workers.pgembed`` in a
temporary folder, even when ``DATABASE_URL`` is set): the test stops it.  An
API and one worker launch (one process, one training slot, a lost worker
noticed after 5 s) run on it: a training is running, another is queued
behind it, dry runs are queued or done.  During the outage the API answers
503 at once; afterwards nobody restarts anything and every run ends,
executed once.
"""

import time

import pytest
import requests

from support import ApiClient, DRY, connect, metric, pids_with, start_api
from reliability_support import (
    FINAL,
    Stopwatch,
    run_row,
    step_of,
    training,
    wait_all_final,
    wait_row,
)

pytestmark = pytest.mark.training

#: Slowest answer accepted from the API while the database is down.
ANSWER_BOUND_S = 10
#: Steps a second of this tiny training on 2 cores (15-30 ms a step), to size one
#: that still trains when the database comes back.
STEPS_PER_S = 65
DRY_RUNS = 20
FLEET_ENV = dict(HEARTBEAT_TIMEOUT_S=5, REAPER_INTERVAL_S=1, ORPHAN_AGE_S=5, TRAIN_CONCURRENCY=1)


def probe(method, url, **kwargs):
    """``(status, seconds, json or None, headers)`` of one request; status None when it failed."""
    t = Stopwatch()
    try:
        response = requests.request(method, url, timeout=ANSWER_BOUND_S + 5, **kwargs)
    except requests.RequestException as exc:
        return None, t(), repr(exc), {}
    try:
        body = response.json()
    except ValueError:
        body = None
    return response.status_code, t(), body, response.headers


def diagnosis(conn, run_id):
    """The run, its message and the database's sessions, for a failure message."""
    with conn.cursor() as cur:
        cur.execute('SELECT state, mtime FROM dramatiq.queue WHERE message_id = %s', (run_id,))
        message = cur.fetchone()
        cur.execute("SELECT pid, application_name, state, wait_event, left(query, 70), backend_start "
                    "FROM pg_stat_activity WHERE datname = current_database() ORDER BY backend_start")
        sessions = "\n".join(map(str, cur.fetchall()))
        cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        locks = cur.fetchone()[0]
    return f"run {run_row(conn, run_id)}\nmessage {message}\nadvisory locks {locks}\nsessions:\n{sessions}"


def submit(client, body):
    response = client.submit(body, mode="async")
    assert response.status_code == 202, response.text
    return response.json()["run_id"]


def restart_database(own_pg, data_dir, log_dir, worker_launch, report, outage_s):
    server, url = own_pg
    api = start_api(url, data_dir, log_dir)
    launch = worker_launch(workers=1, threads=4, url=url, **FLEET_ENV)
    client = ApiClient(api.url)
    conn = connect(url)
    try:
        # Given a training running past its first checkpoint, one queued behind it, and dry runs
        long_steps = int((outage_s + 8) * STEPS_PER_S)
        long_run = submit(client, training(max_steps=long_steps))
        wait_row(conn, long_run, lambda r: r["status"] == "running" and step_of(r) >= 25, 120, "training")
        queued_run = submit(client, training(max_steps=40, seed=2))
        for i in range(DRY_RUNS):
            submit(client, dict(DRY, seed=i))
        conn.close()
        # When PostgreSQL stops for outage_s seconds
        since_stop = Stopwatch()
        server.stop()
        stop_s = since_stop()
        submits, readies, healths = [], [], []
        while since_stop() < outage_s:
            submits.append(probe("POST", f"{api.url}/api/tunix/run?mode=async", json=DRY))
            readies.append(probe("GET", f"{api.url}/readyz"))
            healths.append(probe("GET", f"{api.url}/healthz"))
            time.sleep(1)
        outage = since_stop()
        # Then meanwhile the API answered 503 with a JSON error at once, never hanging
        for status, seconds, body, headers in submits + readies:
            assert status == 503, (status, body)
            assert seconds < ANSWER_BOUND_S, seconds
            assert isinstance(body, dict) and body["error"]["code"] and body["error"]["message"], body
        assert all(h["Retry-After"] for *_, h in submits)
        assert all(status == 200 for status, *_ in healths)
        slowest = max(seconds for _, seconds, *_ in submits + readies)
        # When it starts again (same URL)
        since_start = Stopwatch()
        assert server.start() == url
        start_s = since_start()
        trained_through = bool(pids_with(f"{long_run}/"))
        # Then the API is ready again by itself
        while probe("GET", f"{api.url}/readyz")[0] != 200:
            assert since_start() < 30, "the API is not ready 30 s after the database came back"
            time.sleep(0.1)
        ready_s = since_start()
        # And a run submitted now is executed: the workers reconnected by themselves
        conn = connect(url)
        after = submit(client, DRY)
        try:
            wait_row(conn, after, lambda r: r["status"] in FINAL, 60, "final")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{diagnosis(conn, after)}") from None
        pickup_s = since_start()
        # And every run ends in one final status: completed
        c = wait_all_final(conn, timeout=180)
        assert c["by_status"] == {"completed": c["rows"]}, c
        assert c["rows"] == 2 + DRY_RUNS + 1
        # And each was executed once: the workers waited for the database to
        # record what they finished during the outage, and the reaper did not
        # take the outage for their silence
        requeued = metric(launch.metrics(), "tunix_runs_recovered_total", outcome="requeued")
        assert requeued == 0 and c["attempts"] == c["rows"], (c, requeued)
        long_row, queued_row = run_row(conn, long_run), run_row(conn, queued_run)
        assert long_row["result"]["steps"] == long_steps and queued_row["result"]["steps"] == 40
        # And no process was restarted
        assert launch.proc.poll() is None and api.proc.poll() is None
        report(f"PostgreSQL down {outage:.1f}s (stop took {stop_s:.1f}s) with a training running, one queued and "
               f"{DRY_RUNS} dry runs: {len(submits)} submits and {len(readies)} /readyz answered 503 JSON "
               f"(slowest {slowest:.2f}s), /healthz 200; back up in {start_s:.1f}s, /readyz 200 after "
               f"{ready_s:.1f}s, a new run completed after {pickup_s:.1f}s; {c['rows']} runs: "
               f"{c['by_status'].get('completed', 0)} completed, 0 lost; the {long_steps}-step training "
               f"({'still training' if trained_through else 'done'} when the database came back) took "
               f"{long_row['attempts']} attempt(s), the queued one {queued_row['attempts']}; "
               f"total attempts {c['attempts']} for {c['rows']} runs, {int(requeued)} recovered")
    finally:
        conn.close()
        launch.stop()
        api.stop()


@pytest.mark.slow  # make test-all: see README, "Tests"
def test_database_restart_10s(own_pg, data_dir, log_dir, worker_launch, report):
    restart_database(own_pg, data_dir, log_dir, worker_launch, report, outage_s=10)


@pytest.mark.slow
def test_database_restart_30s(own_pg, data_dir, log_dir, worker_launch, report):
    restart_database(own_pg, data_dir, log_dir, worker_launch, report, outage_s=30)

