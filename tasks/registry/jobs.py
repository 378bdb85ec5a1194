"""Checkpoint jobs (``tasks/sql/jobs.sql``): sample requests
(``tunix_samples``: app/samples.py, workers/sampling/) and exports
(``tunix_exports``: app/exports.py, workers/exporting/).

Both make the same moves on their own table, one function each here by
``kind`` (``"sample"``, ``"export"``: the noun of that table's named
queries): ``claim_job``, ``finish_job``, ``fail_lost_jobs``.  What differs
(the submit's and the finish's columns) stays in each kind's named
functions.  Statuses are a job's own (``tasks/jobs.py``), passed as
parameters.
"""

from psycopg2.extras import Json

from ..jobs import JOB_FINAL, JobStatus
from ..metrics import timed_write
from ..sql.cursor import fetch_all, fetch_column, fetch_one, jsonb

#: The kinds of job, as their named queries name them.
JOB_KINDS = ("sample", "export")
#: The error of a job whose worker went silent, by kind (``%s``: the worker's id).
_LOST = {
    "sample": "the worker generating it (%s) stopped answering; ask for the sample again",
    "export": "the worker exporting it (%s) stopped answering; ask for the export again",
}


def claim_job(conn, kind, job_id, worker_id):
    """pending -> running; the row, or None when it is not pending."""
    with timed_write(f"claim_{kind}"):
        return fetch_one(conn, f"claim_{kind}", job_id=job_id, worker_id=worker_id,
                         pending=JobStatus.PENDING.value, running=JobStatus.RUNNING.value)


def finish_job(conn, kind, job_id, worker_id, *, error=None, timings=None, **columns):
    """running -> completed (``columns``: what the kind made) or failed
    (``error``); the row, or None when this worker does not hold it running."""
    status = JobStatus.FAILED if error is not None else JobStatus.COMPLETED
    with timed_write(f"finish_{kind}"):
        return fetch_one(conn, f"finish_{kind}", job_id=job_id, worker_id=worker_id, status=status.value,
                         running=JobStatus.RUNNING.value, error=jsonb(error), timings=jsonb(timings), **columns)


def fail_lost_jobs(conn, kind, timeout_s):
    """End failed (``WorkerLost``) the running jobs of ``kind`` whose worker
    has been silent for ``timeout_s``; their ids.  The reaper's duty."""
    return fetch_column(conn, f"fail_lost_{kind}s", timeout_s=timeout_s, lost=_LOST[kind],
                        failed=JobStatus.FAILED.value, running=JobStatus.RUNNING.value)


def submit_sample(conn, *, sample_id, run_id, model_id, step, params, message):
    """Insert a pending sample request with its dramatiq ``message``
    ``(queue_name, message_id, message_json)``, in one statement; the row."""
    queue_name, message_id, message_json = message
    assert str(message_id) == str(sample_id), "a sample's message id is its sample id"
    with timed_write("submit_sample"):
        return fetch_one(conn, "submit_sample", sample_id=sample_id, run_id=run_id, model_id=model_id, step=step,
                         params=Json(params), queue_name=queue_name, message=Json(message_json))


#: Tries of ``submit_export`` before giving up: each one that returns no row
#: lost a race (the live export it met committed after its snapshot, or
#: ended meanwhile), which the next one, with a new snapshot, sees.
SUBMIT_EXPORT_TRIES = 5


def submit_export(conn, *, export_id, run_id, model_id, step, message):
    """As ``submit_sample``, for an export of the run's checkpoint of
    ``step``, unless the step has a live export (pending, running or
    completed, not deleted): then that one, written nothing.  The row, with
    ``reused`` (True: the live one).  ``conn`` in autocommit: each try is a
    statement of its own, with a snapshot of its own."""
    queue_name, message_id, message_json = message
    assert str(message_id) == str(export_id), "an export's message id is its export id"
    for _ in range(SUBMIT_EXPORT_TRIES):
        with timed_write("submit_export"):
            row = fetch_one(conn, "submit_export", export_id=export_id, run_id=run_id, model_id=model_id, step=step,
                            queue_name=queue_name, message=Json(message_json), failed=JobStatus.FAILED.value)
        if row is not None:
            return row
    raise RuntimeError(f"submit_export: run {run_id} step {step}: no row in {SUBMIT_EXPORT_TRIES} tries")


def delete_export(conn, export_id):
    """Stamp a final export deleted (``deleted_at``; the first stamp stays),
    once its tar is gone from the store; the row, or None when it is not
    final (or not there)."""
    with timed_write("delete_export"):
        return fetch_one(conn, "delete_export", job_id=export_id, final=list(JOB_FINAL))


def get_sample(conn, sample_id):
    return fetch_one(conn, "get_sample", job_id=sample_id)


def get_export(conn, export_id):
    return fetch_one(conn, "get_export", job_id=export_id)


def list_run_samples(conn, run_id, limit=100):
    return fetch_all(conn, "list_run_samples", run_id=run_id, limit=limit)


def list_run_exports(conn, run_id, limit=100):
    return fetch_all(conn, "list_run_exports", run_id=run_id, limit=limit)


def claim_sample(conn, sample_id, worker_id):
    return claim_job(conn, "sample", sample_id, worker_id)


def claim_export(conn, export_id, worker_id):
    return claim_job(conn, "export", export_id, worker_id)


def finish_sample(conn, sample_id, worker_id, *, outputs=None, error=None, timings=None):
    """``finish_job`` with the sample's ``outputs``."""
    return finish_job(conn, "sample", sample_id, worker_id, error=error, timings=timings, outputs=jsonb(outputs))


def finish_export(conn, export_id, worker_id, *, stored=None, manifest=None, error=None, timings=None):
    """``finish_job`` with the export's tar (``stored``: ``{object_key, uri,
    size_bytes, sha256}``) and ``manifest``."""
    stored = stored or {}
    return finish_job(conn, "export", export_id, worker_id, error=error, timings=timings,
                      object_key=stored.get("object_key"), uri=stored.get("uri"),
                      size_bytes=stored.get("size_bytes"), sha256=stored.get("sha256"), manifest=jsonb(manifest))
