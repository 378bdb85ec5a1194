"""Admission: a sweep's deferred trials get their messages as places free up.

A sweep with ``max_concurrent`` is written with that many trials pending
(queued) and the rest ``deferred``, with no message, so dramatiq's FIFO
queue never holds a whole sweep in front of a run submitted after it.  When
a trial ends, the worker that ended it admits the next (``admit``); every
reaper pass admits too, for places freed by a cancel, a crash or a kill.

Admitting makes the ``admit`` move and writes the trial's message in one
transaction, under one advisory lock for the whole database: admitters in
every worker launch may run at once, and the lock keeps two of them from
filling one place twice (the count of a sweep's busy trials is read under
it).  A pass that finds the lock taken does nothing: the holder admits.
"""

import logging

from . import registry
from .errors import InvalidTransition

logger = logging.getLogger(__name__)

#: ``pg_try_advisory_xact_lock`` key of admission (any constant no other
#: lock of the system uses; dramatiq-pg's are message ids hashed).
LOCK_KEY = 0x7475_6E69_7861_646D  # "tunixadm"
#: Trials admitted per pass at most, so a pass is one short transaction.
BATCH = 1000


def admit(conn):
    """Admit every deferred trial its sweep has a place for, in ``conn``'s
    transaction (committed by the caller); how many were admitted."""
    from .actors import outbox_rows

    with conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK_KEY,))
        if not cur.fetchone()[0]:
            return 0
    admitted = []
    for trial in registry.trials_to_admit(conn, BATCH):
        try:
            registry.transition(conn, trial["id"], "admit")
        except InvalidTransition:  # cancelled meanwhile
            continue
        admitted.append((trial["id"], trial["dry_run"]))
    if admitted:
        registry.enqueue_messages(conn, outbox_rows(admitted))
    return len(admitted)
