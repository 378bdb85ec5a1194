"""The worker's middleware, in order.

``before_*`` hooks run in this order and ``after_*`` hooks in reverse, so
``RunRegistry`` claims last and finishes first, and ``RunMetrics`` sees the
status it recorded.
"""

from .heartbeat import WorkerHeartbeat
from .metrics import RunMetrics
from .run_registry import RunRegistry


def worker_middleware(pool, worker_id, hostname, heartbeat_timeout_s, metrics=True):
    """``metrics=False`` (``TUNIX_METRICS=0``) leaves run metrics out; the
    benchmark compares the two."""
    return [WorkerHeartbeat(pool, worker_id, hostname, heartbeat_timeout_s), *([RunMetrics()] if metrics else []),
            RunRegistry(pool, worker_id)]
