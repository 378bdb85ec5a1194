-- Runs (tunix_runs): the submit, the status moves of tasks/lifecycle.py, the reads
-- of one run and of the history, admission's reads (tasks/admission.py).
-- Named queries, loaded by tasks/sql/__init__.py.

-- name: submit_run
-- A submit: the run and, when it is admitted at once, its dramatiq message,
-- in one statement, so one round trip and one commit (the connection is
-- held for that alone).  Whether it is queued at once or written deferred,
-- for admission to order, is admission's rule (tunix_admits_at_once,
-- migration 0018; tasks/admission.py).  The message's NOTIFY is
-- the only one a run costs.  With an idempotency key already used nothing
-- is written and no row returns.
WITH now AS (
    SELECT admitted FROM tunix_admits_at_once(%(ahead)s, %(dry_run)s, %(priority)s, %(owner)s, %(user_max)s)
), run AS (
    INSERT INTO tunix_runs (id, status, mode, dry_run, dataset_key, model_id, config, priority, idempotency_key,
                            request_hash, owner)
    SELECT %(run_id)s, CASE WHEN now.admitted THEN %(pending)s ELSE %(deferred)s END, %(mode)s, %(dry_run)s,
           %(dataset_key)s, %(model_id)s, %(config)s, %(priority)s, %(idempotency_key)s, %(request_hash)s,
           %(owner)s
    FROM now
    ON CONFLICT ((coalesce(owner, '')), idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING *
), queued AS (
    SELECT tunix_enqueue(%(queue_name)s, run.id, %(message)s) FROM run WHERE run.status = %(pending)s
)
-- Counting the queued rows makes PostgreSQL run the enqueue (a CTE no one reads is not run).
SELECT run.* FROM run WHERE (SELECT count(*) FROM queued) >= 0;

-- name: get_run_by_idempotency_key
-- The run an earlier submit with this key created.
SELECT * FROM tunix_runs
WHERE idempotency_key = %(idempotency_key)s AND coalesce(owner, '') = coalesce(%(owner)s, '');

-- name: insert_runs
-- A batch of submitted runs, each pending or deferred (psycopg2 execute_values).
INSERT INTO tunix_runs (id, status, mode, dry_run, dataset_key, model_id, config, priority, owner) VALUES %s
RETURNING *;

-- name: transition
-- The one status change: guarded by the statuses the lifecycle allows, so a
-- racing worker updates no row.  Claiming (-> running) stamps the worker and
-- the start, and is refused once the run has had its max_attempts; a final
-- status stamps the end and the duration; requeueing (resume) clears the
-- outcome of the previous attempt.  ``budget``: 'give_back' returns the
-- attempt being handed back to the run's budget, 'renew' gives it a fresh
-- one (tasks/lifecycle.py, "Attempts").
UPDATE tunix_runs SET
    status = %(target)s,
    started_at = CASE WHEN %(claim)s THEN clock_timestamp() ELSE started_at END,
    heartbeat_at = CASE WHEN %(claim)s THEN clock_timestamp() ELSE heartbeat_at END,
    worker_id = CASE WHEN %(claim)s THEN %(worker_id)s ELSE worker_id END,
    attempts = attempts + CASE WHEN %(claim)s THEN 1 ELSE 0 END,
    max_attempts = CASE
        WHEN %(budget)s = 'give_back' THEN COALESCE(max_attempts, %(max_attempts)s) + 1
        WHEN %(budget)s = 'renew' THEN attempts + %(max_attempts)s
        WHEN %(claim)s THEN COALESCE(max_attempts, %(max_attempts)s)
        ELSE max_attempts END,
    completed_at = CASE WHEN %(final)s THEN clock_timestamp() WHEN %(requeue)s THEN NULL ELSE completed_at END,
    duration_seconds = CASE
        WHEN %(final)s AND started_at IS NOT NULL
        THEN extract(epoch FROM clock_timestamp() - started_at)
        WHEN %(requeue)s THEN NULL
        ELSE duration_seconds END,
    result = CASE WHEN %(requeue)s THEN NULL ELSE COALESCE(%(result)s, result) END,
    error = CASE WHEN %(requeue)s THEN NULL ELSE COALESCE(%(error)s, error) END,
    exit_code = CASE WHEN %(requeue)s THEN NULL ELSE COALESCE(%(exit_code)s, exit_code) END,
    stop_reason = CASE WHEN %(requeue)s THEN NULL ELSE COALESCE(%(stop_reason)s, stop_reason) END,
    updated_at = clock_timestamp()
WHERE id = %(run_id)s AND status = ANY(%(from_statuses)s)
  -- Fencing: a worker finishes only the attempt it claimed, never the next
  -- attempt of a run recovered from it.
  AND (%(attempt)s::integer IS NULL OR attempts = %(attempt)s)
  AND (NOT %(claim)s OR attempts < COALESCE(max_attempts, %(max_attempts)s))
RETURNING *;

-- name: get_run
-- The whole run.
SELECT * FROM tunix_runs WHERE id = %(run_id)s;

-- name: get_status
-- What a poller needs, from the primary key alone.
SELECT id, status, created_at, started_at, completed_at, exit_code, attempts, max_attempts, progress
FROM tunix_runs WHERE id = %(run_id)s;

-- name: list_runs
-- One page of history, newest first, by the history's filters: each exact,
-- but %(tags)s (the run carries all of them: the GIN index tunix_runs_tags)
-- and %(q)s (a case-insensitive substring of the name: no index, see
-- migration 0022).
SELECT * FROM tunix_runs
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(mode)s::text IS NULL OR mode = %(mode)s)
  AND (%(dataset_key)s::text IS NULL OR dataset_key = %(dataset_key)s)
  AND (%(model_id)s::text IS NULL OR model_id = %(model_id)s)
  AND (%(owner)s::text IS NULL OR owner = %(owner)s)
  AND (%(sweep_id)s::uuid IS NULL OR sweep_id = %(sweep_id)s)
  AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
  AND (%(q)s::text IS NULL OR strpos(lower(name), lower(%(q)s)) > 0)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: count_runs
-- How many runs the same filters match, by status (one scan for every
-- status: the history's counts, and its total is their sum).
SELECT status, count(*) AS n FROM tunix_runs
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(mode)s::text IS NULL OR mode = %(mode)s)
  AND (%(dataset_key)s::text IS NULL OR dataset_key = %(dataset_key)s)
  AND (%(model_id)s::text IS NULL OR model_id = %(model_id)s)
  AND (%(owner)s::text IS NULL OR owner = %(owner)s)
  AND (%(sweep_id)s::uuid IS NULL OR sweep_id = %(sweep_id)s)
  AND (%(tags)s::text[] IS NULL OR tags @> %(tags)s::text[])
  AND (%(q)s::text IS NULL OR strpos(lower(name), lower(%(q)s)) > 0)
GROUP BY status;

-- name: update_run_labels
-- A run's name, tags and notes, as its PATCH (or its submit) sets them:
-- each only when %(set_...)s says it was sent (a null name clears it).
UPDATE tunix_runs SET
    name = CASE WHEN %(set_name)s THEN %(name)s ELSE name END,
    tags = CASE WHEN %(set_tags)s THEN %(tags)s::text[] ELSE tags END,
    notes = CASE WHEN %(set_notes)s THEN %(notes)s ELSE notes END
WHERE id = %(run_id)s
RETURNING *;

-- name: label_runs
-- The names and tags of runs just submitted (a batch), in the submit's
-- transaction: %(labels)s is a JSON array of {id, name, tags}.
UPDATE tunix_runs r SET name = l.name, tags = l.tags
FROM jsonb_to_recordset(%(labels)s) AS l(id uuid, name text, tags text[])
WHERE r.id = l.id
RETURNING r.*;

-- name: heartbeat
-- The worker holding a running run says it is alive, with the latest
-- progress; the answer carries the status, so a cancel is seen within a beat.
-- No row: the attempt is not this worker's any more (it was recovered).
-- That includes a run the reaper sent back to pending that no worker has
-- claimed again yet (its attempts are still this worker's): the worker must
-- stop then, not train on while nobody owns the run.
UPDATE tunix_runs SET heartbeat_at = clock_timestamp(), progress = COALESCE(%(progress)s, progress)
WHERE id = %(run_id)s AND attempts = %(attempt)s AND status IN :HELD
RETURNING status;

-- name: watch_runs
-- What the API's waiter compares between ticks for the runs its sync submits
-- and log streams wait on: a change in any column wakes them.  The last log
-- line comes from the end of the (run_id, seq) primary key.
SELECT r.id::text AS id, r.status, r.updated_at, r.progress::text AS progress,
       (SELECT max(l.seq) FROM tunix_run_logs l WHERE l.run_id = r.id) AS last_seq
FROM tunix_runs r
WHERE r.id = ANY(%(ids)s::uuid[]);

-- name: lost_runs
-- Runs whose worker stopped heartbeating, locked for this reaper alone.
SELECT * FROM tunix_runs
WHERE status IN :HELD
  AND heartbeat_at < clock_timestamp() - make_interval(secs => %(timeout_s)s)
ORDER BY heartbeat_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: existing_runs
SELECT id::text FROM tunix_runs WHERE id = ANY(%(ids)s::uuid[]);

-- name: matching_runs
-- The runs a bulk cancel or resume acts on (status_set: 'active' or
-- 'resumable'), oldest first, by the history's filters, the sweep and the
-- owner (a member's bulk move: their runs alone; null: everyone's).
SELECT id, status, dry_run FROM tunix_runs
WHERE CASE %(status_set)s WHEN 'active' THEN status IN :ACTIVE ELSE status IN :RESUMABLE END
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(sweep_id)s::uuid IS NULL OR sweep_id = %(sweep_id)s)
  AND (%(dataset_key)s::text IS NULL OR dataset_key = %(dataset_key)s)
  AND (%(model_id)s::text IS NULL OR model_id = %(model_id)s)
  AND (%(owner)s::text IS NULL OR owner = %(owner)s)
ORDER BY created_at, id;

-- name: count_matching_others
-- How many runs the same filters match that are not %(owner)s's (another
-- user's, or no one's): those a member's bulk move leaves as they are.
SELECT count(*) FROM tunix_runs
WHERE CASE %(status_set)s WHEN 'active' THEN status IN :ACTIVE ELSE status IN :RESUMABLE END
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(sweep_id)s::uuid IS NULL OR sweep_id = %(sweep_id)s)
  AND (%(dataset_key)s::text IS NULL OR dataset_key = %(dataset_key)s)
  AND (%(model_id)s::text IS NULL OR model_id = %(model_id)s)
  AND owner IS DISTINCT FROM %(owner)s;

-- name: run_owner
-- Whose a run is, before a move checks the caller may make it (no row: no run).
SELECT owner FROM tunix_runs WHERE id = %(run_id)s;

-- name: runs_to_admit
-- The deferred runs in the order admission takes them: priority first,
-- then fair share between users, then between each user's sweeps and
-- single runs, then age.  A user's share is how many of their runs would be
-- queued or running once this one is admitted: with one place, a user with
-- 20 runs waiting and another with one take turns, the second's first.  A
-- group's share is how many of its group (its sweep; a single run is a
-- group of its own) would be queued or running: a sweep with 5 trials
-- running comes after one with 1, and a single run (share 1) before any
-- sweep already running one.  Runs with no owner are each a user of their
-- own (an open installation orders as before users).  A trial past its
-- sweep's max_concurrent is not listed, nor a training past its owner's
-- %(user_max)s (0: no limit; tunix_user_trainings, migration 0023), nor a
-- training past the room the queue has for %(ahead)s
-- (tunix_admission_room, migration 0018; all of them when ahead is null).
-- One admitter at a time reads this (the caller holds the admission lock),
-- so two cannot fill one place twice.
WITH busy AS (
    SELECT sweep_id, count(*) AS n FROM tunix_runs
    WHERE sweep_id IS NOT NULL AND (status IN :WAITING OR status IN :HELD)
    GROUP BY sweep_id
), user_busy AS (
    SELECT owner, count(*) AS n, count(*) FILTER (WHERE NOT dry_run) AS trainings FROM tunix_runs
    WHERE owner IS NOT NULL AND (status IN :WAITING OR status IN :HELD)
    GROUP BY owner
), grouped AS (
    SELECT r.id, r.dry_run, r.priority, r.created_at, r.owner, s.max_concurrent,
           coalesce(b.n, 0) + row_number() OVER (PARTITION BY coalesce(r.sweep_id, r.id)
                                                 ORDER BY r.created_at, r.id) AS share
    FROM tunix_runs r
    LEFT JOIN tunix_sweeps s ON s.id = r.sweep_id
    LEFT JOIN busy b ON b.sweep_id = r.sweep_id
    WHERE r.status IN :DEFERRED
), eligible AS (
    -- A trial past its sweep's max_concurrent takes no turn of its user's.
    SELECT * FROM grouped WHERE max_concurrent IS NULL OR share <= max_concurrent
), ranked AS (
    SELECT e.*,
           coalesce(u.n, 0) + row_number() OVER mine AS user_share,
           coalesce(u.trainings, 0) + count(*) FILTER (WHERE NOT e.dry_run) OVER mine AS user_trainings
    FROM eligible e
    LEFT JOIN user_busy u ON u.owner = e.owner
    WINDOW mine AS (PARTITION BY coalesce(e.owner, e.id::text) ORDER BY e.priority DESC, e.share, e.created_at, e.id)
)
SELECT id, dry_run, priority, share, user_share FROM (
    SELECT *, row_number() OVER (PARTITION BY dry_run
                                 ORDER BY priority DESC, user_share, share, created_at, id) AS turn
    FROM ranked
    WHERE dry_run OR %(user_max)s::int = 0 OR owner IS NULL OR user_trainings <= %(user_max)s::int
) t
-- Trainings only as many as the queue has room for (dry runs take no place).
WHERE dry_run OR %(ahead)s::int IS NULL OR turn <= (SELECT room FROM tunix_admission_room(%(ahead)s))
ORDER BY priority DESC, user_share, share, created_at, id
LIMIT %(limit)s;

