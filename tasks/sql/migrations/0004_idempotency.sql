-- Idempotency-Key: a retried submit finds the run its first try created.
ALTER TABLE tunix_runs ADD COLUMN idempotency_key text;
-- sha256 of the canonical request (mode and validated body), to tell a
-- retry from a different request that reuses a key.
ALTER TABLE tunix_runs ADD COLUMN request_hash text;
CREATE UNIQUE INDEX tunix_runs_idempotency_key_idx ON tunix_runs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
