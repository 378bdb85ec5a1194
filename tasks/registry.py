"""The run registry: one small function per named query.

Views and middleware call these and hold no SQL.  Every status change goes
through ``transition``, whose allowed "from" statuses come from
``tasks.lifecycle``.
"""

import psycopg2.extras
from psycopg2.extras import Json

from . import lifecycle
from .errors import InvalidTransition, RunNotFound
from .metrics import timed_write
from .sql import QUERIES


def _cursor(conn):
    return conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)


def _json(value):
    return None if value is None else Json(value)


def insert_run(conn, *, run_id, mode, dry_run, dataset_key, model_id, config):
    with timed_write("insert"), _cursor(conn) as cur:
        cur.execute(
            QUERIES["insert_run"],
            dict(
                run_id=run_id,
                mode=mode,
                dry_run=dry_run,
                dataset_key=dataset_key,
                model_id=model_id,
                config=Json(config),
            ),
        )
        return cur.fetchone()


def transition(conn, run_id, target, *, operation=None, worker_id=None, result=None, error=None,
               exit_code=None):
    """Move a run to ``target`` if its current status allows it.

    Returns the updated run.

    Raises:
      RunNotFound: no run has this id.
      InvalidTransition: the run is in a status that may not become ``target``.
    """
    target = lifecycle.RunStatus(target)
    params = dict(
        run_id=run_id,
        target=target.value,
        from_statuses=[s.value for s in lifecycle.allowed_from(target)],
        claim=target is lifecycle.RunStatus.RUNNING,
        final=target in lifecycle.FINAL,
        worker_id=worker_id,
        result=_json(result),
        error=_json(error),
        exit_code=exit_code,
    )
    with timed_write(operation or target.value), _cursor(conn) as cur:
        cur.execute(QUERIES["transition"], params)
        row = cur.fetchone()
    if row is not None:
        return row
    current = get_status(conn, run_id)
    if current is None:
        raise RunNotFound(run_id)
    raise InvalidTransition(run_id, current["status"], target.value)


def claim(conn, run_id, worker_id):
    """pending -> running, stamping the worker; see ``transition``."""
    return transition(conn, run_id, lifecycle.RunStatus.RUNNING, operation="claim", worker_id=worker_id)


def get_run(conn, run_id):
    with _cursor(conn) as cur:
        cur.execute(QUERIES["get_run"], dict(run_id=run_id))
        return cur.fetchone()


def get_status(conn, run_id):
    with _cursor(conn) as cur:
        cur.execute(QUERIES["get_status"], dict(run_id=run_id))
        return cur.fetchone()


def list_runs(conn, *, limit, offset, status=None, mode=None, dataset_key=None, model_id=None):
    """``(rows, total)`` for one page of history, newest first."""
    filters = dict(status=status, mode=mode, dataset_key=dataset_key, model_id=model_id)
    with _cursor(conn) as cur:
        cur.execute(QUERIES["list_runs"], dict(filters, limit=limit, offset=offset))
        rows = cur.fetchall()
        cur.execute(QUERIES["count_runs"], filters)
        total = cur.fetchone()["count"]
    return rows, total
