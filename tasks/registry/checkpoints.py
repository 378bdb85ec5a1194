"""Recorded checkpoints (``tunix_checkpoints``, ``tasks/sql/checkpoints.sql``):
recording fenced by the attempt, the listings, and retention's marks and
deletes."""

from ..metrics import timed_write
from ..sql.cursor import execute, fetch_all, fetch_column, fetch_one, fetch_tuples


def record_checkpoint(conn, *, run_id, step, attempt, uri, object_key, size_bytes, sha256, loss=None):
    """The recorded step, or None when this attempt may not record it (see the query)."""
    with timed_write("checkpoint"):
        return fetch_one(conn, "record_checkpoint", run_id=run_id, step=step, attempt=attempt, uri=uri,
                         object_key=object_key, size_bytes=size_bytes, sha256=sha256, loss=loss)


def list_checkpoints(conn, run_id):
    return fetch_all(conn, "list_checkpoints", run_id=run_id)


def get_checkpoint(conn, run_id, step):
    return fetch_one(conn, "get_checkpoint", run_id=run_id, step=step)


def latest_checkpoint(conn, run_id):
    return fetch_one(conn, "latest_checkpoint", run_id=run_id)


def mark_checkpoints_for_deletion(conn, run_id, keep):
    """``[(run_id, step, object_key)]`` now marked (see the query)."""
    return fetch_tuples(conn, "mark_checkpoints_for_deletion", run_id=run_id, keep=keep)


def checkpoints_being_deleted(conn, run_id=None, limit=500):
    return fetch_tuples(conn, "checkpoints_being_deleted", run_id=run_id, limit=limit)


def all_checkpoint_keys(conn, run_id):
    return set(fetch_column(conn, "all_checkpoint_keys", run_id=run_id))


def delete_checkpoint_row(conn, run_id, step):
    execute(conn, "delete_checkpoint_row", run_id=run_id, step=step)
