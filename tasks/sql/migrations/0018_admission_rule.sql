-- Admission's rule, once (tasks/admission.py): whether a training may be
-- queued now.  A submit asks it of its new run (runs.sql submit_run) and an
-- admission pass asks it the room (runs.sql runs_to_admit); before this
-- each wrote the count of waiting trainings itself.  The statuses are
-- lifecycle.WAITING ('pending') and lifecycle.DEFERRED ('deferred'), as
-- this migration leaves them.
--
-- Each is a SQL function returning a set, read in a FROM: PostgreSQL then
-- inlines its body into the calling statement and plans it with it; a
-- scalar function with a query in it is never inlined.  Measured on 5000
-- runs (EXPLAIN ANALYZE, medians of 200 submits): planning a submit went
-- from 0.18 to 0.22 ms (the bodies are parsed at each plan), its execution
-- stayed 0.14 ms; as PL/pgSQL functions (custom plans made again at each
-- call, or generic ones forced) a submit took 0.4 to 0.6 ms more.

-- The places the queue has for trainings: ADMIT_AHEAD (p_ahead) less the
-- admitted trainings no worker took yet, never below 0.  Counted up to
-- p_ahead only, so a long queue costs no more than a short one.
CREATE OR REPLACE FUNCTION tunix_admission_room(p_ahead integer)
RETURNS TABLE (room integer) LANGUAGE sql STABLE AS $$
    SELECT greatest(p_ahead - count(*), 0)::integer
    FROM (SELECT 1 FROM tunix_runs WHERE status = 'pending' AND NOT dry_run LIMIT p_ahead) w
$$;

-- Whether a new run is queued at once rather than written deferred: a dry
-- run always (it takes milliseconds, and no worker's place); a training
-- when the queue has room and it would be admission's first pick, that is
-- no deferred training of as high a priority is there before it.
-- Otherwise admission orders it among the deferred (runs_to_admit).
CREATE OR REPLACE FUNCTION tunix_admits_at_once(p_ahead integer, p_dry_run boolean, p_priority integer)
RETURNS TABLE (admitted boolean) LANGUAGE sql STABLE AS $$
    SELECT p_dry_run OR (r.room > 0
                         AND NOT EXISTS (SELECT 1 FROM tunix_runs
                                         WHERE status = 'deferred' AND NOT dry_run AND priority >= p_priority))
    FROM tunix_admission_room(p_ahead) r
$$;
