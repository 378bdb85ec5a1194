"""Sweeps (``tunix_sweeps``, ``tasks/sql/sweeps.sql``) and their trials:
runs that carry the sweep and their parameters."""

import collections

from psycopg2.extras import Json

from .. import lifecycle
from ..metrics import timed_write
from ..sweep_spec import RANK_LAST_STEPS
from ..sql.cursor import execute_values, fetch_all, fetch_column, fetch_one, jsonb
from .runs import _count


def insert_sweep(conn, *, sweep_id, name, spec, metric, duplicates, trials, max_concurrent=None, priority=0,
                 early_stopping=None, owner=None):
    """A sweep and its ``trials`` (dicts as for ``insert_runs``, with
    ``params``), all deferred, in ``conn``'s transaction; ``(sweep row, run
    rows)``.  Admission queues them (``tasks.admission``)."""
    deferred = lifecycle.RunStatus.DEFERRED.value
    with timed_write("insert_sweep"):
        sweep = fetch_one(conn, "insert_sweep", sweep_id=sweep_id, name=name, spec=Json(spec), metric=metric,
                          duplicates=duplicates, max_concurrent=max_concurrent, priority=priority,
                          early_stopping=jsonb(early_stopping), owner=owner)
        rows = execute_values(
            conn, "insert_trials",
            [(t["run_id"], deferred, t["mode"], t["dry_run"], t["dataset_key"], t["model_id"], Json(t["config"]),
              priority, sweep_id, Json(t["params"]), owner) for t in trials],
            fetch=True)
    for mode, n in collections.Counter(r["mode"] for r in rows).items():
        _count(conn, deferred, mode, n)
    return sweep, rows


def list_sweeps(conn, *, limit, offset):
    """``(rows, total)`` for one page of sweeps, newest first."""
    rows = fetch_all(conn, "list_sweeps", limit=limit, offset=offset)
    return rows, fetch_one(conn, "count_sweeps")["count"]


def get_sweep(conn, sweep_id):
    return fetch_one(conn, "get_sweep", sweep_id=sweep_id)


def sweep_trials(conn, sweep_id, metric=None):
    """A sweep's trials; ``metric_value`` is a method metric's mean over each
    trial's last ``RANK_LAST_STEPS`` steps (None for the losses)."""
    return fetch_all(conn, "sweep_trials", sweep_id=sweep_id, metric=metric or "", last=RANK_LAST_STEPS)


def sweep_trial_ids(conn, sweep_id):
    return fetch_column(conn, "sweep_trial_ids", sweep_id=sweep_id)


def sweep_runs(conn, sweep_id):
    return fetch_all(conn, "sweep_runs", sweep_id=sweep_id)
