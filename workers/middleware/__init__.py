"""The worker's middleware, in order.

``before_*`` hooks run in this order and ``after_*`` hooks in reverse, so
``RunRegistry`` claims after every middleware but ``AdmitAfterClaim``,
whose pass needs the claim committed, and finishes before every other one
that acts at a run's end: ``RunMetrics`` sees the status it recorded, and
``AdmitAfterEnd`` the place that end freed (``admission.py``).
"""

from .admission import AdmitAfterClaim, AdmitAfterEnd
from .heartbeat import WorkerHeartbeat
from .metrics import RunMetrics
from .run_registry import RunRegistry


def worker_middleware(pool, worker_id, hostname, heartbeat_timeout_s, metrics=True):
    """``metrics=False`` (``TUNIX_METRICS=0``) leaves run metrics out; the
    benchmark compares the two."""
    return [WorkerHeartbeat(pool, worker_id, hostname, heartbeat_timeout_s), *([RunMetrics()] if metrics else []),
            AdmitAfterEnd(pool), RunRegistry(pool, worker_id), AdmitAfterClaim(pool)]
