-- A user's concurrency limit joins admission's rule (issue #21; the
-- ordering by user is runs_to_admit's, in tasks/sql/runs.sql).  A training
-- of an owner who holds p_user_max trainings already (queued, running or
-- stopping) is not queued at once: it waits deferred, and admission queues
-- it when one of theirs ends.  p_user_max 0, or a run with no owner: no
-- limit, as before.  The statuses are lifecycle.WAITING ('pending') and
-- lifecycle.HELD ('running', 'cancel_requested'), as this migration leaves
-- them.  Inlined as 0018's functions are (a SQL set-returning function).
DROP FUNCTION tunix_admits_at_once(integer, boolean, integer);

CREATE FUNCTION tunix_user_trainings(p_owner text)
RETURNS TABLE (n integer) LANGUAGE sql STABLE AS $$
    SELECT count(*)::integer FROM tunix_runs
    WHERE owner = p_owner AND NOT dry_run AND status IN ('pending', 'running', 'cancel_requested')
$$;

CREATE INDEX tunix_runs_owner_active ON tunix_runs (owner)
    WHERE owner IS NOT NULL AND status IN ('deferred', 'pending', 'running', 'cancel_requested');

CREATE FUNCTION tunix_admits_at_once(p_ahead integer, p_dry_run boolean, p_priority integer, p_owner text,
                                     p_user_max integer)
RETURNS TABLE (admitted boolean) LANGUAGE sql STABLE AS $$
    SELECT p_dry_run OR (r.room > 0
                         AND NOT EXISTS (SELECT 1 FROM tunix_runs
                                         WHERE status = 'deferred' AND NOT dry_run AND priority >= p_priority)
                         AND (p_user_max = 0 OR p_owner IS NULL
                              OR (SELECT n FROM tunix_user_trainings(p_owner)) < p_user_max))
    FROM tunix_admission_room(p_ahead) r
$$;
