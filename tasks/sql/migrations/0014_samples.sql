-- Samples: text a checkpoint (or a base model) generates for a few prompts
-- (app/samples.py, workers/sampling/).  A row is written with its dramatiq
-- message in one statement (submit_sample), so a sample is never pending
-- without its message; its id is the message's id.  A worker moves it
-- pending -> running -> completed | failed; nothing else moves it.
-- ``step`` is the checkpoint sampled (resolved at submit: a request for the
-- latest names the step it found), null for a base model; ``params`` the
-- request, resolved (seed chosen, defaults filled in), so it can be repeated.
CREATE TABLE tunix_samples (
    id uuid PRIMARY KEY,
    run_id uuid REFERENCES tunix_runs (id) ON DELETE CASCADE,
    model_id text NOT NULL,
    step integer CHECK (step >= 0),
    params jsonb NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    outputs jsonb,
    error jsonb,
    worker_id text,
    timings jsonb,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at timestamptz,
    finished_at timestamptz,
    -- A final sample says when it ended; an unfinished one does not.
    CHECK ((status IN ('completed', 'failed')) = (finished_at IS NOT NULL)),
    -- A run's sample names its checkpoint.
    CHECK (run_id IS NULL OR step IS NOT NULL)
);
CREATE INDEX tunix_samples_run ON tunix_samples (run_id, created_at DESC) WHERE run_id IS NOT NULL;
