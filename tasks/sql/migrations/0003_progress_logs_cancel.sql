-- Training you can watch, stop and resume: the statuses for cancel and time
-- limits, live progress, the metric series and the log lines.
ALTER TABLE tunix_runs DROP CONSTRAINT tunix_runs_status_check;
ALTER TABLE tunix_runs ADD CONSTRAINT tunix_runs_status_check CHECK (status IN (
    'pending', 'running', 'cancel_requested', 'completed', 'failed', 'cancelled', 'timeout'));

-- {step, total_steps, loss}: the latest, for cheap status reads.
ALTER TABLE tunix_runs ADD COLUMN progress jsonb;
-- Written by the worker that holds the run, about once a second.
ALTER TABLE tunix_runs ADD COLUMN heartbeat_at timestamptz;

-- One row per training step.  A resumed run rewrites the steps after its
-- checkpoint, so (run_id, step) is the key.
CREATE TABLE tunix_run_metrics (
    run_id uuid NOT NULL REFERENCES tunix_runs (id) ON DELETE CASCADE,
    step integer NOT NULL,
    loss double precision,
    learning_rate double precision,
    grad_norm double precision,
    attempt integer NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (run_id, step)
);

-- The training's stdout/stderr, line by line, numbered per run so a reader
-- resumes where it stopped (SSE Last-Event-ID).  Bounded per run by the
-- writer (workers/monitor.py).
CREATE TABLE tunix_run_logs (
    run_id uuid NOT NULL REFERENCES tunix_runs (id) ON DELETE CASCADE,
    seq bigint NOT NULL,
    stream text NOT NULL CHECK (stream IN ('stdout', 'stderr', 'system')),
    line text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (run_id, seq)
);
