-- The one statement that puts a message in dramatiq's queue: every enqueue
-- (a submit's, the outbox's for a resume, a batch, admission, the reaper's
-- recovery, a hand-back; queue.sql enqueue_messages and runs.sql submit_run)
-- calls it.  dramatiq-pg's ENQUEUE, an upsert (a run queued again reuses its
-- message id, the run id), and the NOTIFY its consumers listen for; a
-- message of 8000 bytes or more is announced by id only (PostgreSQL refuses
-- longer NOTIFY payloads, and a consumer then reads the row).
CREATE OR REPLACE FUNCTION tunix_enqueue(p_queue_name text, p_message_id uuid, p_message jsonb)
RETURNS uuid LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO dramatiq.queue (queue_name, message_id, "state", message)
    VALUES (p_queue_name, p_message_id, 'queued', p_message)
    ON CONFLICT (message_id) DO UPDATE SET "state" = 'queued', message = EXCLUDED.message,
        queue_name = EXCLUDED.queue_name;
    PERFORM pg_notify('dramatiq.' || p_queue_name || '.enqueue',
                      CASE WHEN octet_length(p_message::text) >= 8000
                           THEN jsonb_build_object('message_id', p_message_id)::text
                           ELSE p_message::text END);
    RETURN p_message_id;
END $$;
