"""A backlog submitted with no worker, then drained by one launch of 2 processes.

Dry runs are submitted through the batch endpoint (1000 per call, runs and
messages in one transaction).  While the launch drains them, a sampler
opens a fresh connection every 100 ms and counts the advisory locks held in
the database: dramatiq-pg holds one per message a consumer has taken, and
upstream let them pile up until the lock table was full and new connections
failed (see ``tasks/broker.py``).
"""

import threading

import pytest

from support import DRY, ApiClient, connect, scalar, start_api
from reliability_support import Stopwatch, census, wait_all_final

PROCESSES = 2
DRY_PREFETCH = 200
TRAIN_CONCURRENCY = 1
#: Locks the broker may hold beyond one per prefetched message.
LOCK_SLACK = 20
LOCK_BOUND = PROCESSES * (DRY_PREFETCH + TRAIN_CONCURRENCY) + LOCK_SLACK

ADVISORY_LOCKS = """SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"""


class LockSampler(threading.Thread):
    """Every ``interval`` s: a new connection, the advisory lock count, closed."""

    def __init__(self, url, interval=0.1):
        super().__init__(daemon=True)
        self.url, self.interval = url, interval
        self.samples, self.failures = [], []
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            try:
                conn = connect(self.url)
                try:
                    self.samples.append(scalar(conn, ADVISORY_LOCKS))
                finally:
                    conn.close()
            except Exception as exc:  # noqa: BLE001 - counted, asserted on
                self.failures.append(repr(exc))
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join(10)


def drain(n, databases, data_dir, log_dir, worker_launch, report):
    url = databases.create()
    conn = connect(url)
    api = start_api(url, data_dir, log_dir)
    client = ApiClient(api.url)
    try:
        # Given n dry runs submitted in batches of 1000, no worker running
        since_submit = Stopwatch()
        for _ in range(n // 1000):
            response = client.http.post(client.url("/api/tunix/runs/batch"), json={"runs": [DRY] * 1000}, timeout=60)
            assert response.status_code == 202, response.text
            assert len(response.json()["data"]) == 1000
        submit_s = since_submit()
        assert census(conn) == {"rows": n, "final": 0, "attempts": 0, "by_status": {"pending": n}}
        assert scalar(conn, "SELECT count(*) FROM dramatiq.queue WHERE state = 'queued'") == n
        # When one launch of 2 processes drains them, the advisory locks sampled all along
        sampler = LockSampler(url)
        sampler.start()
        try:
            launch = worker_launch(workers=PROCESSES, threads=8, url=url, DRY_PREFETCH=DRY_PREFETCH,
                                   TRAIN_CONCURRENCY=TRAIN_CONCURRENCY)
            c = wait_all_final(conn, timeout=60 + n / 50, interval=0.5)
        finally:
            sampler.stop()
        # Then every run completed, each executed once, none lost
        assert c["by_status"] == {"completed": n}, c
        assert c["attempts"] == n, c
        # And the locks stayed bounded, and a new connection could always be opened
        assert sampler.samples, sampler.failures
        assert not sampler.failures, sampler.failures[:3]
        assert max(sampler.samples) <= LOCK_BOUND, max(sampler.samples)
        with conn.cursor() as cur:
            cur.execute("SELECT extract(epoch FROM max(completed_at) - min(started_at)) FROM tunix_runs")
            drain_s = float(cur.fetchone()[0])
        launch.stop()
        report(f"backlog of {n} dry runs ({n // 1000} batch calls in {submit_s:.1f}s) drained by {PROCESSES} "
               f"processes: {c['by_status']['completed']} completed, {c['attempts'] - n} duplicated, "
               f"{n - c['rows']} lost; {drain_s:.1f}s from first claim to last finish -> {n / drain_s:.0f} runs/s; "
               f"advisory locks max {max(sampler.samples)} (bound {LOCK_BOUND}) over {len(sampler.samples)} "
               f"samples, every fresh connection opened")
    finally:
        api.stop()
        conn.close()


@pytest.mark.slow  # make test-all: see README, "Tests"
def test_a_backlog_of_5000_drains_once_each_with_bounded_locks(databases, data_dir, log_dir, worker_launch, report):
    drain(5000, databases, data_dir, log_dir, worker_launch, report)


@pytest.mark.slow
def test_a_backlog_of_50000_drains_once_each_with_bounded_locks(databases, data_dir, log_dir, worker_launch, report):
    drain(50_000, databases, data_dir, log_dir, worker_launch, report)
