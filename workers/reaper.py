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

Retention
---------
Each pass ends with a bounded share of clean-up (``prune``), every delete a
statement of at most ``PRUNE_ROWS`` rows in a transaction of its own, at
most ``PRUNE_BATCHES`` of each kind a pass, skipping rows another session
holds, with no NOTIFY (``tasks/sql/retention.sql``); what it deleted is
counted in ``tunix_retention_pruned_total{kind}``:

* Always: dramatiq's settled messages (done, rejected) settled over
  ``QUEUE_KEEP_S`` ago.  dramatiq-pg deletes them only from a consumer that
  found its queue empty (one chance in 100,000 turns, messages 30 days old),
  which a busy fleet's never is; nothing reads a settled message.
* With ``RETENTION_DAYS`` set (0, the default, keeps everything): the log
  lines and per-step metrics of runs final for that long, all but each run's
  last ``METRICS_TAIL`` steps (its final loss, and the ranking of its sweep,
  read only those).  Never of a run that is not final, nor of any trial of a
  sweep with a trial still in the system's hands (early stopping compares a
  running trial with the finished ones' steps).  A run with nothing left is
  stamped ``pruned_at``; resumed and finished again, it is pruned again.
  The run row stays, with its config, result, error and progress (the
  history and the audit trail name it), as do its recorded checkpoints
  (CHECKPOINT_KEEP's choice: a resume and an export need them), exports,
  samples and eval losses (a few rows per run).
* With ``RETENTION_DAYS`` set: orphaned store objects, swept folder by folder
  (``STORE_FOLDERS`` a pass) from a listing of ``runs/`` taken at most every
  ``STORE_LIST_EVERY_S``.  A folder of a run the registry does not know
  loses its objects older than ``RETENTION_DAYS``; a prunable run's folder
  (as above) loses the checkpoint objects no row names and the export tars
  of no live export (failed, deleted, unknown), once older than
  ``STORE_GRACE_S``.  Its manifest, summary, recorded checkpoints and live
  exports stay; a folder of a run that is not prunable is not listed.
"""

import logging
import posixpath
import threading
import time
import uuid
from hashlib import sha256

from tasks import actors, admission, db, lifecycle, registry, retrying
from tasks.broker import DRY_QUEUE, TRAIN_QUEUE
from tasks.errors import InvalidTransition
from tasks.metrics import RETENTION_PRUNED, RUNS_RECOVERED, RUNS_RETRIED, SILENT_SESSIONS_ENDED
from tasks.sweep_spec import RANK_LAST_STEPS

logger = logging.getLogger(__name__)

_S = lifecycle.RunStatus

#: A worker process silent this long is forgotten: the fleet view lists a
#: lost one for an hour (app/fleet.py), and the table must not grow for ever.
FORGET_WORKERS_AFTER_S = 24 * 3600
#: Checkpoint deletions one pass finishes at most.
GC_BATCH = 200

#: Retention (see "Retention" above): rows one delete statement takes at most,
PRUNE_ROWS = 1000
#: statements of each kind one pass makes at most,
PRUNE_BATCHES = 4
#: the steps a pruned run keeps of its metrics (a sweep ranks on the last ones),
METRICS_TAIL = RANK_LAST_STEPS
#: how long a settled dramatiq message is kept,
QUEUE_KEEP_S = 3600
#: run folders of the store one pass sweeps, how often the store's ``runs/``
#: is listed again, and how old an orphaned object must be before it goes.
STORE_FOLDERS = 20
STORE_LIST_EVERY_S = 3600
STORE_GRACE_S = 3600


def message_lock_key(queue_name, message_id):
    """The advisory lock key dramatiq-pg takes for a message (its
    ``dramatiq_pg.broker.message_lock``, for a queue and id)."""
    digest = sha256((queue_name + str(message_id)).encode("utf-8")).hexdigest()
    return int(digest[24:40], 16) - 2**63


def _older(modified, now, age_s):
    """Whether an object modified at ``modified`` (epoch seconds; None:
    unknown, so not) is older than ``age_s`` at ``now``."""
    return modified is not None and now - float(modified) > age_s


def _enqueue(conn, runs):
    """Write the messages of ``runs`` in ``conn``'s transaction."""
    if runs:
        registry.enqueue_messages(conn, actors.outbox_rows([(run["id"], run["dry_run"]) for run in runs]))


class Reaper:
    def __init__(self, pool, settings):
        self.pool = pool
        self.settings = settings
        self._stop = threading.Event()
        #: ``time.monotonic()`` before which lost runs are not recovered; None
        #: after a failed pass, until one writes (see ``run_once``).
        self._quiet_until = 0.0
        #: Run folders of the store still to sweep, and when ``runs/`` was last listed.
        self._folders, self._listed_at = [], None

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
        # A write first: on a database that answers but refuses writes (a
        # failover) the pass fails here, before it ends the sessions of
        # workers whose heartbeats the same refusal silenced.
        self.forget_dead_workers()
        now = time.monotonic()
        if self._quiet_until is None:
            # The first pass that writes after a failed one: the heartbeats
            # the failure silenced get a whole timeout from now, and a patient
            # writer's last back-off (a final write, a last flush) on top.
            # Counted from the failure instead, a dry run whose final write
            # waited out 8 s of a read-only database was taken back and run
            # again (tests/reliability/test_read_only_database.py).
            self._quiet_until = now + self.settings.heartbeat_timeout_s + retrying.MAX_DELAY_S
        if now < self._quiet_until:
            return None, self.republish_orphans()
        self.end_silent_sessions()
        self.fail_lost_jobs()
        try:
            self.finish_checkpoint_deletions()
        except Exception as exc:  # noqa: BLE001 - the store may be down: the next pass tries again
            logger.warning("checkpoint deletions deferred: %s", exc)
        recovered, republished = self.recover_lost(), self.republish_orphans()
        self.admit_deferred()
        self.prune()
        return recovered, republished

    # ------------------------------------------------------------ retention

    def prune(self):
        """This pass' share of retention (see "Retention" above); returns
        ``{kind: rows or objects deleted}``.  A failure is logged: the next
        pass goes on where this one stopped."""
        pruned = {"queue": 0, "logs": 0, "metrics": 0, "store": 0}
        for kind, step in (("queue", self.prune_queue), ("activity", self.prune_activity),
                           ("store", self.prune_store)):
            if kind != "queue" and not self.settings.retention_days:
                continue
            try:
                done = step()
            except Exception as exc:  # noqa: BLE001 - the database or the store may be down
                logger.warning("retention (%s) deferred: %s", kind, exc)
                continue
            for name, n in (done if isinstance(done, dict) else {kind: done}).items():
                pruned[name] += n
        for kind, n in pruned.items():
            if n:
                RETENTION_PRUNED.labels(kind).inc(n)
        return pruned

    def _batches(self, delete):
        """``delete(conn)`` in its own transaction, up to ``PRUNE_BATCHES``
        times while it takes a full batch; returns how many rows in all."""
        total = 0
        for _ in range(PRUNE_BATCHES):
            with db.connection(self.pool) as conn:
                n = delete(conn)
            total += n
            if n < PRUNE_ROWS:
                break
        return total

    def prune_queue(self):
        """Delete dramatiq's messages settled over ``QUEUE_KEEP_S`` ago; returns how many."""
        return self._batches(lambda conn: registry.prune_queue(conn, QUEUE_KEEP_S, PRUNE_ROWS))

    def prune_activity(self):
        """Delete the log lines and metrics of runs final for ``RETENTION_DAYS``
        (``PRUNE_ROWS`` runs at a time, oldest first); returns ``{"logs", "metrics"}``."""
        days = self.settings.retention_days
        with db.connection(self.pool) as conn:
            ids = registry.retention_candidates(conn, days, PRUNE_ROWS)
        if not ids:
            return {"logs": 0, "metrics": 0}
        logs = self._batches(lambda conn: registry.prune_logs(conn, ids, days, PRUNE_ROWS))
        metrics = self._batches(lambda conn: registry.prune_metrics(conn, ids, days, METRICS_TAIL, PRUNE_ROWS))
        with db.connection(self.pool) as conn:
            registry.mark_pruned(conn, ids, days, METRICS_TAIL)
        return {"logs": logs, "metrics": metrics}

    def prune_store(self):
        """Sweep the next ``STORE_FOLDERS`` run folders of the store for
        orphaned objects (see "Retention" above); returns how many went."""
        from tasks import artifacts

        store = artifacts.get_store(self.settings)
        if not self._folders:
            if self._listed_at is not None and time.monotonic() - self._listed_at < STORE_LIST_EVERY_S:
                return 0
            self._folders = sorted(store.folders("runs"), reverse=True)  # popped from the end
            self._listed_at = time.monotonic()
        chunk = []
        while self._folders and len(chunk) < STORE_FOLDERS:
            name = self._folders.pop()
            try:
                chunk.append(str(uuid.UUID(name)))
            except ValueError:
                continue  # not a run's folder: left alone
        if not chunk:
            return 0
        days = self.settings.retention_days
        with db.connection(self.pool) as conn:
            known = registry.retention_store_runs(conn, chunk, days)
        now = time.time()
        doomed = []
        for run_id in chunk:
            run = known.get(run_id)
            if run is not None and not run["prunable"]:
                continue
            objects = store.walk(artifacts.run_prefix(run_id))
            if run is None:
                # No run: what is older than the retention goes (a registry
                # restored from a backup keeps its newer runs' objects).
                doomed += [key for key, modified in objects.items() if _older(modified, now, days * 86400)]
                continue
            for key, modified in objects.items():
                if not _older(modified, now, STORE_GRACE_S):
                    continue
                if key.startswith(artifacts.checkpoints_prefix(run_id) + "/"):
                    if artifacts.checkpoint_attempt(key) is not None and key not in run["checkpoints"]:
                        doomed.append(key)
                elif key.startswith(artifacts.run_prefix(run_id) + "/exports/") and key.endswith(".tar"):
                    if posixpath.basename(key)[:-len(".tar")] not in run["live_exports"]:
                        doomed.append(key)
        for key in doomed:
            store.delete(key)
        if doomed:
            logger.info("retention deleted %d orphaned store object(s)", len(doomed))
        return len(doomed)

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
            self._quiet_until = None  # see run_once
            logger.warning("reaper pass failed (lost runs wait %ss once it works again): %s",
                           self.settings.heartbeat_timeout_s + retrying.MAX_DELAY_S, exc)
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
