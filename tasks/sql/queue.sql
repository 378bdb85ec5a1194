-- dramatiq-pg's queue (dramatiq.queue): the transactional outbox, acks and
-- nacks without their NOTIFY, and the reaper's repairs of lost messages.
-- Named queries, loaded by tasks/sql/__init__.py.

-- name: enqueue_messages
-- A batch of dramatiq-pg messages, each written and announced by
-- tunix_enqueue (migration 0017, the one enqueue statement), psycopg2
-- execute_values.  Run in the transaction that moves the runs (a resume, a
-- batch, admission, the reaper's recovery): they are queued together or not
-- at all.  This NOTIFY is the only one a run costs (README, "What a run
-- costs the database").
SELECT tunix_enqueue(m.queue_name, m.message_id, m.message)
FROM (VALUES %s) AS m (queue_name, message_id, message);

-- name: take_message
-- A consumer takes the message a NOTIFY announced (dramatiq-pg's CONSUME_ONE,
-- prepared: tasks/broker.py): a row only for the one consumer whose
-- advisory lock on it succeeds.
UPDATE dramatiq.queue SET "state" = 'consumed', mtime = (NOW() AT TIME ZONE 'UTC')
WHERE message_id = %(message_id)s AND state IN ('queued', 'consumed') AND pg_try_advisory_lock(%(lock)s);

-- name: unlock_messages
-- The advisory locks of messages a consumer has acked (tasks/broker.py).
SELECT pg_advisory_unlock(lock) FROM unnest(%(locks)s::bigint[]) AS lock;

-- name: ack_message
-- A processed message is done (dramatiq-pg's ACK without its NOTIFY, which
-- nothing listens to and which would serialise the commit: tasks/broker.py).
-- Upstream also writes the message back; nothing here reads a settled
-- message's body, and encoding it cost the worker a JSON dump per run.
UPDATE dramatiq.queue SET "state" = 'done'
WHERE message_id = %(message_id)s AND queue_name = %(queue_name)s AND state = 'consumed';

-- name: nack_message
-- A message dramatiq gave up (dramatiq-pg's NACK without its NOTIFY).
UPDATE dramatiq.queue SET "state" = 'rejected', message = %(message)s
WHERE message_id = %(message_id)s AND queue_name = %(queue_name)s AND state <> 'rejected';

-- name: unqueued_pending_runs
-- Pending runs with no live message: the API died between commit and
-- publish, or the message was acked without the run starting.  A message
-- still 'consumed' is returned with its lock key, for the caller to check
-- whether a live consumer holds it.
SELECT r.id, r.dry_run, q.state::text AS message_state
FROM tunix_runs r
LEFT JOIN dramatiq.queue q ON q.message_id = r.id
WHERE r.status IN :WAITING
  AND r.updated_at < clock_timestamp() - make_interval(secs => %(min_age_s)s)
  AND (q.message_id IS NULL OR q.state <> 'queued')
ORDER BY r.created_at
LIMIT %(limit)s;

-- name: nudge_passed_over
-- Announce again (NOTIFY, as an enqueue does) the longest-waiting message of
-- each queue when its run is pending and it has waited over min_age_s.  A
-- consumer drops a NOTIFY it could not act on (measured: the message's lock
-- was still held by a session on its way out) and upstream rescans the queue
-- only every 1-5 minutes.  In a backlog this re-announces the next message
-- due anyway: one NOTIFY per queue and pass, the row untouched.
SELECT m.message_id, pg_notify('dramatiq.' || m.queue_name || '.enqueue',
                               json_build_object('message_id', m.message_id)::text)
FROM (
    SELECT DISTINCT ON (q.queue_name) q.queue_name, q.message_id
    FROM dramatiq.queue q
    JOIN tunix_runs r ON r.id = q.message_id AND r.status IN :WAITING
    WHERE q.state = 'queued'
      AND q.mtime < clock_timestamp() - make_interval(secs => %(min_age_s)s)
    ORDER BY q.queue_name, q.mtime
) m;
