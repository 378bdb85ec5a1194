-- Runs you can find (issue #21): a name and tags given at submit, notes
-- edited afterwards (PATCH /api/tunix/runs/{id}).  Columns, not part of
-- config: config is what the training reads (tasks/run_spec.py, SCHEDULING).
ALTER TABLE tunix_runs ADD COLUMN name text;
ALTER TABLE tunix_runs ADD COLUMN tags text[] NOT NULL DEFAULT '{}';
ALTER TABLE tunix_runs ADD COLUMN notes text NOT NULL DEFAULT '';

-- ?tag=a&tag=b is ``tags @> '{a,b}'``, which a GIN index answers.
CREATE INDEX tunix_runs_tags ON tunix_runs USING gin (tags);
-- ?owner=: a member's history, newest first.
CREATE INDEX tunix_runs_owner ON tunix_runs (owner, created_at DESC) WHERE owner IS NOT NULL;
-- NOTE: no index for ?q= (a case-insensitive substring of the name).  A
-- substring needs a trigram index, and pg_trgm is not there everywhere: the
-- embedded server (workers/pgembed.py, the pgserver wheel) ships no
-- contrib extensions.  The search reads the rows the other filters leave,
-- which is cheap for a team's history (thousands of runs, not millions).
