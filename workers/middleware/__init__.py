"""The worker's middleware, in order.

``before_*`` hooks run in this order and ``after_*`` hooks in reverse, so
``RunRegistry`` claims last and finishes first, and ``RunMetrics`` sees the
status it recorded.
"""

from .metrics import RunMetrics
from .run_registry import RunRegistry


def worker_middleware(pool, worker_id):
    return [RunMetrics(), RunRegistry(pool, worker_id)]
