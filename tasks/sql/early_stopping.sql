-- A sweep's early stopping (tasks/early_stopping.py): its rule, the median
-- rule's and ASHA's inputs, and a promotion.
-- Named queries, loaded by tasks/sql/__init__.py.

-- name: sweep_rule
-- A sweep's early-stopping rule (null: none).
SELECT early_stopping FROM tunix_sweeps WHERE id = %(sweep_id)s;

-- name: median_inputs
-- For the median rule at step %(step)s: the trial's best value up to it, and
-- each other trial's mean value over its steps up to it, for those that
-- reached it (the metrics' primary key serves both).  The value is the loss
-- when %(metric)s is 'loss', else that method metric, times %(sign)s (-1
-- when higher is better: lower is then better for every metric).
SELECT
    (SELECT min(%(sign)s * CASE WHEN %(metric)s = 'loss' THEN loss ELSE (metrics ->> %(metric)s)::float END)
     FROM tunix_run_metrics WHERE run_id = %(run_id)s AND step <= %(step)s) AS best,
    (SELECT coalesce(array_agg(mean), '{}') FROM (
        SELECT avg(m.value) AS mean FROM tunix_runs r
        JOIN LATERAL (SELECT step, %(sign)s * CASE WHEN %(metric)s = 'loss' THEN loss
                                                   ELSE (metrics ->> %(metric)s)::float END AS value
                      FROM tunix_run_metrics WHERE run_id = r.id AND step <= %(step)s) m ON true
        WHERE r.sweep_id = %(sweep_id)s AND r.id <> %(run_id)s AND m.value IS NOT NULL
        GROUP BY r.id HAVING max(m.step) >= %(step)s) p) AS peers;

-- name: rung_inputs
-- For an ASHA rung at step %(step)s: each trial's value (as in
-- median_inputs) at the first step it recorded at or past it, the trial's own apart.
SELECT r.id = %(run_id)s AS own, l.value
FROM tunix_runs r
JOIN LATERAL (SELECT value FROM (
                  SELECT step, %(sign)s * CASE WHEN %(metric)s = 'loss' THEN loss
                                               ELSE (metrics ->> %(metric)s)::float END AS value
                  FROM tunix_run_metrics WHERE run_id = r.id AND step >= %(step)s) s
              WHERE value IS NOT NULL ORDER BY step LIMIT 1) l ON true
WHERE r.sweep_id = %(sweep_id)s;

-- name: promote
-- An ASHA promotion: the trial passed rung %(rung)s (fenced by the attempt).
UPDATE tunix_runs SET rung = %(rung)s WHERE id = %(run_id)s AND attempts = %(attempt)s;
