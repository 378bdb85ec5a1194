"""Users, their tokens and the audit trail (``tasks/sql/users.sql``,
migration 0021).  A token is made here and shown once: only its sha256 is
stored (``hash_token``)."""

import hashlib
import secrets
import uuid

from psycopg2.extras import Json

from ..sql.cursor import execute_values, fetch_all, fetch_one, fetch_value

#: What every token starts with: a leaked one is recognisable (secret scanners, logs).
TOKEN_PREFIX = "tnx_"
#: Characters of a token kept in clear, to tell tokens apart in a listing.
SHOWN_CHARS = 8


def hash_token(token):
    return hashlib.sha256(token.encode()).hexdigest()


def any_users(conn):
    return bool(fetch_value(conn, "any_users"))


def create_user(conn, name, role, created_by=None):
    """The new user, or None when the name is taken."""
    return fetch_one(conn, "create_user", name=name, role=role, created_by=created_by)


def get_user(conn, name):
    return fetch_one(conn, "get_user", name=name)


def list_users(conn):
    return fetch_all(conn, "list_users")


def update_user(conn, name, role=None, disabled=None):
    """The user after the change, or None when there is no such user."""
    return fetch_one(conn, "update_user", name=name, role=role, disabled=disabled)


def create_token(conn, user_name, label="", created_by=None, expires_at=None):
    """``(token, row)``: the token itself, which nothing stores, and its row."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = fetch_one(conn, "create_token", id=uuid.uuid4(), user_name=user_name, label=label,
                    sha256=hash_token(token), prefix=token[:len(TOKEN_PREFIX) + SHOWN_CHARS],
                    created_by=created_by, expires_at=expires_at)
    return token, row


def token_user(conn, token):
    """``{"token_id", "name", "role"}`` of a live token, or None."""
    return fetch_one(conn, "token_user", sha256=hash_token(token))


def list_tokens(conn, user_name=None):
    return fetch_all(conn, "list_tokens", user_name=user_name)


def get_token(conn, token_id):
    return fetch_one(conn, "get_token", id=token_id)


def revoke_token(conn, token_id):
    return fetch_one(conn, "revoke_token", id=token_id)


def record_audit(conn, *rows):
    """Append audit rows (dicts: user_name, role, token_id, action, method,
    path, run_ids, status, remote_addr, detail) in one statement."""
    execute_values(conn, "record_audit", [
        (r["user_name"], r["role"], r["token_id"], r["action"], r["method"], r["path"],
         [str(x) for x in r["run_ids"]], r["status"], r["remote_addr"],
         Json(r["detail"]) if r.get("detail") is not None else None) for r in rows],
        template="(%s, %s, %s, %s, %s, %s, %s::uuid[], %s, %s, %s)")


def list_audit(conn, *, user_name=None, action=None, run_id=None, since=None, until=None, before_id=None,
               limit=100):
    return fetch_all(conn, "list_audit", user_name=user_name, action=action, run_id=run_id, since=since,
                     until=until, before_id=before_id, limit=limit)


def user_waiting_runs(conn, owner):
    """How many runs ``owner`` has deferred or queued."""
    return fetch_value(conn, "user_waiting_runs", owner=owner)


def waiting_reason(conn, run_id, user_max):
    """Why a deferred run waits, in a sentence: its owner's limit, its
    sweep's ``max_concurrent``, or its turn."""
    row = fetch_one(conn, "waiting_reason", run_id=run_id)
    if row is None:
        return None
    if user_max and row["owner"] is not None and row["owner_trainings"] >= user_max:
        return (f"{row['owner_trainings']} of {row['owner']}'s {user_max} trainings are queued or running "
                "(USER_MAX_TRAININGS); it starts when one of them ends")
    if row["max_concurrent"] is not None and row["sweep_held"] >= row["max_concurrent"]:
        return (f"{row['sweep_held']} of its sweep's {row['max_concurrent']} trials at once are queued or running "
                "(max_concurrent)")
    ahead = row["ahead"]
    return ("waiting for a free place in the queue" + (f": {ahead} deferred training(s) before it by priority and "
                                                        "age (fair share between users and sweeps decides among "
                                                        "them)" if ahead else ""))
