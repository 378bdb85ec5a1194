"""The run lifecycle: every status a run can have and every move between them.

This is the one place the status list lives.  The database enforces the same
list (``tasks/sql/migrations``) and every status change goes through
``tasks.registry.transition``, which takes its allowed "from" states from
``TRANSITIONS`` below, so two workers racing on one run get a clean
``InvalidTransition`` instead of both winning.

    pending ──claim──▶ running ──────────────▶ completed | failed | timeout
       │  ▲               │ cancel                 ▲
       │  │ resume        ▼                        │ (finished anyway)
       │  │        cancel_requested ──▶ cancelled ─┘
       ▼  │                                  ▲
    cancelled / failed / timeout ────────────┘

Attempts
--------
``attempts`` counts claims: every execution that began, so it only grows and
a worker's writes are fenced by it (a frozen worker that thaws writes
nothing for an attempt that is not the run's any more).  ``max_attempts`` is
the run's budget, and the claim itself is refused once ``attempts`` reached
it, so no race between reapers, hand-backs and duplicate deliveries can give
a run one attempt more: ``attempts <= max_attempts`` always (a CHECK says so).

* The first claim sets ``max_attempts`` from ``MAX_ATTEMPTS``.
* A worker lost mid-run (killed, frozen, cut off) costs the attempt: the
  reaper sends the run back to pending, or ends it ``failed`` (WorkerLost)
  when it has had its budget.  This is what the cap is for: a run that kills
  its worker cannot loop for ever.
* A hand-back costs nothing: a worker told to stop (SIGTERM; dramatiq also
  stops every sibling process when one of its processes dies) checkpoints
  and returns the run with ``max_attempts`` raised by one.  Measured before
  this rule: a soak of SIGKILLs gave one run "attempt 4 of 3" this way.
* A database outage costs nothing in itself.  A claim whose answer was lost
  is looked up on the next try and adopted (workers/middleware/run_registry.py);
  a running attempt that could not heartbeat is not recovered until the
  reaper has seen the database for ``HEARTBEAT_TIMEOUT_S`` (workers/reaper.py).
  Only a claim the worker could not confirm within its patience (30 s) is
  left to the reaper, and costs its attempt.
* A user's resume gives a fresh budget: ``max_attempts = attempts + MAX_ATTEMPTS``.
"""

import enum


class RunStatus(str, enum.Enum):
    #: Committed to the registry and published; no worker holds it yet.
    PENDING = "pending"
    #: A worker claimed it and is executing it.
    RUNNING = "running"
    #: A user asked to stop it; the worker is stopping the training.
    CANCEL_REQUESTED = "cancel_requested"
    #: Finished; ``result`` holds the summary.
    COMPLETED = "completed"
    #: Finished unsuccessfully; ``error`` holds the type and message.
    FAILED = "failed"
    #: Stopped by a user, before or during its execution.
    CANCELLED = "cancelled"
    #: Stopped because it ran past its ``time_limit_s``.
    TIMEOUT = "timeout"

    def __str__(self):
        return self.value


_S = RunStatus

#: target status -> the statuses a run may move to it from.
TRANSITIONS = {
    # Back to the queue: a user resumes a run that stopped early, a worker
    # shutting down hands its run back, the reaper recovers a run whose worker
    # stopped heartbeating.  It continues from its latest checkpoint.
    _S.PENDING: frozenset({_S.FAILED, _S.CANCELLED, _S.TIMEOUT, _S.RUNNING}),
    # Claiming: only a pending run can start, so a message delivered twice
    # executes once.
    _S.RUNNING: frozenset({_S.PENDING}),
    _S.CANCEL_REQUESTED: frozenset({_S.RUNNING}),
    # A run may finish while its cancel is being delivered: what happened wins.
    _S.COMPLETED: frozenset({_S.RUNNING, _S.CANCEL_REQUESTED}),
    # A pending run fails when its message could not be published or when
    # dramatiq gives the message up before it ever ran.
    _S.FAILED: frozenset({_S.PENDING, _S.RUNNING, _S.CANCEL_REQUESTED}),
    # A pending run is cancelled at once and never starts.
    _S.CANCELLED: frozenset({_S.PENDING, _S.RUNNING, _S.CANCEL_REQUESTED}),
    _S.TIMEOUT: frozenset({_S.RUNNING, _S.CANCEL_REQUESTED}),
}

#: Statuses a run stays in unless a user resumes it.
FINAL = frozenset({_S.COMPLETED, _S.FAILED, _S.CANCELLED, _S.TIMEOUT})

#: Statuses of a run that is still in the system's hands.
ACTIVE = frozenset(RunStatus) - FINAL

#: Final statuses a user can resume a run from.
RESUMABLE = TRANSITIONS[_S.PENDING] & FINAL

ALL = tuple(s.value for s in RunStatus)


def allowed_from(target):
    """The statuses a run may move to ``target`` from."""
    return TRANSITIONS[RunStatus(target)]


def can_move(current, target):
    return RunStatus(current) in allowed_from(target)
