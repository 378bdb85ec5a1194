"""Configuration shared by the API, the workers and `make run`.

Every setting comes from the environment, under the names the README
documents, so docker-compose, `make run` and the tests configure both sides
alike.  Read once, at import: a process that needs other values is started
with another environment.
"""

import os
import socket
from dataclasses import dataclass, field


def _int(name, default):
    return int(os.environ.get(name, default))


def _float(name, default):
    return float(os.environ.get(name, default))


@dataclass(frozen=True)
class Settings:
    #: PostgreSQL URL for the registry and the broker.  Empty means "start an
    #: embedded server" (only `make run` and the tests do that).
    database_url: str = field(default_factory=lambda: os.environ.get("DATABASE_URL", ""))
    #: Where run directories, manifests and the embedded database live.
    data_dir: str = field(default_factory=lambda: os.path.abspath(os.environ.get("DATA_DIR", "./var")))
    #: HTTP port of the API.
    port: int = field(default_factory=lambda: _int("PORT", 8000))
    #: Worker processes in one `workers` launch.
    workers: int = field(default_factory=lambda: _int("WORKERS", 2))
    #: Threads per worker process.
    worker_threads: int = field(default_factory=lambda: _int("WORKER_THREADS", 8))
    #: Port where one worker launch serves the metrics of all its processes.
    metrics_port: int = field(default_factory=lambda: _int("METRICS_PORT", 9191))
    #: Seconds a sync submit waits before answering 202 with the run as it stands.
    sync_timeout_s: float = field(default_factory=lambda: _float("SYNC_TIMEOUT_S", 300))
    #: The operator's maximum for a run's ``time_limit_s``.  dramatiq's own
    #: TimeLimit is set a little above it (its 10-minute default would kill
    #: trainings); the worker stops a run at its own limit first.
    run_time_limit_s: int = field(default_factory=lambda: _int("RUN_TIME_LIMIT_S", 6 * 3600))
    #: ``time_limit_s`` of a run that does not set one.
    default_time_limit_s: int = field(default_factory=lambda: _int("DEFAULT_TIME_LIMIT_S", 3600))
    #: Messages one worker process may hold from the dry-run queue.  dramatiq's
    #: default (2 x threads) drains a backlog at ~24 msg/s with dramatiq-pg.
    dry_prefetch: int = field(default_factory=lambda: _int("DRY_PREFETCH", 200))
    #: Trainings one worker process runs at once (each is a JAX subprocess).
    train_concurrency: int = field(default_factory=lambda: _int("TRAIN_CONCURRENCY", 1))
    #: Trainings admitted to the broker's queue that no worker took yet, at
    #: most: the rest wait 'deferred' in the registry, where admission
    #: orders them (priority, fair share); in dramatiq's queue they would
    #: wait first in, first out (tasks/admission.py).
    admit_ahead: int = field(default_factory=lambda: max(1, _int("ADMIT_AHEAD", 1)))
    #: Seconds without a heartbeat after which a running run's worker is lost.
    heartbeat_timeout_s: float = field(default_factory=lambda: _float("HEARTBEAT_TIMEOUT_S", 30))
    #: Attempts a run gets before a lost worker fails it for good.
    max_attempts: int = field(default_factory=lambda: _int("MAX_ATTEMPTS", 3))
    #: Seconds between reaper passes (each worker launch runs one).
    reaper_interval_s: float = field(default_factory=lambda: _float("REAPER_INTERVAL_S", 5))
    #: Age after which a pending run with no live message is published again.
    orphan_age_s: float = field(default_factory=lambda: _float("ORPHAN_AGE_S", 30))
    #: Record run metrics in workers (``0`` only to measure what they cost).
    metrics_enabled: bool = field(default_factory=lambda: os.environ.get("TUNIX_METRICS", "1") != "0")
    #: Threads serving HTTP in the API process (each open log stream holds one).
    api_threads: int = field(default_factory=lambda: _int("API_THREADS", 256))
    #: Requests one API process works on at once; the others queue for a
    #: slot in order (``app/admission.py``).  Waiting requests hold none.
    api_active: int = field(default_factory=lambda: _int("API_ACTIVE", 32))
    #: Log streams (SSE) one API process serves at once.
    sse_max_streams: int = field(default_factory=lambda: _int("SSE_MAX_STREAMS", 200))
    #: Connections one process (API or worker) may hold at once, whatever its
    #: thread count: a thread holds at most one, so any size works (threads
    #: wait their turn).  A worker's two queue consumers keep 4 more of their own.
    db_pool_max: int = field(default_factory=lambda: _int("DB_POOL_MAX", 16))
    #: Seconds a thread waits for a free connection of the pool; then the API
    #: answers 503 with ``Retry-After`` (a worker tries again).
    db_pool_wait_s: float = field(default_factory=lambda: _float("DB_POOL_WAIT_S", 5))
    #: Seconds between the API's looks at the runs its sync submits and log
    #: streams wait on (one indexed query per process and tick, none when
    #: nothing waits): status changes send no NOTIFY (see ``app/waiter.py``).
    waiter_tick_s: float = field(default_factory=lambda: _float("WAITER_TICK_S", 0.02))
    #: ``text`` or ``json`` (one JSON object per line with host, pid and the
    #: run id): see ``tasks/log_format.py``.
    log_format: str = field(default_factory=lambda: os.environ.get("LOG_FORMAT", "text").strip().lower() or "text")
    #: Name this process writes into `tunix_runs.worker_id`.
    hostname: str = field(default_factory=lambda: os.environ.get("WORKER_HOSTNAME", socket.gethostname()))

    #: ``ARTIFACTS_URL``: where checkpoints, manifests, summaries and
    #: operator datasets live for every host (``tasks/artifacts.py``); empty
    #: means ``file://$DATA_DIR/artifacts``.
    artifacts: str = field(default_factory=lambda: os.environ.get("ARTIFACTS_URL", "").strip())
    #: Recorded checkpoints a run keeps: the latest this many, plus its lowest-loss one.
    checkpoint_keep: int = field(default_factory=lambda: _int("CHECKPOINT_KEEP", 3))
    #: Seconds a worker keeps trying the artifact store (a resume's download,
    #: the last uploads) before it fails the attempt with a clear error.
    store_patience_s: float = field(default_factory=lambda: _float("STORE_PATIENCE_S", 60))
    #: Seconds the API (and ``python -m tasks.catalog list``) reuses its listing
    #: of the store's ``datasets/`` before listing it again (``tasks/catalog.py``).
    datasets_ttl_s: float = field(default_factory=lambda: _float("DATASETS_TTL_S", 5))

    @property
    def artifacts_url(self):
        return self.artifacts or "file://" + os.path.join(self.data_dir, "artifacts")

    @property
    def runs_dir(self):
        return os.path.join(self.data_dir, "runs")

    @property
    def datasets_dir(self):
        return os.path.join(self.data_dir, "datasets")

    @property
    def models_dir(self):
        """Converted model weights (``workers/weights/ensure.py``), unless ``$WEIGHTS_DIR`` holds them."""
        return os.path.join(self.data_dir, "models")


def get_settings():
    return Settings()
