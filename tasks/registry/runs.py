"""Runs (``tunix_runs``, ``tasks/sql/runs.sql``): the submit, the status
moves of ``tasks.lifecycle``, the reads of one run and of the history, and
admission's reads of deferred runs.

Every status change is a named move made by ``transition``, and ``_count``
here is the one place ``tunix_runs_total`` is counted (after the commit).
"""

import collections

from psycopg2.extras import Json

from .. import db, lifecycle
from ..errors import AttemptsExhausted, InvalidTransition, RunNotFound
from ..metrics import RUNS_TOTAL, timed_write
from ..settings import get_settings
from .queue import message_key
from ..sql.cursor import (execute_values, fetch_all, fetch_column, fetch_one, fetch_one_prepared, fetch_tuples, fetch_value,
                     jsonb)


def _count(conn, status, mode, n=1):
    """The one place ``tunix_runs_total`` is counted: runs arriving in
    ``status``, once the transaction that moved them commits."""
    if n:
        db.after_commit(conn, lambda: RUNS_TOTAL.labels(str(status), mode).inc(n))


def submit_run(conn, *, run_id, mode, dry_run, dataset_key, model_id, config, message, ahead, priority=0,
               idempotency_key=None, request_hash=None, owner=None, user_max=0):
    """Insert the new run, pending with its dramatiq ``message``
    ``(queue_name, message_id, message_json)`` or deferred (see the query:
    ``ahead`` is ``ADMIT_AHEAD``), in one statement; the run, or None when
    ``idempotency_key`` is taken by ``owner`` (nothing is written then)."""
    queue_name, message_id, message_json = message
    assert str(message_id) == str(run_id), "a run's message id is its run id"
    S = lifecycle.RunStatus
    with timed_write("submit"):
        run = fetch_one_prepared(
            conn, "submit_run",
            run_id=run_id, mode=mode, dry_run=dry_run, dataset_key=dataset_key, model_id=model_id,
            config=Json(config), priority=priority, idempotency_key=idempotency_key, request_hash=request_hash,
            queue_name=queue_name, message=Json(message_json), ahead=ahead, owner=owner, user_max=user_max,
            pending=S.PENDING.value, deferred=S.DEFERRED.value)
    if run is not None:
        _count(conn, run["status"], mode)
    return run


def get_run_by_idempotency_key(conn, key, owner=None):
    """The run ``owner``'s submit with ``key`` created (keys are per user)."""
    return fetch_one(conn, "get_run_by_idempotency_key", idempotency_key=key, owner=owner)


def insert_runs(conn, runs):
    """Insert ``runs`` (dicts of ``submit_run``'s fields, with ``status``)
    in ``conn``'s transaction."""
    with timed_write("insert_batch"):
        rows = execute_values(
            conn, "insert_runs",
            [(r["run_id"], r["status"].value, r["mode"], r["dry_run"], r["dataset_key"], r["model_id"],
              Json(r["config"]), r.get("priority", 0), r.get("owner")) for r in runs],
            fetch=True)
    for (status, mode), n in collections.Counter((r["status"], r["mode"]) for r in rows).items():
        _count(conn, status, mode, n)
    return rows


def transition(conn, run_id, move, *, attempt=None, worker_id=None, result=None, error=None, exit_code=None,
               max_attempts=None, stop_reason=None, ack=None):
    """Make ``move`` (a name of ``tasks.lifecycle.MOVES``) on a run, if its
    status is one the move starts from and, when ``attempt`` is given, only
    if that is still the run's attempt.  ``max_attempts`` defaults to
    ``MAX_ATTEMPTS`` (see "Attempts" in ``tasks/lifecycle.py``).  Once the
    transaction commits, ``tunix_runs_total`` counts the run's arrival in
    the move's status.

    With ``ack`` (the run's dramatiq message, processed), the message is
    marked done by the same round trip, before the move: on an autocommit
    connection both commit together, and a refused move leaves it done too
    (the consumer's ack would have).

    Returns the updated run.

    Raises:
      RunNotFound: no run has this id.
      AttemptsExhausted: a claim of a pending run that has had its attempts.
      InvalidTransition: the run is in a status the move does not start from.
    """
    move = lifecycle.move(move)
    if max_attempts is None:
        max_attempts = get_settings().max_attempts
    with timed_write(move.name):
        row = fetch_one_prepared(
            conn, ("ack_message", "transition") if ack is not None else "transition",
            **(message_key(ack) if ack is not None else {}),
            run_id=run_id,
            target=move.target.value,
            from_statuses=[s.value for s in move.sources],
            claim=move.claims,
            final=move.ends,
            requeue=move.requeues,
            worker_id=worker_id,
            result=jsonb(result),
            error=jsonb(error),
            exit_code=exit_code,
            attempt=attempt,
            budget=move.budget,
            max_attempts=max_attempts,
            stop_reason=stop_reason,
        )
    if row is not None:
        _count(conn, move.target, row["mode"])
        return row
    current = get_status(conn, run_id)
    if current is None:
        raise RunNotFound(run_id)
    if move.claims and current["status"] == lifecycle.RunStatus.PENDING:
        raise AttemptsExhausted(run_id, current["attempts"], current["max_attempts"] or max_attempts)
    raise InvalidTransition(run_id, current["status"], move.target.value)


def claim(conn, run_id, worker_id, max_attempts=None):
    """pending -> running, stamping the worker; see ``transition``."""
    return transition(conn, run_id, "claim", worker_id=worker_id, max_attempts=max_attempts)


def get_run(conn, run_id):
    return fetch_one(conn, "get_run", run_id=run_id)


def get_status(conn, run_id):
    return fetch_one(conn, "get_status", run_id=run_id)


def list_runs(conn, *, limit, offset, status=None, mode=None, dataset_key=None, model_id=None, owner=None,
              sweep_id=None, tags=None, q=None):
    """``(rows, total, counts)`` for one page of history, newest first:
    ``counts`` is ``{status: runs}`` over every page the filters match (one
    grouped query), ``total`` their sum.  ``tags``: the runs carrying all of
    them; ``q``: a case-insensitive substring of the name."""
    filters = dict(status=status, mode=mode, dataset_key=dataset_key, model_id=model_id, owner=owner,
                   sweep_id=sweep_id, tags=list(tags) if tags else None, q=q)
    rows = fetch_all(conn, "list_runs", limit=limit, offset=offset, **filters)
    counts = {status: n for status, n in fetch_tuples(conn, "count_runs", **filters)}
    return rows, sum(counts.values()), counts


def update_run_labels(conn, run_id, **fields):
    """Set a run's ``name``, ``tags`` and ``notes``, those given only (a
    ``name`` of None clears it); the run, or None when there is none."""
    unknown = set(fields) - {"name", "tags", "notes"}
    assert not unknown, unknown
    return fetch_one(conn, "update_run_labels", run_id=run_id,
                     **{f"set_{k}": k in fields for k in ("name", "tags", "notes")},
                     name=fields.get("name"), tags=fields.get("tags"), notes=fields.get("notes"))


def label_runs(conn, labels):
    """Give runs just submitted their names and tags: ``labels`` is
    ``[(run_id, name, tags)]``; the updated rows (any order)."""
    if not labels:
        return []
    return fetch_all(conn, "label_runs",
                     labels=Json([{"id": str(i), "name": name, "tags": list(tags)} for i, name, tags in labels]))


def heartbeat(conn, run_id, attempt, progress=None):
    """Stamp the run's attempt as alive (with its latest progress); return its
    status, or None when that attempt is no longer the run's."""
    with timed_write("heartbeat"):
        return fetch_value(conn, "heartbeat", run_id=run_id, attempt=attempt, progress=jsonb(progress))


def watch_runs(conn, ids):
    """``{run id (str): (status, updated_at, progress, last log seq)}`` for
    the runs of ``ids`` that exist."""
    return {row[0]: row[1:] for row in fetch_tuples(conn, "watch_runs", ids=list(ids))}


def lost_runs(conn, timeout_s, limit=100):
    """Runs whose worker went silent, row-locked until ``conn`` commits."""
    return fetch_all(conn, "lost_runs", timeout_s=timeout_s, limit=limit)


def existing_runs(conn, run_ids):
    """The ids (str) of ``run_ids`` that are runs."""
    return set(fetch_column(conn, "existing_runs", ids=[str(i) for i in run_ids]))


def matching_runs(conn, status_set, *, status=None, sweep_id=None, dataset_key=None, model_id=None, owner=None):
    """The runs a bulk move acts on: ``status_set`` ``"active"`` (to cancel)
    or ``"resumable"``, narrowed by the filters and, with ``owner``, to that
    user's runs (None: everyone's); oldest first."""
    assert status_set in ("active", "resumable"), status_set
    return fetch_all(conn, "matching_runs", status_set=status_set, status=status, sweep_id=sweep_id,
                     dataset_key=dataset_key, model_id=model_id, owner=owner)


def count_matching_others(conn, status_set, owner, *, status=None, sweep_id=None, dataset_key=None,
                          model_id=None):
    """How many runs ``matching_runs`` would give without ``owner`` that are
    not ``owner``'s (another user's, or no one's)."""
    assert status_set in ("active", "resumable"), status_set
    return fetch_value(conn, "count_matching_others", status_set=status_set, status=status, sweep_id=sweep_id,
                       dataset_key=dataset_key, model_id=model_id, owner=owner)


def run_owner(conn, run_id):
    """``{"owner": name or None}`` of a run, or None when there is no such run."""
    return fetch_one(conn, "run_owner", run_id=run_id)


def runs_to_admit(conn, ahead=None, limit=1000, user_max=0):
    """The deferred runs admission takes, in its order: every dry run its
    sweep has a place for, and as many trainings as the queue has room for
    with ``ahead`` admitted trainings allowed to wait (all when None), none
    past its owner's ``user_max`` trainings (0: no limit)."""
    return fetch_all(conn, "runs_to_admit", limit=limit, ahead=ahead, user_max=user_max)
