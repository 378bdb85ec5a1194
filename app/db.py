"""The request's database connection: taken from the process pool on first
use, returned when the request ends.  A request holds at most this one
connection (the pool refuses a second to the same thread), so requests never
wait for each other's connections: a submit writes its run and its message
on it in one transaction (``transaction``)."""

import contextlib
import sys

from flask import g

from tasks import db
from tasks.broker import get_pool


def get_db():
    if "db" not in g:
        g.db = db.getconn(get_pool())
        g.db.autocommit = True
    return g.db


@contextlib.contextmanager
def transaction():
    """The request's connection in one transaction: committed when the block
    ends, rolled back if it raises."""
    conn = get_db()
    conn.autocommit = False
    try:
        yield conn
        conn.commit()
    finally:
        if not conn.closed:
            conn.rollback()  # after a commit: a no-op
            conn.autocommit = True


def discard_db():
    """Drop the request's connection when the request ends, not return it:
    the server went away from it, or answers it read-only."""
    g.db_broken = True


def close_db(exc=None):
    # Called from a ``finally`` too (a submit gives its connection back
    # before it answers): the error in flight counts there.
    exc = exc or sys.exc_info()[1]
    conn = g.pop("db", None)
    broken = g.pop("db_broken", False)
    if conn is not None:
        get_pool().putconn(conn, close=broken or bool(conn.closed) or isinstance(exc, db.DISCONNECTS))


def init_app(app):
    app.teardown_appcontext(close_db)
