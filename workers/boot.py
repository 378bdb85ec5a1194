"""The module each dramatiq worker process imports (``dramatiq workers.boot``):
the broker, the actors, and the worker-only middleware."""

import os

from tasks import actors  # noqa: F401  (declares the actors)
from tasks.broker import broker, pool
from tasks.settings import get_settings

from .middleware import worker_middleware

_settings = get_settings()

#: Recorded in ``tunix_runs.worker_id``: host and process.
WORKER_ID = f"{_settings.hostname}:{os.getpid()}"

for _middleware in worker_middleware(pool, WORKER_ID, _settings.hostname, metrics=_settings.metrics_enabled):
    broker.add_middleware(_middleware)
