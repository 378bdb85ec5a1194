-- Checkpoints recorded in the artifact store (tasks/artifacts.py): only a
-- step with a row exists for the system.  A worker uploads a step once orbax
-- has finalised it, then records it; the insert is fenced by the run's
-- attempt (tasks/sql/queries.sql, record_checkpoint), so a stale attempt
-- records nothing.  Garbage collection marks a row ``deleting`` (it leaves
-- every listing), deletes the object, then the row: a pass interrupted
-- anywhere is finished by the next.
CREATE TABLE tunix_checkpoints (
    run_id uuid NOT NULL REFERENCES tunix_runs (id) ON DELETE CASCADE,
    step integer NOT NULL CHECK (step >= 0),
    attempt integer NOT NULL,
    uri text NOT NULL,
    object_key text NOT NULL,
    size_bytes bigint NOT NULL,
    sha256 text NOT NULL,
    loss double precision,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleting boolean NOT NULL DEFAULT false,
    PRIMARY KEY (run_id, step)
);
CREATE INDEX tunix_checkpoints_deleting ON tunix_checkpoints (run_id) WHERE deleting;
