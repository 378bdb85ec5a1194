-- Exports (tunix_exports: app/exports.py, workers/exporting/).
-- Named queries, loaded by tasks/sql/__init__.py.

-- name: submit_export
-- An export request and its dramatiq message (id = the export's id), with the
-- NOTIFY that wakes a consumer, in one statement (as submit_sample).
WITH export AS (
    INSERT INTO tunix_exports (id, run_id, model_id, step)
    VALUES (%(export_id)s, %(run_id)s, %(model_id)s, %(step)s)
    RETURNING *
), queued AS (
    SELECT tunix_enqueue(%(queue_name)s, export.id, %(message)s) FROM export
)
-- Counting the queued rows makes PostgreSQL run the enqueue (a CTE no one reads is not run).
SELECT export.* FROM export WHERE (SELECT count(*) FROM queued) >= 0;

-- name: get_export
SELECT * FROM tunix_exports WHERE id = %(export_id)s;

-- name: list_run_exports
-- A run's exports, newest first.
SELECT * FROM tunix_exports WHERE run_id = %(run_id)s ORDER BY created_at DESC, id LIMIT %(limit)s;

-- name: claim_export
-- pending -> running, stamping the worker; no row: not pending any more (a
-- duplicate delivery), so the caller leaves it alone.
UPDATE tunix_exports SET status = %(running)s, worker_id = %(worker_id)s, started_at = clock_timestamp()
WHERE id = %(export_id)s AND status = %(pending)s
RETURNING *;

-- name: finish_export
-- running -> completed (its object, size, sha256, manifest) | failed (the
-- error); only by the worker that claimed it.
UPDATE tunix_exports SET status = %(status)s, object_key = %(object_key)s, uri = %(uri)s,
                         size_bytes = %(size_bytes)s, sha256 = %(sha256)s, manifest = %(manifest)s,
                         error = %(error)s, timings = %(timings)s, finished_at = clock_timestamp()
WHERE id = %(export_id)s AND status = %(running)s AND worker_id = %(worker_id)s
RETURNING *;

-- name: fail_lost_exports
-- Running exports whose worker process went silent (as fail_lost_samples):
-- they end failed (WorkerLost); the user asks again.
UPDATE tunix_exports e
SET status = %(failed)s, finished_at = clock_timestamp(),
    error = jsonb_build_object('type', 'WorkerLost', 'code', 'worker_lost',
                               'message', 'the worker exporting it (' || e.worker_id || ') stopped answering; '
                                          || 'ask for the export again')
WHERE e.status = %(running)s
  AND e.started_at < clock_timestamp() - make_interval(secs => %(timeout_s)s)
  AND NOT EXISTS (SELECT 1 FROM tunix_workers w WHERE w.worker_id = e.worker_id
                  AND w.heartbeat_at > clock_timestamp() - make_interval(secs => %(timeout_s)s))
RETURNING e.id;
