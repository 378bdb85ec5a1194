-- Every query the registry runs, by name (see tasks/sql/__init__.py).

-- name: insert_run
-- Record a submitted run as pending.  With an idempotency key already used,
-- nothing is inserted and no row returns (see get_run_by_idempotency_key).
INSERT INTO tunix_runs (id, mode, dry_run, dataset_key, model_id, config, idempotency_key, request_hash)
VALUES (%(run_id)s, %(mode)s, %(dry_run)s, %(dataset_key)s, %(model_id)s, %(config)s,
        %(idempotency_key)s, %(request_hash)s)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING *;

-- name: submit_run
-- A submit: the run and, when it is admitted at once, its dramatiq message,
-- in one statement, so one round trip and one commit (the connection is
-- held for that alone).  A dry run is admitted at once; a training when
-- fewer than %(ahead)s admitted trainings wait for a worker and no deferred
-- one comes before it (priority as high): otherwise it is written deferred,
-- and admission orders it (tasks/admission.py).  The message's NOTIFY is
-- the only one a run costs.  With an idempotency key already used nothing
-- is written and no row returns.
WITH now AS (
    SELECT %(dry_run)s OR (
        (SELECT count(*) FROM (SELECT 1 FROM tunix_runs
                               WHERE status IN :WAITING AND NOT dry_run LIMIT %(ahead)s) w) < %(ahead)s
        AND NOT EXISTS (SELECT 1 FROM tunix_runs
                        WHERE status IN :DEFERRED AND NOT dry_run AND priority >= %(priority)s)) AS admitted
), run AS (
    INSERT INTO tunix_runs (id, status, mode, dry_run, dataset_key, model_id, config, priority, idempotency_key,
                            request_hash)
    SELECT %(run_id)s, CASE WHEN now.admitted THEN %(pending)s ELSE %(deferred)s END, %(mode)s, %(dry_run)s,
           %(dataset_key)s, %(model_id)s, %(config)s, %(priority)s, %(idempotency_key)s, %(request_hash)s
    FROM now
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING *
), queued AS (
    INSERT INTO dramatiq.queue (queue_name, message_id, "state", message)
    SELECT %(queue_name)s, run.id, 'queued', %(message)s FROM run WHERE run.status = %(pending)s
    RETURNING queue_name, message_id, message
), announced AS (
    SELECT pg_notify('dramatiq.' || queue_name || '.enqueue',
                     CASE WHEN octet_length(message::text) >= 8000
                          THEN jsonb_build_object('message_id', message_id)::text
                          ELSE message::text END)
    FROM queued
)
SELECT run.* FROM run WHERE (SELECT count(*) FROM announced) = (SELECT count(*) FROM queued);

-- name: get_run_by_idempotency_key
-- The run an earlier submit with this key created.
SELECT * FROM tunix_runs WHERE idempotency_key = %(idempotency_key)s;

-- name: insert_runs
-- A batch of submitted runs, each pending or deferred (psycopg2 execute_values).
INSERT INTO tunix_runs (id, status, mode, dry_run, dataset_key, model_id, config, priority) VALUES %s
RETURNING *;

-- name: enqueue_messages
-- A batch of dramatiq-pg messages, as its ENQUEUE query writes one, with
-- the NOTIFY its consumers listen for (psycopg2 execute_values).  Run in the
-- transaction that inserts (or resumes) the runs: they are queued together or
-- not at all.  This NOTIFY is the only one a run costs (README, "What a run
-- costs the database").
WITH enqueued AS (
    INSERT INTO dramatiq.queue (queue_name, message_id, "state", message) VALUES %s
    ON CONFLICT (message_id) DO UPDATE SET "state" = 'queued', message = EXCLUDED.message,
        queue_name = EXCLUDED.queue_name
    RETURNING queue_name, message_id, message
)
SELECT pg_notify('dramatiq.' || queue_name || '.enqueue',
                 CASE WHEN octet_length(message::text) >= 8000
                      THEN jsonb_build_object('message_id', message_id)::text
                      ELSE message::text END)
FROM enqueued;

-- name: ack_message
-- A processed message is done (dramatiq-pg's ACK without its NOTIFY, which
-- nothing listens to and which would serialise the commit: tasks/broker.py).
UPDATE dramatiq.queue SET "state" = 'done', message = %(message)s
WHERE message_id = %(message_id)s AND queue_name = %(queue_name)s AND state = 'consumed';

-- name: nack_message
-- A message dramatiq gave up (dramatiq-pg's NACK without its NOTIFY).
UPDATE dramatiq.queue SET "state" = 'rejected', message = %(message)s
WHERE message_id = %(message_id)s AND queue_name = %(queue_name)s AND state <> 'rejected';

-- name: transition
-- The one status change: guarded by the statuses the lifecycle allows, so a
-- racing worker updates no row.  Claiming (-> running) stamps the worker and
-- the start, and is refused once the run has had its max_attempts; a final
-- status stamps the end and the duration; requeueing (resume) clears the
-- outcome of the previous attempt.  ``budget``: 'give_back' returns the
-- attempt being handed back to the run's budget, 'renew' gives it a fresh
-- one (tasks/lifecycle.py, "Attempts").
UPDATE tunix_runs SET
    status = %(target)s,
    started_at = CASE WHEN %(claim)s THEN clock_timestamp() ELSE started_at END,
    heartbeat_at = CASE WHEN %(claim)s THEN clock_timestamp() ELSE heartbeat_at END,
    worker_id = CASE WHEN %(claim)s THEN %(worker_id)s ELSE worker_id END,
    attempts = attempts + CASE WHEN %(claim)s THEN 1 ELSE 0 END,
    max_attempts = CASE
        WHEN %(budget)s = 'give_back' THEN COALESCE(max_attempts, %(max_attempts)s) + 1
        WHEN %(budget)s = 'renew' THEN attempts + %(max_attempts)s
        WHEN %(claim)s THEN COALESCE(max_attempts, %(max_attempts)s)
        ELSE max_attempts END,
    completed_at = CASE WHEN %(final)s THEN clock_timestamp() WHEN %(requeue)s THEN NULL ELSE completed_at END,
    duration_seconds = CASE
        WHEN %(final)s AND started_at IS NOT NULL
        THEN extract(epoch FROM clock_timestamp() - started_at)
        WHEN %(requeue)s THEN NULL
        ELSE duration_seconds END,
    result = CASE WHEN %(requeue)s THEN NULL ELSE COALESCE(%(result)s, result) END,
    error = CASE WHEN %(requeue)s THEN NULL ELSE COALESCE(%(error)s, error) END,
    exit_code = CASE WHEN %(requeue)s THEN NULL ELSE COALESCE(%(exit_code)s, exit_code) END,
    stop_reason = CASE WHEN %(requeue)s THEN NULL ELSE COALESCE(%(stop_reason)s, stop_reason) END,
    updated_at = clock_timestamp()
WHERE id = %(run_id)s AND status = ANY(%(from_statuses)s)
  -- Fencing: a worker finishes only the attempt it claimed, never the next
  -- attempt of a run recovered from it.
  AND (%(attempt)s::integer IS NULL OR attempts = %(attempt)s)
  AND (NOT %(claim)s OR attempts < COALESCE(max_attempts, %(max_attempts)s))
RETURNING *;

-- name: get_run
-- The whole run.
SELECT * FROM tunix_runs WHERE id = %(run_id)s;

-- name: get_status
-- What a poller needs, from the primary key alone.
SELECT id, status, created_at, started_at, completed_at, exit_code, attempts, max_attempts, progress
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

-- name: heartbeat
-- The worker holding a running run says it is alive, with the latest
-- progress; the answer carries the status, so a cancel is seen within a beat.
-- No row: the attempt is not this worker's any more (it was recovered).
-- That includes a run the reaper sent back to pending that no worker has
-- claimed again yet (its attempts are still this worker's): the worker must
-- stop then, not train on while nobody owns the run.
UPDATE tunix_runs SET heartbeat_at = clock_timestamp(), progress = COALESCE(%(progress)s, progress)
WHERE id = %(run_id)s AND attempts = %(attempt)s AND status IN :HELD
RETURNING status;

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

-- name: append_logs
-- A batch of log lines (psycopg2 execute_values).
INSERT INTO tunix_run_logs (run_id, seq, stream, line) VALUES %s
ON CONFLICT (run_id, seq) DO NOTHING;

-- name: last_log_seq
-- Where a new attempt of a run continues numbering its log.
SELECT COALESCE(max(seq), 0) AS seq FROM tunix_run_logs WHERE run_id = %(run_id)s;

-- name: watch_runs
-- What the API's waiter compares between ticks for the runs its sync submits
-- and log streams wait on: a change in any column wakes them.  The last log
-- line comes from the end of the (run_id, seq) primary key.
SELECT r.id::text AS id, r.status, r.updated_at, r.progress::text AS progress,
       (SELECT max(l.seq) FROM tunix_run_logs l WHERE l.run_id = r.id) AS last_seq
FROM tunix_runs r
WHERE r.id = ANY(%(ids)s::uuid[]);

-- name: get_metrics
-- The run's per-step series, with the eval loss at the steps that have one.
SELECT m.step, m.loss, m.learning_rate, m.grad_norm, m.attempt, m.recorded_at, e.eval_loss, m.metrics, m.samples
FROM tunix_run_metrics m LEFT JOIN tunix_run_evals e ON e.run_id = m.run_id AND e.step = m.step
WHERE m.run_id = %(run_id)s ORDER BY m.step;

-- name: upsert_evals
-- A batch of eval losses (step, eval_loss, examples, attempt), replaced as the metrics are.
INSERT INTO tunix_run_evals (run_id, step, eval_loss, examples, attempt)
VALUES %s
ON CONFLICT (run_id, step) DO UPDATE SET
    eval_loss = EXCLUDED.eval_loss, examples = EXCLUDED.examples, attempt = EXCLUDED.attempt,
    recorded_at = clock_timestamp()
WHERE EXCLUDED.attempt >= tunix_run_evals.attempt;

-- name: get_logs
-- Log lines after a sequence number, in order.
SELECT seq, stream, line, created_at FROM tunix_run_logs
WHERE run_id = %(run_id)s AND seq > %(after)s
ORDER BY seq LIMIT %(limit)s;

-- name: lost_runs
-- Runs whose worker stopped heartbeating, locked for this reaper alone.
SELECT * FROM tunix_runs
WHERE status IN :HELD
  AND heartbeat_at < clock_timestamp() - make_interval(secs => %(timeout_s)s)
ORDER BY heartbeat_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: unqueued_pending_runs
-- Pending runs with no live message: the API died between commit and
-- publish, or the message was acked without the run starting.  A message
-- still 'consumed' is returned with its lock key, for the caller to check
-- whether a live consumer holds it.
SELECT r.id, r.dry_run, q.state::text AS message_state
FROM tunix_runs r
LEFT JOIN dramatiq.queue q ON q.message_id = r.id
WHERE r.status IN :WAITING
  AND r.updated_at < clock_timestamp() - make_interval(secs => %(min_age_s)s)
  AND (q.message_id IS NULL OR q.state <> 'queued')
ORDER BY r.created_at
LIMIT %(limit)s;

-- name: nudge_passed_over
-- Announce again (NOTIFY, as an enqueue does) the longest-waiting message of
-- each queue when its run is pending and it has waited over min_age_s.  A
-- consumer drops a NOTIFY it could not act on (measured: the message's lock
-- was still held by a session on its way out) and upstream rescans the queue
-- only every 1-5 minutes.  In a backlog this re-announces the next message
-- due anyway: one NOTIFY per queue and pass, the row untouched.
SELECT m.message_id, pg_notify('dramatiq.' || m.queue_name || '.enqueue',
                               json_build_object('message_id', m.message_id)::text)
FROM (
    SELECT DISTINCT ON (q.queue_name) q.queue_name, q.message_id
    FROM dramatiq.queue q
    JOIN tunix_runs r ON r.id = q.message_id AND r.status IN :WAITING
    WHERE q.state = 'queued'
      AND q.mtime < clock_timestamp() - make_interval(secs => %(min_age_s)s)
    ORDER BY q.queue_name, q.mtime
) m;

-- name: held_advisory_locks
-- Which of these advisory lock keys (int8, as dramatiq-pg takes them) some
-- session holds.
SELECT ((classid::bigint << 32) | objid::bigint) AS key
FROM pg_locks
WHERE locktype = 'advisory' AND objsubid = 1 AND granted
  AND ((classid::bigint << 32) | objid::bigint) = ANY(%(keys)s);

-- name: silent_worker_sessions
-- Sessions of worker processes silent for over timeout_s (frozen, or on a
-- hung or cut-off host).  They keep what they hold (the advisory locks of
-- prefetched messages, row locks of open transactions) until PostgreSQL
-- drops them, which for a live but frozen peer is never.  A worker's
-- sessions are named 'tunix-worker <worker_id>' (workers/boot.py).
SELECT a.pid, w.worker_id
FROM pg_stat_activity a
JOIN tunix_workers w ON a.application_name = left('tunix-worker ' || w.worker_id, 63)
WHERE a.datname = current_database()
  AND w.heartbeat_at < clock_timestamp() - make_interval(secs => %(timeout_s)s);

-- name: terminate_session
SELECT pg_terminate_backend(%(pid)s);

-- name: worker_heartbeat
-- A worker process is alive (insert on its first beat).
INSERT INTO tunix_workers (worker_id, hostname, pid) VALUES (%(worker_id)s, %(hostname)s, %(pid)s)
ON CONFLICT (worker_id) DO UPDATE SET heartbeat_at = clock_timestamp();

-- name: worker_gone
-- A worker process stopped cleanly.
DELETE FROM tunix_workers WHERE worker_id = %(worker_id)s;

-- name: forget_dead_workers
-- Rows of workers silent for much longer than the heartbeat timeout.
DELETE FROM tunix_workers WHERE heartbeat_at < clock_timestamp() - make_interval(secs => %(age_s)s);

-- name: fleet_gauges
-- Everything the scrape-time gauges need, in one round trip.
SELECT
    (SELECT coalesce(jsonb_object_agg(status, n), '{}'::jsonb)
       FROM (SELECT status, count(*) AS n FROM tunix_runs
             WHERE status IN :ACTIVE GROUP BY status) s) AS active,
    (SELECT extract(epoch FROM clock_timestamp() - min(created_at))
       FROM tunix_runs WHERE status IN :WAITING) AS oldest_pending_age_s,
    (SELECT count(*) FROM tunix_workers
       WHERE heartbeat_at > clock_timestamp() - make_interval(secs => %(timeout_s)s)) AS workers_alive;

-- name: final_status_counts
-- Runs in final statuses (an estimate from the planner would not match the
-- registry exactly; the status index keeps this a fast index-only count).
SELECT status, count(*) AS n FROM tunix_runs
WHERE status IN :FINAL GROUP BY status;

-- name: fleet_workers
-- The fleet view (GET /api/tunix/workers): worker processes (those that beat
-- within lost_window_s, and any holding a run) and the runs held now
-- (running or cancel_requested: the status index), one row per (worker,
-- run) pair.  A worker holding nothing has one row without a run; a held run
-- whose worker has no row (its row was forgotten) one row without a worker.
-- Ages are measured on the database's clock: hosts' clocks do not matter.
WITH held AS (
    SELECT id, status, mode, dry_run, dataset_key, model_id, worker_id, attempts, progress,
           started_at, heartbeat_at
    FROM tunix_runs WHERE status IN :HELD
), shown AS (
    SELECT * FROM tunix_workers
    WHERE heartbeat_at > clock_timestamp() - make_interval(secs => %(lost_window_s)s)
       OR worker_id IN (SELECT worker_id FROM held)
)
SELECT coalesce(w.worker_id, h.worker_id) AS worker_id, w.hostname, w.pid, w.started_at,
       extract(epoch FROM clock_timestamp() - w.heartbeat_at)::float8 AS heartbeat_age_s,
       h.id AS run_id, h.status AS run_status, h.mode, h.dry_run, h.dataset_key, h.model_id, h.attempts,
       h.progress, h.started_at AS run_started_at,
       extract(epoch FROM clock_timestamp() - h.heartbeat_at)::float8 AS run_heartbeat_age_s
FROM shown w
FULL JOIN held h ON h.worker_id = w.worker_id
ORDER BY 1, h.started_at;

-- name: fleet_queues
-- Per queue: its depth (messages waiting whose run is pending: one whose run
-- was cancelled while queued is skipped by its claim, so it is no work), how
-- long the longest-waiting of those runs has been pending (since its submit,
-- resume or requeue), and the messages a consumer holds (prefetched or
-- executing).  The queue's (state, mtime) index keeps done messages out.
SELECT q.queue_name,
       count(*) FILTER (WHERE q.state = 'queued' AND r.status IN :WAITING) AS depth,
       extract(epoch FROM clock_timestamp()
               - min(r.updated_at) FILTER (WHERE q.state = 'queued' AND r.status IN :WAITING))::float8
           AS oldest_pending_age_s,
       count(*) FILTER (WHERE q.state = 'consumed') AS in_flight
FROM dramatiq.queue q
LEFT JOIN tunix_runs r ON r.id = q.message_id
WHERE q.state IN ('queued', 'consumed')
GROUP BY q.queue_name;

-- name: fleet_deferred
-- Runs waiting for admission (no message yet), dry and training apart (the
-- partial index of deferred runs).
SELECT dry_run, count(*) AS n FROM tunix_runs WHERE status IN :DEFERRED GROUP BY dry_run;

-- name: record_checkpoint
-- A checkpoint uploaded to the artifact store becomes a recorded step, if the
-- attempt that uploaded it is still the run's (fencing: a stale attempt
-- records nothing) and the step is not recorded yet (an earlier attempt's
-- identical step stands).  No row: not recorded; the caller deletes its object.
-- The step's loss, recorded with the checkpoint, also goes into the per-step
-- metrics when they lack it: tunix reports a step's loss one step late, so a
-- worker killed right after the upload had not flushed it, and the resumed
-- attempt starts after that step (its own progress event, when it comes,
-- replaces this row).
WITH recorded AS (
    INSERT INTO tunix_checkpoints (run_id, step, attempt, uri, object_key, size_bytes, sha256, loss)
    SELECT r.id, %(step)s, %(attempt)s, %(uri)s, %(object_key)s, %(size_bytes)s, %(sha256)s, %(loss)s
    FROM tunix_runs r
    WHERE r.id = %(run_id)s AND r.attempts = %(attempt)s AND r.status IN :HELD
    ON CONFLICT (run_id, step) DO NOTHING
    RETURNING *
), metric AS (
    INSERT INTO tunix_run_metrics (run_id, step, loss, attempt)
    SELECT run_id, step, loss, attempt FROM recorded WHERE loss IS NOT NULL
    ON CONFLICT (run_id, step) DO NOTHING
)
SELECT * FROM recorded;

-- name: list_checkpoints
-- A run's recorded steps, oldest first (one being deleted is not listed).
SELECT * FROM tunix_checkpoints WHERE run_id = %(run_id)s AND NOT deleting ORDER BY step;

-- name: get_checkpoint
SELECT * FROM tunix_checkpoints WHERE run_id = %(run_id)s AND step = %(step)s AND NOT deleting;

-- name: latest_checkpoint
-- Where a resume starts: the run's last recorded step.
SELECT * FROM tunix_checkpoints WHERE run_id = %(run_id)s AND NOT deleting ORDER BY step DESC LIMIT 1;

-- name: mark_checkpoints_for_deletion
-- Retention: every recorded step of the run but its latest ``keep`` and its
-- lowest-loss one leaves the listings (deleting = true); the caller then
-- deletes each object, then its row.
WITH live AS (
    SELECT step, loss FROM tunix_checkpoints WHERE run_id = %(run_id)s AND NOT deleting
), kept AS (
    (SELECT step FROM live ORDER BY step DESC LIMIT %(keep)s)
    UNION
    (SELECT step FROM live WHERE loss IS NOT NULL ORDER BY loss, step DESC LIMIT 1)
)
UPDATE tunix_checkpoints c SET deleting = true
WHERE c.run_id = %(run_id)s AND NOT c.deleting AND c.step NOT IN (SELECT step FROM kept)
RETURNING c.run_id, c.step, c.object_key;

-- name: checkpoints_being_deleted
-- Rows marked for deletion (of one run, or of any when run_id is null): a
-- pass that stopped between the mark and the delete is finished from these.
SELECT run_id, step, object_key FROM tunix_checkpoints
WHERE deleting AND (%(run_id)s::uuid IS NULL OR run_id = %(run_id)s)
ORDER BY run_id, step LIMIT %(limit)s;

-- name: all_checkpoint_keys
-- Every object key the registry knows for the run, deleting or not: the
-- objects under the run's prefix that are not among them are orphans.
SELECT object_key FROM tunix_checkpoints WHERE run_id = %(run_id)s;

-- name: delete_checkpoint_row
DELETE FROM tunix_checkpoints WHERE run_id = %(run_id)s AND step = %(step)s AND deleting;

-- name: insert_sweep
INSERT INTO tunix_sweeps (id, name, spec, metric, duplicates, max_concurrent, priority, early_stopping)
VALUES (%(sweep_id)s, %(name)s, %(spec)s, %(metric)s, %(duplicates)s, %(max_concurrent)s, %(priority)s,
        %(early_stopping)s)
RETURNING *;

-- name: insert_trials
-- A sweep's trials: submitted runs carrying the sweep and their parameters,
-- all deferred: admission queues them (psycopg2 execute_values).
INSERT INTO tunix_runs (id, status, mode, dry_run, dataset_key, model_id, config, priority, sweep_id, trial)
VALUES %s
RETURNING *;

-- name: runs_to_admit
-- The deferred runs in the order admission takes them: priority first,
-- then fair share, then age.  A run's share is how many of its group (its
-- sweep; a single run is a group of its own) would be queued or running
-- once it is admitted: a sweep with 5 trials running comes after one with
-- 1, and a single run (share 1) before any sweep already running one.  A
-- trial past its sweep's max_concurrent is not listed, nor a training past
-- the %(room)s the queue has (all of them when room is null).  One admitter at a
-- time reads this (the caller holds the admission lock), so two cannot
-- fill one place twice.
WITH busy AS (
    SELECT sweep_id, count(*) AS n FROM tunix_runs
    WHERE sweep_id IS NOT NULL AND (status IN :WAITING OR status IN :HELD)
    GROUP BY sweep_id
), ranked AS (
    SELECT r.id, r.dry_run, r.priority, r.created_at, s.max_concurrent,
           coalesce(b.n, 0) + row_number() OVER (PARTITION BY coalesce(r.sweep_id, r.id)
                                                 ORDER BY r.created_at, r.id) AS share
    FROM tunix_runs r
    LEFT JOIN tunix_sweeps s ON s.id = r.sweep_id
    LEFT JOIN busy b ON b.sweep_id = r.sweep_id
    WHERE r.status IN :DEFERRED
)
SELECT id, dry_run, priority, share FROM (
    SELECT *, row_number() OVER (PARTITION BY dry_run ORDER BY priority DESC, share, created_at, id) AS turn
    FROM ranked
    WHERE max_concurrent IS NULL OR share <= max_concurrent
) t
-- Trainings only as many as the queue has room for (dry runs take no place).
WHERE dry_run OR %(room)s::int IS NULL OR turn <= %(room)s
ORDER BY priority DESC, share, created_at, id
LIMIT %(limit)s;

-- name: queued_trainings
-- Admitted trainings no worker took yet, counted up to %(ahead)s.
SELECT count(*) FROM (SELECT 1 FROM tunix_runs WHERE status IN :WAITING AND NOT dry_run LIMIT %(ahead)s) w;

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

-- name: existing_runs
SELECT id::text FROM tunix_runs WHERE id = ANY(%(ids)s::uuid[]);

-- name: sweep_trial_ids
-- A sweep's trials' ids in the order they were made (the sweep index alone).
SELECT id FROM tunix_runs WHERE sweep_id = %(sweep_id)s ORDER BY created_at, id;

-- name: sweep_runs
-- A sweep's trials, whole, in the order they were made.
SELECT * FROM tunix_runs WHERE sweep_id = %(sweep_id)s ORDER BY created_at, id;

-- name: matching_runs
-- The runs a bulk cancel or resume acts on (status_set: 'active' or
-- 'resumable'), oldest first, by the history's filters and the sweep.
SELECT id, status, dry_run FROM tunix_runs
WHERE CASE %(status_set)s WHEN 'active' THEN status IN :ACTIVE ELSE status IN :RESUMABLE END
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(sweep_id)s::uuid IS NULL OR sweep_id = %(sweep_id)s)
  AND (%(dataset_key)s::text IS NULL OR dataset_key = %(dataset_key)s)
  AND (%(model_id)s::text IS NULL OR model_id = %(model_id)s)
ORDER BY created_at, id;

-- ===========================================================================
-- Samples (tunix_samples: app/samples.py, workers/sampling/).  One block, so
-- it can move to a file of its own.
-- ===========================================================================

-- name: submit_sample
-- A sample request and its dramatiq message (id = the sample's id), with the
-- NOTIFY that wakes a consumer, in one statement: one round trip, one commit,
-- never a pending sample without its message (as submit_run).
WITH sample AS (
    INSERT INTO tunix_samples (id, run_id, model_id, step, params)
    VALUES (%(sample_id)s, %(run_id)s, %(model_id)s, %(step)s, %(params)s)
    RETURNING *
), queued AS (
    INSERT INTO dramatiq.queue (queue_name, message_id, "state", message)
    SELECT %(queue_name)s, sample.id, 'queued', %(message)s FROM sample
    RETURNING queue_name, message_id, message
), announced AS (
    SELECT pg_notify('dramatiq.' || queue_name || '.enqueue',
                     CASE WHEN octet_length(message::text) >= 8000
                          THEN jsonb_build_object('message_id', message_id)::text
                          ELSE message::text END)
    FROM queued
)
SELECT sample.* FROM sample WHERE (SELECT count(*) FROM announced) = (SELECT count(*) FROM queued);

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

-- ===========================================================================
-- Exports (tunix_exports: app/exports.py, workers/exporting/).  One block, so
-- it can move to a file of its own.
-- ===========================================================================

-- name: submit_export
-- An export request and its dramatiq message (id = the export's id), with the
-- NOTIFY that wakes a consumer, in one statement (as submit_sample).
WITH export AS (
    INSERT INTO tunix_exports (id, run_id, model_id, step)
    VALUES (%(export_id)s, %(run_id)s, %(model_id)s, %(step)s)
    RETURNING *
), queued AS (
    INSERT INTO dramatiq.queue (queue_name, message_id, "state", message)
    SELECT %(queue_name)s, export.id, 'queued', %(message)s FROM export
    RETURNING queue_name, message_id, message
), announced AS (
    SELECT pg_notify('dramatiq.' || queue_name || '.enqueue',
                     CASE WHEN octet_length(message::text) >= 8000
                          THEN jsonb_build_object('message_id', message_id)::text
                          ELSE message::text END)
    FROM queued
)
SELECT export.* FROM export WHERE (SELECT count(*) FROM announced) = (SELECT count(*) FROM queued);

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
