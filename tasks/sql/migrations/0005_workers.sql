-- Worker processes say they are alive every few seconds, busy or idle, so
-- ops can count the fleet (tunix_workers_alive) and alert when none is left.
CREATE TABLE tunix_workers (
    worker_id text PRIMARY KEY,
    hostname text NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    heartbeat_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Counted by the reaper and by hand-backs/resumes, for the metrics that
-- must survive process restarts.
ALTER TABLE tunix_runs ADD COLUMN recoveries integer NOT NULL DEFAULT 0;
