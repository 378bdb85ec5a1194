-- Retention (RETENTION_DAYS; workers/reaper.py, "Retention" in the README):
-- what a finished run no longer needs, and dramatiq's settled messages,
-- deleted in small batches.  Each delete takes at most %(limit)s rows, skips
-- rows another session holds (SKIP LOCKED: two reapers, or a writer, never
-- wait on each other) and sends no NOTIFY.  A run is prunable when it has
-- been final for %(days)s days and its sweep, if any, has no trial still in
-- the system's hands (early stopping and the sweep's ranking read finished
-- trials' steps).  Recorded checkpoints, exports, samples, eval losses and
-- the run row itself are never touched here.
-- Named queries, loaded by tasks/sql/__init__.py.

-- name: retention_candidates
-- Finished runs not pruned since they finished (migration 0024's partial
-- index, oldest first), whose sweep is not running.  The cutoff is stable
-- (now(), not clock_timestamp()), so it bounds the index scan.
WITH busy AS (
    SELECT DISTINCT sweep_id FROM tunix_runs WHERE status IN :ACTIVE AND sweep_id IS NOT NULL
)
SELECT r.id FROM tunix_runs r
WHERE r.completed_at < now() - make_interval(days => %(days)s)
  AND (r.pruned_at IS NULL OR r.pruned_at < r.completed_at)
  AND r.status IN :FINAL
  AND (r.sweep_id IS NULL OR r.sweep_id NOT IN (SELECT sweep_id FROM busy))
ORDER BY r.completed_at
LIMIT %(limit)s;

-- name: prune_logs
-- Up to %(limit)s log lines of the runs %(ids)s, each checked again to be
-- final and old (a resume since the candidates were read keeps its lines).
WITH runs AS (
    SELECT id FROM tunix_runs
    WHERE id = ANY(%(ids)s::uuid[]) AND status IN :FINAL
      AND completed_at < now() - make_interval(days => %(days)s)
), doomed AS (
    SELECT l.run_id, l.seq FROM tunix_run_logs l
    WHERE l.run_id IN (SELECT id FROM runs)
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM tunix_run_logs l USING doomed d WHERE l.run_id = d.run_id AND l.seq = d.seq;

-- name: prune_metrics
-- Up to %(limit)s per-step metrics rows of the runs %(ids)s (checked as
-- above), all but each run's last %(keep)s steps: a run's final loss and a
-- finished sweep's ranking (sweep_trials: the latest step, the method
-- metric's mean over the last RANK_LAST_STEPS) read only those.
WITH runs AS (
    SELECT r.id, (SELECT step FROM tunix_run_metrics WHERE run_id = r.id
                  ORDER BY step DESC OFFSET %(keep)s LIMIT 1) AS upto
    FROM tunix_runs r
    WHERE r.id = ANY(%(ids)s::uuid[]) AND r.status IN :FINAL
      AND r.completed_at < now() - make_interval(days => %(days)s)
), doomed AS (
    SELECT m.run_id, m.step FROM runs r
    JOIN tunix_run_metrics m ON m.run_id = r.id AND m.step <= r.upto
    LIMIT %(limit)s
    FOR UPDATE OF m SKIP LOCKED
)
DELETE FROM tunix_run_metrics m USING doomed d WHERE m.run_id = d.run_id AND m.step = d.step;

-- name: mark_pruned
-- The runs of %(ids)s with nothing left to prune are pruned: the next
-- candidates read past them.  Returns how many.
UPDATE tunix_runs r SET pruned_at = clock_timestamp()
WHERE r.id = ANY(%(ids)s::uuid[]) AND r.status IN :FINAL
  AND r.completed_at < now() - make_interval(days => %(days)s)
  AND NOT EXISTS (SELECT 1 FROM tunix_run_logs WHERE run_id = r.id)
  AND (SELECT count(*) FROM (SELECT 1 FROM tunix_run_metrics WHERE run_id = r.id LIMIT %(keep)s + 1) m) <= %(keep)s;

-- name: prune_queue
-- Up to %(limit)s of dramatiq's settled messages (done, rejected) settled
-- over %(keep_s)s seconds ago, by the (state, mtime) index.  Nothing reads a
-- settled message: its run, sample or export holds the outcome, and a run
-- queued again writes its message afresh (tunix_enqueue).  mtime is written
-- as dramatiq-pg writes it (now() AT TIME ZONE 'UTC'), and compared alike.
WITH doomed AS (
    SELECT message_id FROM dramatiq.queue
    WHERE "state" IN ('done', 'rejected')
      AND mtime < (now() AT TIME ZONE 'UTC') - make_interval(secs => %(keep_s)s)
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM dramatiq.queue q USING doomed d WHERE q.message_id = d.message_id;

-- name: retention_store_runs
-- What the store's sweep needs of the run folders %(ids)s (runs/<id>/): each
-- run that exists, whether its folder may be swept (prunable, as above), the
-- object keys of its recorded checkpoints (being deleted or not: the reaper
-- finishes those) and the ids of its exports that are live (pending or
-- running: a worker may be writing the tar; completed and not deleted).  A
-- folder whose id is not returned belongs to no run.
WITH busy AS (
    SELECT DISTINCT sweep_id FROM tunix_runs WHERE status IN :ACTIVE AND sweep_id IS NOT NULL
)
SELECT r.id::text AS id,
       (r.status IN :FINAL
        AND r.completed_at < now() - make_interval(days => %(days)s)
        AND (r.sweep_id IS NULL OR r.sweep_id NOT IN (SELECT sweep_id FROM busy))) AS prunable,
       ARRAY(SELECT object_key FROM tunix_checkpoints c WHERE c.run_id = r.id) AS checkpoints,
       ARRAY(SELECT e.id::text FROM tunix_exports e
             WHERE e.run_id = r.id AND e.status <> %(failed)s AND e.deleted_at IS NULL) AS live_exports
FROM tunix_runs r
WHERE r.id = ANY(%(ids)s::uuid[]);
