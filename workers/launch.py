"""One worker launch: ``python -m workers`` (console script ``tunix-worker``).

Applies migrations (``AUTO_MIGRATE``; with ``0`` it only checks that none
is pending), starts ``WORKERS`` dramatiq processes of
``WORKER_THREADS`` threads each, and serves the metrics of all of them on
``METRICS_PORT``.  Several launches may share a host if each has its own
``METRICS_PORT``.  When dramatiq exits (it stops the whole launch if one of
its processes dies) this exits with its status, and the supervisor
(``make run``, or compose's restart policy) starts a new launch.

A launch refuses a database it cannot work on, with exit status 2 and the
reason on its log: one that holds a migration this code does not know
(newer code migrated it: upgrade this worker), one whose applied migration
file changed, or, with ``AUTO_MIGRATE=0``, one with migrations pending.
"""

import logging
import os
import shutil
import signal
import subprocess
import sys

from tasks import log_format
from tasks.broker import get_pool
from tasks.migrate import LockTimeout, MigrationsPending, SchemaMismatch, ensure_schema
from tasks.settings import settings_at_start

logger = logging.getLogger("tunix.workers")

def start_reaper(settings):
    # NOTE: imported here, after PROMETHEUS_MULTIPROC_DIR is set (the
    # registry records metrics).
    from .reaper import Reaper

    reaper = Reaper(get_pool(), settings)
    reaper.start()
    return reaper


def fresh_metrics_dir(settings):
    """A clean multiprocess folder for this launch: counters from an earlier
    launch, and live values of processes that died, must not survive it."""
    path = os.path.join(settings.data_dir, "prometheus", f"workers-{settings.metrics_port}")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def serve_metrics(path, settings):
    # NOTE: imported here, after PROMETHEUS_MULTIPROC_DIR is set, as
    # prometheus_client picks its value store at import.
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)
    start_http_server(settings.metrics_port, addr=settings.metrics_addr, registry=registry)


def main(argv=None):
    settings = settings_at_start()
    log_format.configure(settings.log_format, settings.hostname)
    if not settings.database_url:
        logger.error("DATABASE_URL is not set")
        return 2
    try:
        ensure_schema(settings.database_url, settings.auto_migrate, who="this worker")
    except (SchemaMismatch, MigrationsPending) as exc:
        logger.error("refusing to start: %s", exc)
        return 2
    except LockTimeout as exc:
        logger.error("%s", exc)
        return 1
    metrics_dir = fresh_metrics_dir(settings)
    # Set for prometheus_client in this process and inherited by dramatiq's
    # processes: the library's variable, not a setting of ours.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    serve_metrics(metrics_dir, settings)
    start_reaper(settings)
    # dramatiq's own command line, with JSON logs when asked (see that module).
    dramatiq_cli = "workers.dramatiq_json" if settings.log_format == "json" else "dramatiq"
    cmd = [sys.executable, "-m", dramatiq_cli, "workers.boot:boot",
           "--processes", str(settings.workers), "--threads", str(settings.worker_threads),
           # Bounded stop: trainings are interrupted at once (they checkpoint
           # and are handed back; past it, a training's hand-back is cut and
           # the reaper re-runs it at the cost of an attempt); dry runs have
           # this long to finish.
           "--worker-shutdown-timeout", str(round(settings.worker_shutdown_timeout_s * 1000))]
    # WORKER_QUEUES: unset or empty, every queue (dramatiq's default).  A host
    # that must not generate samples leaves ``tunix-samples`` out; one that
    # only samples names it alone.
    if settings.queues:
        cmd += ["--queues", *settings.queues]
    logger.info("starting %d worker process(es) x %d threads; metrics on :%d",
                settings.workers, settings.worker_threads, settings.metrics_port)
    proc = subprocess.Popen(cmd)

    def forward(signum, frame):
        proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return proc.wait()


if __name__ == "__main__":
    sys.exit(main())
