-- Every query the registry runs, by name (see tasks/sql/__init__.py).

-- name: insert_run
-- Record a submitted run as pending.
INSERT INTO tunix_runs (id, mode, dry_run, dataset_key, model_id, config)
VALUES (%(run_id)s, %(mode)s, %(dry_run)s, %(dataset_key)s, %(model_id)s, %(config)s)
RETURNING *;

-- name: transition
-- The one status change: guarded by the statuses the lifecycle allows, so a
-- racing worker updates no row.  Claiming (-> running) stamps the worker and
-- the start; a final status stamps the end and the duration.
UPDATE tunix_runs SET
    status = %(target)s,
    started_at = CASE WHEN %(claim)s THEN clock_timestamp() ELSE started_at END,
    worker_id = CASE WHEN %(claim)s THEN %(worker_id)s ELSE worker_id END,
    attempts = attempts + CASE WHEN %(claim)s THEN 1 ELSE 0 END,
    completed_at = CASE WHEN %(final)s THEN clock_timestamp() ELSE completed_at END,
    duration_seconds = CASE
        WHEN %(final)s AND started_at IS NOT NULL
        THEN extract(epoch FROM clock_timestamp() - started_at)
        ELSE duration_seconds END,
    result = COALESCE(%(result)s, result),
    error = COALESCE(%(error)s, error),
    exit_code = COALESCE(%(exit_code)s, exit_code),
    updated_at = clock_timestamp()
WHERE id = %(run_id)s AND status = ANY(%(from_statuses)s)
RETURNING *;

-- name: get_run
-- The whole run.
SELECT * FROM tunix_runs WHERE id = %(run_id)s;

-- name: get_status
-- What a poller needs, from the primary key alone.
SELECT id, status, created_at, started_at, completed_at, exit_code, attempts
FROM tunix_runs WHERE id = %(run_id)s;

-- name: list_runs
-- One page of history, newest first.
SELECT * FROM tunix_runs
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(mode)s::text IS NULL OR mode = %(mode)s)
  AND (%(dataset_key)s::text IS NULL OR dataset_key = %(dataset_key)s)
  AND (%(model_id)s::text IS NULL OR model_id = %(model_id)s)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: count_runs
-- How many runs the same filters match.
SELECT count(*) FROM tunix_runs
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(mode)s::text IS NULL OR mode = %(mode)s)
  AND (%(dataset_key)s::text IS NULL OR dataset_key = %(dataset_key)s)
  AND (%(model_id)s::text IS NULL OR model_id = %(model_id)s);
