"""The request's database connection: taken from the process pool on first
use, committed and returned when the request ends."""

from flask import g

from tasks import db
from tasks.errors import DatabaseUnavailable


def get_pool():
    # NOTE: the broker module owns the process pool; importing it here (not
    # at module import) keeps `create_app` free of I/O.
    from tasks.broker import pool

    return pool


def get_db():
    if "db" not in g:
        pool = get_pool()
        try:
            g.db = pool.getconn()
        except Exception as exc:  # PoolError or a connect error
            raise DatabaseUnavailable(f"database unavailable: {exc}") from exc
        g.db.autocommit = True
    return g.db


def close_db(exc=None):
    conn = g.pop("db", None)
    if conn is not None:
        get_pool().putconn(conn, close=bool(conn.closed) or isinstance(exc, db.DISCONNECTS))


def init_app(app):
    app.teardown_appcontext(close_db)
