"""The run lifecycle: every status a run can have and every move between them.

This is the one place the status list lives.  The database enforces the same
list (``tasks/sql/migrations``) and every status change goes through
``tasks.registry.transition``, which takes its allowed "from" states from
``TRANSITIONS`` below, so two workers racing on one run get a clean
``InvalidTransition`` instead of both winning.

    pending ──claim──▶ running ──▶ completed
       │                  │
       └──▶ failed ◀──────┘
"""

import enum


class RunStatus(str, enum.Enum):
    #: Committed to the registry and published; no worker holds it yet.
    PENDING = "pending"
    #: A worker claimed it and is executing it.
    RUNNING = "running"
    #: Finished; ``result`` holds the summary.
    COMPLETED = "completed"
    #: Finished unsuccessfully; ``error`` holds the type and message.
    FAILED = "failed"

    def __str__(self):
        return self.value


#: target status -> the statuses a run may move to it from.
TRANSITIONS = {
    RunStatus.PENDING: frozenset(),
    # Claiming: only a pending run can start, so a message delivered twice
    # executes once.
    RunStatus.RUNNING: frozenset({RunStatus.PENDING}),
    RunStatus.COMPLETED: frozenset({RunStatus.RUNNING}),
    # A pending run fails when its message could not be published or when
    # dramatiq gives the message up before it ever ran.
    RunStatus.FAILED: frozenset({RunStatus.PENDING, RunStatus.RUNNING}),
}

#: Statuses a run never leaves.
FINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED})

#: Statuses of a run that is still in the system's hands.
ACTIVE = frozenset(RunStatus) - FINAL

ALL = tuple(s.value for s in RunStatus)


def allowed_from(target):
    """The statuses a run may move to ``target`` from."""
    return TRANSITIONS[RunStatus(target)]


def can_move(current, target):
    return RunStatus(current) in allowed_from(target)
