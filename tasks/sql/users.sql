-- name: any_users
-- Whether the installation has a user: auth is on from the first one.
SELECT EXISTS (SELECT 1 FROM tunix_users);

-- name: create_user
-- A new user; no row when the name is taken.
INSERT INTO tunix_users (name, role, created_by) VALUES (%(name)s, %(role)s, %(created_by)s)
ON CONFLICT (name) DO NOTHING
RETURNING *;

-- name: get_user
SELECT * FROM tunix_users WHERE name = %(name)s;

-- name: list_users
-- Every user with how many live tokens they hold.
SELECT u.*, (SELECT count(*) FROM tunix_tokens t
             WHERE t.user_name = u.name AND t.revoked_at IS NULL
               AND (t.expires_at IS NULL OR t.expires_at > clock_timestamp()))::integer AS live_tokens
FROM tunix_users u ORDER BY u.created_at, u.name;

-- name: update_user
-- A role changed, or the user disabled (their tokens stop at once) or
-- enabled again; a NULL leaves that field as it is.
UPDATE tunix_users
SET role = coalesce(%(role)s, role),
    disabled_at = CASE WHEN %(disabled)s IS NULL THEN disabled_at
                       WHEN %(disabled)s THEN coalesce(disabled_at, clock_timestamp())
                       ELSE NULL END
WHERE name = %(name)s
RETURNING *;

-- name: create_token
INSERT INTO tunix_tokens (id, user_name, label, sha256, prefix, created_by, expires_at)
VALUES (%(id)s, %(user_name)s, %(label)s, %(sha256)s, %(prefix)s, %(created_by)s, %(expires_at)s)
RETURNING id, user_name, label, prefix, created_at, created_by, expires_at, revoked_at, last_used_at;

-- name: token_user
-- The user a presented token (its sha256) acts as: a live token of an
-- enabled user, or no row.  Its last use is stamped at most once a minute, so
-- a busy client costs one write a minute, not one a request.
WITH t AS (
    SELECT t.id AS token_id, u.name, u.role
    FROM tunix_tokens t JOIN tunix_users u ON u.name = t.user_name
    WHERE t.sha256 = %(sha256)s AND t.revoked_at IS NULL AND u.disabled_at IS NULL
      AND (t.expires_at IS NULL OR t.expires_at > clock_timestamp())
), touched AS (
    UPDATE tunix_tokens SET last_used_at = clock_timestamp()
    WHERE id = (SELECT token_id FROM t)
      AND (last_used_at IS NULL OR last_used_at < clock_timestamp() - interval '60 seconds')
)
SELECT * FROM t;

-- name: list_tokens
-- A user's tokens (every user's with a NULL name), newest first; never a hash.
SELECT id, user_name, label, prefix, created_at, created_by, expires_at, revoked_at, last_used_at
FROM tunix_tokens
WHERE %(user_name)s::text IS NULL OR user_name = %(user_name)s
ORDER BY created_at DESC
LIMIT 1000;

-- name: get_token
SELECT id, user_name, label, prefix, created_at, created_by, expires_at, revoked_at, last_used_at
FROM tunix_tokens WHERE id = %(id)s;

-- name: revoke_token
-- Revoked at once (a revoked token is 401 on its next request); revoking
-- again changes nothing.
UPDATE tunix_tokens SET revoked_at = coalesce(revoked_at, clock_timestamp())
WHERE id = %(id)s
RETURNING id, user_name, label, prefix, created_at, created_by, expires_at, revoked_at, last_used_at;

-- name: record_audit
-- Audit rows, a batch in one statement (psycopg2 execute_values).
INSERT INTO tunix_audit (user_name, role, token_id, action, method, path, run_ids, status, remote_addr, detail)
VALUES %s;

-- name: list_audit
-- The trail, newest first, filtered by who, what, which run and when.
SELECT id, at, user_name, role, token_id, action, method, path, run_ids, status, remote_addr, detail
FROM tunix_audit
WHERE (%(user_name)s::text IS NULL OR user_name = %(user_name)s)
  AND (%(action)s::text IS NULL OR action = %(action)s)
  AND (%(run_id)s::uuid IS NULL OR run_ids @> ARRAY[%(run_id)s::uuid])
  AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR at < %(until)s)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY at DESC, id DESC
LIMIT %(limit)s;

-- name: user_waiting_runs
-- How many runs a user has waiting: deferred, or queued for a worker
-- (USER_MAX_QUEUED counts these).
SELECT count(*)::integer FROM tunix_runs
WHERE owner = %(owner)s AND (status IN :DEFERRED OR status IN :WAITING);

-- name: waiting_reason
-- Why a deferred run waits: its owner's held trainings, its sweep's held
-- trials and max_concurrent, and how many deferred trainings are ahead of it
-- by priority then age (admission's finer order aside).
SELECT r.owner,
       (SELECT count(*) FROM tunix_runs o WHERE r.owner IS NOT NULL AND o.owner = r.owner AND NOT o.dry_run
          AND (o.status IN :WAITING OR o.status IN :HELD))::integer AS owner_trainings,
       s.max_concurrent,
       (SELECT count(*) FROM tunix_runs t WHERE r.sweep_id IS NOT NULL AND t.sweep_id = r.sweep_id
          AND (t.status IN :WAITING OR t.status IN :HELD))::integer AS sweep_held,
       (SELECT count(*) FROM tunix_runs d WHERE d.status IN :DEFERRED AND NOT d.dry_run AND d.id <> r.id
          AND (d.priority > r.priority OR (d.priority = r.priority AND d.created_at < r.created_at)))::integer
          AS ahead
FROM tunix_runs r LEFT JOIN tunix_sweeps s ON s.id = r.sweep_id
WHERE r.id = %(run_id)s;
