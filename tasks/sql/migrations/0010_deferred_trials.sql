-- A sweep may cap how many of its trials are in the queue or running at
-- once (max_concurrent): the rest wait as 'deferred', with no message, and
-- are admitted one by one as trials end (tasks/admission.py).
ALTER TABLE tunix_runs DROP CONSTRAINT tunix_runs_status_check;
ALTER TABLE tunix_runs ADD CONSTRAINT tunix_runs_status_check CHECK (status IN (
    'deferred', 'pending', 'running', 'cancel_requested', 'completed', 'failed', 'cancelled', 'timeout'));
ALTER TABLE tunix_sweeps ADD COLUMN max_concurrent integer CHECK (max_concurrent IS NULL OR max_concurrent >= 1);
CREATE INDEX tunix_runs_deferred ON tunix_runs (sweep_id, created_at) WHERE status = 'deferred';
