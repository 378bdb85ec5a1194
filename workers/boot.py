"""The module each dramatiq worker process imports (``dramatiq workers.boot``):
the broker, the actors, and the worker-only middleware."""

import logging
import os

from tasks import actors  # noqa: F401  (declares the actors)
from tasks.broker import broker, pool
from tasks.settings import get_settings

from .middleware import worker_middleware

_settings = get_settings()

# dramatiq-pg logs "Consumed <id>@<queue>" at INFO for every message, each a
# write through a pipe to the launch: only its warnings are kept.
logging.getLogger("dramatiq_pg").setLevel(logging.WARNING)

#: Recorded in ``tunix_runs.worker_id``: host and process.
WORKER_ID = f"{_settings.hostname}:{os.getpid()}"

# Both pools: the consumers' sessions hold the advisory locks of prefetched
# messages, which the reaper must be able to release (workers/reaper.py).
for _pool in (pool, broker.consumer_pool):
    _pool.set_application_name(f"tunix-worker {WORKER_ID}")

for _middleware in worker_middleware(pool, WORKER_ID, _settings.hostname, _settings.heartbeat_timeout_s,
                                     metrics=_settings.metrics_enabled):
    broker.add_middleware(_middleware)
