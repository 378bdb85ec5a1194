"""What a run records while it trains (``tasks/sql/activity.sql``): per-step
metrics, eval losses and log lines, and the reads of them."""

from ..metrics import timed_write
from ..sql.cursor import execute_values, fetch_all, fetch_column, fetch_tuples, fetch_value, jsonb

#: Rows per statement of a progress or log batch (psycopg2's own default).
PAGE_ROWS = 100


def record_activity(conn, run_id, *, metrics=(), logs=(), evals=()):
    """Store a batch of step metrics ``(step, loss, lr, grad_norm, attempt,
    method metrics (a dict or None), samples (a list or None))``,
    eval losses ``(step, eval_loss, examples, attempt)`` and log lines
    ``(seq, stream, line)``.  No NOTIFY: the API's waiter sees
    the new lines on its next tick (``watch_runs``)."""
    if metrics:
        with timed_write("progress"):
            execute_values(conn, "upsert_metrics",
                           [(run_id, *m[:5], *(jsonb(x) for x in m[5:7]), *[None] * (7 - len(m)))
                            for m in metrics], page_size=PAGE_ROWS)
    if evals:
        with timed_write("progress"):
            execute_values(conn, "upsert_evals", [(run_id, *e) for e in evals], page_size=PAGE_ROWS)
    if logs:
        with timed_write("log_batch"):
            execute_values(conn, "append_logs", [(run_id, *line) for line in logs], page_size=PAGE_ROWS)


def last_log_seq(conn, run_id):
    return fetch_value(conn, "last_log_seq", run_id=run_id)


def get_metrics(conn, run_id, first=0, last=2**31 - 1):
    return fetch_all(conn, "get_metrics", run_id=run_id, first=first, last=last)


def get_logs(conn, run_id, after=0, limit=1000):
    return fetch_all(conn, "get_logs", run_id=run_id, after=after, limit=limit)


def recorded_method_metrics(conn, run_ids):
    """The names of the methods' own metrics ``run_ids`` recorded (their last steps'), sorted."""
    return fetch_column(conn, "recorded_method_metrics", ids=[str(i) for i in run_ids])


def series(conn, run_ids, metric, points, buckets, lo, hi):
    """``{run id (str): (steps, values, elapsed seconds)}``: ``metric`` of
    ``run_ids`` within steps ``lo`` to ``hi``, cut to ``buckets`` buckets
    that keep their extremes (see the query), whole when the span is under
    ``points`` steps; runs with no value in the range are absent."""
    return {run_id: (steps, values, elapsed) for run_id, steps, values, elapsed in fetch_tuples(
        conn, "series", ids=[str(i) for i in run_ids], metric=metric, points=points, buckets=buckets, lo=lo, hi=hi)}
