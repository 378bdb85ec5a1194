-- tunix: no-transaction
-- A sweep may cap how many of its trials are in the queue or running at
-- once (max_concurrent): the rest wait as 'deferred', with no message, and
-- are admitted one by one as trials end (tasks/admission.py).
--
-- Outside a transaction, one statement at a time (tasks/migrate.py): the new
-- CHECK is added NOT VALID (a moment's ACCESS EXCLUSIVE, no scan) and
-- validated on its own, under SHARE UPDATE EXCLUSIVE, while runs are read and
-- written; the index is built CONCURRENTLY.  Re-runnable from the top.
BEGIN;
ALTER TABLE tunix_runs DROP CONSTRAINT IF EXISTS tunix_runs_status_check;
ALTER TABLE tunix_runs ADD CONSTRAINT tunix_runs_status_check CHECK (status IN (
    'deferred', 'pending', 'running', 'cancel_requested', 'completed', 'failed', 'cancelled', 'timeout')) NOT VALID;
ALTER TABLE tunix_sweeps ADD COLUMN IF NOT EXISTS max_concurrent integer
    CHECK (max_concurrent IS NULL OR max_concurrent >= 1);
COMMIT;
ALTER TABLE tunix_runs VALIDATE CONSTRAINT tunix_runs_status_check;
CREATE INDEX CONCURRENTLY IF NOT EXISTS tunix_runs_deferred ON tunix_runs (sweep_id, created_at)
    WHERE status = 'deferred';
