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


def worker_middleware(pool, worker_id, hostname, heartbeat_timeout_s, metrics=True, max_attempts=None):
    """``metrics=False`` (``TUNIX_METRICS=0``) leaves run metrics out; the
    benchmark compares the two.  ``max_attempts``: ``MAX_ATTEMPTS``, read
    once at boot rather than at each move (~35-80 us of a worker's CPU each)."""
    return [WorkerHeartbeat(pool, worker_id, hostname, heartbeat_timeout_s), *([RunMetrics()] if metrics else []),
            AdmitAfterEnd(pool), RunRegistry(pool, worker_id, max_attempts), AdmitAfterClaim(pool)]
