-- What a run records while it trains: per-step metrics, eval losses and log
-- lines (tunix_run_metrics, tunix_run_evals, tunix_run_logs).
-- Named queries, loaded by tasks/sql/__init__.py.

-- name: upsert_metrics
-- A batch of per-step values (psycopg2 execute_values).  A step another
-- attempt recorded is replaced only by a later attempt: a stale one (a worker
-- cut off, then back, writes what it buffered before it learns it is stale)
-- cannot relabel a newer attempt's steps.
INSERT INTO tunix_run_metrics (run_id, step, loss, learning_rate, grad_norm, attempt, metrics, samples)
VALUES %s
ON CONFLICT (run_id, step) DO UPDATE SET
    loss = EXCLUDED.loss, learning_rate = EXCLUDED.learning_rate,
    grad_norm = EXCLUDED.grad_norm, attempt = EXCLUDED.attempt, recorded_at = clock_timestamp(),
    metrics = EXCLUDED.metrics, samples = EXCLUDED.samples
WHERE tunix_run_metrics.attempt IS NULL OR EXCLUDED.attempt >= tunix_run_metrics.attempt;

-- name: upsert_evals
-- A batch of eval losses (step, eval_loss, examples, attempt), replaced as the metrics are.
INSERT INTO tunix_run_evals (run_id, step, eval_loss, examples, attempt)
VALUES %s
ON CONFLICT (run_id, step) DO UPDATE SET
    eval_loss = EXCLUDED.eval_loss, examples = EXCLUDED.examples, attempt = EXCLUDED.attempt,
    recorded_at = clock_timestamp()
WHERE EXCLUDED.attempt >= tunix_run_evals.attempt;

-- name: append_logs
-- A batch of log lines (psycopg2 execute_values).
INSERT INTO tunix_run_logs (run_id, seq, stream, line) VALUES %s
ON CONFLICT (run_id, seq) DO NOTHING;

-- name: last_log_seq
-- Where a new attempt of a run continues numbering its log.
SELECT COALESCE(max(seq), 0) AS seq FROM tunix_run_logs WHERE run_id = %(run_id)s;

-- name: get_metrics
-- The run's per-step series, with the eval loss at the steps that have one.
SELECT m.step, m.loss, m.learning_rate, m.grad_norm, m.attempt, m.recorded_at, e.eval_loss, m.metrics, m.samples
FROM tunix_run_metrics m LEFT JOIN tunix_run_evals e ON e.run_id = m.run_id AND e.step = m.step
WHERE m.run_id = %(run_id)s ORDER BY m.step;

-- name: get_logs
-- Log lines after a sequence number, in order.
SELECT seq, stream, line, created_at FROM tunix_run_logs
WHERE run_id = %(run_id)s AND seq > %(after)s
ORDER BY seq LIMIT %(limit)s;

-- name: series
-- Loss curves of many runs in one read, each cut to at most %(points)s
-- points: the steps first, first + k, first + 2k ... (k = ceil((last - first)
-- / (points - 1))) and always the last, so a curve keeps its start, its shape
-- and its end.  Each point is one probe of the metrics' primary key, never a
-- scan of every step (measured here, 200 trials of 1,000 steps, 200 points:
-- a window over all 200,000 rows 0.9-1.4 s, these probes 0.22-0.32 s).
SELECT b.run_id::text, array_agg(m.step ORDER BY m.step) AS steps, array_agg(m.loss ORDER BY m.step) AS losses
FROM unnest(%(ids)s::uuid[]) AS ids(run_id)
CROSS JOIN LATERAL (
    SELECT ids.run_id, min(step) AS first, max(step) AS last FROM tunix_run_metrics WHERE run_id = ids.run_id
) b
CROSS JOIN LATERAL (
    SELECT generate_series(b.first, b.last,
                           greatest(ceil((b.last - b.first) / (%(points)s - 1)::numeric), 1)::int) AS step
    UNION SELECT b.last
) t
JOIN tunix_run_metrics m ON m.run_id = b.run_id AND m.step = t.step
WHERE b.first IS NOT NULL AND m.loss IS NOT NULL
GROUP BY b.run_id;
