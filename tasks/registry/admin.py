"""PostgreSQL's own catalog (``tasks/sql/admin.sql``): which advisory locks
are held, which sessions belong to silent workers, and ending one."""

from ..sql.cursor import fetch_column, fetch_tuples, fetch_value


def held_advisory_locks(conn, keys):
    return set(fetch_column(conn, "held_advisory_locks", keys=list(keys)))


def silent_worker_sessions(conn, timeout_s):
    """``[(pid, worker_id)]``: sessions of workers silent for over ``timeout_s``."""
    return fetch_tuples(conn, "silent_worker_sessions", timeout_s=timeout_s)


def terminate_session(conn, pid):
    return fetch_value(conn, "terminate_session", pid=pid)
