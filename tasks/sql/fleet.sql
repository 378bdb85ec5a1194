-- The fleet (tunix_workers): worker processes' heartbeats, and what the fleet
-- view and the scrape-time gauges show.
-- Named queries, loaded by tasks/sql/__init__.py.

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
