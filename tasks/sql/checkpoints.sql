-- Recorded checkpoints (tunix_checkpoints): fenced recording, listings, retention.
-- Named queries, loaded by tasks/sql/__init__.py.

-- name: record_checkpoint
-- A checkpoint uploaded to the artifact store becomes a recorded step, if the
-- attempt that uploaded it is still the run's (fencing: a stale attempt
-- records nothing) and the step is not recorded yet (an earlier attempt's
-- identical step stands).  No row: not recorded; the caller deletes its object.
-- The step's loss, recorded with the checkpoint, also goes into the per-step
-- metrics when they lack it: tunix reports a step's loss one step late, so a
-- worker killed right after the upload had not flushed it, and the resumed
-- attempt starts after that step (its own progress event, when it comes,
-- replaces this row).
WITH recorded AS (
    INSERT INTO tunix_checkpoints (run_id, step, attempt, uri, object_key, size_bytes, sha256, loss)
    SELECT r.id, %(step)s, %(attempt)s, %(uri)s, %(object_key)s, %(size_bytes)s, %(sha256)s, %(loss)s
    FROM tunix_runs r
    WHERE r.id = %(run_id)s AND r.attempts = %(attempt)s AND r.status IN :HELD
    ON CONFLICT (run_id, step) DO NOTHING
    RETURNING *
), metric AS (
    INSERT INTO tunix_run_metrics (run_id, step, loss, attempt)
    SELECT run_id, step, loss, attempt FROM recorded WHERE loss IS NOT NULL
    ON CONFLICT (run_id, step) DO NOTHING
)
SELECT * FROM recorded;

-- name: list_checkpoints
-- A run's recorded steps, oldest first (one being deleted is not listed).
SELECT * FROM tunix_checkpoints WHERE run_id = %(run_id)s AND NOT deleting ORDER BY step;

-- name: get_checkpoint
SELECT * FROM tunix_checkpoints WHERE run_id = %(run_id)s AND step = %(step)s AND NOT deleting;

-- name: latest_checkpoint
-- Where a resume starts: the run's last recorded step.
SELECT * FROM tunix_checkpoints WHERE run_id = %(run_id)s AND NOT deleting ORDER BY step DESC LIMIT 1;

-- name: mark_checkpoints_for_deletion
-- Retention: every recorded step of the run but its latest ``keep`` and its
-- lowest-loss one leaves the listings (deleting = true); the caller then
-- deletes each object, then its row.
WITH live AS (
    SELECT step, loss FROM tunix_checkpoints WHERE run_id = %(run_id)s AND NOT deleting
), kept AS (
    (SELECT step FROM live ORDER BY step DESC LIMIT %(keep)s)
    UNION
    (SELECT step FROM live WHERE loss IS NOT NULL ORDER BY loss, step DESC LIMIT 1)
)
UPDATE tunix_checkpoints c SET deleting = true
WHERE c.run_id = %(run_id)s AND NOT c.deleting AND c.step NOT IN (SELECT step FROM kept)
RETURNING c.run_id, c.step, c.object_key;

-- name: checkpoints_being_deleted
-- Rows marked for deletion (of one run, or of any when run_id is null): a
-- pass that stopped between the mark and the delete is finished from these.
SELECT run_id, step, object_key FROM tunix_checkpoints
WHERE deleting AND (%(run_id)s::uuid IS NULL OR run_id = %(run_id)s)
ORDER BY run_id, step LIMIT %(limit)s;

-- name: all_checkpoint_keys
-- Every object key the registry knows for the run, deleting or not: the
-- objects under the run's prefix that are not among them are orphans.
SELECT object_key FROM tunix_checkpoints WHERE run_id = %(run_id)s;

-- name: delete_checkpoint_row
DELETE FROM tunix_checkpoints WHERE run_id = %(run_id)s AND step = %(step)s AND deleting;
