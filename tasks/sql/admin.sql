-- PostgreSQL's own catalog: advisory locks held, worker sessions, and ending one.
-- Named queries, loaded by tasks/sql/__init__.py.

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
