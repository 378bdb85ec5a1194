"""Recover runs whose worker died, and pending runs whose message is gone.

Runs in every worker launch (a thread of ``python -m workers``); any number
of reapers may run at once: lost runs are taken with ``FOR UPDATE SKIP
LOCKED`` and every change is a guarded transition, so each run is recovered
once.  It does not wait for dramatiq-pg's random rescan (measured: 78 s to
5 minutes before a killed worker's message came back).

* A ``running`` run whose heartbeat is older than ``HEARTBEAT_TIMEOUT_S`` goes
  back to ``pending`` with its message, in one transaction (it resumes from
  its latest checkpoint); once it has had its ``max_attempts`` (``MAX_ATTEMPTS``, see
  "Attempts" in tasks/lifecycle.py) it ends ``failed`` (worker lost), so a
  run that kills its worker cannot loop for ever.  A
  ``cancel_requested`` one ends ``cancelled``.
* A ``pending`` run older than ``ORPHAN_AGE_S`` with no queued message is
  queued again.  Every enqueue writes the run's move and its message in one
  transaction, so this is not a gap between a commit and a publish: it is a
  consumer that died holding the message (taken, ``consumed``, its lock gone
  with its session, the run never claimed), and a worker killed between
  handing a run back and queueing it after its shutdown
  (``workers/middleware/run_registry.py``).  Queueing is idempotent: the
  message id is the run id.
* A pending run whose message has waited in the queue over ``ORPHAN_AGE_S``
  is announced again (one per queue and pass: the longest-waiting): a
  consumer drops a NOTIFY it cannot act on, and upstream's rescan comes
  only every 1-5 minutes.
* A worker process that froze (SIGSTOP, a swap storm) or whose host hung or
  was cut off keeps what its PostgreSQL sessions hold: the advisory locks of
  the messages it prefetched (up to ``DRY_PREFETCH``: nobody else may take
  them) and the row locks of a transaction it was in (its run is then
  skipped by every reaper's ``SKIP LOCKED``).  PostgreSQL drops the sessions
  of a dead peer only after TCP's keepalive (hours by default), of a frozen
  one never.  So the sessions of a worker silent for ``HEARTBEAT_TIMEOUT_S``
  (they are named after their worker) are ended; its runs are then
  recovered and its messages published again like any other.  Should it
  thaw, its writes are refused (fencing) and its connections opened afresh.
"""

import logging
import threading
import time
from hashlib import sha256

from tasks import actors, admission, db, lifecycle, registry
from tasks.broker import DRY_QUEUE, TRAIN_QUEUE
from tasks.errors import InvalidTransition
from tasks.metrics import RUNS_RECOVERED, RUNS_RETRIED, SILENT_SESSIONS_ENDED

logger = logging.getLogger(__name__)

_S = lifecycle.RunStatus

#: A worker process silent this long is forgotten: the fleet view lists a
#: lost one for an hour (app/fleet.py), and the table must not grow for ever.
FORGET_WORKERS_AFTER_S = 24 * 3600
#: Checkpoint deletions one pass finishes at most.
GC_BATCH = 200


def message_lock_key(queue_name, message_id):
    """The advisory lock key dramatiq-pg takes for a message (its
    ``dramatiq_pg.broker.message_lock``, for a queue and id)."""
    digest = sha256((queue_name + str(message_id)).encode("utf-8")).hexdigest()
    return int(digest[24:40], 16) - 2**63


def _enqueue(conn, runs):
    """Write the messages of ``runs`` in ``conn``'s transaction."""
    if runs:
        registry.enqueue_messages(conn, actors.outbox_rows([(run["id"], run["dry_run"]) for run in runs]))


class Reaper:
    def __init__(self, pool, settings):
        self.pool = pool
        self.settings = settings
        self._stop = threading.Event()
        #: ``time.monotonic()`` before which lost runs are not recovered (see above).
        self._quiet_until = 0.0

    def recover_lost(self):
        """One pass over silent runs; returns ``{"requeued", "failed", "cancelled"}`` counts."""
        counts = {"requeued": 0, _S.FAILED.value: 0, _S.CANCELLED.value: 0}
        requeued = []
        with db.connection(self.pool) as conn:
            for run in registry.lost_runs(conn, self.settings.heartbeat_timeout_s):
                fence = dict(attempt=run["attempts"])
                budget = run["max_attempts"] or self.settings.max_attempts
                lost = {"type": "WorkerLost",
                        "message": f"worker {run['worker_id']} stopped heartbeating "
                                   f"(attempt {run['attempts']} of {budget})"}
                try:
                    if run["status"] == _S.CANCEL_REQUESTED:
                        registry.transition(conn, run["id"], "cancel", error=lost, **fence)
                        counts[_S.CANCELLED.value] += 1
                    elif run["attempts"] >= budget:
                        registry.transition(conn, run["id"], "lose", error=lost, **fence)
                        counts[_S.FAILED.value] += 1
                    else:
                        registry.transition(conn, run["id"], "recover", **fence)
                        requeued.append(run)
                except InvalidTransition:
                    continue  # finished meanwhile
            # In the moves' transaction: the run is pending with its message, or neither.
            _enqueue(conn, requeued)
        for run in requeued:
            counts["requeued"] += 1
            logger.warning("recovered run %s from lost worker %s", run["id"], run["worker_id"])
        for outcome, n in counts.items():
            if n:
                RUNS_RECOVERED.labels(outcome).inc(n)
        if counts["requeued"]:
            RUNS_RETRIED.labels("recovered").inc(counts["requeued"])
        return counts

    def republish_orphans(self):
        """Queue again pending runs that have no live message; returns how many."""
        with db.connection(self.pool) as conn:
            registry.nudge_passed_over(conn, self.settings.orphan_age_s)
            runs = registry.unqueued_pending_runs(conn, self.settings.orphan_age_s)
            consumed = {run["id"]: message_lock_key(DRY_QUEUE if run["dry_run"] else TRAIN_QUEUE, run["id"])
                        for run in runs if run["message_state"] == "consumed"}
            held = registry.held_advisory_locks(conn, consumed.values()) if consumed else set()
        orphans = [run for run in runs if consumed.get(run["id"]) not in held]
        if orphans:
            with db.connection(self.pool) as conn:
                _enqueue(conn, orphans)
            RUNS_RECOVERED.labels("republished").inc(len(orphans))
            logger.warning("republished %d pending run(s) that had no live message", len(orphans))
        return len(orphans)

    def end_silent_sessions(self):
        """End the database sessions of silent workers (see module doc); returns how many."""
        with db.connection(self.pool) as conn:
            sessions = registry.silent_worker_sessions(conn, self.settings.heartbeat_timeout_s)
            for pid, worker_id in sessions:
                registry.terminate_session(conn, pid)
                logger.warning("ended session %s of silent worker %s", pid, worker_id)
        if sessions:
            SILENT_SESSIONS_ENDED.inc(len(sessions))
        return len(sessions)

    def forget_dead_workers(self):
        """Delete the rows of worker processes silent for ``FORGET_WORKERS_AFTER_S``
        (a killed process never deletes its own); returns how many."""
        with db.connection(self.pool) as conn:
            return registry.forget_dead_workers(conn, FORGET_WORKERS_AFTER_S)

    def fail_lost_jobs(self):
        """End failed (WorkerLost) the samples and exports whose worker went
        silent (nothing redelivers their messages); returns how many."""
        lost = 0
        with db.connection(self.pool) as conn:
            for kind in registry.JOB_KINDS:
                ended = registry.fail_lost_jobs(conn, kind, self.settings.heartbeat_timeout_s)
                if ended:
                    logger.warning("failed %d %s(s) whose worker went silent", len(ended), kind)
                lost += len(ended)
        return lost

    def finish_checkpoint_deletions(self):
        """Finish deletions a retention pass began (its worker died between
        marking a checkpoint and deleting it); returns how many."""
        from tasks.artifacts import get_store

        with db.connection(self.pool) as conn:
            doomed = registry.checkpoints_being_deleted(conn, limit=GC_BATCH)
        if not doomed:
            return 0
        store = get_store(self.settings)
        for run_id, step, key in doomed:
            store.delete(key)  # an object already gone counts as deleted
            with db.connection(self.pool) as conn:
                registry.delete_checkpoint_row(conn, run_id, step)
        return len(doomed)

    def run_once(self):
        if time.monotonic() < self._quiet_until:
            return None, self.republish_orphans()
        self.end_silent_sessions()
        self.forget_dead_workers()
        self.fail_lost_jobs()
        try:
            self.finish_checkpoint_deletions()
        except Exception as exc:  # noqa: BLE001 - the store may be down: the next pass tries again
            logger.warning("checkpoint deletions deferred: %s", exc)
        recovered, republished = self.recover_lost(), self.republish_orphans()
        self.admit_deferred()
        return recovered, republished

    def admit_deferred(self):
        """Places a cancel, a crash or a kill freed, and any admission a
        worker or the API missed (tasks/admission.py)."""
        with db.connection(self.pool) as conn:
            return admission.admit(conn)

    def run_pass(self):
        """``run_once``, with a failure (the database may be down) logged and remembered."""
        try:
            return self.run_once()
        except Exception as exc:
            self._quiet_until = time.monotonic() + self.settings.heartbeat_timeout_s
            logger.warning("reaper pass failed (lost runs wait %ss once it works again): %s",
                           self.settings.heartbeat_timeout_s, exc)
            return None

    def run_forever(self):
        while not self._stop.wait(self.settings.reaper_interval_s):
            self.run_pass()

    def start(self):
        thread = threading.Thread(target=self.run_forever, name="reaper", daemon=True)
        thread.start()
        return thread

    def stop(self):
        self._stop.set()
