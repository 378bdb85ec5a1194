-- Samples (tunix_samples: app/samples.py, workers/sampling/).
-- Named queries, loaded by tasks/sql/__init__.py.

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

-- name: get_sample
SELECT * FROM tunix_samples WHERE id = %(sample_id)s;

-- name: list_run_samples
-- A run's sample requests, newest first.
SELECT * FROM tunix_samples WHERE run_id = %(run_id)s ORDER BY created_at DESC, id LIMIT %(limit)s;

-- name: claim_sample
-- pending -> running, stamping the worker; no row: not pending any more (a
-- duplicate delivery), so the caller leaves it alone.  (Statuses are
-- parameters: a sample's are not a run's, and no literal here may look like
-- one: tests/unit/test_sql_files.py.)
UPDATE tunix_samples SET status = %(running)s, worker_id = %(worker_id)s, started_at = clock_timestamp()
WHERE id = %(sample_id)s AND status = %(pending)s
RETURNING *;

-- name: finish_sample
-- running -> completed | failed, with the outputs or the error; only by the
-- worker that claimed it.
UPDATE tunix_samples SET status = %(status)s, outputs = %(outputs)s, error = %(error)s, timings = %(timings)s,
                         finished_at = clock_timestamp()
WHERE id = %(sample_id)s AND status = %(running)s AND worker_id = %(worker_id)s
RETURNING *;

-- name: fail_lost_samples
-- Running samples whose worker process went silent (no heartbeat in
-- tunix_workers for timeout_s, or no row: it was forgotten) end failed
-- (WorkerLost): the generation died with its worker (it runs under the
-- worker's lifeline), and nothing retries a sample.  The reaper's duty.
UPDATE tunix_samples s
SET status = %(failed)s, finished_at = clock_timestamp(),
    error = jsonb_build_object('type', 'WorkerLost', 'code', 'worker_lost',
                               'message', 'the worker generating it (' || s.worker_id || ') stopped answering; '
                                          || 'ask for the sample again')
WHERE s.status = %(running)s
  AND s.started_at < clock_timestamp() - make_interval(secs => %(timeout_s)s)
  AND NOT EXISTS (SELECT 1 FROM tunix_workers w WHERE w.worker_id = s.worker_id
                  AND w.heartbeat_at > clock_timestamp() - make_interval(secs => %(timeout_s)s))
RETURNING s.id;
