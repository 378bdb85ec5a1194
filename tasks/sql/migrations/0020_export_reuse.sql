-- Exports are reused and deleted (app/exports.py).  A run's step has at most
-- one live export: pending, running or completed and not deleted.  Asking
-- again for that step answers the live one instead of writing a second tar
-- (about 1 GB for gemma3-270m): submit_export inserts with ON CONFLICT on the
-- partial unique index below, so two requests at once cannot both create one.
-- A failed or a deleted export does not count: a new one is made.
--
-- DELETE /api/tunix/exports/{id} removes a final export's tar from the
-- artifact store, then stamps deleted_at; the row stays (its history, its
-- sha256), and its download answers 410.  Only a final export is deleted: a
-- worker may still be writing a pending or running one's tar.
ALTER TABLE tunix_exports ADD COLUMN deleted_at timestamptz,
    ADD CONSTRAINT tunix_exports_deleted_final CHECK (deleted_at IS NULL OR status IN ('completed', 'failed'));

-- Duplicates made before this migration (the same run and step asked twice):
-- one live export stays per step (completed first, then running, then
-- pending; the newest of them); the others leave the live set.  A completed
-- duplicate is marked deleted, its tar left in the store under object_key (a
-- DELETE of it removes that tar: a DELETE always makes sure the object is
-- gone); a pending or running one ends failed, saying which export answers
-- for its step.
WITH ranked AS (
    SELECT id, status,
           first_value(id) OVER w AS kept,
           row_number() OVER w AS rank
    FROM tunix_exports
    WHERE status <> 'failed'
    WINDOW w AS (PARTITION BY run_id, step
                 ORDER BY CASE status WHEN 'completed' THEN 0 WHEN 'running' THEN 1 ELSE 2 END,
                          created_at DESC, id)
)
UPDATE tunix_exports e
SET deleted_at = CASE WHEN r.status = 'completed' THEN clock_timestamp() END,
    status = CASE WHEN r.status = 'completed' THEN e.status ELSE 'failed' END,
    finished_at = CASE WHEN r.status = 'completed' THEN e.finished_at ELSE clock_timestamp() END,
    error = CASE WHEN r.status = 'completed' THEN e.error
                 ELSE jsonb_build_object('type', 'Superseded', 'code', 'superseded',
                                         'message', format('export %s of the same run and step answers for it', r.kept))
            END
FROM ranked r
WHERE e.id = r.id AND r.rank > 1;

CREATE UNIQUE INDEX tunix_exports_live_step ON tunix_exports (run_id, step)
    WHERE status <> 'failed' AND deleted_at IS NULL;
