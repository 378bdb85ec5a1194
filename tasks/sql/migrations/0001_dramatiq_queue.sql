-- The broker's own table, as dramatiq-pg 0.12 ships it (dramatiq_pg/schema.sql),
-- made safe to re-run.  Kept here so one migration command sets up everything.
CREATE SCHEMA IF NOT EXISTS dramatiq;

DO $$ BEGIN
    CREATE TYPE dramatiq.state AS ENUM ('queued', 'consumed', 'rejected', 'done');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

CREATE TABLE IF NOT EXISTS dramatiq.queue (
    message_id uuid PRIMARY KEY,
    queue_name text NOT NULL DEFAULT 'default',
    "state" dramatiq.state,
    mtime timestamptz DEFAULT (now() AT TIME ZONE 'UTC'),
    message jsonb,
    "result" jsonb,
    result_ttl timestamptz
);

CREATE INDEX IF NOT EXISTS queue_state_mtime_idx ON dramatiq.queue ("state", mtime);
