"""The worker's admission triggers (``tasks/admission.py``): a pass when a
place in the queue or in a sweep opens here, not at the next reaper pass.

* after a training is claimed: it left the queue, so its place there goes
  to the next deferred training;
* after a run ends: a training's worker, or a trial's place in its sweep's
  ``max_concurrent``, is free.

Each pass reads what ``RunRegistry`` committed, so each hook must run after
its write.  dramatiq runs ``before_*`` hooks in the list's order and
``after_*`` hooks in reverse, so no one middleware can follow the registry
in both: ``AdmitAfterClaim`` sits after ``RunRegistry`` (its
``before_process_message`` sees the claim) and ``AdmitAfterEnd`` before it
(its ``after_process_message`` sees the final status).  ``worker_middleware``
puts them there.  A failed pass is logged, never raised: the run's own
record is already written, and the reaper's next pass admits.
"""

from dramatiq.middleware import Middleware

from tasks import admission, lifecycle

from .run_registry import CLAIM_PATIENCE_S


class AdmitAfterClaim(Middleware):
    """After ``RunRegistry`` in the list: a pass once a training is claimed."""

    def __init__(self, pool):
        self.pool = pool

    def before_process_message(self, broker, message):
        claimed = getattr(message, "tunix_run", None)  # set by RunRegistry's claim
        if claimed is not None and not claimed["dry_run"]:
            # No patience: the training waits for this pass to start, and a
            # place missed now is taken by the next end or reaper pass.
            admission.admit_with(self.pool)


class AdmitAfterEnd(Middleware):
    """Before ``RunRegistry`` in the list: a pass once a run ended."""

    def __init__(self, pool):
        self.pool = pool

    def after_process_message(self, broker, message, *, result=None, exception=None):
        ended = getattr(message, "tunix_run", None)  # the final row RunRegistry wrote, or None
        if ended is None or ended["status"] not in lifecycle.FINAL:
            return  # handed back, lost to the reaper, or not recorded
        if ended["dry_run"] and not ended.get("sweep_id"):
            return  # a single dry run took no place anywhere
        # As patient as a claim: the thread's work is done, and a place left
        # unfilled costs a training's worth of waiting until the reaper passes.
        admission.admit_with(self.pool, CLAIM_PATIENCE_S)
