-- The eval loss on a dataset's held-out examples (workers/training/data.py),
-- measured at each checkpoint step and at the end of a training.  A table of
-- its own: most steps have none.  Replaced like the metrics: only by the
-- same or a later attempt.
CREATE TABLE tunix_run_evals (
    run_id uuid NOT NULL REFERENCES tunix_runs (id) ON DELETE CASCADE,
    step integer NOT NULL,
    eval_loss double precision,
    examples integer NOT NULL,
    attempt integer NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (run_id, step)
);
