"""Retention (``tasks/sql/retention.sql``): the finished runs a pass may
prune, the batched deletes of their log lines and per-step metrics and of
dramatiq's settled messages, and what the store's sweep needs to know of a
run folder.  The reaper calls these (``workers/reaper.py``, "Retention"),
each in a transaction of its own."""

from ..jobs import JobStatus
from ..sql.cursor import execute, fetch_all, fetch_column


def retention_candidates(conn, days, limit):
    """Ids of finished runs, final for over ``days`` days, not pruned since
    they finished and not in a running sweep; oldest first."""
    return fetch_column(conn, "retention_candidates", days=days, limit=limit)


def prune_logs(conn, run_ids, days, limit):
    """Delete up to ``limit`` log lines of ``run_ids`` (still final and old); how many."""
    return execute(conn, "prune_logs", ids=[str(i) for i in run_ids], days=days, limit=limit)


def prune_metrics(conn, run_ids, days, keep, limit):
    """Delete up to ``limit`` per-step metrics rows of ``run_ids`` (still
    final and old), all but each run's last ``keep`` steps; how many."""
    return execute(conn, "prune_metrics", ids=[str(i) for i in run_ids], days=days, keep=keep, limit=limit)


def mark_pruned(conn, run_ids, days, keep):
    """Stamp ``pruned_at`` on those of ``run_ids`` with nothing left to prune; how many."""
    return execute(conn, "mark_pruned", ids=[str(i) for i in run_ids], days=days, keep=keep)


def prune_queue(conn, keep_s, limit):
    """Delete up to ``limit`` dramatiq messages settled over ``keep_s`` seconds ago; how many."""
    return execute(conn, "prune_queue", keep_s=keep_s, limit=limit)


def retention_store_runs(conn, run_ids, days):
    """``{run id (str): {"prunable", "checkpoints", "live_exports"}}`` of the
    runs among ``run_ids`` that exist (see the query)."""
    rows = fetch_all(conn, "retention_store_runs", ids=[str(i) for i in run_ids], days=days, failed=JobStatus.FAILED.value)
    return {row["id"]: {"prunable": row["prunable"], "checkpoints": set(row["checkpoints"]),
                        "live_exports": set(row["live_exports"])} for row in rows}
