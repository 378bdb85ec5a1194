-- tunix: no-transaction
-- Admission (tasks/admission.py): a run's priority orders it among the runs
-- waiting 'deferred'; higher first, then fair share between sweeps and
-- single runs.  A column, not part of config: config is what the training
-- reads, and it reads every field it holds (tasks/run_spec.py).
--
-- Outside a transaction (tasks/migrate.py), re-runnable from the top: the
-- columns' constant defaults need no rewrite, the indexes are built
-- CONCURRENTLY (a run of this that failed after the drop builds it again).
ALTER TABLE tunix_runs ADD COLUMN IF NOT EXISTS priority integer NOT NULL DEFAULT 0;
ALTER TABLE tunix_sweeps ADD COLUMN IF NOT EXISTS priority integer NOT NULL DEFAULT 0;
-- What admission reads on every pass: the deferred runs in its order, and
-- the trainings admitted that no worker took yet.
DROP INDEX CONCURRENTLY IF EXISTS tunix_runs_deferred;
CREATE INDEX CONCURRENTLY IF NOT EXISTS tunix_runs_deferred ON tunix_runs (priority DESC, created_at)
    WHERE status = 'deferred';
CREATE INDEX CONCURRENTLY IF NOT EXISTS tunix_runs_queued_trainings ON tunix_runs (created_at)
    WHERE status = 'pending' AND NOT dry_run;
