"""Admission: which waiting runs get their messages, and when.

dramatiq's queue is first in, first out, so the registry keeps the queue
short and decides its order itself.  A run waits ``deferred``, with no
message, until admission queues it.

The rule, one definition in SQL (migration ``0018_admission_rule.sql``), so
a submit and an admission pass cannot disagree:

* ``tunix_admission_room(ahead)``: the places the queue has for trainings,
  ``ADMIT_AHEAD`` less the admitted trainings no worker took yet;
* ``tunix_admits_at_once(ahead, dry_run, priority, owner, user_max)``:
  whether a new run is queued at once.  A dry run always (they take
  milliseconds); a training when there is room, it would be the first one
  admitted (no deferred training of as high a priority was there first) and
  its owner holds fewer than ``USER_MAX_TRAININGS`` (migration 0023).

Every training insert goes through it: a single submit asks it in its one
statement (``submit_run`` in ``tasks/sql/runs.sql``); a batch's trainings
and a sweep's trials (dry or not) are written deferred and an ``admit``
pass after their commit decides, through ``runs_to_admit``, which is
bounded by the same room.

``admit`` queues deferred runs in the order ``runs_to_admit`` gives them:

* priority, higher first;
* then fair share between users: the user with fewer runs queued or
  running first, so one person's 1,000-run batch does not fill the fleet
  ahead of everyone else (runs with no owner each count as a user of their
  own, so an open installation orders as before users);
* then fair share within a user: a sweep with fewer trials queued or
  running first, a single run counting as a sweep of one, so a run
  submitted after a 500-trial sweep is next once a worker is free, not
  after the sweep;
* then age;
* a trial past its sweep's ``max_concurrent`` waits, and a training past
  its owner's ``USER_MAX_TRAININGS`` (``tunix_admits_at_once`` holds a new
  one back the same way, migration 0023).

Dry runs are admitted as their sweeps allow; trainings while there is room.
A pass is triggered where a place may have opened or a run was deferred:

* the API, after the commit of a submit, a batch or a sweep that wrote a
  deferred run (``app/service.py`` ``admit_deferred``): the runs it
  deferred would otherwise wait for the next trigger;
* the worker, ``workers/middleware/admission.py``: after it claims a
  training (the training left the queue, so a place there is free) and
  after a run ends (a training's worker, or a trial's place in its sweep's
  ``max_concurrent``, is free);
* the reaper, on every pass (``workers/reaper.py``): the places a cancel, a
  crash or a kill freed, which no worker reports, and any pass above that
  failed (they log and go on: a submit is never undone by its admission).

Admitting makes the ``admit`` move and writes the run's message in one
transaction, under one advisory lock for the whole database: admitters in
every worker launch and the API may run at once, and the lock keeps two of
them from filling one place twice (the room is read under it).  A pass
that finds the lock taken does nothing: the holder admits.  A submit's
``tunix_admits_at_once`` takes no lock: it runs in the submit's one
statement, and two submits at once may each take the last place (the queue
is then one over ``ADMIT_AHEAD`` until a worker takes one).
"""

import logging

from . import db, registry, retrying
from .actors import outbox_rows
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
    settings = get_settings()
    ahead = settings.admit_ahead if ahead is None else ahead
    with conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK_KEY,))
        if not cur.fetchone()[0]:
            return 0
    admitted = []
    for run in registry.runs_to_admit(conn, ahead, BATCH, user_max=settings.user_max_trainings):
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
        return retrying.patiently(once, patience_s, db.UNAVAILABLE, what="a database call") if patience_s else once()
    except Exception:  # noqa: BLE001 - see the docstring
        logger.exception("admission pass failed; the next reaper pass admits")
        return 0
