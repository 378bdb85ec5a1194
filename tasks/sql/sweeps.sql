-- Sweeps (tunix_sweeps) and their trials (runs carrying the sweep).
-- Named queries, loaded by tasks/sql/__init__.py.

-- name: insert_sweep
INSERT INTO tunix_sweeps (id, name, spec, metric, duplicates, max_concurrent, priority, early_stopping, owner)
VALUES (%(sweep_id)s, %(name)s, %(spec)s, %(metric)s, %(duplicates)s, %(max_concurrent)s, %(priority)s,
        %(early_stopping)s, %(owner)s)
RETURNING *;

-- name: insert_trials
-- A sweep's trials: submitted runs carrying the sweep and their parameters,
-- all deferred: admission queues them (psycopg2 execute_values).
INSERT INTO tunix_runs (id, status, mode, dry_run, dataset_key, model_id, config, priority, sweep_id, trial,
                        owner)
VALUES %s
RETURNING *;

-- name: list_sweeps
-- One page of sweeps, newest first, each with its trials counted by status.
SELECT s.id, s.name, s.metric, s.duplicates, s.priority, s.created_at,
       jsonb_build_object('mode', s.spec -> 'mode') AS spec,
       coalesce((SELECT jsonb_object_agg(status, n) FROM (
           SELECT status, count(*) AS n FROM tunix_runs WHERE sweep_id = s.id GROUP BY status) c),
           '{}'::jsonb) AS counts
FROM tunix_sweeps s
ORDER BY s.created_at DESC, s.id DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: count_sweeps
SELECT count(*) FROM tunix_sweeps;

-- name: get_sweep
SELECT s.*, coalesce((SELECT jsonb_object_agg(status, n) FROM (
           SELECT status, count(*) AS n FROM tunix_runs WHERE sweep_id = s.id GROUP BY status) c),
           '{}'::jsonb) AS counts
FROM tunix_sweeps s WHERE s.id = %(sweep_id)s;

-- name: sweep_trials
-- A sweep's trials in the order they were made, each with its latest
-- recorded step and loss, its latest eval loss and the mean of the method
-- metric %(metric)s over its last %(last)s steps (the primary keys serve the
-- lateral reads).
SELECT r.id, r.status, r.trial, r.result, r.attempts, r.stop_reason, r.progress, r.config, m.step, m.loss,
       e.eval_loss, v.metric_value
FROM tunix_runs r
LEFT JOIN LATERAL (
    SELECT step, loss FROM tunix_run_metrics WHERE run_id = r.id ORDER BY step DESC LIMIT 1
) m ON true
LEFT JOIN LATERAL (
    SELECT avg((x.metrics ->> %(metric)s)::float) AS metric_value FROM (
        SELECT metrics FROM tunix_run_metrics WHERE run_id = r.id ORDER BY step DESC LIMIT %(last)s) x
) v ON true
LEFT JOIN LATERAL (
    SELECT eval_loss FROM tunix_run_evals WHERE run_id = r.id ORDER BY step DESC LIMIT 1
) e ON true
WHERE r.sweep_id = %(sweep_id)s
ORDER BY r.created_at, r.id;

-- name: sweep_trial_ids
-- A sweep's trials' ids in the order they were made (the sweep index alone).
SELECT id FROM tunix_runs WHERE sweep_id = %(sweep_id)s ORDER BY created_at, id;

-- name: sweep_runs
-- A sweep's trials, whole, in the order they were made.
SELECT * FROM tunix_runs WHERE sweep_id = %(sweep_id)s ORDER BY created_at, id;
