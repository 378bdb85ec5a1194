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


@contextlib.contextmanager
def timed_write(operation):
    """Observe the wall time of a registry write in milliseconds."""
    start = time.perf_counter()
    try:
        yield
    finally:
        DB_WRITE_LATENCY.labels(operation).observe((time.perf_counter() - start) * 1000)
