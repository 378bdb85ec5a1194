-- Early stopping (tasks/early_stopping.py): a sweep's rule, and on each
-- trial why it was stopped and the last ASHA rung it was promoted through.
-- Decisions are rows, so a restart of every process loses none.
ALTER TABLE tunix_sweeps ADD COLUMN early_stopping jsonb;
ALTER TABLE tunix_runs
    ADD COLUMN stop_reason text,
    ADD COLUMN rung integer;
