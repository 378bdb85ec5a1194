-- Checkpoint jobs: sample requests (tunix_samples: app/samples.py,
-- workers/sampling/) and exports (tunix_exports: app/exports.py,
-- workers/exporting/).  Named queries, loaded by tasks/sql/__init__.py.
-- The two tables make the same moves (claim, finish, fail_lost: one
-- function each in tasks/registry/jobs.py, by kind); a query names its
-- table, so each move is written once for each.  Statuses are parameters
-- (tasks/jobs.py): a job's are not a run's, and no literal here may look
-- like one (tests/unit/test_sql_files.py).

-- name: submit_sample
-- A sample request and its dramatiq message (id = the sample's id), with the
-- NOTIFY that wakes a consumer, in one statement: one round trip, one commit,
-- never a pending sample without its message (as submit_run).
WITH sample AS (
    INSERT INTO tunix_samples (id, run_id, model_id, step, params)
    VALUES (%(sample_id)s, %(run_id)s, %(model_id)s, %(step)s, %(params)s)
    RETURNING *
), queued AS (
    SELECT tunix_enqueue(%(queue_name)s, sample.id, %(message)s) FROM sample
)
-- Counting the queued rows makes PostgreSQL run the enqueue (a CTE no one reads is not run).
SELECT sample.* FROM sample WHERE (SELECT count(*) FROM queued) >= 0;

-- name: submit_export
-- An export request and its dramatiq message, in one statement (as
-- submit_sample), unless the run's step has a live export already (pending,
-- running or completed, not deleted: the partial unique index
-- tunix_exports_live_step, migration 0020): then nothing is written and that
-- one is the answer (reused = true).  Two requests at once cannot both
-- insert: the second waits on the first's index entry, then does nothing.
-- No row at all: the live one it collided with was written by a statement
-- that committed after this one's snapshot, or ended meanwhile; the caller
-- runs this again (a new statement, a new snapshot).
WITH export AS (
    INSERT INTO tunix_exports (id, run_id, model_id, step)
    VALUES (%(export_id)s, %(run_id)s, %(model_id)s, %(step)s)
    ON CONFLICT (run_id, step) WHERE status <> %(failed)s AND deleted_at IS NULL DO NOTHING
    RETURNING *
), queued AS (
    SELECT tunix_enqueue(%(queue_name)s, export.id, %(message)s) FROM export
)
SELECT export.*, false AS reused FROM export WHERE (SELECT count(*) FROM queued) >= 0
UNION ALL
SELECT live.*, true AS reused FROM tunix_exports live
WHERE live.run_id = %(run_id)s AND live.step = %(step)s AND live.status <> %(failed)s AND live.deleted_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM export);

-- name: get_sample
SELECT * FROM tunix_samples WHERE id = %(job_id)s;

-- name: get_export
SELECT * FROM tunix_exports WHERE id = %(job_id)s;

-- name: delete_export
-- Stamp a final export deleted (its tar already removed from the store by the
-- caller); the first stamp stays, so a repeated DELETE changes nothing.  No
-- row: no such export, or it is not final (a worker may still write its tar).
UPDATE tunix_exports SET deleted_at = coalesce(deleted_at, clock_timestamp())
WHERE id = %(job_id)s AND status = ANY(%(final)s)
RETURNING *;

-- name: list_run_samples
-- A run's sample requests, newest first.
SELECT * FROM tunix_samples WHERE run_id = %(run_id)s ORDER BY created_at DESC, id LIMIT %(limit)s;

-- name: list_run_exports
-- A run's exports, newest first.
SELECT * FROM tunix_exports WHERE run_id = %(run_id)s ORDER BY created_at DESC, id LIMIT %(limit)s;

-- name: claim_sample
-- pending -> running, stamping the worker; no row: not pending any more (a
-- duplicate delivery), so the caller leaves it alone.
UPDATE tunix_samples SET status = %(running)s, worker_id = %(worker_id)s, started_at = clock_timestamp()
WHERE id = %(job_id)s AND status = %(pending)s
RETURNING *;

-- name: claim_export
-- As claim_sample.
UPDATE tunix_exports SET status = %(running)s, worker_id = %(worker_id)s, started_at = clock_timestamp()
WHERE id = %(job_id)s AND status = %(pending)s
RETURNING *;

-- name: finish_sample
-- running -> completed | failed, with the outputs or the error; only by the
-- worker that claimed it.
UPDATE tunix_samples SET status = %(status)s, outputs = %(outputs)s, error = %(error)s, timings = %(timings)s,
                         finished_at = clock_timestamp()
WHERE id = %(job_id)s AND status = %(running)s AND worker_id = %(worker_id)s
RETURNING *;

-- name: finish_export
-- running -> completed (its object, size, sha256, manifest) | failed (the
-- error); only by the worker that claimed it.
UPDATE tunix_exports SET status = %(status)s, object_key = %(object_key)s, uri = %(uri)s,
                         size_bytes = %(size_bytes)s, sha256 = %(sha256)s, manifest = %(manifest)s,
                         error = %(error)s, timings = %(timings)s, finished_at = clock_timestamp()
WHERE id = %(job_id)s AND status = %(running)s AND worker_id = %(worker_id)s
RETURNING *;

-- name: fail_lost_samples
-- Running samples whose worker process went silent (tunix_job_lost,
-- migration 0019) end failed (WorkerLost): the job died with its worker (it
-- runs under the worker's lifeline), and nothing retries a job.  The reaper's duty.  The error's
-- message (%(lost)s, given the worker's id) is the kind's.
UPDATE tunix_samples j
SET status = %(failed)s, finished_at = clock_timestamp(), error = tunix_worker_lost_error(%(lost)s, j.worker_id)
WHERE tunix_job_lost(j.status = %(running)s, j.started_at, j.worker_id, %(timeout_s)s)
RETURNING j.id;

-- name: fail_lost_exports
-- As fail_lost_samples.
UPDATE tunix_exports j
SET status = %(failed)s, finished_at = clock_timestamp(), error = tunix_worker_lost_error(%(lost)s, j.worker_id)
WHERE tunix_job_lost(j.status = %(running)s, j.started_at, j.worker_id, %(timeout_s)s)
RETURNING j.id;
