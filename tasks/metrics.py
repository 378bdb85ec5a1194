"""The platform's Prometheus metrics: names, labels and buckets, in one place.

Worker processes record into prometheus_client's multiprocess files (the
worker launch sets ``PROMETHEUS_MULTIPROC_DIR`` before anything imports
prometheus_client) and one endpoint per launch serves them; the API process
records into its own registry and serves ``/metrics``.  No label carries a
run id or any other unbounded value.
"""

import contextlib
import os
import platform
import time

from prometheus_client import Counter, Gauge, Histogram

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

RETENTION_PRUNED = Counter(
    "tunix_retention_pruned_total",
    "What a reaper's retention deleted, by kind: log lines (logs), per-step metrics rows (metrics), dramatiq's "
    "settled messages (queue), orphaned store objects (store).",
    ("kind",),
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


STORE_UPLOADS = Counter(
    "tunix_store_uploads_total",
    "Objects written to the artifact store (checkpoints, manifests, summaries, exports, datasets).",
)

STORE_FAILURES = Counter(
    "tunix_store_failures_total",
    "Artifact store calls that failed, by operation and kind: unavailable (an outage, tried again) or "
    "forbidden (credentials or access refused: never retried, the attempt fails).",
    ("operation", "kind"),
)

STORE_RETRIES = Counter(
    "tunix_store_retries_total",
    "Artifact store calls tried again after an outage, by what was retried.",
    ("what",),
)

STORE_BYTES = Counter(
    "tunix_store_bytes_total",
    "Bytes written to (up) or read from (down) the artifact store.",
    ("direction",),
)


BUILD_INFO = Gauge(
    "tunix_build_info",
    "Always 1: the running code's version (package metadata), Python version and git commit (GIT_COMMIT, "
    "set when the image is built; unknown otherwise).",
    ("version", "python", "commit"),
    multiprocess_mode="max",
)


def build_labels():
    """``(version, python, commit)`` of this process, as ``tunix_build_info`` shows them."""
    from importlib import metadata

    try:
        version = metadata.version("tunix-rt")
    except metadata.PackageNotFoundError:
        version = "unknown"
    # NOTE: read, never computed (no git call at run time): the image build passes it.
    commit = os.environ.get("GIT_COMMIT", "").strip()[:40] or "unknown"
    return version, platform.python_version(), commit


BUILD_INFO.labels(*build_labels()).set(1)


@contextlib.contextmanager
def timed_write(operation):
    """Observe the wall time of a registry write in milliseconds."""
    start = time.perf_counter()
    try:
        yield
    finally:
        DB_WRITE_LATENCY.labels(operation).observe((time.perf_counter() - start) * 1000)


class FleetCollector:
    """Gauges read from PostgreSQL, so they are right with any number of
    workers, after crashes and across restarts.  Registered by the API
    process only (every API replica reports the same values: aggregate them
    with ``max``, not ``sum``); ``read`` is cached there (``METRICS_CACHE_S``,
    ``app/observability.py``)."""

    def __init__(self, read, queues=()):
        #: ``read()`` -> ``registry.fleet_gauges(...)`` dict.
        self.read = read
        #: Queues shown even while they hold nothing (a series that comes
        #: and goes breaks ``rate`` and alerts).
        self.queues = tuple(queues)

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        from .lifecycle import ALL

        data = self.read()
        in_state = GaugeMetricFamily("tunix_runs_in_state", "Runs currently in each status (from the registry).",
                                     labels=("status",))
        for status in ALL:
            in_state.add_metric((status,), data["in_state"].get(status, 0))
        yield in_state
        queues = {name: {} for name in self.queues}
        queues.update({row["queue_name"]: row for row in data.get("queues") or ()})
        oldest = GaugeMetricFamily("tunix_queue_oldest_pending_age_seconds",
                                   "Per queue: how long its longest-waiting pending run has waited since its "
                                   "submit, resume or requeue (0 when none).", labels=("queue",))
        depth = GaugeMetricFamily("tunix_queue_depth", "Per queue: messages waiting whose run is pending.",
                                  labels=("queue",))
        in_flight = GaugeMetricFamily("tunix_queue_in_flight",
                                      "Per queue: messages a consumer holds (prefetched or executing).",
                                      labels=("queue",))
        for name in sorted(queues):
            row = queues[name]
            oldest.add_metric((name,), row.get("oldest_pending_age_s") or 0)
            depth.add_metric((name,), row.get("depth") or 0)
            in_flight.add_metric((name,), row.get("in_flight") or 0)
        yield oldest
        yield depth
        yield in_flight
        yield GaugeMetricFamily("tunix_workers_alive", "Worker processes whose heartbeat is recent.",
                                value=data["workers_alive"])
