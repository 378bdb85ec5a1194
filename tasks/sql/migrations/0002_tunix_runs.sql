-- The run registry.  The status list matches tasks/lifecycle.py.
CREATE TABLE tunix_runs (
    id uuid PRIMARY KEY,
    status text NOT NULL DEFAULT 'pending'
        CONSTRAINT tunix_runs_status_check
        CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    mode text NOT NULL CHECK (mode IN ('sync', 'async')),
    dry_run boolean NOT NULL,
    dataset_key text NOT NULL,
    model_id text NOT NULL,
    -- The full validated request: a worker executes the run from this alone.
    config jsonb NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    worker_id text,
    error jsonb,
    result jsonb,
    exit_code integer,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at timestamptz,
    completed_at timestamptz,
    duration_seconds double precision,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- History listing: newest first, optionally filtered.
CREATE INDEX tunix_runs_created_idx ON tunix_runs (created_at DESC, id DESC);
CREATE INDEX tunix_runs_status_created_idx ON tunix_runs (status, created_at DESC);

-- Waiters (sync submits, log streams) LISTEN on one channel per API process
-- rather than polling.  The payload is "<run id> <status>".
CREATE FUNCTION tunix_runs_notify_status() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('tunix_run_status', NEW.id::text || ' ' || NEW.status);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER tunix_runs_status_changed
    AFTER INSERT OR UPDATE OF status ON tunix_runs
    FOR EACH ROW
    EXECUTE FUNCTION tunix_runs_notify_status();
