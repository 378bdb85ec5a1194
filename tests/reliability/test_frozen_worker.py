"""A worker process frozen (SIGSTOP: a VM pause, a swap storm, a hung host)
while it holds prefetched messages.

dramatiq-pg marks a message it hands to a process ``consumed`` under an
advisory lock of that process' session: while the session lives nobody else
may take it, and PostgreSQL only drops the session of a dead peer (a frozen
process is not dead; a cut-off host is noticed after TCP keepalive, hours by
default).  The reaper ends the sessions of workers silent for
``HEARTBEAT_TIMEOUT_S``, so their pending runs are published again, and
their running ones recovered, while the process is still frozen.
"""

import os
import signal

from support import ApiClient, DRY, connect, metric, scalar, start_api, wait_for
from reliability_support import Stopwatch, census, wait_all_final

RUNS = 1000
FREEZE_AFTER = 100
HEARTBEAT_TIMEOUT_S = 3
FLEET_ENV = dict(HEARTBEAT_TIMEOUT_S=HEARTBEAT_TIMEOUT_S, REAPER_INTERVAL_S=1, ORPHAN_AGE_S=2, DRY_PREFETCH=100)
#: How soon after the freeze every run must be final (the frozen process never thaws before).
BOUND_S = HEARTBEAT_TIMEOUT_S + 40

HELD_PENDING = """SELECT count(*) FROM tunix_runs r JOIN dramatiq.queue q ON q.message_id = r.id
WHERE r.status = 'pending' AND q.state = 'consumed'"""


def diagnosis(conn):
    """Runs not final, their messages and who holds what, for a failure message."""
    with conn.cursor() as cur:
        cur.execute("SELECT r.id, r.status, r.attempts, r.worker_id, q.state, q.mtime FROM tunix_runs r "
                    "LEFT JOIN dramatiq.queue q ON q.message_id = r.id "
                    "WHERE r.status NOT IN ('completed', 'failed', 'cancelled', 'timeout')")
        runs = cur.fetchall()
        cur.execute("SELECT l.pid, a.application_name, a.state, left(a.query, 60), (l.classid::bigint << 32) | "
                    "l.objid::bigint FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory'")
        locks = cur.fetchall()
        cur.execute("SELECT worker_id, heartbeat_at, clock_timestamp() - heartbeat_at FROM tunix_workers")
        workers = cur.fetchall()
        cur.execute("SELECT pid, application_name, state, left(query, 60) FROM pg_stat_activity "
                    "WHERE datname = current_database()")
        sessions = cur.fetchall()
    return "\n".join([f"runs {runs}", f"advisory locks {locks}", f"workers {workers}",
                       "sessions", *map(str, sessions)])


def test_a_frozen_worker_s_prefetched_runs_run_elsewhere(databases, data_dir, log_dir, worker_launch, report):
    url = databases.create()
    conn = connect(url)
    api = start_api(url, data_dir, log_dir)
    client = ApiClient(api.url)
    frozen = None
    try:
        # Given one launch of one process and one thread draining a batch of dry runs
        first = worker_launch(workers=1, threads=1, url=url, **FLEET_ENV)
        for _ in range(RUNS // 1000):
            response = client.http.post(client.url("/api/tunix/runs/batch"), json={"runs": [DRY] * 1000}, timeout=60)
            assert response.status_code == 202, response.text
        wait_for(lambda: scalar(conn, "SELECT count(*) FROM tunix_runs WHERE status = 'completed'") >= FREEZE_AFTER,
                 60, interval=0.01, message=f"{FREEZE_AFTER} runs completed")
        # When its worker process freezes mid-drain
        frozen = scalar(conn, "SELECT pid FROM tunix_workers")
        os.kill(frozen, signal.SIGSTOP)
        since_freeze = Stopwatch()
        # (holding messages of runs it had not started: the case at hand)
        held = scalar(conn, HELD_PENDING)
        assert held >= 1, "the frozen process held no prefetched message: nothing was tested"
        # And another launch comes to drain the rest
        second = worker_launch(workers=1, threads=4, url=url, **FLEET_ENV)
        # Then every run completes while the first process is still frozen
        try:
            c = wait_all_final(conn, timeout=BOUND_S, expected_rows=RUNS)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{diagnosis(conn)}") from None
        all_final_s = since_freeze()
        assert c["by_status"] == {"completed": RUNS}, c
        # And each ran once, but for a run the frozen process had started (recovered by heartbeat)
        samples = second.metrics()
        ended = metric(samples, "tunix_silent_worker_sessions_ended_total") + \
            metric(first.metrics(), "tunix_silent_worker_sessions_ended_total")
        requeued = metric(samples, "tunix_runs_recovered_total", outcome="requeued") + \
            metric(first.metrics(), "tunix_runs_recovered_total", outcome="requeued")
        assert ended >= 1
        assert c["attempts"] - RUNS == requeued <= 1, (c, requeued)
        # And when the frozen process thaws, its launch lives on and executes nothing again
        os.kill(frozen, signal.SIGCONT)
        frozen = None
        after = client.submit(DRY, mode="sync").json()
        assert after["status"] == "completed", after
        assert census(conn)["attempts"] == c["attempts"] + 1
        assert first.proc.poll() is None and second.proc.poll() is None
        report(f"SIGSTOP a worker after {FREEZE_AFTER} of {RUNS} dry runs, holding {held} prefetched: {int(ended)} "
               f"of its sessions ended, all {RUNS} completed {all_final_s:.1f}s after the freeze "
               f"(HEARTBEAT_TIMEOUT_S={HEARTBEAT_TIMEOUT_S}), {int(requeued)} recovered by heartbeat, "
               f"0 duplicated; after SIGCONT a new run completed, nothing ran twice")
    finally:
        if frozen is not None:
            os.kill(frozen, signal.SIGCONT)
        api.stop()
        conn.close()
