-- Retention (RETENTION_DAYS, workers/reaper.py, tasks/sql/retention.sql): a
-- finished run's log lines and per-step metrics are pruned once it has been
-- final for RETENTION_DAYS.  ``pruned_at`` says when a pass last found
-- nothing left to prune of it; a run resumed and finished again after that
-- (completed_at > pruned_at) is a candidate again.  The run row itself stays
-- (the history).  A new column with no default rewrites nothing.
ALTER TABLE tunix_runs ADD COLUMN pruned_at timestamptz;

-- The runs a pass still has to look at, oldest first: finished ones not
-- pruned since they finished.  Partial, so a registry whose old runs are all
-- pruned keeps it small, and a pass that finds nothing reads a few pages.
-- NOTE: built in the migration's transaction (it holds writes to tunix_runs
-- while it builds: about 0.5 s per million finished runs measured here); build
-- it CONCURRENTLY by hand first on a larger registry, the name is the same.
CREATE INDEX IF NOT EXISTS tunix_runs_to_prune ON tunix_runs (completed_at)
    WHERE completed_at IS NOT NULL AND (pruned_at IS NULL OR pruned_at < completed_at);
