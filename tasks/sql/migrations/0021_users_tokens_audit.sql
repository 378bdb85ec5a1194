-- A platform for a team (issue #21): users with a role, their tokens, who
-- owns each run and sweep, and an audit trail nothing updates.
--
-- A user's name is their identity everywhere (a run's owner, the audit's
-- "who"): it never changes, and a user is disabled, never deleted, so every
-- name a run or an audit row holds stays someone's.
CREATE TABLE tunix_users (
    name text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    role text NOT NULL CHECK (role IN ('admin', 'member', 'viewer')),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    created_by text,
    disabled_at timestamptz
);

-- A token is shown once, when it is made; only its sha256 is kept (a token
-- is 32 random bytes, so a fast hash is as safe as a slow one and costs a
-- request nothing).  ``prefix`` (its first characters) tells tokens apart in
-- a listing.  Revoked and expired tokens stay, for the audit's sake.
CREATE TABLE tunix_tokens (
    id uuid PRIMARY KEY,
    user_name text NOT NULL REFERENCES tunix_users (name),
    label text NOT NULL DEFAULT '',
    sha256 text NOT NULL UNIQUE,
    prefix text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    created_by text,
    expires_at timestamptz,
    revoked_at timestamptz,
    last_used_at timestamptz
);
CREATE INDEX tunix_tokens_user ON tunix_tokens (user_name, created_at DESC);

-- Who owns a run and a sweep: the user whose token submitted it; NULL for
-- those submitted with no user (an open installation, the API_TOKEN alone,
-- and every run before this migration).
ALTER TABLE tunix_runs ADD COLUMN owner text;
ALTER TABLE tunix_sweeps ADD COLUMN owner text;

-- Idempotency keys are per user: one person's key no longer answers
-- another's run.  NULL owners share one space, as all keys did before.
DROP INDEX tunix_runs_idempotency_key_idx;
CREATE UNIQUE INDEX tunix_runs_idempotency_key_idx ON tunix_runs (coalesce(owner, ''), idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- The audit trail: one row per mutating request, written after its answer;
-- never updated or deleted (the trigger refuses both, for every role but a
-- superuser who drops it on purpose).
CREATE TABLE tunix_audit (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    user_name text,
    role text,
    token_id uuid,
    action text NOT NULL,
    method text NOT NULL,
    path text NOT NULL,
    run_ids uuid[] NOT NULL DEFAULT '{}',
    status integer NOT NULL,
    remote_addr text,
    detail jsonb
);
CREATE INDEX tunix_audit_at ON tunix_audit (at DESC, id DESC);
CREATE INDEX tunix_audit_user ON tunix_audit (user_name, at DESC);
CREATE INDEX tunix_audit_runs ON tunix_audit USING gin (run_ids);

CREATE OR REPLACE FUNCTION tunix_audit_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'tunix_audit is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER tunix_audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON tunix_audit
    FOR EACH STATEMENT EXECUTE FUNCTION tunix_audit_is_append_only();
