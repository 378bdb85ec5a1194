-- Exports: a run's checkpoint of one step written as a standalone folder
-- (LoRA merged into the base, Hugging Face safetensors names, config.json,
-- the tokenizer), tarred into the artifact store (app/exports.py,
-- workers/exporting/).  A row is written with its dramatiq message in one
-- statement (submit_export), so an export is never pending without its
-- message; its id is the message's id.  A worker moves it pending -> running
-- -> completed | failed; nothing else moves it.  A completed export names its
-- object (object_key, uri), its size and sha256 (of the tar), and the
-- folder's manifest (tunix_export.json: files, loss check).
CREATE TABLE tunix_exports (
    id uuid PRIMARY KEY,
    run_id uuid NOT NULL REFERENCES tunix_runs (id) ON DELETE CASCADE,
    model_id text NOT NULL,
    step integer NOT NULL CHECK (step >= 0),
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    object_key text,
    uri text,
    size_bytes bigint CHECK (size_bytes >= 0),
    sha256 text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    manifest jsonb,
    error jsonb,
    worker_id text,
    timings jsonb,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at timestamptz,
    finished_at timestamptz,
    -- A final export says when it ended; an unfinished one does not.
    CHECK ((status IN ('completed', 'failed')) = (finished_at IS NOT NULL)),
    -- A completed export names its object, size and checksum.
    CHECK (status <> 'completed' OR (object_key IS NOT NULL AND size_bytes IS NOT NULL AND sha256 IS NOT NULL))
);
CREATE INDEX tunix_exports_run ON tunix_exports (run_id, created_at DESC);
