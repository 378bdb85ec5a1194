"""A dramatiq worker process' boot (``dramatiq workers.boot:boot``): its
broker, the actors, and the worker-only middleware."""

import logging
import os

from tasks.broker import make_broker, set_broker
from tasks.settings import get_settings

from . import actors
from .middleware import worker_middleware


def boot():
    """Make this process' broker, declare the actors on it and add the
    worker's middleware.  dramatiq's command line calls this in each worker
    process, then takes dramatiq's global broker, which ``set_broker`` set."""
    settings = get_settings()
    # dramatiq-pg logs "Consumed <id>@<queue>" at INFO for every message, each a
    # write through a pipe to the launch: only its warnings are kept.
    logging.getLogger("dramatiq_pg").setLevel(logging.WARNING)
    broker = set_broker(make_broker(settings))
    actors.declare(broker)
    # Recorded in ``tunix_runs.worker_id``: host and process.
    worker_id = f"{settings.hostname}:{os.getpid()}"
    # Both pools: the consumers' sessions hold the advisory locks of prefetched
    # messages, which the reaper must be able to release (workers/reaper.py).
    for pool in (broker.pool, broker.consumer_pool):
        pool.set_application_name(f"tunix-worker {worker_id}")
    for middleware in worker_middleware(broker.pool, worker_id, settings.hostname, settings.heartbeat_timeout_s,
                                        metrics=settings.metrics_enabled, max_attempts=settings.max_attempts):
        broker.add_middleware(middleware)
    return broker
