"""Sample requests (``tunix_samples``, ``tasks/sql/samples.sql``:
app/samples.py, workers/sampling/).  Their statuses are a sample's own, not
a run's lifecycle, so they are passed as parameters."""

from psycopg2.extras import Json

from ..metrics import timed_write
from .cursor import fetch_all, fetch_column, fetch_one, jsonb


def submit_sample(conn, *, sample_id, run_id, model_id, step, params, message):
    """Insert a pending sample request with its dramatiq ``message``
    ``(queue_name, message_id, message_json)``, in one statement; the row."""
    queue_name, message_id, message_json = message
    assert str(message_id) == str(sample_id), "a sample's message id is its sample id"
    with timed_write("submit_sample"):
        return fetch_one(conn, "submit_sample", sample_id=sample_id, run_id=run_id, model_id=model_id, step=step,
                         params=Json(params), queue_name=queue_name, message=Json(message_json))


def get_sample(conn, sample_id):
    return fetch_one(conn, "get_sample", sample_id=sample_id)


def list_run_samples(conn, run_id, limit=100):
    return fetch_all(conn, "list_run_samples", run_id=run_id, limit=limit)


def claim_sample(conn, sample_id, worker_id):
    """pending -> running; the row, or None when it is not pending."""
    with timed_write("claim_sample"):
        return fetch_one(conn, "claim_sample", sample_id=sample_id, worker_id=worker_id, pending="pending",
                         running="running")


def finish_sample(conn, sample_id, worker_id, *, outputs=None, error=None, timings=None):
    """running -> completed (``outputs``) or failed (``error``); the row, or
    None when this worker does not hold it running."""
    status = "failed" if error is not None else "completed"
    with timed_write("finish_sample"):
        return fetch_one(conn, "finish_sample", sample_id=sample_id, worker_id=worker_id, status=status,
                         running="running", outputs=jsonb(outputs), error=jsonb(error), timings=jsonb(timings))


def fail_lost_samples(conn, timeout_s):
    """End failed (``WorkerLost``) the running samples whose worker has been
    silent for ``timeout_s``; their ids.  The reaper's duty."""
    return fetch_column(conn, "fail_lost_samples", timeout_s=timeout_s, failed="failed", running="running")
