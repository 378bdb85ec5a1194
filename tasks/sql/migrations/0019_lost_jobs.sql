-- What makes a sample or an export lost, and the error it ends with, once
-- for both job tables (tasks/sql/jobs.sql fail_lost_samples,
-- fail_lost_exports): a running job whose worker process went silent (no
-- heartbeat in tunix_workers for timeout_s, or no row: it was forgotten).
-- SQL functions, so PostgreSQL inlines them into each UPDATE.
CREATE OR REPLACE FUNCTION tunix_job_lost(running boolean, started_at timestamptz, worker_id text,
                                          timeout_s double precision)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT running
       AND started_at < clock_timestamp() - make_interval(secs => timeout_s)
       AND NOT EXISTS (SELECT 1 FROM tunix_workers w WHERE w.worker_id = tunix_job_lost.worker_id
                       AND w.heartbeat_at > clock_timestamp() - make_interval(secs => timeout_s))
$$;

CREATE OR REPLACE FUNCTION tunix_worker_lost_error(message_format text, worker_id text)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('type', 'WorkerLost', 'code', 'worker_lost', 'message', format(message_format, worker_id))
$$;
