"""The run lifecycle: every status a run can have, what it means, and every
named move between them.

This is the one place the statuses live.  The database enforces the same
list (``tasks/sql/migrations``); the named SQL says ``:HELD``, ``:FINAL`` …
where it means a set below (``tasks/sql``); the console and the API document
get the list, the meanings and the sets from here.  Every status change is
one of ``MOVES``, made by ``tasks.registry.transition``: guarded by the
move's "from" statuses, so two workers racing on one run get a clean
``InvalidTransition`` instead of both winning, and counted there
(``tunix_runs_total``) once its transaction commits, whoever made it: the
API, a worker or the reaper.

Each arrow is a move (``MOVES``, below):

    deferred ── admit ──▶ pending            (cancel_pending: deferred → cancelled too)

                  claim                finish / fail / time_out
    pending ───────────────▶ running ─────────────────────────▶ completed
     │  ▲                     │   │                            failed
     │  │ hand_back, recover  │   │ request_cancel             timeout
     │  └─────────────────────┘   ▼                                ▲
     │                      cancel_requested ── finish / fail ─────┘
     │ cancel_pending             │ cancel                 (done anyway)
     ▼                            ▼
    cancelled ◀───────────────────┘        (reject, lose: any held → failed)
    cancelled / failed / timeout ── resume ──▶ pending

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

Messages
--------
A run is ``pending`` with its dramatiq message (id = the run id): every
move into ``pending`` (a submit, admit, resume, recover) writes the message
in the move's own transaction, through one SQL function (``tunix_enqueue``,
migration 0017).  Two things still leave a pending run without a live
message, and the reaper queues such a run again once it is ``ORPHAN_AGE_S``
old (``workers/reaper.py``, ``republish_orphans``), which is why it stays:

* ``hand_back``: its message is written after the stopping process's
  consumers closed, not in the move's transaction (the nack dramatiq sends
  after the hook would reject a message of the same id, or the stopping
  process would take it back; measured, ``workers/middleware/run_registry.py``),
  so a process killed in between leaves the run pending without one;
* a consumer that took a message (``consumed``) and died before the claim.

A user's cancel makes the move ``cancel_move`` names for the run's status
(``CANCELLABLE``); no caller decides it.
"""

import dataclasses
import enum


class RunStatus(str, enum.Enum):
    #: Waiting its turn in the registry, with no message yet: admission
    #: (``admit``) gives it one by priority, fair share between sweeps and
    #: single runs, and its sweep's ``max_concurrent`` (tasks/admission.py).
    DEFERRED = "deferred"
    #: Committed to the registry and queued; no worker holds it yet.
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

#: What each status means, in a user's words (the console's hints, the API
#: document's description of ``status``).
MEANING = {
    _S.DEFERRED: "Waiting its turn: admitted to the queue by priority, then fair share between sweeps and runs",
    _S.PENDING: "Queued: waiting for a free worker",
    _S.RUNNING: "A worker is executing it",
    _S.CANCEL_REQUESTED: "Stopping: the worker saves a checkpoint and ends it",
    _S.COMPLETED: "Finished successfully",
    _S.FAILED: "Ended with an error",
    _S.CANCELLED: "Stopped by a user",
    _S.TIMEOUT: "Stopped at its time limit",
}

#: Statuses a run stays in unless a user resumes it.
FINAL = frozenset({_S.COMPLETED, _S.FAILED, _S.CANCELLED, _S.TIMEOUT})

#: Statuses of a run that is still in the system's hands.
ACTIVE = frozenset(RunStatus) - FINAL

#: Statuses of a run a worker holds: it heartbeats, records steps and
#: checkpoints, and the reaper recovers it when the worker falls silent.
HELD = frozenset({_S.RUNNING, _S.CANCEL_REQUESTED})

#: Statuses of a run waiting for a worker: it has its message.
WAITING = frozenset({_S.PENDING})

#: Statuses of a run waiting for admission (no message yet).
DEFERRED = frozenset({_S.DEFERRED})


@dataclasses.dataclass(frozen=True)
class Move:
    """One named status change: where it may start, where it goes, and what
    the transition does besides setting the status (``tasks/sql/runs.sql``,
    ``transition``)."""

    name: str
    sources: frozenset
    target: RunStatus
    #: What it is for, and who makes it.
    doc: str
    #: Starts an attempt: stamps the worker and the start, counts the
    #: attempt, and is refused once the run has had its ``max_attempts``.
    claims: bool = False
    #: ``"give_back"``: the attempt goes back to the budget (not the run's
    #: fault); ``"renew"``: a fresh budget (see "Attempts" above).
    budget: str | None = None

    @property
    def ends(self):
        """Stamps the end and the duration."""
        return self.target in FINAL

    @property
    def requeues(self):
        """Clears the previous attempt's outcome: it runs again, from its
        latest checkpoint."""
        return self.target is _S.PENDING


_MOVES = (
    Move("claim", WAITING, _S.RUNNING, claims=True,
         doc="A worker starts an attempt.  Only a pending run can start, so a message delivered twice "
             "executes once."),
    Move("finish", HELD, _S.COMPLETED,
         doc="The execution succeeded; also while its cancel was on its way: what happened wins."),
    Move("fail", HELD, _S.FAILED, doc="The execution raised."),
    Move("time_out", HELD, _S.TIMEOUT, doc="The execution ran past its time_limit_s."),
    Move("request_cancel", frozenset({_S.RUNNING}), _S.CANCEL_REQUESTED,
         doc="A user asks a held run to stop; its worker sees it at its next heartbeat."),
    Move("stop_early", frozenset({_S.RUNNING}), _S.CANCEL_REQUESTED,
         doc="Its sweep's early-stopping rule found the trial hopeless (tasks/early_stopping.py): its worker "
             "stops it as on a cancel, checkpoint saved; stop_reason says early_stopped."),
    Move("admit", DEFERRED, _S.PENDING,
         doc="Its turn came (priority, fair share, its sweep's max_concurrent): the run gets its message, "
             "in the same transaction (tasks/admission.py)."),
    Move("cancel_pending", WAITING | DEFERRED, _S.CANCELLED,
         doc="A user cancels a run no worker holds: it never starts, even if a consumer prefetched it."),
    Move("cancel", HELD, _S.CANCELLED,
         doc="A worker stopped a run on a user's cancel (checkpoint saved), or the reaper ends one being "
             "cancelled whose worker was lost."),
    Move("hand_back", frozenset({_S.RUNNING}), _S.PENDING, budget="give_back",
         doc="A worker told to stop (SIGTERM) checkpoints and queues the run again, at no cost to its budget."),
    Move("recover", frozenset({_S.RUNNING}), _S.PENDING,
         doc="The reaper queues again a run whose worker fell silent; the lost attempt is spent."),
    Move("lose", HELD, _S.FAILED,
         doc="The reaper fails (WorkerLost) a run whose worker fell silent and that has had its attempts."),
    Move("exhaust", WAITING, _S.FAILED,
         doc="A claim found the run had had its attempts (a race the reaper's own check lost): it fails "
             "where the attempt would have begun."),
    Move("reject", WAITING | HELD, _S.FAILED,
         doc="dramatiq gave the run's message up: whatever the run was doing, it will not go on."),
    Move("resume", FINAL - {_S.COMPLETED}, _S.PENDING, budget="renew",
         doc="A user queues a failed, cancelled or timed-out run again, with a fresh attempts budget."),
)

#: name -> the move.
MOVES = {m.name: m for m in _MOVES}

#: The move by which a worker ends its execution in each final status.
ENDINGS = {_S.COMPLETED: MOVES["finish"], _S.FAILED: MOVES["fail"], _S.CANCELLED: MOVES["cancel"],
           _S.TIMEOUT: MOVES["time_out"]}

#: target status -> every status some move reaches it from.
TRANSITIONS = {target: frozenset().union(*(m.sources for m in _MOVES if m.target is target))
               for target in RunStatus}

#: Final statuses a user can resume a run from.
RESUMABLE = MOVES["resume"].sources

#: The move a user's cancel makes from each status it acts on: a run no
#: worker holds is cancelled at once, a running one is asked to stop.  A run
#: already stopping, or final, is answered as it is.
_CANCEL_MOVES = {_S.DEFERRED: MOVES["cancel_pending"], _S.PENDING: MOVES["cancel_pending"],
                 _S.RUNNING: MOVES["request_cancel"]}

#: Statuses a user's cancel moves a run from.
CANCELLABLE = frozenset(_CANCEL_MOVES)

ALL = tuple(s.value for s in RunStatus)

#: The sets the named SQL may name (``status IN :HELD``).
SQL_SETS = {"WAITING": WAITING, "DEFERRED": DEFERRED, "HELD": HELD, "ACTIVE": ACTIVE, "FINAL": FINAL,
            "RESUMABLE": RESUMABLE, "CANCELLABLE": CANCELLABLE}


def move(name_or_move):
    """The ``Move`` called ``name`` (a ``Move`` is returned as it is)."""
    if isinstance(name_or_move, Move):
        return name_or_move
    try:
        return MOVES[name_or_move]
    except KeyError:
        raise ValueError(f"no move is called {name_or_move!r}; moves: {', '.join(MOVES)}") from None


def cancel_move(status):
    """The move a user's cancel makes from ``status``, or None when there is
    nothing to move (already stopping, or final)."""
    return _CANCEL_MOVES.get(RunStatus(status))


def allowed_from(target):
    """The statuses a run may move to ``target`` from, by any move."""
    return TRANSITIONS[RunStatus(target)]


def can_move(current, target):
    return RunStatus(current) in allowed_from(target)
