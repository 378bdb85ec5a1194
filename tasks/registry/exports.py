"""Export requests (``tunix_exports``, ``tasks/sql/exports.sql``:
app/exports.py, workers/exporting/).  Their statuses are passed as
parameters, as a sample's are."""

from psycopg2.extras import Json

from ..metrics import timed_write
from .cursor import fetch_all, fetch_column, fetch_one, jsonb


def submit_export(conn, *, export_id, run_id, model_id, step, message):
    """Insert a pending export request with its dramatiq ``message``
    ``(queue_name, message_id, message_json)``, in one statement; the row."""
    queue_name, message_id, message_json = message
    assert str(message_id) == str(export_id), "an export's message id is its export id"
    with timed_write("submit_export"):
        return fetch_one(conn, "submit_export", export_id=export_id, run_id=run_id, model_id=model_id, step=step,
                         queue_name=queue_name, message=Json(message_json))


def get_export(conn, export_id):
    return fetch_one(conn, "get_export", export_id=export_id)


def list_run_exports(conn, run_id, limit=100):
    return fetch_all(conn, "list_run_exports", run_id=run_id, limit=limit)


def claim_export(conn, export_id, worker_id):
    """pending -> running; the row, or None when it is not pending."""
    with timed_write("claim_export"):
        return fetch_one(conn, "claim_export", export_id=export_id, worker_id=worker_id, pending="pending",
                         running="running")


def finish_export(conn, export_id, worker_id, *, stored=None, manifest=None, error=None, timings=None):
    """running -> completed (``stored``: ``{object_key, uri, size_bytes,
    sha256}``) or failed (``error``); the row, or None when this worker does
    not hold it running."""
    status = "failed" if error is not None else "completed"
    stored = stored or {}
    with timed_write("finish_export"):
        return fetch_one(
            conn, "finish_export", export_id=export_id, worker_id=worker_id, status=status, running="running",
            object_key=stored.get("object_key"), uri=stored.get("uri"), size_bytes=stored.get("size_bytes"),
            sha256=stored.get("sha256"), manifest=jsonb(manifest), error=jsonb(error), timings=jsonb(timings))


def fail_lost_exports(conn, timeout_s):
    """End failed (``WorkerLost``) the running exports whose worker has been
    silent for ``timeout_s``; their ids.  The reaper's duty."""
    return fetch_column(conn, "fail_lost_exports", timeout_s=timeout_s, failed="failed", running="running")
