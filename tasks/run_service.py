"""The run service: every move a user makes on runs and sweeps, one call each.

In the manner of procrastinate's ``JobManager``: the API's blueprints parse
and answer, the tests and the CLI's server-side helpers call the same
methods, and none of them branches on a status or writes a message.  Each
method works in the caller's transaction (``conn``), so a run and its
message are committed together (a run is never pending without one); the
lifecycle decides which move a cancel is (``lifecycle.cancel_move``).

Admission (``tasks/admission.py``) is not done here: a submit that wrote
deferred runs says so (``wrote_deferred``) and the caller admits after its
commit, in a transaction of its own, so a failed pass never undoes a submit.
"""

import uuid

from . import actors, db, lifecycle, registry

from .errors import InvalidTransition, RunNotFound
from .metrics import RUNS_RETRIED

S = lifecycle.RunStatus

#: How often a cancel follows a run that moved under it (pending, then
#: claimed, then stopping): each try follows one move, and a run makes at
#: most two before it is out of a cancel's reach.
_CANCEL_TRIES = 3


def wrote_deferred(runs):
    """Whether any of ``runs`` (rows) waits for admission."""
    return any(r["status"] == S.DEFERRED for r in runs)


def _cancel_one(conn, run_id, status):
    """Make the cancel move for ``status``, following the run if it moved
    meanwhile: ``(the moved run, None)``, or ``(None, the status it was left
    in)`` when a cancel has nothing to move (stopping already, or final)."""
    for _ in range(_CANCEL_TRIES):
        move = lifecycle.cancel_move(status)
        if move is None:
            break
        try:
            return registry.transition(conn, run_id, move), None
        except InvalidTransition as exc:  # it moved meanwhile: follow it
            status = exc.current
    return None, status


class RunService:
    """Submit, cancel and resume runs and sweeps under ``settings``."""

    def __init__(self, settings):
        self.settings = settings

    # -- submit ------------------------------------------------------------

    def submit(self, conn, config, *, priority=0, mode="async", idempotency_key=None, request_hash=None,
               run_id=None, owner=None):
        """One new run of ``owner`` (a user's name; None: no user) and its
        message in one statement (pending), or the run deferred; None when
        ``owner`` used ``idempotency_key`` before (nothing is written then)."""
        run_id = run_id or uuid.uuid4()
        (message,) = actors.outbox_rows([(run_id, config["dry_run"])])
        return registry.submit_run(conn, run_id=run_id, mode=mode, dry_run=config["dry_run"],
                                   dataset_key=config["dataset_key"], model_id=config["model_id"], config=config,
                                   message=message, ahead=self.settings.admit_ahead, priority=priority,
                                   idempotency_key=idempotency_key, request_hash=request_hash, owner=owner,
                                   user_max=self.settings.user_max_trainings)

    def submit_many(self, conn, specs, owner=None):
        """Async runs of ``owner`` from ``specs`` (``(config, priority)`` pairs), all in
        ``conn``'s transaction: dry runs queued at once, trainings deferred
        for admission to queue in turn.  The new rows, in order."""
        runs = [dict(run_id=uuid.uuid4(), status=S.PENDING if config["dry_run"] else S.DEFERRED, mode="async",
                     dry_run=config["dry_run"], dataset_key=config["dataset_key"], model_id=config["model_id"],
                     config=config, priority=priority, owner=owner)
                for config, priority in specs]
        rows = registry.insert_runs(conn, runs)
        self._queue(conn, [r for r in runs if r["status"] == S.PENDING], key="run_id")
        return rows

    def submit_sweep(self, conn, *, name, spec, metric, duplicates, trials, max_concurrent=None, priority=0,
                     early_stopping=None, owner=None):
        """A sweep and its ``trials`` (``(params, config)`` pairs), every one
        deferred, in ``conn``'s transaction: all there or none.
        ``(sweep row, run rows)``."""
        runs = [dict(run_id=uuid.uuid4(), mode="async", dry_run=config["dry_run"],
                     dataset_key=config["dataset_key"], model_id=config["model_id"], config=config, params=params)
                for params, config in trials]
        return registry.insert_sweep(conn, sweep_id=uuid.uuid4(), name=name, spec=spec, metric=metric,
                                     duplicates=duplicates, trials=runs, max_concurrent=max_concurrent,
                                     priority=priority, early_stopping=early_stopping, owner=owner)

    # -- cancel ------------------------------------------------------------

    def cancel(self, conn, run_id):
        """The run after its user's cancel: cancelled when no worker held it,
        stopping when one did (the worker saves a checkpoint and ends it
        ``cancelled``), as it was when it was stopping already.

        Raises:
          RunNotFound: no run has this id.
          InvalidTransition: the run had ended.
        """
        row = registry.get_status(conn, run_id)
        if row is None:
            raise RunNotFound(run_id)
        moved, status = _cancel_one(conn, run_id, row["status"])
        if moved is not None:
            return moved
        if status in lifecycle.FINAL:
            raise InvalidTransition(run_id, status, lifecycle.MOVES["request_cancel"].target.value)
        return registry.get_run(conn, run_id)

    def cancel_each(self, conn, runs):
        """Cancel ``runs`` (rows with ``id`` and ``status``) as each one's own
        cancel would; how many reached each status.  A run that ended
        meanwhile is left as it is."""
        moved = {S.CANCELLED.value: 0, S.CANCEL_REQUESTED.value: 0}
        for run in runs:
            row, _ = _cancel_one(conn, run["id"], run["status"])
            if row is not None:
                moved[row["status"]] += 1
        return moved

    def cancel_matching(self, conn, *, owner=None, **filters):
        """``cancel_each`` on every run the filters match that a cancel acts
        on, ``owner``'s alone when given (a member's bulk move; None: every
        user's); ``(the matched runs' ids, moved)``."""
        runs = registry.matching_runs(conn, "active", owner=owner, **filters)
        return [r["id"] for r in runs], self.cancel_each(conn, runs)

    def cancel_sweep(self, conn, sweep_id):
        """Every trial still in the system's hands stops."""
        return self.cancel_matching(conn, sweep_id=sweep_id)

    # -- resume ------------------------------------------------------------

    def resume(self, conn, run_id):
        """Queue a failed, cancelled or timed-out run again, in ``conn``'s
        transaction, with a fresh attempts budget; it goes on from its
        latest checkpoint.  The run."""
        (run,) = self._resume(conn, [run_id])
        return run

    def resume_each(self, conn, runs):
        """Queue again those of ``runs`` (rows with ``id`` and ``status``) a
        resume acts on; the runs resumed."""
        return self._resume(conn, [r["id"] for r in runs if r["status"] in lifecycle.RESUMABLE])

    def resume_matching(self, conn, *, owner=None, **filters):
        """``resume_each`` on every run the filters match, ``owner``'s alone
        when given (as for ``cancel_matching``); the runs resumed."""
        return self.resume_each(conn, registry.matching_runs(conn, "resumable", owner=owner, **filters))

    def resume_sweep(self, conn, sweep_id):
        """Every failed, cancelled or timed-out trial is queued again."""
        return self.resume_matching(conn, sweep_id=sweep_id)

    # -- whose -------------------------------------------------------------

    @staticmethod
    def skipped(conn, move, owner, **filters):
        """How many runs the filters match for ``move`` (``"cancel"`` or
        ``"resume"``) that a bulk move narrowed to ``owner`` leaves as they
        are (another user's, or no one's): 0 when not narrowed (None).  One
        count, not the rows: a member's move never reads the others' runs."""
        if owner is None:
            return 0
        status_set = {"cancel": "active", "resume": "resumable"}[move]
        return registry.count_matching_others(conn, status_set, owner, **filters)

    def _resume(self, conn, run_ids):
        resumed = [registry.transition(conn, run_id, "resume", max_attempts=self.settings.max_attempts)
                   for run_id in run_ids]
        self._queue(conn, resumed, key="id")
        if resumed:
            db.after_commit(conn, lambda: RUNS_RETRIED.labels("resume").inc(len(resumed)))
        return resumed

    @staticmethod
    def _queue(conn, runs, *, key):
        """Write the messages of ``runs`` in ``conn``'s transaction."""
        if runs:
            registry.enqueue_messages(conn, actors.outbox_rows([(r[key], r["dry_run"]) for r in runs]))
