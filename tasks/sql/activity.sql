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
-- The run's per-step series from step first to last, with the eval loss at
-- the steps that have one.
SELECT m.step, m.loss, m.learning_rate, m.grad_norm, m.attempt, m.recorded_at, e.eval_loss, m.metrics, m.samples
FROM tunix_run_metrics m LEFT JOIN tunix_run_evals e ON e.run_id = m.run_id AND e.step = m.step
WHERE m.run_id = %(run_id)s AND m.step BETWEEN %(first)s AND %(last)s ORDER BY m.step;

-- name: get_logs
-- Log lines after a sequence number, in order.
SELECT seq, stream, line, created_at FROM tunix_run_logs
WHERE run_id = %(run_id)s AND seq > %(after)s
ORDER BY seq LIMIT %(limit)s;

-- name: recorded_method_metrics
-- The method's own metrics (the names in the metrics' jsonb) the runs
-- recorded, sorted: from each run's last step only (a method records its
-- figures at every step), one probe of the primary key a run.
SELECT DISTINCT k.name
FROM unnest(%(ids)s::uuid[]) r(id)
CROSS JOIN LATERAL (SELECT metrics FROM tunix_run_metrics m WHERE m.run_id = r.id
                    ORDER BY m.step DESC LIMIT 1) last
CROSS JOIN LATERAL jsonb_object_keys(CASE jsonb_typeof(last.metrics) WHEN 'object' THEN last.metrics
                                         ELSE '{}'::jsonb END) k(name)
ORDER BY k.name;

-- name: series
-- One metric of many runs in one read, within steps lo to hi, each run's
-- span cut into %(buckets)s buckets of equal steps, each bucket keeping its
-- first, lowest, highest and last point (M4, Jugel et al., VLDB 2014): a
-- spike between sampled steps survives.  A span of fewer than %(points)s
-- steps comes whole (a bucket a step).  The metric is a column of the
-- metrics (loss, learning_rate, grad_norm), eval_loss (the evals) or a
-- method's own (the metrics' jsonb, its numbers); NaN and infinities are
-- left out.  One scan of the range's rows, hash-aggregated (200 runs of
-- 1,000 steps at 200 points: 0.35-0.55 s in SQL on a busy 2-core machine,
-- 0.37 s p50 over HTTP; the stride it replaced, which hid spikes, probed
-- 0.22-0.32 s); each run's steps,
-- values and seconds since its first recorded step (one probe of the
-- primary key a run), in step order.
WITH points AS (
    SELECT m.run_id, m.step, m.recorded_at,
           CASE WHEN %(metric)s = 'loss' THEN m.loss WHEN %(metric)s = 'learning_rate' THEN m.learning_rate
                WHEN %(metric)s = 'grad_norm' THEN m.grad_norm
                WHEN jsonb_typeof(m.metrics -> %(metric)s) = 'number' THEN (m.metrics ->> %(metric)s)::float8
           END AS value
    FROM tunix_run_metrics m
    WHERE %(metric)s <> 'eval_loss' AND m.run_id = ANY(%(ids)s::uuid[]) AND m.step BETWEEN %(lo)s AND %(hi)s
    UNION ALL
    SELECT e.run_id, e.step, e.recorded_at, e.eval_loss FROM tunix_run_evals e
    WHERE %(metric)s = 'eval_loss' AND e.run_id = ANY(%(ids)s::uuid[]) AND e.step BETWEEN %(lo)s AND %(hi)s
), valid AS (
    SELECT run_id, step, value, step::float8 AS at, extract(epoch FROM recorded_at)::float8 AS t
    FROM points WHERE value > '-Infinity'::float8 AND value < 'Infinity'::float8
), span AS (
    SELECT run_id, min(step) AS first, max(step) AS last, min(t) AS first_t FROM valid GROUP BY run_id
), buckets AS (
    SELECT v.run_id, min(ARRAY[v.value, v.at, v.t]) AS low, max(ARRAY[v.value, v.at, v.t]) AS high,
           min(ARRAY[v.at, v.value, v.t]) AS first, max(ARRAY[v.at, v.value, v.t]) AS last
    FROM valid v JOIN span s USING (run_id)
    GROUP BY v.run_id, CASE WHEN s.last - s.first < %(points)s THEN v.step - s.first
                            ELSE floor((v.step - s.first)::float8 * %(buckets)s / (s.last - s.first + 1))::int END
), kept AS (
    SELECT DISTINCT b.run_id, p.step::int AS step, p.value, p.t
    FROM buckets b CROSS JOIN LATERAL (VALUES (b.low[2], b.low[1], b.low[3]), (b.high[2], b.high[1], b.high[3]),
                                              (b.first[1], b.first[2], b.first[3]),
                                              (b.last[1], b.last[2], b.last[3])) AS p(step, value, t)
), origins AS MATERIALIZED (  -- once a run, not once a row
    SELECT ids.run_id, (SELECT extract(epoch FROM recorded_at)::float8 FROM tunix_run_metrics
                        WHERE run_id = ids.run_id ORDER BY step LIMIT 1) AS origin
    FROM unnest(%(ids)s::uuid[]) AS ids(run_id)
)
SELECT k.run_id::text, array_agg(k.step ORDER BY k.step) AS steps, array_agg(k.value ORDER BY k.step) AS values,
       array_agg(round((k.t - coalesce(o.origin, s.first_t))::numeric, 3)::float8 ORDER BY k.step) AS elapsed
FROM kept k JOIN origins o USING (run_id) JOIN span s USING (run_id)
GROUP BY k.run_id;
