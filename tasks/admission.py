"""Admission: which waiting runs get their messages, and when.

dramatiq's queue is first in, first out, so the registry keeps the queue
short and decides its order itself.  A run waits ``deferred``, with no
message, unless it can be queued at once: a dry run always (they take
milliseconds), a training when fewer than ``ADMIT_AHEAD`` admitted trainings
wait for a worker and no deferred one of as high a priority was there first
(``submit_run`` in ``tasks/sql/queries.sql``).  A sweep's trials are all
written deferred.

``admit`` queues deferred runs in the order ``runs_to_admit`` gives them:

* priority, higher first;
* then fair share: a sweep with fewer trials queued or running first, a
  single run counting as a sweep of one, so a run submitted after a
  500-trial sweep is next once a worker is free, not after the sweep;
* then age;
* a trial past its sweep's ``max_concurrent`` waits.

Dry runs are admitted as their sweeps allow; trainings until ``ADMIT_AHEAD``
wait for a worker.  It runs when a worker takes a training (a place in the
queue freed), when a run ends, after a submit or a sweep that deferred runs,
and on every reaper pass (a cancel, a crash, a lost admitter).

Admitting makes the ``admit`` move and writes the run's message in one
transaction, under one advisory lock for the whole database: admitters in
every worker launch and the API may run at once, and the lock keeps two of
them from filling one place twice (the counts are read under it).  A pass
that finds the lock taken does nothing: the holder admits.
"""

import logging

from . import db, registry
from .errors import InvalidTransition
from .settings import get_settings

logger = logging.getLogger(__name__)

#: ``pg_try_advisory_xact_lock`` key of admission (any constant no other
#: lock of the system uses; dramatiq-pg's are message ids hashed).
LOCK_KEY = 0x7475_6E69_7861_646D  # "tunixadm"
#: Runs admitted per pass at most, so a pass is one short transaction.
BATCH = 1000


def admit(conn, ahead=None):
    """Admit, in ``conn``'s transaction (committed by the caller), the
    deferred runs whose turn it is; how many were admitted."""
    from .actors import outbox_rows

    ahead = get_settings().admit_ahead if ahead is None else ahead
    with conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK_KEY,))
        if not cur.fetchone()[0]:
            return 0
    room = max(ahead - registry.queued_trainings(conn, ahead), 0)
    admitted = []
    for run in registry.runs_to_admit(conn, room, BATCH):
        try:
            registry.transition(conn, run["id"], "admit")
        except InvalidTransition:  # cancelled meanwhile
            continue
        admitted.append((run["id"], run["dry_run"]))
    if admitted:
        registry.enqueue_messages(conn, outbox_rows(admitted))
    return len(admitted)


def admit_with(pool, patience_s=0):
    """``admit`` in a transaction of its own, from ``pool``; a failure is
    logged, not raised (the next reaper pass admits), and 0 returned."""

    def once():
        with db.connection(pool) as conn:
            return admit(conn)

    try:
        return db.patiently(once, patience_s) if patience_s else once()
    except Exception:  # noqa: BLE001 - see the docstring
        logger.exception("admission pass failed; the next reaper pass admits")
        return 0
