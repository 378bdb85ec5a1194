-- Sweeps (tasks/sweep_spec.py): a named search space whose trials are
-- ordinary runs carrying the sweep's id and their parameters.  A sweep's
-- status and counts are read from its trials, never stored twice.
CREATE TABLE tunix_sweeps (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    -- The request as validated, with the seeds chosen at submit.
    spec jsonb NOT NULL,
    metric text NOT NULL,
    duplicates integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX tunix_sweeps_created ON tunix_sweeps (created_at DESC, id DESC);

ALTER TABLE tunix_runs
    ADD COLUMN sweep_id uuid REFERENCES tunix_sweeps (id),
    ADD COLUMN trial jsonb;
CREATE INDEX tunix_runs_sweep ON tunix_runs (sweep_id, created_at) WHERE sweep_id IS NOT NULL;
