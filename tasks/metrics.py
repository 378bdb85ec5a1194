"""The platform's Prometheus metrics: names, labels and buckets, in one place.

Worker processes record into prometheus_client's multiprocess files (the
worker launch sets ``PROMETHEUS_MULTIPROC_DIR`` before anything imports
prometheus_client) and one endpoint per launch serves them; the API process
records into its own registry and serves ``/metrics``.  No label carries a
run id or any other unbounded value.
"""

import contextlib
import time

from prometheus_client import Counter, Histogram

#: Execution time of a run: 0.1 s up to 48 h, since training runs are long.
DURATION_BUCKETS = (
    0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800,
    3600, 2 * 3600, 4 * 3600, 8 * 3600, 16 * 3600, 24 * 3600, 48 * 3600,
)

#: Registry writes are milliseconds.
DB_WRITE_BUCKETS_MS = (0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

RUNS_TOTAL = Counter(
    "tunix_runs_total",
    "Runs reaching each status: pending at submit (API), the final status (workers).",
    ("status", "mode"),
)

RUNS_DURATION = Histogram(
    "tunix_runs_duration_seconds",
    "Execution time of finished runs, claim to final status.",
    ("status", "mode"),
    buckets=DURATION_BUCKETS,
)

QUEUE_WAIT = Histogram(
    "tunix_runs_queue_wait_seconds",
    "Time from submit to a worker claiming the run.",
    buckets=DURATION_BUCKETS,
)

DB_WRITE_LATENCY = Histogram(
    "tunix_db_write_latency_ms",
    "Latency of each run-registry write, by operation.",
    ("operation",),
    buckets=DB_WRITE_BUCKETS_MS,
)

RUNS_RECOVERED = Counter(
    "tunix_runs_recovered_total",
    "Runs a reaper took back from a lost worker or republished, by outcome "
    "(requeued, failed, cancelled, republished).",
    ("outcome",),
)

SILENT_SESSIONS_ENDED = Counter(
    "tunix_silent_worker_sessions_ended_total",
    "PostgreSQL sessions of silent (frozen, hung or cut-off) worker processes a reaper ended, "
    "releasing the messages and rows they held.",
)

POOL_WAIT = Histogram(
    "tunix_db_pool_wait_seconds",
    "Time a thread waited for a connection of its process' pool.",
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

POOL_TIMEOUTS = Counter(
    "tunix_db_pool_timeouts_total",
    "Connection requests that found no free connection within DB_POOL_WAIT_S (the API answered 503).",
)

RUNS_RETRIED = Counter(
    "tunix_runs_retried_total",
    "Runs queued for another attempt, by reason (resume, hand_back, recovered).",
    ("reason",),
)


@contextlib.contextmanager
def timed_write(operation):
    """Observe the wall time of a registry write in milliseconds."""
    start = time.perf_counter()
    try:
        yield
    finally:
        DB_WRITE_LATENCY.labels(operation).observe((time.perf_counter() - start) * 1000)


class FleetCollector:
    """Gauges read from PostgreSQL at scrape time, so they are right with any
    number of workers, after crashes and across restarts.  Registered by the
    API process only (every API replica reports the same values: aggregate
    them with ``max``, not ``sum``)."""

    def __init__(self, read):
        #: ``read()`` -> ``registry.fleet_gauges(...)`` dict.
        self.read = read

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        from .lifecycle import ALL

        data = self.read()
        in_state = GaugeMetricFamily("tunix_runs_in_state", "Runs currently in each status (from the registry).",
                                     labels=("status",))
        for status in ALL:
            in_state.add_metric((status,), data["in_state"].get(status, 0))
        yield in_state
        yield GaugeMetricFamily("tunix_queue_oldest_pending_age_seconds",
                                "Age of the oldest pending run (0 when none).",
                                value=data["oldest_pending_age_s"] or 0)
        yield GaugeMetricFamily("tunix_workers_alive", "Worker processes whose heartbeat is recent.",
                                value=data["workers_alive"])
